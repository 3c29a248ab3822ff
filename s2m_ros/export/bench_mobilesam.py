"""Benchmark MobileSAM on CPU: encoder (torch vs ONNX Runtime) and decoding + mask post-processing
for 1 and N prompts (this package's batched, windowed decoder vs the naive ``SamOnnxModel`` export).

``python -m s2m_ros.export.bench_mobilesam [--checkpoint mobile_sam.pt] [--threads 2] [--runs 7]``
prints JSON: medians (ms) of ``runs`` timed runs after ``warmup`` runs, the configurations
interleaved run by run so that drift in machine load hits all of them alike, plus the load average
(timings on a shared machine are only comparable when it is low). Random weights by default: the
cost of the graphs does not depend on the weights. On a shared machine wall-clock medians move with
the load; ``decoder_kernel_ms_<k>thread`` (sum over graph nodes of each node's fastest kernel time
in 10 runs with k = 1 and ``--threads`` threads, from ONNX Runtime's profiler; decoder graphs only,
no post-processing) measures the decoders' cost robustly.

Decoding paths timed, each for a 1280x720 frame and box+point prompts, including post-processing
to per-prompt boolean masks:

* ``windowed``: what :class:`s2m_ros.segmentation.mobilesam.MobileSamSegmenter` does — one decoder call
  for all prompts, low-res masks only in a window covering each prompt's region, exact bilinear
  upsampling inside the region, threshold.
* ``full_lowres``: the same decoder asked for whole 256x256 low-res masks, then the same ROI step.
* ``naive``: ``mobile_sam.utils.onnx.SamOnnxModel`` (return_single_mask=True, as SAM's ONNX demo), which
  repeats the image embedding per prompt and upsamples each mask to 720x1280 in the graph; then
  threshold and crop to the prompt region.
"""
import argparse
import json
import os
import sys
import tempfile
import time
import warnings

import numpy as np
import torch

from s2m_ros.export import mobilesam as ex


