"""Timing helpers of ``s2m bench``: per-stage samples of the camera pipeline, medians, the benchmark frame."""
import time

import cv2
import numpy as np

from s2m_ros.files import progress, read_image


def stats(samples):
    a = np.asarray(samples, dtype=np.float64)
    return {"median_ms": round(float(np.median(a)), 3), "p90_ms": round(float(np.percentile(a, 90)), 3),
            "max_ms": round(float(a.max()), 3), "n": int(a.size)}


def bench_image(width, height, path=None):
    if path:
        img = read_image(path)
        return cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA) if img.shape[:2] != (height, width) else img
    from s2m_ros.sim.still import render_apron

    img, _ = render_apron(width, height, seed=7, objects=["cone", "suitcase", "chock", "bolt", "hose"])
    return img


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
    from s2m_ros.segmentation.prompts import Prompt

    h, w = image.shape[:2]
    score = np.zeros((h, w), np.float32)
    boxes = [(int(w * (0.05 + 0.11 * k)), int(h * (0.45 + 0.05 * (k % 3))), int(w * 0.08), int(h * 0.12))
             for k in range(8)]
    prompts = [Prompt(box=b, point=(b[0] + b[2] // 2, b[1] + b[3] // 2)) for b in boxes]
    segmenter.embed(image, frame_id="bench")
    one = median_ms(lambda: segmenter.segment(image, score, prompts[:1]), n)
    eight = median_ms(lambda: segmenter.segment(image, score, prompts), n)
    return one, eight
