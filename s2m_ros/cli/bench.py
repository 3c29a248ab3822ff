"""`s2m bench`: per-stage latency of the camera pipeline per profile and backend, and the ratios
users ask about, measured in one run so machine noise cancels.

  s2m bench [--profiles surface+grabcut,espnet+grabcut,...|all] [--models DIR] [--width 1280
            --height 720] [--frames 20] [--warmup 3] [--threads 0] [--backends onnxruntime[,tensorrt]]
            [--torch] [--image PATH] [--json OUT.json]

``--models DIR`` holds the files the export commands write: espnet.onnx, espnetv2.onnx,
mobilesam_encoder.onnx, mobilesam_decoder.onnx. Profiles whose files are missing are skipped with
the reason. The frame is a synthetic apron scene with planted objects (or ``--image``), JPEG-encoded
so the ``decode`` stage is real. ``--torch`` adds the torch references (needs the export tooling):
``encoder_onnxruntime_vs_torch`` and ``pipeline_onnxruntime_vs_torch`` (ESPNet scorer in torch vs
ONNX Runtime, same pipeline otherwise). JSON: ``stages`` maps ``<profile>/<backend>/<stage>`` to
``median_ms``, ``p90_ms``, ``max_ms``, ``n``; ``comparisons`` maps a name to a ratio (> 1 = the
first is slower); ``peak_rss_mb``; ``machine``; ``skipped``.
"""
import argparse
import os
import platform
import resource
import sys
import time

import cv2
import numpy as np

from s2m_ros.cli.common import progress, read_image, write_json

MODEL_FILES = {"espnet": "espnet.onnx", "espnetv2": "espnetv2.onnx",
               "encoder": "mobilesam_encoder.onnx", "decoder": "mobilesam_decoder.onnx"}


def stats(samples):
    a = np.asarray(samples, dtype=np.float64)
    return {"median_ms": round(float(np.median(a)), 3), "p90_ms": round(float(np.percentile(a, 90)), 3),
            "max_ms": round(float(a.max()), 3), "n": int(a.size)}


def bench_image(width, height, path=None):
    if path:
        img = read_image(path)
        return cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA) if img.shape[:2] != (height, width) else img
    from s2m_ros.core.synthetic import render_apron

    img, _ = render_apron(width, height, seed=7, objects=["cone", "suitcase", "chock", "bolt", "hose"])
    return img


def pipeline_config(profile, models, backend, threads):
    from s2m_ros.pipeline import PipelineConfig, parse_profile

    scorer, segmenter = parse_profile(profile)
    data = {"profile": profile, "backend": backend, "threads": threads}
    if scorer in ("espnet", "espnetv2"):
        data["scorer_model"] = os.path.join(models, MODEL_FILES[scorer])
    if segmenter == "mobilesam":
        data["mobilesam_encoder"] = os.path.join(models, MODEL_FILES["encoder"])
        data["mobilesam_decoder"] = os.path.join(models, MODEL_FILES["decoder"])
    return PipelineConfig.from_dict(data)


def time_pipeline(pipeline, jpeg, frames, warmup, desc=""):
    """Per-stage samples (ms) over ``frames`` runs after ``warmup`` runs; includes decode and total."""
    samples = {}
    for i in progress(range(warmup + frames), total=warmup + frames, desc=desc):
        t0 = time.perf_counter()
        image = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)
        t1 = time.perf_counter()
        image[0, 0, 0] = i % 256  # a new frame each time: no cached image embedding
        res = pipeline.process(image)
        t2 = time.perf_counter()
        if i < warmup:
            continue
        row = {"decode": (t1 - t0) * 1e3, "total": (t2 - t0) * 1e3}
        row.update(res.stage_ms)
        seg_t = getattr(pipeline.segmenter, "timings", None) or {}
        for k in ("encoder", "decoder"):
            if k in seg_t:
                row[k] = seg_t[k] * 1e3
        for k, v in row.items():
            samples.setdefault(k, []).append(v)
    return samples


def median_ms(fn, n, warmup=1):
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1e3)
    return float(np.median(out))


