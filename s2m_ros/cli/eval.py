"""`s2m eval`: anomaly-segmentation metrics of a profile on a labelled dataset, as the papers report them.

  s2m eval --dataset DIR [--layout roadanomaly|folders] [--anomaly-value N ...] [--void-value N ...]
           [--profile espnet+grabcut --scorer-model models/espnet.onnx] [--score msp|maxlogit|energy|...]
           [--mode threshold|s2m|s2m-refine] [--threshold T] [--json OUT.json] [--out DIR] [--limit N]

Modes: ``threshold`` binarises the scorer's map at the threshold that maximises pooled pixel F1 on the
dataset (the oracle baseline of the papers) and, with ``--threshold``, also at that fixed value;
``s2m`` evaluates the pipeline's masks (instances, their union) and its composed map; ``s2m-refine``
the same with the refined map for the pixel metrics. Pixel metrics come from the continuous map of the
mode, component metrics (SegmentMeIfYouCan) from the binary prediction, the S2M curve from the map
normalised to [0, 1] over the dataset's range, instance metrics from predicted instances where the
dataset has instance labels. Void pixels are excluded everywhere. ``--out`` writes a per-image CSV,
overlays of the worst images, a precision-recall curve PNG and per image the raw score map and kept masks.
An image whose files cannot be read or do not match (undecodable, size mismatch), or that the pipeline fails
on, is skipped: the metrics are those of the others, the JSON lists it under ``"skipped"`` (item, reason,
error) and a line on stderr reports it; exit 2 when no image could be evaluated.
In ``s2m`` mode the composed map's background lies below every score of the dataset (S2M's 0 after
normalisation): an image without masks predicts nothing at any threshold.
"""
import csv
import os
import sys
import time

import cv2
import numpy as np

from s2m_ros.cli.common import (ArgumentParser, Skipped, UsageError, check_output_dir, check_output_file, command,
                                fail)
from s2m_ros.files import progress, write_json
from s2m_ros.cli.segment import add_pipeline_arguments, build_config, check_pipeline_arguments, make_pipeline
from s2m_ros.segmentation.scores import resize_score

MODES = ("threshold", "s2m", "s2m-refine")
PROG = "s2m eval"


def _finite_fill(s, lo):
    return np.where(np.isfinite(s), s, lo).astype(np.float32)


def _first_pass(sample, image, pipeline, mode):
    """(map at label size, kept instance masks or None, raw scorer map at label size, stage labels,
    the frame's lowest raw score or None) of one image."""
    from s2m_ros.eval.stage_loss import instance_stages

    shape = sample.anomaly.shape
    if mode == "threshold":
        smap = resize_score(pipeline.score(image), shape[1], shape[0])
        return smap, None, smap, [], None
    res = pipeline.process(image)
    inst = [m.full_mask(shape[1], shape[0]) for m in res.instances]  # images are label-sized
    stages = []
    if sample.instances is not None:  # where each labelled instance was lost (or kept)
        ids = np.unique(sample.instances[sample.instances > 0])
        stages = instance_stages([sample.instances == k for k in ids], res.prompts, res.segments,
                                 res.rejected, res.instances)
    raw_map = resize_score(res.score_map, shape[1], shape[0])
    if mode == "s2m-refine":
        smap = resize_score(res.refined, shape[1], shape[0])
    else:
        # S2M's composed map: each kept mask carries its score on a background below every
        # score of the dataset (NaN here, filled with the dataset's lowest score below, which
        # normalises to 0: no mask, no prediction at any threshold)
        smap = resize_score(res.composed, shape[1], shape[0])
        kept = np.logical_or.reduce(inst) if inst else np.zeros(shape, bool)
        smap = np.where(kept, smap, np.float32(np.nan))
    raw = res.score_map[np.isfinite(res.score_map)]
    frame_lo = float(raw.min()) if (mode == "s2m" and raw.size) else None
    return smap, inst, raw_map, stages, frame_lo


