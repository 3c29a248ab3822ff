"""Per-pixel anomaly scores from segmentation logits (ROS-free, numpy + OpenCV).

Every score is "higher = more anomalous". Logits are channels-first, (C, H, W)
(what a segmentation network outputs for one image); ``id_channels`` selects the
in-distribution classes (e.g. ESPNet's first 19 of 20 channels). NaN or inf in
the logits gives NaN at that pixel: callers decide whether to skip the frame.

Scores (all from the literature on OoD segmentation):
  msp       1 - max softmax probability (Hendrycks & Gimpel)
  maxlogit  - max logit (Hendrycks et al., "Scaling OoD detection")
  entropy   softmax entropy, optionally divided by log C (range [0, 1])
  energy    - T * logsumexp(logits / T) (Liu et al., energy-based OoD)
  sml       standardized max logit: -(max logit - mean_c) / std_c with per-class
            statistics of the max logit on in-distribution images (Jung et al., ICCV 2021)
  score_map the model already outputs a score map (one channel), used as is or negated
"""
import json
from dataclasses import dataclass

import cv2
import numpy as np

METHODS = ("msp", "maxlogit", "entropy", "energy", "sml", "score_map")


def _check_logits(logits, min_channels=2):
    logits = np.asarray(logits)
    if logits.ndim != 3:
        raise ValueError("logits must be (C, H, W), got shape %s" % (logits.shape,))
    if logits.shape[0] < min_channels:
        raise ValueError("logits need at least %d channels, got %d" % (min_channels, logits.shape[0]))
    if logits.shape[1] == 0 or logits.shape[2] == 0:
        raise ValueError("logits have no pixels: shape %s" % (logits.shape,))
    return logits if logits.dtype in (np.float32, np.float64) else logits.astype(np.float32)


def _shifted_exp_sum(logits):
    """(max over C, exp(logits - max), sum of those): the stable softmax pieces."""
    top = logits.max(axis=0)
    e = np.exp(logits - top)
    return top, e, e.sum(axis=0)


def msp(logits):
    """1 - max softmax probability, in [0, 1 - 1/C]."""
    logits = _check_logits(logits)
    _, _, total = _shifted_exp_sum(logits)
    return 1.0 - 1.0 / total  # the max class contributes exp(0) = 1


def max_logit(logits):
    """Negated max logit."""
    return -_check_logits(logits, min_channels=1).max(axis=0)


def entropy(logits, normalize=False):
    """Softmax entropy (nats); with ``normalize`` divided by log C, so in [0, 1]."""
    logits = _check_logits(logits)
    top, e, total = _shifted_exp_sum(logits)
    h = np.log(total) - (e * (logits - top)).sum(axis=0) / total
    h = np.maximum(h, 0.0)  # rounding can give -1e-8 for one-hot logits
    return h / np.log(logits.shape[0]) if normalize else h


def energy(logits, temperature=1.0):
    """Free energy -T * logsumexp(logits / T)."""
    if not temperature > 0:
        raise ValueError("temperature must be > 0, got %r" % (temperature,))
    scaled = _check_logits(logits, min_channels=1) / temperature
    top, _, total = _shifted_exp_sum(scaled)
    return -temperature * (top + np.log(total))


@dataclass
class SMLStats:
    """Per-class mean and standard deviation of the max logit over in-distribution pixels."""

    mean: np.ndarray  # (C,)
    std: np.ndarray  # (C,)
    count: np.ndarray  # (C,) pixels that predicted each class

    def save(self, path):
        with open(path, "w") as f:
            json.dump({"format": "s2m_ros.sml_stats/1", "mean": self.mean.tolist(), "std": self.std.tolist(),
                       "count": self.count.tolist()}, f, indent=1)

    @classmethod
    def load(cls, path):
        with open(path) as f:
            data = json.load(f)
        if data.get("format") != "s2m_ros.sml_stats/1":
            raise ValueError("%s is not an s2m_ros SML statistics file" % path)
        return cls(np.asarray(data["mean"], float), np.asarray(data["std"], float),
                   np.asarray(data["count"], np.int64))


