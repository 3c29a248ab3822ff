"""Pixel-level anomaly-segmentation metrics: AUROC, average precision, FPR at 95 % TPR (numpy only).

Definitions (exact, every distinct score is a threshold; a pixel is "anomalous" at threshold t
when its score >= t; ties between scores are never broken arbitrarily):

* ``auroc``: area under the ROC curve with straight segments between thresholds, which equals
  the Mann-Whitney probability P(s_pos > s_neg) + 0.5 P(s_pos == s_neg).
* ``ap``: average precision as scikit-learn's ``average_precision_score``:
  sum over thresholds (descending) of (R_k - R_{k-1}) * P_k, step-wise, no interpolation.
* ``fpr95``: the false-positive rate at the highest threshold whose true-positive rate is >= 0.95
  (the first ROC point reaching 95 % TPR, as in the OoD / anomaly-segmentation benchmarks), over
  all thresholds (no ROC point dropping).

Positives are the anomaly pixels (``labels`` non-zero), negatives the other valid pixels;
``valid`` (optional bool mask) removes void pixels. Computation: positives and negatives are
sorted separately (``np.sort``, no index arrays), then every distinct positive score is
located in the sorted negatives with ``searchsorted``; that gives the exact counts at every
threshold where recall changes, which is all AP, AUROC and FPR95 need. Cost O(n log n) and about
4-8 bytes per pixel of working memory, so tens of millions of pixels take seconds.

Streaming: :class:`PixelMetricAccumulator` keeps the valid scores of each frame (float32,
split into positives and negatives) and computes the same exact numbers at the end; memory is
4 bytes per valid pixel (about 220 MB for the 60 RoadAnomaly frames at 1280x720). We chose
exactness over a fixed histogram, whose results depend on the binning.

The module also holds the object-level metrics of ``s2m eval`` (component level as in
SegmentMeIfYouCan, the S2M paper's IoU-threshold curve, instance matching) and
:class:`EvalAccumulator`, which collects all of them image by image; see the docstrings of
:func:`component_stats`, :class:`S2MCurveAccumulator` and :func:`instance_stats` for the
published definitions they follow and where they deliberately differ.
"""
import cv2
import numpy as np

from s2m_ros.segmentation.scores import mann_whitney_auc  # noqa: F401 (one definition: selection uses it too)

__all__ = [
    "pixel_metrics", "metrics_from_sorted", "PixelMetricAccumulator",
    "label_components", "component_stats", "ComponentAccumulator", "SMIYC_THRESHOLDS",
    "SMIYC_ANOMALY_TRACK", "SMIYC_OBSTACLE_TRACK",
    "S2M_THRESHOLDS", "s2m_image_counts", "S2MCurveAccumulator",
    "instance_stats", "InstanceAccumulator", "EvalAccumulator", "flatten_metrics",
]


def _split(scores, labels, valid=None):
    scores = np.asarray(scores)
    labels = np.asarray(labels)
    if scores.shape != labels.shape:
        raise ValueError("scores %s and labels %s differ in shape" % (scores.shape, labels.shape))
    if scores.dtype.kind not in "fiu":
        raise ValueError("scores must be numeric, got %s" % scores.dtype)
    if scores.dtype.kind == "f" and scores.dtype.itemsize < 4:
        scores = scores.astype(np.float32)
    lab = labels != 0
    if valid is not None:
        valid = np.asarray(valid, dtype=bool)
        if valid.shape != scores.shape:
            raise ValueError("valid %s and scores %s differ in shape" % (valid.shape, scores.shape))
        pos = scores[valid & lab]
        neg = scores[valid & ~lab]
    else:
        pos = scores[lab]
        neg = scores[~lab]
    if scores.dtype.kind == "f":
        bad = (pos.size - np.count_nonzero(np.isfinite(pos))) + (neg.size - np.count_nonzero(np.isfinite(neg)))
        if bad:
            raise ValueError("%d evaluated pixel score(s) are NaN or inf" % bad)
    return pos.reshape(-1), neg.reshape(-1)


