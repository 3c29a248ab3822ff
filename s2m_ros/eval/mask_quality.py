"""Camera mask quality against a scenario's ground-truth instance images, per object kind and category.

Apron operations need mask quality validated per category (a bolt is not a tug). For every camera
frame and every truth object with at least ``min_pixels`` visible pixels (an object-frame), the frame's
masks are assigned one-to-one to its objects by maximum IoU (optimal assignment, scipy); an
object-frame scores the IoU of its mask (0 when none overlaps it).

Scores (per kind, per category and overall):
  object_frames   object-frames counted (``skipped_small``: visible but under ``min_pixels``)
  mean_iou        mean IoU over the object-frames
  recall          object-frames whose mask has IoU >= ``iou_hit`` (0.5)
  objects_seen    objects with at least one such object-frame / objects with any object-frame
And over all masks: ``false_masks``, masks lying mostly (more than half their pixels) on no object:
paint, shadows, stains and texture the camera side reported.
"""
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment


@dataclass
class MaskQualityConfig:
    iou_hit: float = 0.5
    min_pixels: int = 8  # a 3 x 3 speck of an object is not a mask the segmenter can be asked for


class _Tally:
    def __init__(self):
        self.ious = []
        self.objects = {}  # object id -> hit at least once

    def add(self, oid, iou, hit):
        self.ious.append(float(iou))
        self.objects[oid] = self.objects.get(oid, False) or hit

    def result(self, iou_hit):
        n = len(self.ious)
        seen = sum(self.objects.values())
        return {"object_frames": n,
                "mean_iou": round(float(np.mean(self.ious)), 4) if n else None,
                "recall": round(sum(i >= iou_hit for i in self.ious) / n, 4) if n else None,
                "objects": len(self.objects), "objects_seen": int(seen)}


def frame_ious(instance_ids, object_ids, masks):
    """IoU matrix (objects x masks) of one frame: ``instance_ids`` (H x W ints, 0 = none), ``masks``
    (list of H x W bool), and each mask's pixel count on no object."""
    ids = np.asarray(instance_ids)
    lookup = {int(o): k for k, o in enumerate(object_ids)}
    obj_area = np.array([np.count_nonzero(ids == o) for o in object_ids], np.float64)
    iou = np.zeros((len(object_ids), len(masks)))
    off = np.zeros(len(masks), np.int64)
    for j, m in enumerate(masks):
        inside = ids[m]
        values, counts = np.unique(inside, return_counts=True)
        area = int(inside.size)
        for v, c in zip(values.tolist(), counts.tolist()):
            if v == 0:
                off[j] = c
            elif v in lookup:
                k = lookup[v]
                iou[k, j] = c / (obj_area[k] + area - c)
    return iou, off


def mask_quality(frames, objects, config=None):
    """Scores (see the module doc) of ``frames``: iterable of ``(instance_ids, masks)`` with
    ``instance_ids`` H x W (0 background, else an object id) and ``masks`` a list of H x W bool;
    ``objects``: list of dicts with ``id``, ``kind``, ``category`` (truth.json's objects)."""
    cfg = config or MaskQualityConfig()
    info = {int(o["id"]): o for o in objects}
    by_kind, by_cat, total = {}, {}, _Tally()
    n_masks = n_false = n_frames = skipped = 0
    for instance_ids, masks in frames:
        n_frames += 1
        ids = np.asarray(instance_ids)
        masks = [np.asarray(m, bool) for m in masks]
        for m in masks:
            if m.shape != ids.shape:
                raise ValueError("mask %s and instance image %s differ in shape" % (m.shape, ids.shape))
        present, sizes = np.unique(ids[ids > 0], return_counts=True)
        keep = [int(o) for o, s in zip(present.tolist(), sizes.tolist()) if s >= cfg.min_pixels and int(o) in info]
        skipped += sum(1 for o, s in zip(present.tolist(), sizes.tolist()) if s < cfg.min_pixels and int(o) in info)
        iou, off = frame_ious(ids, keep, masks)
        areas = np.array([np.count_nonzero(m) for m in masks])
        n_masks += len(masks)
        n_false += int(np.count_nonzero(off > 0.5 * np.maximum(areas, 1)))
        best = np.zeros(len(keep))
        if keep and masks:
            rows, cols = linear_sum_assignment(-iou)
            best[rows] = iou[rows, cols]
        for k, oid in enumerate(keep):
            o = info[oid]
            hit = best[k] >= cfg.iou_hit
            for table, key in ((by_kind, o["kind"]), (by_cat, o["category"])):
                table.setdefault(key, _Tally()).add(oid, best[k], hit)
            total.add(oid, best[k], hit)
    return {"frames": n_frames, "iou_hit": cfg.iou_hit, "min_pixels": cfg.min_pixels, "skipped_small": skipped,
            "all": total.result(cfg.iou_hit),
            "by_kind": {k: v.result(cfg.iou_hit) for k, v in sorted(by_kind.items())},
            "by_category": {k: v.result(cfg.iou_hit) for k, v in sorted(by_cat.items())},
            "masks": n_masks, "false_masks": n_false,
            "false_masks_per_frame": round(n_false / n_frames, 3) if n_frames else None}
