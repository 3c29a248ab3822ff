"""Mask selection and merging after the promptable segmenter, and the S2M composed anomaly map (ROS-free).

The segmenter answers every prompt with a mask, whether or not the prompt was a real object. This
stage decides which masks the anomaly evidence supports, removes duplicates and turns the survivors
into :class:`~s2m_ros.types.InstanceMask` objects.

What the reference implementations do (read in their released code):

* S2M (WenjieZhao1/S2M, ``tools/inference.py``, ``do_test_score``): every box of the trained
  score-to-box detector (detectron2 Faster R-CNN, default ``SCORE_THRESH_TEST`` 0.05, box NMS 0.5,
  boxes in descending detector score) is given to SAM (``multimask_output=False``); no mask is
  rejected afterwards. The composed map starts at **0** and each mask's pixels are set to the
  *detector's box score*, pasted in detector order, so on overlaps the later (lower-scored) mask
  overwrites the earlier one. A frame with no box is all zeros.
* We have no trained box detector: prompts come from the score map's topology
  (:mod:`s2m_ros.segmentation.prompts`), which proposes more candidates than a trained detector, so the
  masks must be checked against the score map here. A mask's score is the mean anomaly score inside
  it (what ``OodMask.anomaly_score`` documents), not a detector confidence.

Rules, applied per mask in this order (the first failing rule is the reason reported):

1. ``empty``: nothing of the mask lies inside the image.
2. ``too_small``: fewer than ``min_area_px`` pixels.
3. ``too_large``: more than ``max_area_fraction`` of the image, or of the map's scored (finite)
   pixels. A promptable segmenter given a weak box often returns the whole surface (road, apron);
   such a mask swallows the object it should delimit.
4. ``low_quality``: the segmenter's own quality (e.g. SAM's predicted IoU) is below ``min_quality``
   (NaN quality, e.g. GrabCut, always passes).
5. ``unscored``: less than ``min_valid_fraction`` of the mask has a finite score.
6. ``no_ring``: fewer than ``min_ring_px`` scored pixels in the ring around the mask.
7. ``low_contrast``: the inside does not stand out from the ring around the mask. The ring has a
   width proportional to the mask's size (``ring_ratio * sqrt(area)`` clipped to
   ``[ring_min_px, ring_max_px]``) and starts ``ring_gap_ratio`` of that width away from the mask,
   so the blurred rim of the object's own scores is not counted as surroundings. Two statistics
   are computed, neither in score units:

   * ``auc`` (default decision, ``statistic="auc"``): the probability that a random inside pixel
     scores higher than a random ring pixel (Mann-Whitney U / (n m), ties count half): 0.5 = no
     difference, 1 = every inside pixel above every ring pixel. Kept when ``>= min_auc``.
     Invariant to every increasing transform of the scores, so one threshold serves MSP,
     max-logit, entropy, energy alike.
   * ``contrast`` (``statistic="sigma"``): (median inside - median ring) / (1.4826 MAD of the
     ring), how many robust sigmas of its own surroundings the inside stands out; kept when
     ``>= min_contrast``. Invariant to ``a * map + b`` (``a > 0``) only. A flat ring (MAD 0)
     falls back to the ring's standard deviation; a map flat over inside and ring gives 0.

   Why AUC by default: on RoadAnomaly (46 labelled frames) + RoadAnomaly21 val with ESPNet
   scores, 207 ground-truth instance masks (> 100 px) against the same shapes moved onto
   anomaly-free places (5 random placements), ``auc >= 0.7`` kept 31 % / 31 % of the objects and
   6 % / 7 % of the decoys (MSP / max-logit), the same operating point for both scorers, while
   ``contrast >= 2`` kept 16 % / 7 % and 3 % / 0 % (MSP saturates near 0 on confident road, so
   its ring MAD is tiny). At a matched 5 % decoy rate the AUC keeps 29 % / 28 % of the objects,
   the sigma contrast 22 % / 23 %. (These scores are weak: most objects do not stand out.)
8. ``duplicate``: mask NMS. Masks are ranked by support (the decision statistic, then the other
   one, then quality, then area, then prompt order); a mask whose mask IoU with a
   better-supported kept mask exceeds ``nms_iou``, or
   whose intersection with one covers more than ``nms_containment`` of the smaller of the two (one
   is essentially part of the other: an object part, or the whole object when a part of it is
   better supported), is dropped. Overlaps are computed on the two ROIs' intersection only, never
   on full frames.
9. ``too_many``: more than ``max_masks`` masks survived; the least supported are dropped.

Kept masks get ids 1..K in order of support (best first).
"""
import math
from collections import namedtuple
from dataclasses import dataclass
from typing import ClassVar, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from s2m_ros.segmentation.config_check import bad, check_fields
from s2m_ros.segmentation.scores import as_score_map
from s2m_ros.segmentation.scores import mann_whitney_auc
from s2m_ros.types import InstanceMask, box_from_mask, clip_mask_to_image