def metrics_from_sorted(pos, neg, tpr_level=0.95):
    """AUROC / AP / FPR@``tpr_level`` from ascending-sorted positive and negative scores."""
    n_pos, n_neg = int(pos.size), int(neg.size)
    if n_pos == 0 or n_neg == 0:
        raise ValueError("metrics need both anomaly and normal pixels (got %d anomaly, %d normal)" % (n_pos, n_neg))
    # distinct positive values (ascending) and how many positives have each
    first = np.flatnonzero(np.concatenate(([True], pos[1:] != pos[:-1])))
    values = pos[first]
    count = np.diff(np.append(first, n_pos)).astype(np.float64)
    neg_below = np.searchsorted(neg, values, side="left")  # negatives < value
    neg_at_or_below = np.searchsorted(neg, values, side="right")  # negatives <= value
    auroc = float(np.sum(count * (neg_below + 0.5 * (neg_at_or_below - neg_below))) / (float(n_pos) * n_neg))
    # at threshold t = values[k]: predicted positive = score >= t
    tp = (n_pos - first).astype(np.float64)
    fp = (n_neg - neg_below).astype(np.float64)
    ap = float(np.sum(count * (tp / (tp + fp))) / n_pos)
    # highest threshold with TPR >= level; tp is non-increasing in k, so it is the last k that qualifies
    reach = np.flatnonzero(tp / n_pos >= tpr_level)
    fpr = float(fp[reach[-1]] / n_neg)
    # pixel F1 = 2TP / (2TP + FP + FN) = 2TP / (TP + FP + P); its maximum is always at a positive
    # value (lowering the threshold to the next positive adds TP), ties -> the highest threshold
    f1 = 2.0 * tp / (tp + fp + n_pos)
    best = int(np.argmax(f1[::-1]))
    best = f1.size - 1 - best
    return {"auroc": auroc, "ap": ap, "fpr95": fpr, "n_pos": n_pos, "n_neg": n_neg,
            "best_f1": float(f1[best]), "best_f1_threshold": pos[first[best]].item()}


def pixel_metrics(scores, labels, valid=None, tpr_level=0.95):
    """Exact pixel-level ``{'auroc', 'ap', 'fpr95', 'n_pos', 'n_neg', 'best_f1', 'best_f1_threshold'}``.

    Higher score = anomaly. ``best_f1`` is the maximal pixel F1 over all thresholds and
    ``best_f1_threshold`` the (highest) score ``t`` reaching it, for the mask ``score >= t``
    (the oracle threshold of ``s2m eval --mode threshold``).

    ``scores``: any-shape numeric array; ``labels``: same shape, non-zero = anomaly;
    ``valid``: optional bool mask of evaluated pixels. Raises ``ValueError`` if an evaluated
    score is not finite or a class is empty.
    """
    pos, neg = _split(scores, labels, valid)
    pos.sort()
    neg.sort()
    return metrics_from_sorted(pos, neg, tpr_level)


class PixelMetricAccumulator:
    """Collects frames one at a time; :meth:`result` gives the exact pooled pixel metrics."""

    def __init__(self, dtype=np.float32):
        self.dtype = np.dtype(dtype)
        self._pos = []
        self._neg = []
        self.frames = 0

    def add(self, scores, labels, valid=None):
        pos, neg = _split(scores, labels, valid)
        self._pos.append(pos.astype(self.dtype, copy=False))
        self._neg.append(neg.astype(self.dtype, copy=False))
        self.frames += 1

    @property
    def n_pos(self):
        return int(sum(a.size for a in self._pos))

    @property
    def n_neg(self):
        return int(sum(a.size for a in self._neg))

    def sorted_scores(self):
        """(positive, negative) scores of all frames, each ascending."""
        pos = np.concatenate(self._pos) if self._pos else np.zeros(0, self.dtype)
        neg = np.concatenate(self._neg) if self._neg else np.zeros(0, self.dtype)
        pos.sort()
        neg.sort()
        return pos, neg

    def result(self, tpr_level=0.95):
        return metrics_from_sorted(*self.sorted_scores(), tpr_level=tpr_level)


# ----------------------------------------------------------------------------------------------
# helpers

def _bool(a, name, shape=None):
    a = np.asarray(a)
    if a.ndim != 2:
        raise ValueError("%s must be a 2-D mask, got shape %s" % (name, a.shape))
    if shape is not None and a.shape != tuple(shape):
        raise ValueError("%s %s and ground truth %s differ in shape" % (name, a.shape, tuple(shape)))
    return a if a.dtype == bool else a != 0