class SMLAccumulator:
    """Accumulates max-logit statistics per predicted class, one image at a time (for the fitting CLI)."""

    def __init__(self, n_classes):
        self.n = np.zeros(n_classes, np.int64)
        self.sum = np.zeros(n_classes)
        self.sum_sq = np.zeros(n_classes)

    def add(self, logits):
        logits = _check_logits(logits)
        if logits.shape[0] != self.n.size:
            raise ValueError("expected %d classes, got %d" % (self.n.size, logits.shape[0]))
        top = logits.max(axis=0).astype(np.float64).reshape(-1)
        cls = logits.argmax(axis=0).reshape(-1)
        valid = np.isfinite(top)
        top, cls = top[valid], cls[valid]
        self.n += np.bincount(cls, minlength=self.n.size)
        self.sum += np.bincount(cls, weights=top, minlength=self.n.size)
        self.sum_sq += np.bincount(cls, weights=top * top, minlength=self.n.size)

    def result(self, min_std=1e-3):
        """Per-class statistics; classes never predicted get the pooled mean/std."""
        if self.n.sum() == 0:
            raise ValueError("no pixels accumulated")
        pooled_mean = self.sum.sum() / self.n.sum()
        pooled_var = self.sum_sq.sum() / self.n.sum() - pooled_mean ** 2
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(self.n > 0, self.sum / self.n, pooled_mean)
            var = np.where(self.n > 1, self.sum_sq / self.n - mean ** 2, pooled_var)
        std = np.maximum(np.sqrt(np.maximum(var, 0.0)), min_std)
        return SMLStats(mean=mean, std=std, count=self.n.copy())


def standardized_max_logit(logits, stats):
    """-(max logit - mean[c]) / std[c] with c the predicted class."""
    logits = _check_logits(logits)
    if stats.mean.size != logits.shape[0]:
        raise ValueError("SML statistics are for %d classes, logits have %d" % (stats.mean.size, logits.shape[0]))
    top = logits.max(axis=0)
    cls = logits.argmax(axis=0)
    return -(top - stats.mean[cls].astype(top.dtype)) / stats.std[cls].astype(top.dtype)


def as_score_map(score_map):
    """A non-empty 2-D real array as float32 (no copy when it already is); ValueError otherwise."""
    s = np.asarray(score_map)
    if s.ndim != 2 or s.size == 0:
        raise ValueError("score_map must be a non-empty 2-D (H x W) array, got shape %s" % (s.shape,))
    if not (np.issubdtype(s.dtype, np.floating) or np.issubdtype(s.dtype, np.integer)):
        raise ValueError("score_map must be a real numeric array, got dtype %s" % s.dtype)
    return s.astype(np.float32, copy=False)


def resize_score(score, width, height):
    """Bilinear resize (pixel-centre aligned) of an HxW map to ``width`` x ``height`` (float32; the
    same array when it already has that size)."""
    score = np.asarray(score, dtype=np.float32)
    if score.shape == (height, width):
        return score
    return cv2.resize(score, (int(width), int(height)), interpolation=cv2.INTER_LINEAR)


def smooth(score, sigma):
    """Gaussian smoothing (sigma in pixels; 0 = none). NaN pixels are ignored, not spread."""
    score = np.asarray(score, dtype=np.float32)
    if sigma <= 0:
        return score
    valid = np.isfinite(score)
    if valid.all():
        return cv2.GaussianBlur(score, (0, 0), sigmaX=float(sigma), borderType=cv2.BORDER_REFLECT)
    filled = np.where(valid, score, 0.0).astype(np.float32)
    weight = cv2.GaussianBlur(valid.astype(np.float32), (0, 0), sigmaX=float(sigma), borderType=cv2.BORDER_REFLECT)
    total = cv2.GaussianBlur(filled, (0, 0), sigmaX=float(sigma), borderType=cv2.BORDER_REFLECT)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = total / weight
    out[weight < 1e-6] = np.nan
    return out


