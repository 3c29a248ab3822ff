"""Pixel-level AUROC / AP / FPR95 (s2m_ros.core.metrics): hand-computed cases and properties.

scikit-learn is not installed; the expected values below are worked out by hand (and the
first case is the example from scikit-learn's documentation of average_precision_score /
roc_auc_score / roc_curve). A brute-force per-threshold implementation checks random inputs.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s2m_ros.core.metrics import PixelMetricAccumulator, pixel_metrics


def brute_force(scores, labels):
    """Every distinct score as a threshold (score >= t), the literal definitions."""
    scores = np.asarray(scores, float).ravel()
    labels = np.asarray(labels).ravel() != 0
    P, N = labels.sum(), (~labels).sum()
    pos, neg = scores[labels], scores[~labels]
    auroc = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (P * N)
    ap, prev_recall, fpr95 = 0.0, 0.0, None
    for t in sorted(set(scores.tolist()), reverse=True):
        tp = np.sum(pos >= t)
        fp = np.sum(neg >= t)
        recall = tp / P
        ap += (recall - prev_recall) * tp / (tp + fp)
        prev_recall = recall
        if fpr95 is None and recall >= 0.95:
            fpr95 = fp / N
    return auroc, ap, fpr95


def test_sklearn_documentation_example():
    m = pixel_metrics(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
    assert m["auroc"] == pytest.approx(0.75)
    assert m["ap"] == pytest.approx(0.8333333333333333)  # (0.5 * 1) + (0.5 * 2/3)
    assert m["fpr95"] == pytest.approx(0.5)  # ROC points (0,.5) (.5,.5) (.5,1): TPR 1 first at FPR .5
    assert (m["n_pos"], m["n_neg"]) == (2, 2)


def test_full_tie_between_classes():
    # one positive and one negative tie at 1, the other pair ties at 0
    m = pixel_metrics(np.array([1.0, 1.0, 0.0, 0.0]), np.array([1, 0, 1, 0]))
    assert m["auroc"] == pytest.approx(0.5)  # pairs: tie .5, win 1, loss 0, tie .5 -> 2 / 4
    assert m["ap"] == pytest.approx(0.5)  # t=1: R .5 P .5; t=0: R 1 P .5
    assert m["fpr95"] == pytest.approx(1.0)


def test_ties_inside_a_threshold_group():
    # threshold 0.9 takes two positives and one negative together (no arbitrary tie order)
    m = pixel_metrics(np.array([0.9, 0.9, 0.9, 0.5, 0.2]), np.array([1, 1, 0, 0, 1]))
    assert m["auroc"] == pytest.approx(3.0 / 6.0)  # 0.9s: (0.5 + 1) each; 0.2: 0
    assert m["ap"] == pytest.approx(2.0 / 3.0 * 2.0 / 3.0 + 1.0 / 3.0 * 3.0 / 5.0)  # = 29/45
    assert m["fpr95"] == pytest.approx(1.0)


def test_fpr95_first_threshold_reaching_95_percent():
    pos = np.arange(2.0, 22.0)  # 20 positives 2..21
    neg = np.array([0.0, 1.0, 1.5, 2.5, 30.0])
    m = pixel_metrics(np.r_[pos, neg], np.r_[np.ones(20), np.zeros(5)])
    # TPR >= .95 needs 19 positives -> threshold 3; negatives >= 3: only 30 -> FPR 1/5
    assert m["fpr95"] == pytest.approx(0.2)
    # AUROC: each positive beats the negatives below it; 30 beats everything
    wins = sum(np.sum(neg < p) for p in pos)
    assert m["auroc"] == pytest.approx(wins / 100.0)
    assert m["auroc"] == pytest.approx(0.79)


def test_valid_mask_and_label_values():
    scores = np.array([[0.9, 0.1], [0.8, 0.7]], np.float32)
    labels = np.array([[2, 0], [0, 255]], np.uint8)  # 2 = anomaly, 255 = void below
    valid = labels != 255
    m = pixel_metrics(scores, labels == 2, valid)
    assert (m["n_pos"], m["n_neg"]) == (1, 2)
    assert m["auroc"] == 1.0 and m["ap"] == 1.0 and m["fpr95"] == 0.0
    # without the mask the void pixel counts as an anomaly (non-zero label)
    m2 = pixel_metrics(scores, labels)
    assert m2["n_pos"] == 2


def test_errors():
    with pytest.raises(ValueError, match="both"):
        pixel_metrics(np.array([0.1, 0.2]), np.array([1, 1]))
    with pytest.raises(ValueError, match="NaN"):
        pixel_metrics(np.array([0.1, np.nan, 0.3]), np.array([1, 0, 0]))
    with pytest.raises(ValueError, match="shape"):
        pixel_metrics(np.zeros(3), np.zeros(4))
    # a NaN outside the valid mask is fine
    m = pixel_metrics(np.array([0.1, np.nan, 0.3]), np.array([1, 0, 0]), np.array([True, False, True]))
    assert m["auroc"] == 0.0


scores_labels = st.integers(2, 60).flatmap(lambda n: st.tuples(
    st.lists(st.integers(-20, 20), min_size=n, max_size=n),
    st.lists(st.booleans(), min_size=n, max_size=n)).filter(lambda t: 0 < sum(t[1]) < n))


@settings(max_examples=150, deadline=None)
@given(scores_labels)
def test_matches_brute_force(data):
    s, l = np.array(data[0], float), np.array(data[1])
    auroc, ap, fpr = brute_force(s, l)
    m = pixel_metrics(s, l)
    assert m["auroc"] == pytest.approx(auroc, abs=1e-12)
    assert m["ap"] == pytest.approx(ap, abs=1e-12)
    assert m["fpr95"] == pytest.approx(fpr, abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(scores_labels)
def test_invariant_to_strictly_increasing_transforms(data):
    s, l = np.array(data[0], float), np.array(data[1])
    m = pixel_metrics(s, l)
    for f in (lambda x: 3.0 * x + 7.0, lambda x: x ** 3 + 2.0 * x, np.exp):
        m2 = pixel_metrics(f(s), l)
        for k in ("auroc", "ap", "fpr95"):
            assert m2[k] == pytest.approx(m[k], abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(scores_labels)
def test_reversed_scores_give_complementary_auroc(data):
    s, l = np.array(data[0], float), np.array(data[1])
    assert pixel_metrics(-s, l)["auroc"] == pytest.approx(1.0 - pixel_metrics(s, l)["auroc"], abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(scores_labels)
def test_perfect_scores(data):
    l = np.array(data[1])
    s = np.where(l, 1.0, 0.0) + 0.01 * np.array(data[0])  # every positive above every negative
    m = pixel_metrics(s, l)
    assert m["ap"] == 1.0 and m["auroc"] == 1.0 and m["fpr95"] == 0.0


@settings(max_examples=50, deadline=None)
@given(st.lists(scores_labels, min_size=1, max_size=4))
def test_accumulator_equals_pooled(frames):
    acc = PixelMetricAccumulator(dtype=np.float64)
    for s, l in frames:
        acc.add(np.array(s, float), np.array(l))
    pooled = pixel_metrics(np.concatenate([np.array(s, float) for s, _ in frames]),
                           np.concatenate([np.array(l) for _, l in frames]))
    got = acc.result()
    assert acc.frames == len(frames)
    for k in ("auroc", "ap", "fpr95", "n_pos", "n_neg"):
        assert got[k] == pytest.approx(pooled[k], abs=1e-12)


def test_constant_scores():
    m = pixel_metrics(np.zeros(10), np.r_[np.ones(3), np.zeros(7)])
    assert m["auroc"] == 0.5 and m["ap"] == pytest.approx(0.3) and m["fpr95"] == 1.0


def test_large_input_matches_subsample_statistics():
    """Tens of millions of pixels: random scores give AUROC ~ .5 and AP ~ positive rate."""
    rng = np.random.default_rng(0)
    n = 20_000_000
    scores = rng.random(n, dtype=np.float32)
    labels = rng.random(n) < 0.1
    m = pixel_metrics(scores, labels)
    assert m["n_pos"] + m["n_neg"] == n
    assert abs(m["auroc"] - 0.5) < 2e-3
    assert abs(m["ap"] - m["n_pos"] / n) < 2e-3
    assert abs(m["fpr95"] - 0.95) < 2e-3
