"""Which stage of the camera pipeline loses each ground-truth instance (prompts -> segments -> selection).

For every labelled instance of an image, the furthest stage it reached (first match wins):

  kept            a kept instance mask has IoU >= ``iou_hit`` with it (it counts for instance recall)
  rejected:<why>  a segment had IoU >= ``iou_hit`` but selection rejected it; ``<why>`` is the rule
                  (``low_contrast``, ``too_large``, ``duplicate``, ... see segmentation.selection)
  poor_segment    a prompt was on it (its positive point inside it, or its box IoU >= ``iou_hit`` with
                  the instance's box) but no segment reached IoU ``iou_hit``
  no_prompt       no prompt was on it

So a row of ``s2m eval`` that misses instances says where they were lost, from measurements.
"""
from collections import Counter

import numpy as np

from s2m_ros.segmentation.prompts import box_iou
from s2m_ros.types import box_from_mask, clip_mask_to_image

STAGES = ("kept", "rejected", "poor_segment", "no_prompt")


def _roi_iou(gt, gt_area, roi, mask):
    """IoU of a full-size bool ``gt`` and a mask cropped to ``roi`` (x, y, w, h; may leave the image)."""
    part = clip_mask_to_image(roi, np.asarray(mask, bool), gt.shape[1], gt.shape[0])
    if part is None:
        return 0.0
    x0, y0, inside = part  # the part in the image
    area = int(np.count_nonzero(inside))
    inter = int(np.count_nonzero(gt[y0:y0 + inside.shape[0], x0:x0 + inside.shape[1]] & inside))
    union = gt_area + area - inter
    return inter / union if union > 0 else 0.0


def instance_stages(gt_instances, prompts, segments, decisions, kept, iou_hit=0.5):
    """Stage label (see the module doc) of each instance in ``gt_instances`` (list of H x W bool).

    ``prompts``: the frame's prompts (``.box`` x, y, w, h and ``.point`` x, y in image pixels);
    ``segments``: every segment (``.roi``, ``.mask``); ``decisions``: one per segment, in the same order
    (``.reason``); ``kept``: the kept instance masks (``.roi``, ``.mask``), all in the same image pixels.
    """
    if len(decisions) != len(segments):
        raise ValueError("%d decisions for %d segments" % (len(decisions), len(segments)))
    out = []
    for gt in gt_instances:
        gt = np.asarray(gt, bool)
        area = int(np.count_nonzero(gt))
        if area == 0:
            out.append("no_prompt")
            continue
        if any(_roi_iou(gt, area, m.roi, m.mask) >= iou_hit for m in kept):
            out.append("kept")
            continue
        ious = [_roi_iou(gt, area, s.roi, s.mask) for s in segments]
        best = int(np.argmax(ious)) if ious else -1
        if best >= 0 and ious[best] >= iou_hit:
            out.append("rejected:%s" % decisions[best].reason)
            continue
        box = box_from_mask(gt)
        h, w = gt.shape
        on = False
        for p in prompts:
            if p.point is not None:
                px, py = int(p.point[0]), int(p.point[1])
                if 0 <= px < w and 0 <= py < h and gt[py, px]:
                    on = True
                    break
            if box_iou(p.box, box) >= iou_hit:
                on = True
                break
        out.append("poor_segment" if on else "no_prompt")
    return out


def summarise(labels):
    """Counts of stage labels: ``{"instances", "kept", "rejected", "poor_segment", "no_prompt",
    "rejected_by": {reason: n}}``."""
    counts = Counter(label.split(":", 1)[0] for label in labels)
    why = Counter(label.split(":", 1)[1] for label in labels if label.startswith("rejected:"))
    out = {"instances": len(labels)}
    out.update({stage: int(counts.get(stage, 0)) for stage in STAGES})
    out["rejected_by"] = dict(sorted(why.items()))
    return out