def _prompts(n, size, seed=0):
    from s2m_ros.segmentation.prompts import Prompt

    rng = np.random.default_rng(seed)
    h, w = size
    out = []
    for _ in range(n):
        bw, bh = (int(v) for v in rng.integers(40, 260, 2))
        x, y = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
        out.append(Prompt(box=(x, y, bw, bh), point=(x + bw // 2, y + bh // 2)))
    return out


def export_naive(sam, path, opset=17):
    """SAM's own ONNX decoder export (prompt encoder + decoder + upsampling to the image size)."""
    from mobile_sam.utils.onnx import SamOnnxModel

    model = SamOnnxModel(sam, return_single_mask=True).eval()
    args = (torch.zeros(1, 256, 64, 64), torch.zeros(1, 3, 2), torch.tensor([[1.0, 2.0, 3.0]]),
            torch.zeros(1, 1, 256, 256), torch.zeros(1), torch.tensor([720.0, 1280.0]))
    dyn = {"point_coords": {0: "num_prompts", 1: "num_points"}, "point_labels": {0: "num_prompts", 1: "num_points"}}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, path, input_names=["image_embeddings", "point_coords", "point_labels",
                                                          "mask_input", "has_mask_input", "orig_im_size"],
                          output_names=["masks", "iou_predictions", "low_res_masks"], dynamic_axes=dyn,
                          opset_version=opset, dynamo=False)
    return path


def kernel_ms(path, feeds, threads=1, runs=10):
    """Sum over graph nodes of each node's fastest kernel time (ms) in ``runs`` runs (ORT profiler).

    Robust on a shared machine: preemption inflates some runs of a node, rarely all of them.
    """
    import json as _json

    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    opts.enable_profiling = True
    opts.profile_file_prefix = os.path.join(tempfile.gettempdir(), "bench_mobilesam_profile")
    sess = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
    for _ in range(runs):
        sess.run(None, feeds)
    prof = sess.end_profiling()
    try:
        with open(prof) as f:
            events = _json.load(f)
    finally:
        os.remove(prof)
    best = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            best[e["name"]] = min(best.get(e["name"], float("inf")), e["dur"])
    return round(sum(best.values()) / 1e3, 2)


def _median_ms(values):
    return round(float(np.median(values)) * 1e3, 2)


def bench(checkpoint=None, threads=2, runs=7, warmup=2, prompt_counts=(1, 8), frame=(720, 1280), seed=0,
          out_dir=None, include_torch_encoder=True, profile=True):
    """Run the benchmark; returns the result dict (see module doc)."""
    from s2m_ros.segmentation.mobilesam import (MobileSamSegmenter, full_windows, preprocess, prompt_points,
                                             roi_for_box)

    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    load_start = os.getloadavg()
    tmp = None
    if out_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench_mobilesam_")
        out_dir = tmp.name
    result = {"threads": threads, "runs": runs, "warmup": warmup, "frame": list(frame)}
    sam = ex.build_mobilesam(checkpoint)
    t0 = time.perf_counter()
    enc_path = ex.export_encoder(sam, os.path.join(out_dir, ex.ENCODER_FILE))
    t1 = time.perf_counter()
    dec_path = ex.export_decoder(sam, os.path.join(out_dir, ex.DECODER_FILE))
    t2 = time.perf_counter()
    naive_path = export_naive(sam, os.path.join(out_dir, "naive_decoder.onnx"))
    t3 = time.perf_counter()
    result["export_s"] = {"encoder": round(t1 - t0, 2), "decoder": round(t2 - t1, 2),
                          "naive_decoder": round(t3 - t2, 2)}
    result["file_mb"] = {k: round(os.path.getsize(p) / 1e6, 2)
                         for k, p in (("encoder", enc_path), ("decoder", dec_path), ("naive_decoder", naive_path))}

    seg = MobileSamSegmenter(enc_path, dec_path, threads=threads)
    naive = ex.ort_session(naive_path, threads=threads)
    h, w = frame
    image = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    x, _ = preprocess(image)
    x_t = torch.from_numpy(x)

    def enc_ort():
        seg.encoder.run({"image": x})

    def enc_torch():
        with torch.no_grad():
            sam.image_encoder(x_t)

    emb = seg.encoder.run({"image": x})["image_embeddings"]

    def windowed(prompts):
        rois, windows = seg.regions(prompts, (h, w))
        low, iou = seg.decode(emb, prompts, (h, w), windows)
        return seg.postprocess(low, iou, (h, w), rois, windows)

    def full_lowres(prompts):
        rois, _ = seg.regions(prompts, (h, w))
        low, iou = seg.decode(emb, prompts, (h, w), None)
        return seg.postprocess(low, iou, (h, w), rois, np.zeros((len(prompts), 4), np.int64))

    def naive_path_run(prompts):
        coords, labels = prompt_points(prompts, (h, w), True, False)
        masks, iou, _ = naive.run({"image_embeddings": emb, "point_coords": coords, "point_labels": labels,
                                   "mask_input": np.zeros((1, 1, 256, 256), np.float32),
                                   "has_mask_input": np.zeros(1, np.float32),
                                   "orig_im_size": np.array([h, w], np.float32)}).values()
        out = []
        for i, p in enumerate(prompts):
            rx, ry, rw, rh = roi_for_box(p.box, (h, w), seg.roi_margin, seg.roi_min_margin_px)
            out.append(masks[i, 0, ry:ry + rh, rx:rx + rw] > 0.0)
        return out

    cases = {"encoder_ort": enc_ort}
    if include_torch_encoder:
        cases["encoder_torch"] = enc_torch
    for n in prompt_counts:
        prompts = _prompts(n, frame, seed)
        for name, fn in (("windowed", windowed), ("full_lowres", full_lowres), ("naive", naive_path_run)):
            cases["%s_%d" % (name, n)] = (lambda f, p: (lambda: f(p)))(fn, prompts)
    times = {k: [] for k in cases}
    for r in range(warmup + runs):
        for k, fn in cases.items():
            s = time.perf_counter()
            fn()
            if r >= warmup:
                times[k].append(time.perf_counter() - s)
    med = {k: _median_ms(v) for k, v in times.items()}
    result["median_ms"] = med
    result["min_ms"] = {k: round(min(v) * 1e3, 2) for k, v in times.items()}
    lo, hi = min(prompt_counts), max(prompt_counts)
    result["ratio_%d_vs_%d" % (hi, lo)] = {
        name: round(med["%s_%d" % (name, hi)] / med["%s_%d" % (name, lo)], 2)
        for name in ("windowed", "full_lowres", "naive")}
    if include_torch_encoder:
        result["encoder_torch_over_ort"] = round(med["encoder_torch"] / med["encoder_ort"], 2)
    if profile:
        # per-node fastest kernel times: the work of each decoder path, insensitive to the load
        for nthreads in sorted({1, threads}):
            work = {}
            for n in prompt_counts:
                prompts = _prompts(n, frame, seed)
                coords, labels = prompt_points(prompts, (h, w), seg.use_point, seg.use_negative_points)
                _, windows = seg.regions(prompts, (h, w))
                feeds = {"image_embeddings": emb, "point_coords": coords, "point_labels": labels}
                work["windowed_%d" % n] = kernel_ms(dec_path, dict(feeds, mask_windows=windows), nthreads)
                work["full_lowres_%d" % n] = kernel_ms(dec_path, dict(feeds, mask_windows=full_windows(n)), nthreads)
                c1, l1 = prompt_points(prompts, (h, w), True, False)
                work["naive_%d" % n] = kernel_ms(naive_path, {
                    "image_embeddings": emb, "point_coords": c1, "point_labels": l1,
                    "mask_input": np.zeros((1, 1, 256, 256), np.float32), "has_mask_input": np.zeros(1, np.float32),
                    "orig_im_size": np.array([h, w], np.float32)}, nthreads)
            work["ratio_%d_vs_%d" % (hi, lo)] = {
                name: round(work["%s_%d" % (name, hi)] / work["%s_%d" % (name, lo)], 2)
                for name in ("windowed", "full_lowres", "naive")}
            result["decoder_kernel_ms_%dthread" % nthreads] = work
    result["loadavg_start_end"] = [round(load_start[0], 2), round(os.getloadavg()[0], 2)]
    if tmp is not None:
        tmp.cleanup()
    return result


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m s2m_ros.export.bench_mobilesam", description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", help="MobileSAM state_dict (default: seeded random weights)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--prompts", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-torch-encoder", action="store_true", help="skip the slow torch encoder timing")
    ap.add_argument("--no-profile", action="store_true", help="skip the 1-thread kernel-time profile")
    args = ap.parse_args(argv)
    res = bench(args.checkpoint, args.threads, args.runs, args.warmup, tuple(args.prompts), seed=args.seed,
                include_torch_encoder=not args.no_torch_encoder, profile=not args.no_profile)
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