def decoder_prompt_ratio(segmenter, image, n):
    """Median time of segment() with 8 prompts / with 1 prompt, the embedding cached (decoder +
    mask post-processing only)."""
    from s2m_ros.core.prompts import Prompt

    h, w = image.shape[:2]
    score = np.zeros((h, w), np.float32)
    boxes = [(int(w * (0.05 + 0.11 * k)), int(h * (0.45 + 0.05 * (k % 3))), int(w * 0.08), int(h * 0.12))
             for k in range(8)]
    prompts = [Prompt(box=b, point=(b[0] + b[2] // 2, b[1] + b[3] // 2)) for b in boxes]
    segmenter.embed(image, frame_id="bench")
    one = median_ms(lambda: segmenter.segment(image, score, prompts[:1]), n)
    eight = median_ms(lambda: segmenter.segment(image, score, prompts), n)
    return one, eight


def main(argv=None):
    ap = argparse.ArgumentParser(prog="s2m bench", description=__doc__.split("\n")[0])
    ap.add_argument("--profiles", default="all", help="comma-separated profiles, or 'all'")
    ap.add_argument("--models", default="models", help="folder with the exported ONNX files")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--backends", default="onnxruntime")
    ap.add_argument("--torch", action="store_true", help="also time the torch references (export tooling)")
    ap.add_argument("--weights", default="../shared/data/weights",
                    help="folder with the published ESPNet/ESPNetv2 .pth files (for --torch pipeline comparison)")
    ap.add_argument("--image", help="benchmark on this image instead of the synthetic apron frame")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)

    from s2m_ros.inference.backend import ModelFileError
    from s2m_ros.pipeline import PROFILES, PipelineConfigError, S2MPipeline

    profiles = list(PROFILES) if args.profiles == "all" else [p.strip() for p in args.profiles.split(",") if p.strip()]
    image = bench_image(args.width, args.height, args.image)
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    result = {"machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                          "python": platform.python_version(), "date": time.strftime("%Y-%m-%d")},
              "width": args.width, "height": args.height, "frames": args.frames, "warmup": args.warmup,
              "threads": args.threads, "stages": {}, "comparisons": {}, "skipped": {}}
    pipelines = {}
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        for profile in profiles:
            key = "%s/%s" % (profile, backend)
            try:
                pipe = S2MPipeline(pipeline_config(profile, args.models, backend, args.threads))
            except (ModelFileError, PipelineConfigError, ImportError, RuntimeError, ValueError) as exc:
                result["skipped"][key] = str(exc)
                print("skipped %s: %s" % (key, exc), file=sys.stderr)
                continue
            pipelines[key] = pipe
            for stage, s in time_pipeline(pipe, jpeg, args.frames, args.warmup, desc=key).items():
                result["stages"]["%s/%s" % (key, stage)] = stats(s)
    comp = result["comparisons"]
    for key, pipe in pipelines.items():
        if key.endswith("+mobilesam/onnxruntime") and "mobilesam_decoder_8_vs_1_prompts" not in comp:
            one, eight = decoder_prompt_ratio(pipe.segmenter, image, max(5, args.frames // 2))
            comp["mobilesam_decoder_8_vs_1_prompts"] = round(eight / one, 3)
            result["stages"]["mobilesam/onnxruntime/decode_1_prompt"] = {"median_ms": round(one, 3)}
            result["stages"]["mobilesam/onnxruntime/decode_8_prompts"] = {"median_ms": round(eight, 3)}
    for profile in profiles:
        a, b = "%s/tensorrt/total" % profile, "%s/onnxruntime/total" % profile
        if a in result["stages"] and b in result["stages"] and "tensorrt_vs_onnxruntime" not in comp:
            comp["tensorrt_vs_onnxruntime"] = round(result["stages"][a]["median_ms"] / result["stages"][b]["median_ms"], 3)
    if args.torch:
        from s2m_ros.export.bench_refs import torch_comparisons

        comp.update(torch_comparisons(pipelines, image, args, result["stages"]))
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)
    print_table(result)
    if args.json:
        write_json(args.json, result)
        print("wrote %s" % args.json)
    return 0


def print_table(result):
    print("%-44s %10s %10s %10s" % ("profile/backend/stage", "median ms", "p90 ms", "max ms"))
    for k, v in result["stages"].items():
        if "median_ms" not in v:
            print("%-44s %s" % (k, v))
            continue
        print("%-44s %10.1f %10s %10s" % (k, v["median_ms"], "%.1f" % v["p90_ms"] if "p90_ms" in v else "",
                                         "%.1f" % v["max_ms"] if "max_ms" in v else ""))
    for k, v in result["comparisons"].items():
        print("%-44s %10.2fx" % (k, v))
    print("peak RSS %.0f MB" % result.get("peak_rss_mb", float("nan")))


if __name__ == "__main__":
    sys.exit(main())
