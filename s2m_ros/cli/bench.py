"""`s2m bench`: per-stage latency of the camera pipeline and of LiDAR fusion + tracking.

Per profile and backend, with the ratios users ask about, measured in one run so machine noise cancels.

  s2m bench [--profiles surface+grabcut,espnet+grabcut,...,fusion|all] [--models DIR] [--width 1280
            --height 720] [--frames 20] [--warmup 3] [--threads 0] [--backends onnxruntime[,tensorrt]]
            [--torch] [--image PATH] [--seed 0] [--json OUT.json]

``--models DIR`` holds the files the export commands write: espnet.onnx, espnetv2.onnx,
mobilesam_encoder.onnx, mobilesam_decoder.onnx. Profiles whose files are missing are skipped with
the reason. The frame is a synthetic apron scene with planted objects (or ``--image``), JPEG-encoded
so the ``decode`` stage is real. ``--torch`` adds the torch references (needs the export tooling):
``encoder_onnxruntime_vs_torch`` and ``pipeline_onnxruntime_vs_torch`` (ESPNet scorer in torch vs
ONNX Runtime, same pipeline otherwise).

The ``fusion`` profile (in ``all``; ``--profiles fusion`` alone needs no model file) times
:meth:`s2m_ros.obstacles.pipeline.ObstaclePipeline.process` on :func:`fusion_workload`: a 120k-point 64-beam
LiDAR sweep (~5 % NaN) of an apron with 6 planted obstacles and background structure, 8 masks at
1280x720 (``--width/--height`` do not apply), consecutive 10 Hz stamps so the tracker really tracks.
Stages ``fusion/cpu/fusion`` and ``fusion/cpu/tracking`` (the pipeline's own split),
``fusion/cpu/total`` (the whole ``process`` call) and ``fusion/cpu/fuse`` (the bare
:func:`s2m_ros.obstacles.fusion.fuse` call); comparisons ``fusion_vs_lidar_period`` and
``fusion_tracking_vs_lidar_period`` (median / 100 ms); ``fusion_workload`` describes the inputs.

JSON: ``stages`` maps ``<profile>/<backend>/<stage>`` to ``median_ms``, ``p90_ms``, ``max_ms``, ``n``;
``comparisons`` maps a name to a ratio (> 1 = the first is slower); ``peak_rss_mb``; ``machine``;
``skipped``.
"""
import os
import platform
import resource
import sys
import time

import cv2

from s2m_ros.bench.fusion_workload import FUSION_PROFILE, bench_fusion
from s2m_ros.bench.timing import bench_image, decoder_prompt_ratio, stats, time_pipeline
from s2m_ros.cli.common import ArgumentParser, UsageError, check_input, check_output_file, command, one_line
from s2m_ros.files import write_json

PROG = "s2m bench"

MODEL_FILES = {"espnet": "espnet.onnx", "espnetv2": "espnetv2.onnx",
               "encoder": "mobilesam_encoder.onnx", "decoder": "mobilesam_decoder.onnx"}


def pipeline_config(profile, models, backend, threads):
    from s2m_ros.segmentation.pipeline import PipelineConfig, parse_profile

    scorer, segmenter = parse_profile(profile)
    data = {"profile": profile, "backend": backend, "threads": threads}
    if scorer in ("espnet", "espnetv2"):
        data["scorer_model"] = os.path.join(models, MODEL_FILES[scorer])
    if segmenter == "mobilesam":
        data["mobilesam_encoder"] = os.path.join(models, MODEL_FILES["encoder"])
        data["mobilesam_decoder"] = os.path.join(models, MODEL_FILES["decoder"])
    return PipelineConfig.from_dict(data)