_MAD_TO_SIGMA = 1.4826
_AUC_MAX_SAMPLES = 4096  # per side; quantile subsampling beyond (AUC error about 1 / 4096)

#: One entry of the selection report: the prompt index of the segment, the reason ("kept" or the
#: rule that rejected it) and a dict of the values that decided (area, contrast, quality, ...).
Decision = namedtuple("Decision", ["prompt_index", "reason", "values"])

REASONS = ("kept", "empty", "too_small", "too_large", "low_quality", "unscored", "no_ring",
           "low_contrast", "duplicate", "too_many")


@dataclass
class SelectionConfig:
    """Parameters of :func:`select_masks`. None is in score units (see the module docstring)."""

    # Decision statistic: "auc" (rank-based, scorer-independent), "sigma" (robust contrast) or
    # "both" (both tests must pass: for scorers whose maps are in noise units, e.g. surface).
    statistic: str = "auc"
    # statistic="auc": keep when P(inside pixel > ring pixel) >= min_auc (0.5 = no difference).
    min_auc: float = 0.7
    # statistic="sigma": keep when the inside median stands out by this many robust ring sigmas.
    min_contrast: float = 2.0
    # Ring width = ring_ratio * sqrt(mask area), clipped to [ring_min_px, ring_max_px] pixels.
    ring_ratio: float = 0.5
    ring_min_px: int = 3
    ring_max_px: int = 40
    # The ring starts this fraction of its width away from the mask (skips the object's blurred rim).
    ring_gap_ratio: float = 0.25
    # Fewest scored ring pixels for a contrast to be computed.
    min_ring_px: int = 8
    # Fewest scored pixels inside, as a fraction of the mask's area.
    min_valid_fraction: float = 0.5
    # Segmenter quality (SAM predicted IoU, 0..1) below which a mask is rejected; NaN passes.
    min_quality: float = 0.5
    # A mask larger than this fraction of the image (or of the scored pixels) swallows the surface.
    max_area_fraction: float = 0.3
    # Smallest mask kept, in pixels.
    min_area_px: int = 16
    # Mask NMS: drop a mask whose IoU with a better-supported kept mask exceeds this ...
    nms_iou: float = 0.5
    # ... or whose intersection with one covers more than this fraction of the smaller mask.
    nms_containment: float = 0.8
    # At most this many masks are kept (best first).
    max_masks: int = 20
    # Band merge (merge_bands): two kept masks one above the other, the upper one's bottom edge over the
    # lower one's top edge (at least merge_min_overlap of the upper edge's width over it) and a gap
    # of at most merge_max_gap times the smaller height, are one object cut by a band of another colour
    # (a cone's reflective collar, a barrier's stripe): merged, the band filled between the two edges.
    merge_bands: bool = True
    merge_max_gap: float = 0.5
    merge_min_overlap: float = 0.7

    # field -> rule (s2m_ros.segmentation.config_check); the types come from the annotations above
    RULES: ClassVar[dict] = {
        "statistic": ("auc", "sigma", "both"), "min_auc": "[0, 1]", "ring_ratio": "(0, inf)",
        "ring_min_px": "[1, inf)", "ring_max_px": "[1, inf)", "ring_gap_ratio": "[0, 4]", "min_ring_px": "[1, inf)",
        "min_valid_fraction": "[0, 1]", "min_quality": "[0, 1]", "max_area_fraction": "(0, 1]",
        "min_area_px": "[1, inf)", "nms_iou": "[0, 1]", "nms_containment": "(0, 1]", "max_masks": "[1, inf)",
        "merge_max_gap": "[0, 2]", "merge_min_overlap": "(0, 1]",
    }  # min_contrast: any finite number

    def __post_init__(self):
        check_fields(self)
        if self.ring_max_px < self.ring_min_px:  # the rule between fields
            raise bad(self, "ring_max_px", "must be >= ring_min_px (%d)" % self.ring_min_px)