def score_from_logits(logits, method, id_channels=None, temperature=1.0, normalize_entropy=True,
                      sml_stats=None, invert=False, sigma=0.0):
    """One entry point for the pipeline: select channels, compute ``method``, optionally smooth.

    Returns an (H, W) float32 map, higher = more anomalous.
    """
    if method not in METHODS:
        raise ValueError("unknown score method %r (known: %s)" % (method, ", ".join(METHODS)))
    logits = np.asarray(logits)
    if method == "score_map":
        if logits.ndim == 3 and logits.shape[0] == 1:
            logits = logits[0]
        if logits.ndim != 2:
            raise ValueError("a score map must be (H, W) or (1, H, W), got %s" % (logits.shape,))
        out = -logits if invert else logits
    else:
        if id_channels is not None:
            logits = logits[id_channels if isinstance(id_channels, slice) else list(id_channels)]
        if method == "msp":
            out = msp(logits)
        elif method == "maxlogit":
            out = max_logit(logits)
        elif method == "entropy":
            out = entropy(logits, normalize=normalize_entropy)
        elif method == "energy":
            out = energy(logits, temperature)
        else:
            if sml_stats is None:
                raise ValueError("method 'sml' needs statistics (fit them with the SML CLI)")
            out = standardized_max_logit(logits, sml_stats)
    return smooth(np.asarray(out, dtype=np.float32), sigma)


MASK_CLASSIFICATION_METHODS = ("msp", "maxlogit", "rba")


def mask_classification_score(class_logits, mask_logits, method="msp", id_channels=None):
    """Anomaly map of a mask-classification model (Mask2Former / Mask2Anomaly output form).

    ``class_logits``: (Q, C) per-query class logits whose last class is "no object" (Mask2Former's
    convention); ``mask_logits``: (Q, h, w) per-query mask logits. ``id_channels`` selects the
    in-distribution classes among the C (None = all but the last). With ``p = softmax(class_logits)``
    and ``m = sigmoid(mask_logits)``, the per-pixel class map is ``P_c = sum_q p_qc m_q`` and:

    * ``msp``: ``1 - max_c P_c`` (Mask2Anomaly's inference score);
    * ``maxlogit``: ``-max_c L_c`` with ``L_c = sum_q l_qc m_q`` over the raw class logits;
    * ``rba``: ``-sum_c tanh(L_c)`` (Rejected by All: a pixel no known class claims scores high).

    Returns an (h, w) float32 map, higher = more anomalous.
    """
    if method not in MASK_CLASSIFICATION_METHODS:
        raise ValueError("unknown mask-classification method %r (known: %s)" % (
            method, ", ".join(MASK_CLASSIFICATION_METHODS)))
    cls = np.asarray(class_logits, dtype=np.float64)
    masks = np.asarray(mask_logits, dtype=np.float32)
    if cls.ndim != 2 or cls.shape[1] < 2:
        raise ValueError("class logits must be (Q, C) with C >= 2, got %s" % (cls.shape,))
    if masks.ndim != 3 or masks.shape[0] != cls.shape[0]:
        raise ValueError("mask logits must be (Q, h, w) with Q = %d queries, got %s" % (cls.shape[0], masks.shape))
    ids = slice(0, cls.shape[1] - 1) if id_channels is None else id_channels
    if method == "msp":
        _, e, total = _shifted_exp_sum(cls.T)  # softmax over the classes of each query
        weights = (e / total).T[:, ids]
    else:
        weights = cls[:, ids]
    sig = 0.5 * (1.0 + np.tanh(0.5 * masks))  # sigmoid without overflow warnings
    q, h, w = sig.shape
    per_class = (weights.T.astype(np.float32) @ sig.reshape(q, h * w)).reshape(-1, h, w)
    if method == "msp":
        out = 1.0 - per_class.max(axis=0)
    elif method == "maxlogit":
        out = -per_class.max(axis=0)
    else:
        out = -np.tanh(per_class).sum(axis=0)
    return np.asarray(out, dtype=np.float32)


def mann_whitney_auc(pos, neg):
    """P(pos > neg) + 0.5 P(pos == neg) (Mann-Whitney U / (n m)) from non-empty ascending-sorted arrays."""
    below = np.searchsorted(neg, pos, side="left")
    not_above = np.searchsorted(neg, pos, side="right")
    return float(below.sum(dtype=np.float64) + 0.5 * (not_above - below).sum(dtype=np.float64)) / (
        float(pos.size) * float(neg.size))