@command(PROG)
def main(argv=None):
    ap = ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    ap.add_argument("--profiles", default="all",
                    help="comma-separated camera profiles and/or 'fusion' (LiDAR fusion + tracking, no model "
                         "files), or 'all' (every camera profile and fusion)")
    ap.add_argument("--models", default="models", help="folder with the exported ONNX files")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--frames", type=int, default=20, help="timed repetitions per profile (after --warmup)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--backends", default="onnxruntime")
    ap.add_argument("--torch", action="store_true", help="also time the torch references (export tooling)")
    ap.add_argument("--weights", default="../shared/data/weights",
                    help="folder with the published ESPNet/ESPNetv2 .pth files (for --torch pipeline comparison)")
    ap.add_argument("--image", help="benchmark on this image instead of the synthetic apron frame")
    ap.add_argument("--seed", type=int, default=0, help="seed of the fusion workload")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    if args.frames < 1 or args.warmup < 0:
        ap.error("--frames must be >= 1 and --warmup >= 0")
    if not (16 <= args.width <= 8192 and 16 <= args.height <= 8192):
        ap.error("--width and --height must be in 16..8192")
    if args.threads < 0:
        ap.error("--threads must be >= 0")
    if args.seed < 0:
        ap.error("--seed must be >= 0")
    if args.json:
        check_output_file(args.json, "--json")
    if args.image:
        check_input(args.image, "file", "--image")

    from s2m_ros.segmentation.pipeline import PROFILES, S2MPipeline, parse_profile

    if args.profiles == "all":
        profiles = list(PROFILES) + [FUSION_PROFILE]
    else:
        profiles = [p.strip() for p in args.profiles.split(",") if p.strip()]
        for p in profiles:
            if p != FUSION_PROFILE:
                parse_profile(p)  # an unknown profile is a bad argument (PipelineConfigError: exit 2)
        if not profiles:
            raise UsageError("--profiles: no profile given")
    camera_profiles = [p for p in profiles if p != FUSION_PROFILE]
    image = jpeg = None
    if camera_profiles or args.torch:
        try:
            image = bench_image(args.width, args.height, args.image)
        except ValueError as exc:  # --image is not a decodable image
            raise UsageError("--image %s: %s" % (args.image, one_line(exc))) from exc
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    result = {"machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                          "python": platform.python_version(), "date": time.strftime("%Y-%m-%d")},
              "width": args.width, "height": args.height, "frames": args.frames, "warmup": args.warmup,
              "threads": args.threads, "stages": {}, "comparisons": {}, "skipped": {}}
    pipelines = {}
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    for backend in backends:
        for profile in camera_profiles:
            key = "%s/%s" % (profile, backend)
            try:
                pipe = S2MPipeline(pipeline_config(profile, args.models, backend, args.threads))
            except Exception as exc:  # noqa: BLE001 - missing/unusable model files, no runtime: skip the profile
                result["skipped"][key] = str(exc)
                print("skipped %s: %s" % (key, exc), file=sys.stderr)
                continue
            try:
                timed = time_pipeline(pipe, jpeg, args.frames, args.warmup, desc=key)
            except Exception as exc:  # noqa: BLE001 - one profile failing on the frame must not end the bench
                result["skipped"][key] = "%s: %s" % (type(exc).__name__, one_line(exc))
                print("skipped %s: %s" % (key, result["skipped"][key]), file=sys.stderr)
                continue
            pipelines[key] = pipe
            for stage, s in timed.items():
                result["stages"]["%s/%s" % (key, stage)] = stats(s)
    comp = result["comparisons"]
    for key, pipe in pipelines.items():
        if key.endswith("+mobilesam/onnxruntime") and "mobilesam_decoder_8_vs_1_prompts" not in comp:
            one, eight = decoder_prompt_ratio(pipe.segmenter, image, max(5, args.frames // 2))
            comp["mobilesam_decoder_8_vs_1_prompts"] = round(eight / one, 3)
            result["stages"]["mobilesam/onnxruntime/decode_1_prompt"] = {"median_ms": round(one, 3)}
            result["stages"]["mobilesam/onnxruntime/decode_8_prompts"] = {"median_ms": round(eight, 3)}
    for profile in camera_profiles:
        a, b = "%s/tensorrt/total" % profile, "%s/onnxruntime/total" % profile
        if a in result["stages"] and b in result["stages"] and "tensorrt_vs_onnxruntime" not in comp:
            comp["tensorrt_vs_onnxruntime"] = round(result["stages"][a]["median_ms"] / result["stages"][b]["median_ms"], 3)
    if FUSION_PROFILE in profiles:
        bench_fusion(result, args.frames, args.warmup, args.seed)
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
        print("%-44s %10.2f %10s %10s" % (k, v["median_ms"], "%.2f" % v["p90_ms"] if "p90_ms" in v else "",
                                         "%.2f" % v["max_ms"] if "max_ms" in v else ""))
    for k, v in result["comparisons"].items():
        print("%-44s %10.3fx" % (k, v))
    fw = result.get("fusion_workload")
    if fw:
        print("fusion workload: %d points (%d NaN), %d masks at %dx%d, LiDAR period %g ms" % (
            fw["points"], fw["nan_points"], fw["masks"], fw["image"][0], fw["image"][1], fw["lidar_period_ms"]))
    print("peak RSS %.0f MB" % result.get("peak_rss_mb", float("nan")))


if __name__ == "__main__":
    sys.exit(main())