def _clip_to_image(roi, mask, width, height):
    """(x0, y0, cropped mask) of the part of a cropped mask inside the image; None when nothing is."""
    part = clip_mask_to_image(roi, mask, width, height)
    if part is None:
        return None
    x0, y0, m = part
    tight = box_from_mask(m)
    if tight is None:
        return None
    tx, ty, tw, th = tight
    return x0 + tx, y0 + ty, m[ty:ty + th, tx:tx + tw]


def _ring_width(area, config):
    return int(np.clip(round(config.ring_ratio * math.sqrt(area)), config.ring_min_px, config.ring_max_px))


def _sorted_median(v):
    """Median of an already sorted 1-D array."""
    n = v.size
    return float(v[n // 2]) if n % 2 else 0.5 * (float(v[n // 2 - 1]) + float(v[n // 2]))


def _contrast(inside, ring):
    """(contrast, median_in, median_ring, ring spread) in robust sigmas of the ring; inputs sorted."""
    med_in = _sorted_median(inside)
    lo = min(float(inside[0]), float(ring[0]))
    hi = max(float(inside[-1]), float(ring[-1]))
    tol = 1e-9 * (hi - lo)
    med_ring = _sorted_median(ring)
    spread = _MAD_TO_SIGMA * float(np.median(np.abs(ring - med_ring)))
    if spread <= tol:  # MAD zero (more than half the ring identical): fall back to the std
        spread = float(np.std(ring))
    diff = med_in - med_ring
    if not hi > lo:  # perfectly flat inside and around: no evidence
        return 0.0, med_in, med_ring, 0.0
    if spread <= tol:
        if abs(diff) <= tol:
            return 0.0, med_in, med_ring, spread
        return math.copysign(math.inf, diff), med_in, med_ring, spread
    return diff / spread, med_in, med_ring, spread


def _quantiles(v, k):
    """k evenly spaced order statistics of a sorted array (the array itself when it is not longer)."""
    if v.size <= k:
        return v
    return v[np.round(np.linspace(0, v.size - 1, k)).astype(np.intp)]


def _auc(inside, ring, max_samples=_AUC_MAX_SAMPLES):
    """P(random inside value > random ring value), ties counted half (Mann-Whitney U / (n m)); inputs sorted.

    Exact up to ``max_samples`` values per side; larger sides are replaced by that many evenly
    spaced quantiles, which changes the AUC by about 1 / max_samples at most.
    """
    return mann_whitney_auc(_quantiles(inside, max_samples), _quantiles(ring, max_samples))


def _measure(score_map, x0, y0, m, config):
    """Sorted finite scores inside and in the ring of one mask (on a crop padded by the ring, never a full frame)."""
    H, W = score_map.shape
    h, w = m.shape
    area = int(np.count_nonzero(m))
    width = _ring_width(area, config)
    gap = int(round(config.ring_gap_ratio * width))
    pad = width + gap
    px0, py0 = max(x0 - pad, 0), max(y0 - pad, 0)
    px1, py1 = min(x0 + w + pad, W), min(y0 + h + pad, H)
    crop = score_map[py0:py1, px0:px1]
    ox, oy = x0 - px0, y0 - py0
    full = np.zeros(crop.shape, dtype=bool)
    full[oy:oy + h, ox:ox + w] = m
    # distance (L2) of every crop pixel to the mask; the ring is gap < d <= gap + width
    dist = cv2.distanceTransform((~full).astype(np.uint8), cv2.DIST_L2, 5)
    ring_sel = (dist > gap) & (dist <= gap + width)
    finite = np.isfinite(crop)
    inside = np.sort(crop[full & finite])
    ring = np.sort(crop[ring_sel & finite])
    return area, inside, ring, width


def _overlap(a, b):
    """(IoU, intersection / smaller area) of two (x0, y0, mask) entries, on the ROI intersection only."""
    ax, ay, am = a
    bx, by, bm = b
    x0, y0 = max(ax, bx), max(ay, by)
    x1 = min(ax + am.shape[1], bx + bm.shape[1])
    y1 = min(ay + am.shape[0], by + bm.shape[0])
    if x1 <= x0 or y1 <= y0:
        return 0.0, 0.0
    inter = int(np.count_nonzero(am[y0 - ay:y1 - ay, x0 - ax:x1 - ax] & bm[y0 - by:y1 - by, x0 - bx:x1 - bx]))
    if inter == 0:
        return 0.0, 0.0
    area_a, area_b = int(np.count_nonzero(am)), int(np.count_nonzero(bm))
    return inter / float(area_a + area_b - inter), inter / float(min(area_a, area_b))


def select_masks(segments: Sequence, score_map: np.ndarray, config: SelectionConfig = SelectionConfig(),
                 prompts: Optional[Sequence] = None) -> Tuple[List[InstanceMask], List[Decision]]:
    """Keep the segments the anomaly evidence supports; return (instance masks, report).

    ``segments`` are :class:`s2m_ros.segmentation.segmenter.Segment` (cropped mask, roi, quality,
    prompt_index) in image pixels; ``score_map`` is H x W at image resolution (higher = more
    anomalous, NaN = not scored). ``prompts`` (optional) are the prompts the segments answer, for
    ``prompt_box``. The report has one :data:`Decision` per segment, in input order: ``reason`` is
    ``"kept"`` or the rule that rejected it (see the module docstring), ``values`` the numbers that
    decided (``auc``, ``contrast``, ``area``, ``quality``, ...; a duplicate also names the kept mask
    that suppressed it in ``by``). Kept masks are cropped to their tight box inside the image and
    numbered 1..K, best supported first; ``InstanceMask.contrast`` is the robust sigma contrast
    (whatever the decision statistic), ``anomaly_score`` the NaN-ignoring mean score inside.
    """
    s = as_score_map(score_map)
    H, W = s.shape
    n_valid = int(np.count_nonzero(np.isfinite(s)))
    report = [None] * len(segments)
    cands = []  # (support key, input index, entry, values)
    for i, seg in enumerate(segments):
        quality = float(seg.quality) if seg.quality is not None else math.nan
        values = {"quality": quality}
        clipped = _clip_to_image(seg.roi, np.asarray(seg.mask, dtype=bool), W, H)
        if clipped is None:
            report[i] = Decision(seg.prompt_index, "empty", dict(values, area=0))
            continue
        x0, y0, m = clipped
        area = int(np.count_nonzero(m))
        values["area"] = area
        if area < config.min_area_px:
            report[i] = Decision(seg.prompt_index, "too_small", values)
            continue
        values["area_fraction"] = area / float(H * W)
        if values["area_fraction"] > config.max_area_fraction:
            report[i] = Decision(seg.prompt_index, "too_large", values)
            continue
        n_valid_in = int(np.count_nonzero(np.isfinite(s[y0:y0 + m.shape[0], x0:x0 + m.shape[1]][m])))
        values["valid_fraction"] = n_valid_in / float(n_valid) if n_valid else 0.0
        if values["valid_fraction"] > config.max_area_fraction:
            report[i] = Decision(seg.prompt_index, "too_large", values)
            continue
        if quality < config.min_quality:  # False for NaN
            report[i] = Decision(seg.prompt_index, "low_quality", values)
            continue
        area, inside, ring, width = _measure(s, x0, y0, m, config)
        values["ring_width"] = width
        values["inside_valid"] = int(inside.size)
        values["ring_valid"] = int(ring.size)
        if inside.size < max(1, config.min_valid_fraction * area):
            report[i] = Decision(seg.prompt_index, "unscored", values)
            continue
        values["anomaly_score"] = float(np.mean(inside, dtype=np.float64))
        if ring.size < config.min_ring_px:
            report[i] = Decision(seg.prompt_index, "no_ring", values)
            continue
        contrast, med_in, med_ring, spread = _contrast(inside, ring)
        auc = _auc(inside, ring)
        values.update(auc=auc, contrast=contrast, median_inside=med_in, median_ring=med_ring, ring_spread=spread)
        if config.statistic == "auc":
            ok, primary, secondary = auc >= config.min_auc, auc, contrast
        elif config.statistic == "both":
            ok, primary, secondary = (auc >= config.min_auc and contrast >= config.min_contrast), auc, contrast
        else:
            ok, primary, secondary = contrast >= config.min_contrast, contrast, auc
        if not ok:
            report[i] = Decision(seg.prompt_index, "low_contrast", values)
            continue
        key = (-primary, -secondary, -(quality if math.isfinite(quality) else -1.0), -area, i)
        cands.append((key, i, (x0, y0, m), values))

    cands.sort(key=lambda c: c[0])
    kept = []
    for key, i, entry, values in cands:
        seg = segments[i]
        if len(kept) >= config.max_masks:
            report[i] = Decision(seg.prompt_index, "too_many", values)
            continue
        dup = None
        for j, kentry, _ in kept:
            iou, cont = _overlap(entry, kentry)
            if iou > config.nms_iou or cont > config.nms_containment:
                dup = (segments[j].prompt_index, iou, cont)
                break
        if dup is not None:
            report[i] = Decision(seg.prompt_index, "duplicate",
                                 dict(values, by=dup[0], iou=dup[1], containment=dup[2]))
            continue
        kept.append((i, entry, values))
        report[i] = Decision(seg.prompt_index, "kept", values)

    masks = []
    for k, (i, (x0, y0, m), values) in enumerate(kept, start=1):
        seg = segments[i]
        prompt_box = (0, 0, 0, 0)
        if prompts is not None and 0 <= seg.prompt_index < len(prompts):
            prompt_box = tuple(prompts[seg.prompt_index].box)
        masks.append(InstanceMask(id=k, roi=(x0, y0, m.shape[1], m.shape[0]), mask=m.copy(),
                                  anomaly_score=values["anomaly_score"], contrast=values["contrast"],
                                  quality=values["quality"], prompt_box=prompt_box))
    return masks, report


def _edge(mask, rows):
    """(first, last) column of a cropped mask within ``rows`` (a slice); None when empty there."""
    cols = np.flatnonzero(mask[rows].any(axis=0))
    return (int(cols[0]), int(cols[-1])) if cols.size else None


def _banded_pair(a, b, config):
    """The merged InstanceMask of ``a`` (upper) and ``b`` (lower) when they are one banded object, else None."""
    ax, ay, aw, ah = a.roi
    bx, by, bw, bh = b.roi
    gap = by - (ay + ah)  # rows strictly between them
    if gap < 0 or gap > config.merge_max_gap * min(ah, bh):
        return None
    # the facing edges: the upper part's bottom quarter and the lower part's top quarter (a mask's own
    # first or last row is ragged); the upper edge must lie over the lower one (a cone widens downwards)
    ea = _edge(a.mask, slice(ah - max(1, ah // 4), ah))
    eb = _edge(b.mask, slice(0, max(1, bh // 4)))
    if ea is None or eb is None:
        return None
    al, ar, bl, br = ax + ea[0], ax + ea[1], bx + eb[0], bx + eb[1]
    overlap = min(ar, br) - max(al, bl) + 1
    if overlap < config.merge_min_overlap * (ar - al + 1):
        return None
    x0, y0 = min(ax, bx), ay
    x1, y1 = max(ax + aw, bx + bw), by + bh
    m = np.zeros((y1 - y0, x1 - x0), bool)
    m[ay - y0:ay - y0 + ah, ax - x0:ax - x0 + aw] |= a.mask
    m[by - y0:by - y0 + bh, bx - x0:bx - x0 + bw] |= b.mask
    for k in range(1, gap + 1):  # the band: edges interpolated between the two parts
        t = k / float(gap + 1)
        left, right = int(math.floor(al + t * (bl - al) + 0.5)), int(math.floor(ar + t * (br - ar) + 0.5))
        m[ay + ah - 1 + k - y0, left - x0:right - x0 + 1] = True
    na, nb = a.area, b.area
    boxes = [pb for pb in (a.prompt_box, b.prompt_box) if pb[2] > 0 and pb[3] > 0]
    pbox = (0, 0, 0, 0)
    if boxes:
        px0, py0 = min(pb[0] for pb in boxes), min(pb[1] for pb in boxes)
        pbox = (px0, py0, max(pb[0] + pb[2] for pb in boxes) - px0, max(pb[1] + pb[3] for pb in boxes) - py0)
    qualities = [q for q in (a.quality, b.quality) if not math.isnan(q)]
    return InstanceMask(id=a.id, roi=(x0, y0, x1 - x0, y1 - y0), mask=m,
                        anomaly_score=(a.anomaly_score * na + b.anomaly_score * nb) / float(na + nb),
                        contrast=max(a.contrast, b.contrast), quality=min(qualities) if qualities else math.nan,
                        prompt_box=pbox)


def _first_banded_pair(masks, config):
    """(i, j, merged) for the first upper mask i and lower mask j that are one banded object, else None."""
    for i, a in enumerate(masks):
        for j, b in enumerate(masks):
            if i != j and a.roi[1] <= b.roi[1]:
                merged = _banded_pair(a, b, config)
                if merged is not None:
                    return i, j, merged
    return None


def merge_bands(masks: Sequence[InstanceMask], config: SelectionConfig = SelectionConfig()) -> List[InstanceMask]:
    """Kept masks with the parts of one banded object merged (``config.merge_bands``; see SelectionConfig),
    renumbered 1..K in their order. A cone's reflective collar is surface-coloured, so the segmenter
    answers its orange parts above and below the collar with two masks; merged, it is one cone."""
    out = list(masks)
    found = _first_banded_pair(out, config) if config.merge_bands else None
    while found is not None:  # a barrier with two stripes merges twice
        i, j, merged = found
        out[i] = merged
        del out[j]
        found = _first_banded_pair(out, config)
    for k, m in enumerate(out, start=1):
        m.id = k
    return out


def composed_anomaly_map(masks: Sequence[InstanceMask], score_map: Optional[np.ndarray] = None,
                         mode: str = "s2m", shape: Optional[Tuple[int, int]] = None,
                         background: float = 0.0) -> np.ndarray:
    """H x W float32 map in which every pixel of a kept mask carries that mask's anomaly score.

    ``mode="s2m"``: S2M's convention, every other pixel is ``background`` (0.0 as in the official
    code; for signed scorers such as max-logit or energy pass e.g. ``-np.inf`` so that masks rank
    above the background). The size comes from ``score_map`` or ``shape`` (H, W).
    ``mode="keep"``: every other pixel keeps the original score (NaN stays NaN), so pixel-level
    AP / FPR95 see a full ranking instead of a tie over the whole background.
    Overlaps: the higher mask score wins (order-independent; the official S2M code lets the later,
    lower-scored box overwrite). Masks with a NaN score are ignored. Mask parts outside the image
    are clipped.
    """
    if mode not in ("s2m", "keep"):
        raise ValueError("mode must be 's2m' or 'keep', got %r" % (mode,))
    if mode == "keep":
        if score_map is None:
            raise ValueError("mode='keep' needs the score_map")
        out = as_score_map(score_map).copy()
    else:
        if score_map is not None:
            shape = np.asarray(score_map).shape
        if shape is None or len(shape) != 2:
            raise ValueError("mode='s2m' needs the score_map or shape=(H, W)")
        out = np.full(tuple(int(v) for v in shape), background, dtype=np.float32)
    H, W = out.shape
    scored = [m for m in masks if math.isfinite(float(m.anomaly_score))]
    # ascending score, stable: later (higher) scores overwrite, so the maximum wins on overlaps
    for m in sorted(scored, key=lambda q: float(q.anomaly_score)):
        clipped = _clip_to_image(m.roi, m.mask, W, H)
        if clipped is None:
            continue
        x0, y0, cm = clipped
        view = out[y0:y0 + cm.shape[0], x0:x0 + cm.shape[1]]
        view[cm] = np.float32(m.anomaly_score)
    return out