def run_eval(dataset, pipeline, mode, fixed_threshold=None, min_pred_size=0, min_gt_size=0, show_progress=None,
             dump_dir=None, skipped=None):
    """Two passes: (1) maps, masks and the dataset's score range; (2) all metrics.

    ``dump_dir``: also write, per image, the scorer's raw map at label size (``<name>.score.npy``,
    float16 or float32 where float16 would overflow; NaN = not scored) and each kept instance mask
    (``<name>.mask_<k>.png``, 0/255), so a run can be re-scored with the official code.

    A sample whose files cannot be loaded (DatasetError, OSError) or that the pipeline fails on is
    left out and recorded in ``skipped`` (a :class:`s2m_ros.cli.common.Skipped`; ``result["skipped"]``
    lists them too); the metrics are those of the rest.

    Returns (result, per-image rows, per-image (sample, map, instances), the pixel accumulator)."""
    from s2m_ros.eval.metrics import EvalAccumulator, PixelMetricAccumulator

    from s2m_ros.eval.stage_loss import summarise

    from s2m_ros.cli.common import Skipped, one_line
    from s2m_ros.eval.datasets import DatasetError

    if skipped is None:
        skipped = Skipped(PROG, "image", quiet=True)
    per = []  # (sample, map float16, pred instances [bool HxW] or None)
    stages = []  # stage_loss labels of every labelled instance (s2m modes)
    lo, hi = np.inf, -np.inf
    names = getattr(dataset, "names", None)
    t0 = time.perf_counter()
    for index in progress(range(len(dataset)), total=len(dataset), desc="eval %s" % mode, enabled=show_progress):
        name = names[index] if names is not None else str(index)
        try:  # this sample's files: unreadable, undecodable or of mismatched sizes -> skip it
            sample = dataset[index]
            image = sample.image
        except (DatasetError, OSError) as exc:
            skipped.add(name, "bad_sample", one_line(exc))
            continue
        name = getattr(sample, "name", name)
        try:  # what the pipeline makes of it: a failure is this image's (counted), not the run's
            smap, inst, raw_map, sample_stages, frame_lo = _first_pass(sample, image, pipeline, mode)
        except Exception as exc:  # noqa: BLE001 - one bad image must not end the evaluation
            skipped.add_exception(name, exc)
            continue
        if dump_dir:
            _dump(dump_dir, sample.name, raw_map, inst or [])
        stages.extend(sample_stages)
        if frame_lo is not None:  # s2m modes: the background ranks below the frame's every score
            lo = min(lo, frame_lo)
        fin = smap[np.isfinite(smap)]
        if fin.size:
            lo, hi = min(lo, float(fin.min())), max(hi, float(fin.max()))
        per.append((sample, smap.astype(np.float16) if np.all(np.abs(fin) < 6e4) else smap, inst))
    seconds = time.perf_counter() - t0
    if not np.isfinite(lo):
        lo, hi = 0.0, 1.0
    if hi <= lo:
        hi = lo + 1.0
    # pass 2a: pixel metrics (and the oracle threshold) from the continuous maps
    pixels = PixelMetricAccumulator()
    for sample, smap, _ in per:
        pixels.add(_finite_fill(smap.astype(np.float32), lo), sample.anomaly, sample.valid)
    pix = pixels.result() if pixels.n_pos and pixels.n_neg else None
    oracle = pix.get("best_f1_threshold") if pix else None
    # pass 2b: binary predictions -> component, S2M-curve and instance metrics
    acc2 = EvalAccumulator(min_pred_size=min_pred_size, min_gt_size=min_gt_size, s2m_score_range=(lo, hi))
    fixed = EvalAccumulator(min_pred_size=min_pred_size, min_gt_size=min_gt_size, s2m_score_range=(lo, hi)) \
        if (mode == "threshold" and fixed_threshold is not None) else None
    rows = []
    for sample, smap, inst in per:
        s = _finite_fill(smap.astype(np.float32), lo)
        void = sample.void if sample.void.any() else None
        if mode == "threshold":
            pred = s >= oracle if oracle is not None else np.zeros_like(sample.anomaly)
            pred_inst = None
        else:
            pred = np.zeros(sample.anomaly.shape, bool)
            for m in inst:
                pred |= m
            pred_inst = inst if sample.instances is not None else None
        row = acc2.add(sample.anomaly, void, pred_mask=pred, s2m_scores=s, gt_instances=sample.instances,
                       pred_instances=pred_inst)
        if fixed is not None:
            fixed.add(sample.anomaly, void, pred_mask=s >= fixed_threshold, s2m_scores=s,
                      gt_instances=sample.instances)
        row = dict(image=sample.name, **row)
        rows.append(row)
    result = acc2.result()
    result["pixel"] = pix
    result["n_images"] = len(per)
    result["skipped"] = skipped.to_json()
    result["score_range"] = [lo, hi]
    result["threshold"] = {"oracle_best_f1": oracle}
    if fixed is not None:
        fr = fixed.result()
        result["threshold"]["fixed"] = fixed_threshold
        result["fixed_threshold"] = {"component": fr["component"], "s2m": fr["s2m"], "instance": fr["instance"]}
    result["seconds_per_image"] = seconds / max(len(per), 1)
    if stages:
        result["stages"] = summarise(stages)
    return result, rows, per, pixels