def _valid(void, shape):
    if void is None:
        return np.ones(shape, bool)
    return ~_bool(void, "void", shape)


def label_components(mask, min_size=0):
    """8-connected components of a 2-D bool mask: ``(labels int32, n, sizes int64[n + 1])``.

    Components with fewer than ``min_size`` pixels are removed; the rest are renumbered 1..n in
    OpenCV's scan order. ``sizes[0]`` counts the background.
    """
    mask = np.ascontiguousarray(mask, dtype=np.uint8)
    n, labels = cv2.connectedComponents(mask, connectivity=8, ltype=cv2.CV_32S)
    sizes = np.bincount(labels.ravel(), minlength=n).astype(np.int64)
    if min_size > 1 and n > 1:
        keep = sizes >= min_size
        keep[0] = False
        if not keep[1:].all():
            lut = np.cumsum(keep).astype(np.int32) * keep
            labels = lut[labels].astype(np.int32, copy=False)
            n = int(keep.sum()) + 1
            sizes = np.bincount(labels.ravel(), minlength=n).astype(np.int64)
    return labels, n - 1, sizes


def _ratio(num, den):
    num = np.asarray(num, np.float64)
    den = np.asarray(den, np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def _mean(x):
    x = np.asarray(x, np.float64)
    return float(x.mean()) if x.size else None


# ----------------------------------------------------------------------------------------------
# component level (SegmentMeIfYouCan)

#: sIoU / PPV thresholds of the SegmentMeIfYouCan F1 ("F1*" = mean over them), as numerators over 20
SMIYC_THRESHOLDS = np.arange(5, 16) / 20.0  # 0.25, 0.30, ..., 0.75
_SMIYC_K = np.arange(5, 16, dtype=np.int64)
#: minimum component sizes of the benchmark's configurations (predicted, ground truth)
SMIYC_ANOMALY_TRACK = {"min_pred_size": 500, "min_gt_size": 100}
SMIYC_OBSTACLE_TRACK = {"min_pred_size": 50, "min_gt_size": 10}


def component_stats(pred, gt, void=None, min_pred_size=0, min_gt_size=0):
    """Component-level counts of one image, the SegmentMeIfYouCan definitions (Chan et al. 2021).

    Follows the benchmark's reference code (SegmentMeIfYouCan/road-anomaly-benchmark,
    ``road_anomaly_benchmark/metrics/instance_segmentation.py``: ``default_instancer`` /
    ``anomaly_instances_from_mask`` and ``segment_metrics``), step by step:

    1. predicted pixels in void are dropped; ground-truth (GT) components are the 8-connected
       components of the anomaly mask outside void, predicted components those of the
       prediction outside void;
    2. predicted components smaller than ``min_pred_size`` pixels are removed (size counted
       before step 3, as the reference does);
    3. GT components smaller than ``min_gt_size`` become void;
    4. everything is counted inside the remaining valid region. For a GT component ``k`` let
       ``K`` be the predicted components intersecting it: ``sIoU(k) = |k & K| / |(k | K) \\ A|``
       with ``A`` the pixels of the OTHER GT components, which equals
       ``|k & K| / (|k| + sum over K of its pixels outside every GT component)``.
       For a predicted component ``p``: ``PPV(p) = |p & GT| / |p|``.

    Returns a dict of int64 arrays: ``siou_num``, ``siou_den``, ``gt_size`` (per GT component),
    ``ppv_num``, ``pred_size`` (per predicted component) and the label images ``gt_labels``,
    ``pred_labels`` (0 = none; after size filtering). Numerators and denominators are kept so
    threshold tests are exact. No per-pixel or per-component Python loop: one contingency table
    of (GT, predicted) label pairs via ``np.unique``.
    """
    gt = _bool(gt, "gt")
    pred = _bool(pred, "pred", gt.shape)
    valid = _valid(void, gt.shape)
    g_lab, n_g, g_size = label_components(gt & valid)
    p_lab, n_p, _ = label_components(pred & valid, min_pred_size)
    if min_gt_size > 1 and n_g:
        small = g_size < min_gt_size
        small[0] = False
        if small.any():
            valid = valid & ~small[g_lab]
            g_lab, n_g, g_size = label_components(gt & valid)
    # predicted components that lie entirely in the (new) void disappear, as in the reference
    p_lab = np.where(valid, p_lab, 0)
    p_size = np.bincount(p_lab.ravel(), minlength=n_p + 1).astype(np.int64)
    if n_p and not (p_size[1:] > 0).all():
        keep = p_size > 0
        keep[0] = False
        lut = (np.cumsum(keep) * keep).astype(np.int32)
        p_lab = lut[p_lab]
        n_p = int(keep.sum())
        p_size = np.bincount(p_lab.ravel(), minlength=n_p + 1).astype(np.int64)
    both = (g_lab > 0) & (p_lab > 0)
    gb, pb = g_lab[both].astype(np.int64), p_lab[both].astype(np.int64)
    inter_g = np.bincount(gb, minlength=n_g + 1).astype(np.int64)  # pixels of k covered by any prediction
    cover_p = np.bincount(pb, minlength=n_p + 1).astype(np.int64)  # pixels of p inside some GT component
    pairs = np.unique(gb * (n_p + 1) + pb)
    pg, pp = pairs // (n_p + 1), pairs % (n_p + 1)
    outside = p_size - cover_p  # pixels of each predicted component outside every GT component
    extra = np.bincount(pg, weights=outside[pp].astype(np.float64), minlength=n_g + 1)
    den_g = g_size + np.rint(extra).astype(np.int64)
    return {
        "siou_num": inter_g[1:], "siou_den": den_g[1:], "gt_size": g_size[1:].copy(),
        "ppv_num": cover_p[1:], "pred_size": p_size[1:],
        "gt_labels": g_lab, "pred_labels": p_lab,
    }


class ComponentAccumulator:
    """Pools GT and predicted components over a dataset, like the benchmark's ``aggregate``.

    ``mean sIoU`` = mean over all GT components of the dataset, ``mean PPV`` = mean over all
    predicted components; for each threshold ``t`` in 0.25, 0.30, ..., 0.75:
    TP = GT components with ``sIoU >= t``, FN = the others, FP = predicted components with
    ``PPV < t``; ``F1_t = 2TP / (2TP + FN + FP)`` from the dataset totals, and ``f1`` (the
    benchmark's F1*) is the mean of ``F1_t`` over the 11 thresholds.

    ``tie_rule='code'`` (default) uses those comparisons, as the reference code that produced
    the published numbers does; ``tie_rule='paper'`` uses the paper's wording (TP: ``sIoU > t``,
    FP: ``PPV <= t``). They differ only for a value exactly on a threshold. Thresholds are the
    exact fractions k/20 (compared as integers ``20 * num >= k * den``), whereas the reference
    compares floats against ``np.linspace(0.25, 0.75, 11)``, whose 0.6 is 0.6000000000000001:
    there an sIoU of exactly 3/5 is a FN in the reference and a TP here.
    """

    def __init__(self, min_pred_size=0, min_gt_size=0, tie_rule="code"):
        if tie_rule not in ("code", "paper"):
            raise ValueError("tie_rule must be 'code' or 'paper', got %r" % (tie_rule,))
        self.min_pred_size = int(min_pred_size)
        self.min_gt_size = int(min_gt_size)
        self.tie_rule = tie_rule
        self._siou_num, self._siou_den, self._ppv_num, self._pred_size = [], [], [], []
        self.frames = 0

    def add(self, pred, gt, void=None):
        """Adds one image; returns its :func:`component_stats`."""
        st = component_stats(pred, gt, void, self.min_pred_size, self.min_gt_size)
        self._siou_num.append(st["siou_num"])
        self._siou_den.append(st["siou_den"])
        self._ppv_num.append(st["ppv_num"])
        self._pred_size.append(st["pred_size"])
        self.frames += 1
        return st

    def result(self):
        cat = lambda parts: np.concatenate(parts) if parts else np.zeros(0, np.int64)  # noqa: E731
        sn, sd, pn, ps = (cat(self._siou_num), cat(self._siou_den), cat(self._ppv_num), cat(self._pred_size))
        k = _SMIYC_K[:, None]
        if self.tie_rule == "code":
            tp = np.count_nonzero(20 * sn[None, :] >= k * sd[None, :], axis=1)
            fp = np.count_nonzero(20 * pn[None, :] < k * ps[None, :], axis=1)
        else:
            tp = np.count_nonzero(20 * sn[None, :] > k * sd[None, :], axis=1)
            fp = np.count_nonzero(20 * pn[None, :] <= k * ps[None, :], axis=1)
        fn = sn.size - tp
        den = 2 * tp + fn + fp
        f1 = np.where(den > 0, 2.0 * tp / np.maximum(den, 1), np.nan)
        f1_mean = float(np.mean(f1)) if np.all(den > 0) else None
        pick = {25: 0, 50: 5, 75: 10}
        out = {
            "siou": _mean(_ratio(sn, sd)), "ppv": _mean(_ratio(pn, ps)), "f1": f1_mean,
            "n_gt": int(sn.size), "n_pred": int(pn.size),
            "tp_mean": float(tp.mean()), "fn_mean": float(fn.mean()), "fp_mean": float(fp.mean()),
            "min_pred_size": self.min_pred_size, "min_gt_size": self.min_gt_size, "tie_rule": self.tie_rule,
        }
        for t, i in pick.items():
            out["f1_%d" % t] = None if den[i] == 0 else float(f1[i])
            out["tp_%d" % t], out["fn_%d" % t], out["fp_%d" % t] = int(tp[i]), int(fn[i]), int(fp[i])
        return out


# ----------------------------------------------------------------------------------------------
# S2M paper: IoU over 101 thresholds

#: the 101 thresholds of the S2M evaluation (``np.arange(0, 1 + 0.01, 0.01)`` as in its code)
S2M_THRESHOLDS = np.arange(0, 1 + 0.01, 0.01)


def _count_above(values, thresholds):
    """``#(values > t)`` for each ascending threshold ``t``: one ``searchsorted`` into the few
    thresholds (O(n log T), no sort of the pixels), in float64."""
    idx = np.searchsorted(thresholds, values.astype(np.float64, copy=False), side="left")  # #(t < v)
    below = np.cumsum(np.bincount(idx, minlength=thresholds.size + 1))[:thresholds.size]
    return values.size - below  # v > t_k  <=>  k < idx


def s2m_image_counts(scores, gt, void=None, thresholds=S2M_THRESHOLDS):
    """Per-threshold intersection and union of ``scores > t`` with the anomaly mask, void excluded.

    Returns ``(intersection, union)`` int64 arrays of ``len(thresholds)`` (ascending thresholds).
    Strict ``>``, as the S2M code's ``anomaly_mask[anomaly > threshold] = 1``; exact counts.
    """
    gt = _bool(gt, "gt")
    scores = np.asarray(scores)
    if scores.shape != gt.shape:
        raise ValueError("scores %s and gt %s differ in shape" % (scores.shape, gt.shape))
    t = np.asarray(thresholds, np.float64).ravel()
    if t.size > 1 and not np.all(np.diff(t) > 0):
        raise ValueError("thresholds must be strictly increasing")
    valid = _valid(void, gt.shape)
    s_all = scores[valid]
    if s_all.dtype.kind == "f" and not np.isfinite(s_all).all():
        raise ValueError("evaluated scores contain NaN or inf")
    inter = _count_above(scores[valid & gt], t)
    union = int(np.count_nonzero(valid & gt)) + _count_above(s_all, t) - inter
    return inter.astype(np.int64), union.astype(np.int64)


class S2MCurveAccumulator:
    """The S2M paper's mask metrics (Zhao et al., CVPR 2024), image by image.

    Definition from the authors' code (WenjieZhao1/S2M, ``tools/inference.py``, ``get_iou`` and
    ``calculate_miou``): for each threshold t in 0, 0.01, ..., 1 (101 values) the mask is
    ``score > t``; per image IoU = |mask & GT| / |mask | GT| and F1 (Dice) = 2I / (I + U), both 0
    for an image whose union is empty; mIoU(t) and mF1(t) are the means over images (not pooled
    pixels). ``iou`` = max over t of mIoU(t) (first maximum), ``auiou`` = trapezoidal area under
    mIoU(t) over the normalised threshold axis [0, 1], ``mean_f1`` = mean over t of mF1(t).

    The scores must lie in ``score_range`` (default [0, 1], as the S2M maps: the detector's box
    confidence painted into each SAM mask); thresholds are ``lo + (hi - lo) * t``. A binary
    mask passed as 0/1 scores gives its IoU at every t < 1 and 0 at t = 1 (strict ``>``), so
    ``auiou`` = 0.995 IoU and ``mean_f1`` = 100/101 Dice, faithful to the definition.
    Deviation: void pixels are excluded here; the S2M code counts predicted void pixels in the
    union (its GT test is ``label == 1``).
    """

    def __init__(self, thresholds=S2M_THRESHOLDS, score_range=(0.0, 1.0)):
        self.thresholds = np.asarray(thresholds, np.float64)
        lo, hi = float(score_range[0]), float(score_range[1])
        if not hi > lo:
            raise ValueError("score_range must be increasing, got %r" % (score_range,))
        self.score_range = (lo, hi)
        self._iou, self._f1 = [], []

    @property
    def frames(self):
        return len(self._iou)

    def add(self, scores, gt, void=None):
        """Adds one image; returns its per-threshold ``(iou, f1)`` arrays."""
        lo, hi = self.score_range
        inter, union = s2m_image_counts(scores, gt, void, lo + (hi - lo) * self.thresholds)
        iou = _ratio(inter, union)
        f1 = _ratio(2 * inter, inter + union)
        self._iou.append(iou)
        self._f1.append(f1)
        return iou, f1

    def curves(self):
        """``(thresholds, mIoU(t), mF1(t))`` over the images added so far."""
        if not self._iou:
            raise ValueError("no images added")
        return self.thresholds, np.mean(self._iou, axis=0), np.mean(self._f1, axis=0)

    def result(self):
        if not self._iou:
            return {"iou": None, "auiou": None, "mean_f1": None, "best_threshold": None, "n_images": 0}
        t, miou, mf1 = self.curves()
        best = int(np.argmax(miou))
        area = float(np.sum(np.diff(t) * (miou[1:] + miou[:-1]) / 2.0))
        lo, hi = self.score_range
        return {"iou": float(miou[best]), "auiou": area, "mean_f1": float(np.mean(mf1)),
                "best_threshold": float(lo + (hi - lo) * t[best]), "n_images": self.frames}


# ----------------------------------------------------------------------------------------------
# instance level

def _pred_stack(pred_instances, shape):
    """Predicted instances as ``(label image or None, list of bool masks or None)``."""
    if isinstance(pred_instances, np.ndarray) and pred_instances.ndim == 2:
        if pred_instances.dtype == bool:
            pred_instances = pred_instances.astype(np.uint8)  # one mask = one instance
        if pred_instances.shape != tuple(shape):
            raise ValueError("pred_instances %s and gt %s differ in shape" % (pred_instances.shape, tuple(shape)))
        return pred_instances, None
    masks = [_bool(m, "pred instance", shape) for m in pred_instances]
    return None, masks


def _compact_ids(labels):
    """Label image -> ``(ids, index image)``: ``ids[0] == 0`` (none), the present non-zero ids
    ascending, the index image maps each pixel to its position in ``ids``."""
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iub":
        raise ValueError("instance labels must be integers, got %s" % labels.dtype)
    labels = labels.astype(np.int64, copy=False)
    lo, hi = (int(labels.min()), int(labels.max())) if labels.size else (0, 0)
    if lo >= 0 and hi < 1 << 24:  # the usual case: a lookup table from bincount
        present = np.bincount(labels.ravel(), minlength=hi + 1) > 0
        present[0] = True
        ids = np.flatnonzero(present)
        lut = np.zeros(hi + 1, np.int64)
        lut[ids] = np.arange(ids.size)
        return ids, lut[labels]
    nz = np.unique(labels)
    nz = nz[nz != 0]
    idx = np.searchsorted(nz, labels) + 1
    idx[labels == 0] = 0
    return np.concatenate(([0], nz)), idx


def instance_stats(gt_instances, pred_instances, void=None, iou_threshold=0.5):
    """IoU of every GT instance with every predicted instance, void excluded.

    ``gt_instances``: HxW int ids (0 = none). ``pred_instances``: HxW label image (0 = none; a
    2-D bool mask is one instance) or a sequence / KxHxW array of bool masks (may overlap, e.g.
    SAM masks). Instances with no
    valid pixel are ignored. Returns ``best_iou`` (per GT instance, 0 if nothing overlaps),
    ``gt_matched`` (best IoU >= ``iou_threshold``), ``pred_matched`` (per predicted instance:
    some GT instance at IoU >= ``iou_threshold``) and ``iou`` (n_gt x n_pred).
    """
    gt_instances = np.asarray(gt_instances)
    if gt_instances.ndim != 2:
        raise ValueError("gt_instances must be 2-D, got %s" % (gt_instances.shape,))
    valid = _valid(void, gt_instances.shape)
    ids, g_idx = _compact_ids(np.where(valid, gt_instances, 0))
    n_g = ids.size - 1
    g_size = np.bincount(g_idx.ravel(), minlength=n_g + 1)[1:].astype(np.int64)
    lab, masks = _pred_stack(pred_instances, gt_instances.shape)
    if lab is not None:
        pid, p_idx = _compact_ids(np.where(valid, lab, 0))
        n_p = pid.size - 1
        p_size = np.bincount(p_idx.ravel(), minlength=n_p + 1)[1:].astype(np.int64)
        both = (g_idx > 0) & (p_idx > 0)
        inter = np.bincount(g_idx[both].astype(np.int64) * (n_p + 1) + p_idx[both],
                            minlength=(n_g + 1) * (n_p + 1)).reshape(n_g + 1, n_p + 1)[1:, 1:]
    else:
        cols, sizes = [], []
        for m in masks:  # one vectorised pass per mask (a few tens), not per pixel
            m = m & valid
            sizes.append(int(np.count_nonzero(m)))
            cols.append(np.bincount(g_idx[m], minlength=n_g + 1)[1:])
        keep = [i for i, s in enumerate(sizes) if s > 0]
        p_size = np.array([sizes[i] for i in keep], np.int64)
        inter = (np.stack([cols[i] for i in keep], axis=1) if keep else np.zeros((n_g, 0))).astype(np.int64)
    union = g_size[:, None] + p_size[None, :] - inter
    iou = _ratio(inter, union)
    best = iou.max(axis=1) if iou.shape[1] else np.zeros(n_g)
    return {"iou": iou, "best_iou": best, "gt_matched": best >= iou_threshold,
            "pred_matched": (iou >= iou_threshold).any(axis=0) if n_g else np.zeros(iou.shape[1], bool),
            "gt_ids": ids[1:], "gt_size": g_size, "pred_size": p_size}


class InstanceAccumulator:
    """Pools instances over a dataset: recall = matched GT / GT, precision = matched predictions /
    predictions (match: IoU >= 0.5), ``mean_best_iou`` = mean over GT instances of their best IoU."""

    def __init__(self, iou_threshold=0.5):
        self.iou_threshold = float(iou_threshold)
        self._best, self._gt_matched, self._pred_matched = [], [], []

    @property
    def frames(self):
        return len(self._best)

    def add(self, gt_instances, pred_instances, void=None):
        st = instance_stats(gt_instances, pred_instances, void, self.iou_threshold)
        self._best.append(st["best_iou"])
        self._gt_matched.append(st["gt_matched"])
        self._pred_matched.append(st["pred_matched"])
        return st

    def result(self):
        best = np.concatenate(self._best) if self._best else np.zeros(0)
        gm = np.concatenate(self._gt_matched) if self._gt_matched else np.zeros(0, bool)
        pm = np.concatenate(self._pred_matched) if self._pred_matched else np.zeros(0, bool)
        return {"recall": float(gm.mean()) if gm.size else None,
                "precision": float(pm.mean()) if pm.size else None,
                "mean_best_iou": _mean(best), "n_gt": int(gm.size), "n_pred": int(pm.size),
                "n_matched_gt": int(gm.sum()), "n_matched_pred": int(pm.sum()),
                "n_images": self.frames, "iou_threshold": self.iou_threshold}


# ----------------------------------------------------------------------------------------------
# everything together

class EvalAccumulator:
    """All ``s2m eval`` metrics, image by image; :meth:`result` gives the nested JSON dict.

    Keys: ``n_images``; ``pixel`` (auroc, ap, fpr95, best_f1, best_f1_threshold, n_pos, n_neg),
    ``component`` (siou, ppv, f1 = F1*, f1_25/50/75, counts, sizes), ``s2m`` (iou, auiou, mean_f1,
    best_threshold), ``instance`` (recall, precision, mean_best_iou, counts). A section whose
    input never came is ``None``. :func:`flatten_metrics` turns it into ``pixel.auroc``-style keys.
    Component sizes default to 0 (no filtering); the benchmark's own values are
    :data:`SMIYC_ANOMALY_TRACK` (500 / 100) and :data:`SMIYC_OBSTACLE_TRACK` (50 / 10).
    """

    def __init__(self, min_pred_size=0, min_gt_size=0, tie_rule="code", s2m_score_range=(0.0, 1.0),
                 s2m_thresholds=S2M_THRESHOLDS, instance_iou=0.5, pixel_dtype=np.float32):
        self.pixel = PixelMetricAccumulator(pixel_dtype)
        self.component = ComponentAccumulator(min_pred_size, min_gt_size, tie_rule)
        self.s2m = S2MCurveAccumulator(s2m_thresholds, s2m_score_range)
        self.instance = InstanceAccumulator(instance_iou)
        self.frames = 0

    def add(self, gt, void=None, scores=None, pred_mask=None, s2m_scores=None,
            gt_instances=None, pred_instances=None):
        """Adds one image and returns a flat per-image row (for the per-image CSV).

        ``gt``: HxW anomaly mask; ``void``: HxW mask of ignored pixels (or None);
        ``scores``: continuous anomaly scores (pixel metrics); ``pred_mask``: binary prediction
        (component metrics; also the S2M curve when ``s2m_scores`` is None, and the predicted
        instances, as 8-connected components, when ``pred_instances`` is None);
        ``s2m_scores``: score map for the S2M curve; ``gt_instances``: HxW instance ids
        (instance metrics are computed only when given); ``pred_instances``: label image or masks.
        """
        gt = _bool(gt, "gt")
        valid = _valid(void, gt.shape)
        void_mask = None if void is None else ~valid
        row = {"n_gt_pixels": int(np.count_nonzero(gt & valid))}
        if scores is not None:
            self.pixel.add(scores, gt, valid)
        if pred_mask is not None:
            pred = _bool(pred_mask, "pred_mask", gt.shape)
            st = self.component.add(pred, gt, void_mask)
            inter = int(np.count_nonzero(pred & gt & valid))
            union = int(np.count_nonzero((pred | gt) & valid))
            row.update(iou=inter / union if union else 0.0,
                       dice=2.0 * inter / (inter + union) if union else 0.0,
                       n_gt_components=int(st["siou_num"].size), n_pred_components=int(st["ppv_num"].size),
                       siou=_mean(_ratio(st["siou_num"], st["siou_den"])),
                       ppv=_mean(_ratio(st["ppv_num"], st["pred_size"])))
            if s2m_scores is None:
                s2m_scores = pred.astype(np.float32)
            if gt_instances is not None and pred_instances is None:
                pred_instances = label_components(pred & valid)[0]
        if s2m_scores is not None:
            iou, _ = self.s2m.add(s2m_scores, gt, void_mask)
            row["s2m_max_iou"] = float(iou.max())
        if gt_instances is not None and pred_instances is not None:
            ist = self.instance.add(gt_instances, pred_instances, void_mask)
            row.update(n_gt_instances=int(ist["best_iou"].size),
                       instance_recall=float(ist["gt_matched"].mean()) if ist["best_iou"].size else None)
        self.frames += 1
        return row

    def result(self, tpr_level=0.95):
        pixel = None
        if self.pixel.frames:
            pixel = self.pixel.result(tpr_level) if self.pixel.n_pos and self.pixel.n_neg else None
        return {
            "n_images": self.frames,
            "pixel": pixel,
            "component": self.component.result() if self.component.frames else None,
            "s2m": self.s2m.result() if self.s2m.frames else None,
            "instance": self.instance.result() if self.instance.frames else None,
        }


def flatten_metrics(nested, sep="."):
    """``{'pixel': {'auroc': x}}`` -> ``{'pixel.auroc': x}``; a ``None`` section stays one key."""
    out = {}
    for k, v in nested.items():
        if isinstance(v, dict):
            for k2, v2 in flatten_metrics(v, sep).items():
                out["%s%s%s" % (k, sep, k2)] = v2
        else:
            out[k] = v
    return out
