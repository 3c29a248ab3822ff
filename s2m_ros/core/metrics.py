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
"""
import numpy as np

__all__ = ["pixel_metrics", "metrics_from_sorted", "PixelMetricAccumulator"]


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
    return {"auroc": auroc, "ap": ap, "fpr95": fpr, "n_pos": n_pos, "n_neg": n_neg}


def pixel_metrics(scores, labels, valid=None, tpr_level=0.95):
    """Exact pixel-level ``{'auroc', 'ap', 'fpr95', 'n_pos', 'n_neg'}`` (higher score = anomaly).

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

    def result(self, tpr_level=0.95):
        pos = np.concatenate(self._pos) if self._pos else np.zeros(0, self.dtype)
        neg = np.concatenate(self._neg) if self._neg else np.zeros(0, self.dtype)
        pos.sort()
        neg.sort()
        return metrics_from_sorted(pos, neg, tpr_level)