def _dump(folder, name, raw, masks):
    """The raw score map and the kept masks of one image (see :func:`run_eval`)."""
    os.makedirs(folder, exist_ok=True)
    stem = os.path.join(folder, name.replace(os.sep, "_"))
    fin = raw[np.isfinite(raw)]
    np.save(stem + ".score.npy", raw.astype(np.float16) if np.all(np.abs(fin) < 6e4) else raw.astype(np.float32))
    for k, m in enumerate(masks):
        cv2.imwrite("%s.mask_%d.png" % (stem, k), m.astype(np.uint8) * 255)


def _pr_curve_png(acc_scores, path):
    """Precision-recall curve drawn with OpenCV (no plotting library needed)."""
    pos, neg = acc_scores  # ascending
    thr = np.unique(np.quantile(np.concatenate([pos, neg]), np.linspace(0, 1, 200)))
    tp = pos.size - np.searchsorted(pos, thr, side="left")
    fp = neg.size - np.searchsorted(neg, thr, side="left")
    rec = tp / max(pos.size, 1)
    prec = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 1.0)
    img = np.full((420, 420, 3), 255, np.uint8)
    cv2.rectangle(img, (40, 20), (400, 380), (0, 0, 0), 1)
    pts = np.stack([40 + rec * 360, 380 - prec * 360], axis=1).astype(np.int32)
    cv2.polylines(img, [pts], False, (180, 80, 20), 2)
    cv2.putText(img, "recall", (190, 405), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
    cv2.putText(img, "precision", (2, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
    cv2.imwrite(path, img)


def write_outputs(out, rows, per, n_worst=5):
    from s2m_ros.segmentation.overlay import score_heatmap

    os.makedirs(out, exist_ok=True)
    keys = sorted({k for r in rows for k in r}, key=lambda k: (k != "image", k))
    with open(os.path.join(out, "per_image.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    worst = sorted(range(len(rows)), key=lambda i: rows[i].get("iou", 0.0))[:n_worst]
    for rank, i in enumerate(worst):
        sample, smap, inst = per[i]
        h, w = sample.anomaly.shape
        vis = cv2.addWeighted(sample.image, 0.6, score_heatmap(smap.astype(np.float32), w, h), 0.4, 0)
        contours, _ = cv2.findContours(sample.anomaly.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(vis, contours, -1, (0, 255, 0), 2)  # ground truth in green
        for m in inst or []:
            c2, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(vis, c2, -1, (255, 0, 255), 2)  # predicted instances in magenta
        cv2.imwrite(os.path.join(out, "worst_%02d_%s.jpg" % (rank, sample.name)), vis)


@command(PROG)
def main(argv=None):
    ap = ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--layout", choices=("roadanomaly", "folders"))
    ap.add_argument("--anomaly-value", type=int, action="append")
    ap.add_argument("--void-value", type=int, action="append")
    ap.add_argument("--skip-missing", action="store_true", help="skip images without a label (counted)")
    ap.add_argument("--mode", choices=MODES, default="threshold")
    ap.add_argument("--threshold", type=float, help="also evaluate this fixed threshold (mode threshold)")
    ap.add_argument("--weights", help="same as --scorer-model")
    ap.add_argument("--min-pred-size", type=int, default=0, help="component metrics: smallest predicted component")
    ap.add_argument("--min-gt-size", type=int, default=0, help="component metrics: smallest GT component")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--out", help="folder for the per-image CSV, worst-image overlays, PR curve and, in "
                    "images/, each image's raw score map (.score.npy) and kept masks (.mask_K.png)")
    ap.add_argument("--limit", type=int, default=0)
    add_pipeline_arguments(ap)
    args = ap.parse_args(argv)
    if args.weights and not args.scorer_model:
        args.scorer_model = args.weights
    check_pipeline_arguments(args)
    if args.min_pred_size < 0 or args.min_gt_size < 0:
        raise UsageError("--min-pred-size and --min-gt-size must be >= 0")
    if args.json:
        check_output_file(args.json, "--json")
    if args.out:
        check_output_dir(args.out, "--out")

    from s2m_ros.eval.datasets import open_dataset

    dataset = open_dataset(args.dataset, args.layout, args.anomaly_value, args.void_value, args.limit,
                           on_missing="skip" if args.skip_missing else "error")
    config = build_config(args)
    if args.mode == "s2m-refine":
        config.refine = True
    pipeline = make_pipeline(config)
    from s2m_ros.eval.metrics import flatten_metrics

    skipped = Skipped(PROG, "image")
    for reason, names in dataset.skipped.items():  # found when the dataset was opened (--skip-missing)
        if reason == "label_without_image":  # not an image of the dataset (dataset.describe() counts them)
            continue
        for name in names:
            skipped.items.append({"item": name, "reason": reason, "error": ""})
    result, rows, per, pixels = run_eval(dataset, pipeline, args.mode, args.threshold, args.min_pred_size,
                                          args.min_gt_size,
                                          dump_dir=os.path.join(args.out, "images") if args.out else None,
                                          skipped=skipped)
    result["config"] = {"mode": args.mode, "profile": config.profile, "score": config.score_method,
                        "scorer": pipeline.scorer_name, "segmenter": pipeline.segmenter_name,
                        "dataset": dataset.describe(), "min_pred_size": args.min_pred_size,
                        "min_gt_size": args.min_gt_size, "pipeline": config.to_dict()}
    flat = flatten_metrics({k: v for k, v in result.items() if k in ("pixel", "component", "s2m", "instance")})
    print("%s on %s (%d images, %s, %s): %.2f s/image" % (config.profile, dataset.name, result["n_images"],
                                                          args.mode, pipeline.scorer_name,
                                                          result["seconds_per_image"]))
    for key in ("pixel.auroc", "pixel.ap", "pixel.fpr95", "component.siou", "component.ppv", "component.f1",
                "s2m.iou", "s2m.auiou", "s2m.mean_f1", "instance.recall", "instance.precision"):
        v = flat.get(key)
        print("  %-20s %s" % (key, "n/a" if v is None else ("%.4f" % v if isinstance(v, float) else v)))
    if "stages" in result:
        st = result["stages"]
        print("  instances %d: kept %d, rejected %d %s, poor segment %d, no prompt %d" % (
            st["instances"], st["kept"], st["rejected"], st["rejected_by"], st["poor_segment"], st["no_prompt"]))
    if skipped:
        print("  skipped: %s" % skipped.by_reason())
    skipped.report(len(dataset) + len(dataset.skipped.get("missing_label", ())), args.json)
    if args.json:
        write_json(args.json, result)
        print("wrote %s" % args.json)
    if args.out:
        write_outputs(args.out, rows, per)
        if pixels.n_pos and pixels.n_neg:  # the scores the pixel metrics used
            _pr_curve_png(pixels.sorted_scores(), os.path.join(args.out, "pr_curve.png"))
        print("wrote %s" % args.out)
    if not per:
        return fail(PROG, "no image of %s could be evaluated (%d skipped)" % (args.dataset, len(skipped)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
