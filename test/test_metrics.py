"""Metrics of `s2m eval` (s2m_ros.eval.metrics): hand-computed cases, brute force, properties.

Pixel level (AUROC / AP / FPR95): hand-worked values (the first case is the example from
scikit-learn's documentation), a brute-force per-threshold implementation, and scikit-learn
(a test-only dependency) on random data with ties. Object level: component (SegmentMeIfYouCan),
the S2M paper's IoU-threshold curve and instance matching, each against small arrays counted by
hand and against the published procedures written out literally with loops (brute force).
"""
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage
from sklearn.metrics import (average_precision_score, f1_score, jaccard_score, precision_recall_curve,
                             roc_auc_score)

from s2m_ros.eval.metrics import (S2M_THRESHOLDS, SMIYC_THRESHOLDS, ComponentAccumulator, EvalAccumulator,
                                  InstanceAccumulator, PixelMetricAccumulator, S2MCurveAccumulator,
                                  component_stats, flatten_metrics, instance_stats, label_components,
                                  pixel_metrics, s2m_image_counts)


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


# ================================================================================================
# object-level metrics of `s2m eval`: component (SegmentMeIfYouCan), S2M curve, instances


def grid(rows):
    """Small masks drawn as text: '#' = 1, '.' = 0, 'v' = void (returned separately)."""
    a = np.array([list(r) for r in rows])
    return a == "#", a == "v"


def comp(pred_rows, gt_rows, **kw):
    pred, pvoid = grid(pred_rows)
    gt, gvoid = grid(gt_rows)
    return component_stats(pred, gt, pvoid | gvoid, **kw)


def f1_star(siou, ppv, rule="code"):
    """F1* from the definition with exact fractions (one image / pooled lists)."""
    out = []
    for k in range(5, 16):
        t = Fraction(k, 20)
        tp = sum((s >= t) if rule == "code" else (s > t) for s in siou)
        fp = sum((p < t) if rule == "code" else (p <= t) for p in ppv)
        fn = len(siou) - tp
        out.append(Fraction(2 * tp, 2 * tp + fn + fp))
    return float(sum(out) / len(out))


def test_smiyc_thresholds():
    assert SMIYC_THRESHOLDS.tolist() == pytest.approx([0.25 + 0.05 * i for i in range(11)], abs=1e-15)
    assert len(S2M_THRESHOLDS) == 101 and S2M_THRESHOLDS[0] == 0.0 and S2M_THRESHOLDS[-1] == 1.0


def test_label_components_8_connectivity_and_min_size():
    mask, _ = grid(["#...",
                    ".#..",
                    "...#",
                    "...#"])
    lab, n, sizes = label_components(mask)
    assert n == 2  # the diagonal pair touches (8-connectivity); the vertical pair is separate
    assert lab[0, 0] == lab[1, 1] != lab[2, 3] == lab[3, 3]
    assert sorted(sizes[1:].tolist()) == [2, 2]
    lab3, n3, _ = label_components(mask, min_size=3)
    assert n3 == 0 and not lab3.any()


def test_component_gt_split_by_void_and_prediction_over_two_gt():
    # one prediction (9 valid pixels, joined through row 0) over a GT bar cut in two by void
    st = comp(["#####",
               "##v##"],
              [".....",
               "##v##"])
    assert st["gt_size"].tolist() == [2, 2] and st["pred_size"].tolist() == [9]
    # sIoU(A) = |A & P| / (|A| + |P outside GT|) = 2 / (2 + 5): B's pixels are not in the union
    assert st["siou_num"].tolist() == [2, 2] and st["siou_den"].tolist() == [7, 7]
    assert st["ppv_num"].tolist() == [4]  # PPV = 4/9
    acc = ComponentAccumulator()
    pred, v1 = grid(["#####", "##v##"])
    gt, _ = grid([".....", "##v##"])
    acc.add(pred, gt, v1)
    r = acc.result()
    assert r["siou"] == pytest.approx(2 / 7) and r["ppv"] == pytest.approx(4 / 9)
    # t = .25: TP 2 (2/7 >= .25), FP 0 -> F1 1; t = .30 .. .40: TP 0, FN 2, FP 0 -> 0;
    # t >= .45: PPV 4/9 < t -> FP 1 -> 0.  F1* = 1/11
    assert r["f1"] == pytest.approx(1 / 11)
    assert (r["tp_25"], r["fn_25"], r["fp_25"], r["f1_25"]) == (2, 0, 0, 1.0)
    assert (r["tp_50"], r["fn_50"], r["fp_50"], r["f1_50"]) == (0, 2, 1, 0.0)
    assert (r["n_gt"], r["n_pred"]) == (2, 1)


def test_component_prediction_touching_two_gt_components_without_void():
    st = comp(["#####"],
              ["##.##"])
    # each GT (2 px): union 2 + 1 (the middle pixel is the only predicted pixel outside GT)
    assert st["siou_num"].tolist() == [2, 2] and st["siou_den"].tolist() == [3, 3]
    assert st["ppv_num"].tolist() == [4] and st["pred_size"].tolist() == [5]


def test_component_two_predictions_on_one_gt_and_stray_prediction():
    st = comp(["##.#...#"],
              ["######.."])
    # GT 6 px hit by predictions {0,1} and {3}: intersection 3, union 6 (predictions add nothing
    # outside GT); the stray prediction at column 7 does not touch it
    assert st["siou_num"].tolist() == [3] and st["siou_den"].tolist() == [6]
    assert st["ppv_num"].tolist() == [2, 1, 0] and st["pred_size"].tolist() == [2, 1, 1]
    acc = ComponentAccumulator()
    p, _ = grid(["##.#...#"])
    g, _ = grid(["######.."])
    acc.add(p, g)
    assert acc.result()["f1"] == pytest.approx(f1_star([Fraction(1, 2)], [1, 1, 0]))
    # t <= .5: TP 1, FP 1 (the stray one) -> 2/3 (6 thresholds); t > .5: TP 0 FN 1 FP 1 -> 0
    assert acc.result()["f1"] == pytest.approx(6 * (2 / 3) / 11)


def test_component_void_prediction_ignored():
    st = comp(["vv..",
               "..##"],
              ["....",
               "..##"])
    assert st["ppv_num"].tolist() == [2] and st["pred_size"].tolist() == [2]
    assert st["siou_num"].tolist() == [2] and st["siou_den"].tolist() == [2]
    # a prediction that lies only in void is no component at all
    pred, void = np.zeros((3, 3), bool), np.zeros((3, 3), bool)
    pred[0, 0] = void[0, 0] = True
    gt = np.zeros((3, 3), bool)
    gt[2, 2] = True
    st = component_stats(pred, gt, void)
    assert st["pred_size"].size == 0 and st["siou_num"].tolist() == [0] and st["siou_den"].tolist() == [1]


def test_component_empty_cases():
    acc = ComponentAccumulator()
    acc.add(np.zeros((4, 4), bool), np.eye(4, dtype=bool))  # nothing predicted: sIoU 0, F1 0
    r = acc.result()
    assert r["siou"] == 0.0 and r["ppv"] is None and r["f1"] == 0.0 and (r["n_gt"], r["n_pred"]) == (1, 0)
    acc = ComponentAccumulator()
    acc.add(np.eye(4, dtype=bool), np.zeros((4, 4), bool))  # no GT: one FP everywhere
    r = acc.result()
    assert r["siou"] is None and r["ppv"] == 0.0 and r["f1"] == 0.0 and r["fp_50"] == 1
    acc = ComponentAccumulator()
    acc.add(np.zeros((4, 4), bool), np.zeros((4, 4), bool))
    r = acc.result()
    assert r["f1"] is None and r["f1_50"] is None and r["n_gt"] == r["n_pred"] == 0


def test_component_min_sizes():
    # GT: a 1-px and a 4-px component; predictions: a 2-px one on the small GT, a 1-px stray
    pred, _ = grid(["##....",
                    "......",
                    "...##.",
                    "...##.",
                    "#....."])
    gt, _ = grid(["#.....",
                  "......",
                  "...##.",
                  "...##.",
                  "......"])
    st = component_stats(pred, gt)
    assert st["gt_size"].tolist() == [1, 4] and st["pred_size"].tolist() == [2, 4, 1]
    st = component_stats(pred, gt, min_gt_size=2)
    # the 1-px GT becomes void: the first prediction keeps only its pixel outside it (PPV 0)
    assert st["gt_size"].tolist() == [4] and st["pred_size"].tolist() == [1, 4, 1]
    assert st["ppv_num"].tolist() == [0, 4, 0]
    st = component_stats(pred, gt, min_pred_size=2)
    assert st["pred_size"].tolist() == [2, 4] and st["siou_num"].tolist() == [1, 4]
    assert st["siou_den"].tolist() == [2, 4]
    # predicted size is counted before the small GT turns void (as the reference does)
    st = component_stats(pred, gt, min_pred_size=2, min_gt_size=2)
    assert st["pred_size"].tolist() == [1, 4]


def test_component_tie_rules_and_exact_thresholds():
    # sIoU exactly 1/2 and PPV 1: 'code' counts TP at t = .25 .. .50 (6), 'paper' at .25 .. .45 (5)
    p, _ = grid(["#..."])
    g, _ = grid(["##.."])
    for rule, expect in (("code", 6 / 11), ("paper", 5 / 11)):
        acc = ComponentAccumulator(tie_rule=rule)
        acc.add(p, g)
        assert acc.result()["f1"] == pytest.approx(expect)
    # sIoU exactly 3/5: TP at .25 .. .60 (8 thresholds) with exact fractions
    acc = ComponentAccumulator()
    p, _ = grid(["###.."])
    g, _ = grid(["#####"])
    acc.add(p, g)
    assert acc.result()["f1"] == pytest.approx(8 / 11)
    with pytest.raises(ValueError):
        ComponentAccumulator(tie_rule="x")


def brute_component(pred, gt, void, min_pred_size, min_gt_size):
    """The benchmark's procedure written out with per-component loops (scipy labelling)."""
    s8 = np.ones((3, 3), int)
    gl, ng = ndimage.label(gt & ~void, s8)
    pl, npr = ndimage.label(pred & ~void, s8)
    for c in range(1, npr + 1):
        if np.sum(pl == c) < min_pred_size:
            pl[pl == c] = 0
    roi = ~void
    for c in range(1, ng + 1):
        if np.sum(gl == c) < min_gt_size:
            roi &= gl != c
    g, p = gl[roi], pl[roi]
    siou = []
    for i in np.unique(g[g > 0]):
        hit = np.unique(p[(g == i) & (p > 0)])
        inter = np.sum((g == i) & np.isin(p, hit))
        adj = np.sum(~np.isin(g, [0, i]) & np.isin(p, hit))
        union = np.sum(np.isin(p, hit)) + np.sum(g == i) - inter - adj
        siou.append(Fraction(int(inter), int(union)))
    ppv = [Fraction(int(np.sum((p == j) & (g > 0))), int(np.sum(p == j))) for j in np.unique(p[p > 0])]
    return siou, ppv


masks3 = st.tuples(st.integers(3, 9), st.integers(3, 9)).flatmap(lambda hw: st.tuples(
    *[st.lists(st.integers(0, 99), min_size=hw[0] * hw[1], max_size=hw[0] * hw[1]).map(
        lambda v, hw=hw: np.array(v).reshape(hw)) for _ in range(3)]))


@settings(max_examples=150, deadline=None)
@given(masks3, st.integers(0, 4), st.integers(0, 4), st.sampled_from(["code", "paper"]))
def test_component_matches_brute_force(arrs, min_pred, min_gt, rule):
    pred, gt, void = arrs[0] < 45, arrs[1] < 40, arrs[2] < 12
    siou, ppv = brute_component(pred, gt, void, min_pred, min_gt)
    st_ = component_stats(pred, gt, void, min_pred, min_gt)
    assert sorted(Fraction(int(a), int(b)) for a, b in zip(st_["siou_num"], st_["siou_den"])) == sorted(siou)
    assert sorted(Fraction(int(a), int(b)) for a, b in zip(st_["ppv_num"], st_["pred_size"])) == sorted(ppv)
    acc = ComponentAccumulator(min_pred, min_gt, rule)
    acc.add(pred, gt, void)
    r = acc.result()
    if siou or ppv:
        assert r["f1"] == pytest.approx(f1_star(siou, ppv, rule), abs=1e-12)
    if siou:
        assert r["siou"] == pytest.approx(float(np.mean([float(x) for x in siou])), abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.lists(masks3, min_size=1, max_size=3))
def test_component_pools_components_over_images(frames):
    acc = ComponentAccumulator()
    all_s, all_p = [], []
    for a in frames:
        pred, gt, void = a[0] < 45, a[1] < 40, a[2] < 12
        acc.add(pred, gt, void)
        s, p = brute_component(pred, gt, void, 0, 0)
        all_s += s
        all_p += p
    r = acc.result()
    assert (r["n_gt"], r["n_pred"]) == (len(all_s), len(all_p))
    if all_s or all_p:
        assert r["f1"] == pytest.approx(f1_star(all_s, all_p), abs=1e-12)


@settings(max_examples=80, deadline=None)
@given(masks3)
def test_perfect_prediction_gives_one_everywhere(arrs):
    gt, void = arrs[1] < 40, arrs[2] < 12
    gt_v = gt & ~void
    acc = EvalAccumulator()
    inst = label_components(gt_v)[0]
    acc.add(gt, void, pred_mask=gt, s2m_scores=gt.astype(np.float32), gt_instances=inst, pred_instances=inst)
    r = acc.result()
    if gt_v.any():
        c = r["component"]
        assert c["siou"] == 1.0 and c["ppv"] == 1.0 and c["f1"] == 1.0 and c["n_gt"] == c["n_pred"]
        assert r["s2m"]["iou"] == 1.0
        assert r["instance"]["recall"] == 1.0 and r["instance"]["precision"] == 1.0
        assert r["instance"]["mean_best_iou"] == 1.0


# ---------------------------------------------------------------------------- S2M curve

def test_s2m_counts_hand_example():
    scores = np.array([[0.9, 0.5, 0.2],
                       [0.7, 0.0, 1.0]])
    gt = np.array([[1, 1, 0],
                   [0, 0, 0]], bool)
    void = np.array([[0, 0, 0],
                     [0, 0, 1]], bool)  # the 1.0 pixel is void: never a false positive
    inter, union = s2m_image_counts(scores, gt, void, [0.0, 0.5, 0.6, 0.9])
    # t=0: mask {.9,.5,.2,.7} -> I 2, U 4; t=.5: {.9,.7} (strict >) -> I 1, U 3;
    # t=.6: same; t=.9: nothing -> I 0, U 2
    assert inter.tolist() == [2, 1, 1, 0] and union.tolist() == [4, 3, 3, 2]


def test_s2m_curve_hand_example_binary_mask():
    # one image: mask with IoU 1/2 and Dice 2/3 at every t < 1, nothing at t = 1
    acc = S2MCurveAccumulator()
    gt = np.array([[1, 1, 0, 0]], bool)
    acc.add(np.array([[1.0, 0.0, 0.0, 0.0]]), gt)
    r = acc.result()
    assert r["iou"] == 0.5 and r["best_threshold"] == 0.0
    assert r["auiou"] == pytest.approx(0.5 * 0.99 + 0.5 * 0.5 * 0.01)  # trapezoid, last step 0.5 -> 0
    assert r["mean_f1"] == pytest.approx(100 / 101 * 2 / 3)


def test_s2m_mean_over_images_not_pooled_and_empty_union_is_zero():
    acc = S2MCurveAccumulator(thresholds=[0.5])
    gt1 = np.zeros((1, 10), bool)
    gt1[0, :8] = True
    acc.add(np.where(gt1, 1.0, 0.0), gt1)  # IoU 1
    gt2 = np.zeros((1, 10), bool)
    gt2[0, :2] = True
    s2 = np.zeros((1, 10))
    s2[0, 1:3] = 1.0  # I 1, U 3
    acc.add(s2, gt2)
    acc.add(np.zeros((1, 10)), np.zeros((1, 10), bool))  # empty union: IoU 0 and F1 0 (as S2M's code)
    r = acc.result()
    assert r["iou"] == pytest.approx((1 + 1 / 3 + 0) / 3)  # pooled would be 9/11
    assert r["mean_f1"] == pytest.approx((1 + 0.5 + 0) / 3)


def test_s2m_score_range_maps_thresholds():
    acc = S2MCurveAccumulator(score_range=(-10.0, 10.0))
    gt = np.array([[1, 0]], bool)
    acc.add(np.array([[5.0, -5.0]]), gt)  # normalised .75 and .25
    t, miou, _ = acc.curves()
    assert miou[t < 0.25].tolist() == [0.5] * 25 and miou[(t >= 0.25) & (t < 0.75)].min() == 1.0
    assert acc.result()["best_threshold"] == pytest.approx(-5.0)
    with pytest.raises(ValueError):
        S2MCurveAccumulator(score_range=(1.0, 1.0))


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2 ** 31 - 1))
def test_s2m_per_image_iou_f1_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    h, w = rng.integers(2, 12, size=2)
    scores = np.round(rng.random((h, w)), 2)  # ties with the thresholds on purpose
    gt = rng.random((h, w)) < 0.4
    void = rng.random((h, w)) < 0.15
    acc = S2MCurveAccumulator()
    iou, f1 = acc.add(scores, gt, void)
    y = gt[~void]
    for i in (0, 13, 50, 99, 100):
        pred = scores[~void] > S2M_THRESHOLDS[i]
        if (y | pred).any():
            assert iou[i] == pytest.approx(jaccard_score(y, pred, zero_division=0), abs=1e-12)
            assert f1[i] == pytest.approx(f1_score(y, pred, zero_division=0), abs=1e-12)
        else:
            assert iou[i] == 0.0 and f1[i] == 0.0


# ---------------------------------------------------------------------------- instances

def test_instance_hand_example_label_image():
    gt = np.array([[1, 1, 0, 2, 2, 2, 2],
                   [1, 1, 0, 0, 0, 0, 0]])
    pred = np.array([[5, 5, 0, 7, 7, 0, 0],
                     [5, 0, 0, 0, 0, 0, 9]])
    st_ = instance_stats(gt, pred)
    # GT1 vs 5: 3/4; GT2 vs 7: 2/4 (>= .5 matches); 9 matches nothing
    assert st_["best_iou"].tolist() == [0.75, 0.5]
    assert st_["gt_matched"].tolist() == [True, True]
    assert st_["pred_matched"].tolist() == [True, True, False]
    acc = InstanceAccumulator()
    acc.add(gt, pred)
    r = acc.result()
    assert (r["recall"], r["precision"], r["mean_best_iou"]) == (1.0, pytest.approx(2 / 3), 0.625)


def test_instance_overlapping_masks_and_void():
    gt = np.array([[1, 1, 1, 1, 0, 0]])
    void = np.array([[0, 0, 0, 0, 0, 1]], bool)
    m1 = np.array([[1, 1, 1, 0, 0, 0]], bool)  # IoU 3/4
    m2 = np.array([[0, 1, 1, 1, 1, 0]], bool)  # IoU 3/5
    m3 = np.array([[0, 0, 0, 0, 0, 1]], bool)  # only void: ignored
    m4 = np.array([[1, 0, 0, 0, 0, 0]], bool)  # IoU 1/4
    st_ = instance_stats(gt, [m1, m2, m3, m4], void)
    assert st_["best_iou"].tolist() == [0.75]
    assert st_["pred_matched"].tolist() == [True, True, False]
    assert st_["pred_size"].tolist() == [3, 4, 1]
    # a 2-D bool mask is one instance
    assert instance_stats(gt, m1)["best_iou"].tolist() == [0.75]


def test_instance_empty_cases():
    acc = InstanceAccumulator()
    acc.add(np.array([[0, 3, 3]]), [])
    r = acc.result()
    assert r["recall"] == 0.0 and r["precision"] is None and r["mean_best_iou"] == 0.0
    acc = InstanceAccumulator()
    acc.add(np.zeros((2, 2), int), np.ones((2, 2), int))
    r = acc.result()
    assert r["recall"] is None and r["precision"] == 0.0 and r["n_pred"] == 1


@settings(max_examples=80, deadline=None)
@given(masks3)
def test_instance_matches_brute_force(arrs):
    gt = arrs[0] % 4  # ids 0..3
    pred = arrs[1] % 3
    void = arrs[2] < 15
    st_ = instance_stats(gt, pred, void)
    gid = [i for i in range(1, 4) if np.any((gt == i) & ~void)]
    pid = [j for j in range(1, 3) if np.any((pred == j) & ~void)]
    best = []
    for i in gid:
        g = (gt == i) & ~void
        ious = [np.sum(g & (pred == j)) / np.sum(g | ((pred == j) & ~void)) for j in pid]
        best.append(max(ious) if ious else 0.0)
    assert st_["best_iou"].tolist() == pytest.approx(best, abs=1e-12)
    # same answer from a list of masks
    st2 = instance_stats(gt, [pred == j for j in (1, 2)], void)
    assert st2["best_iou"].tolist() == pytest.approx(best, abs=1e-12)


# ---------------------------------------------------------------------------- pixel vs sklearn

@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2 ** 31 - 1))
def test_pixel_metrics_match_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 400))
    scores = rng.integers(0, 12, n).astype(np.float32)  # many ties
    labels = rng.random(n) < rng.uniform(0.05, 0.6)
    if labels.all() or not labels.any():
        labels[0] = not labels[0]
    m = pixel_metrics(scores, labels)
    assert m["auroc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert m["ap"] == pytest.approx(average_precision_score(labels, scores), abs=1e-12)
    prec, rec, thr = precision_recall_curve(labels, scores)
    f1 = np.where(prec + rec > 0, 2 * prec * rec / np.maximum(prec + rec, 1e-300), 0)[:-1]
    assert m["best_f1"] == pytest.approx(f1.max(), abs=1e-12)
    t = m["best_f1_threshold"]
    assert f1_score(labels, scores >= t) == pytest.approx(m["best_f1"], abs=1e-12)


def test_best_f1_threshold_hand_example():
    m = pixel_metrics(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
    # t=.8: P 1, R .5 -> 2/3; t=.35: TP 2 FP 1 -> 4/5
    assert m["best_f1"] == pytest.approx(0.8) and m["best_f1_threshold"] == pytest.approx(0.35)


# ---------------------------------------------------------------------------- everything together

def test_eval_accumulator_keys_and_values():
    gt = np.zeros((6, 8), bool)
    gt[1:3, 1:3] = True  # 4 px
    gt[4:6, 5:8] = True  # 6 px
    void = np.zeros_like(gt)
    void[0, :] = True
    inst = np.zeros(gt.shape, int)
    inst[1:3, 1:3] = 1
    inst[4:6, 5:8] = 2
    pred = np.zeros_like(gt)
    pred[1:3, 1:3] = True
    pred[0, 7] = True  # in void: ignored everywhere
    scores = gt.astype(np.float32) * 0.8 + 0.1
    acc = EvalAccumulator()
    row = acc.add(gt, void, scores=scores, pred_mask=pred, gt_instances=inst)
    assert row["iou"] == pytest.approx(0.4) and row["dice"] == pytest.approx(8 / 14)
    assert (row["n_gt_components"], row["n_pred_components"]) == (2, 1)
    r = acc.result()
    flat = flatten_metrics(r)
    for key in ("n_images", "pixel.auroc", "pixel.ap", "pixel.fpr95", "component.siou", "component.ppv",
                "component.f1", "s2m.iou", "s2m.auiou", "s2m.mean_f1", "instance.recall",
                "instance.precision"):
        assert key in flat, key
    assert flat["n_images"] == 1 and flat["pixel.auroc"] == 1.0 and flat["pixel.n_neg"] == 48 - 8 - 10
    assert flat["component.siou"] == 0.5 and flat["component.ppv"] == 1.0
    assert flat["component.f1"] == pytest.approx(2 / 3)  # TP 1 FN 1 FP 0 at every threshold
    assert flat["s2m.iou"] == pytest.approx(0.4)
    assert flat["instance.recall"] == 0.5 and flat["instance.precision"] == 1.0
    # sections never fed stay None
    r2 = EvalAccumulator().result()
    assert r2 == {"n_images": 0, "pixel": None, "component": None, "s2m": None, "instance": None}
    assert flatten_metrics(r2)["instance"] is None


def test_instance_ids_large_or_negative_and_float_rejected():
    gt = np.array([[2 ** 30, 2 ** 30, 0, -5]])
    pred = np.array([[0, 7, 0, -1]])
    st_ = instance_stats(gt, pred)
    assert st_["gt_ids"].tolist() == [-5, 2 ** 30] and st_["best_iou"].tolist() == [1.0, 0.5]
    with pytest.raises(ValueError, match="integers"):
        instance_stats(gt.astype(float), pred)


def test_s2m_input_errors():
    with pytest.raises(ValueError, match="NaN"):
        s2m_image_counts(np.array([[0.1, np.nan]]), np.array([[1, 0]], bool))
    # NaN in void is fine
    inter, union = s2m_image_counts(np.array([[0.7, np.nan]]), np.array([[1, 0]], bool),
                                    np.array([[0, 1]], bool), [0.5])
    assert (inter.tolist(), union.tolist()) == ([1], [1])
    with pytest.raises(ValueError, match="increasing"):
        s2m_image_counts(np.zeros((1, 2)), np.zeros((1, 2), bool), None, [0.5, 0.2])
    with pytest.raises(ValueError, match="shape"):
        s2m_image_counts(np.zeros((1, 3)), np.zeros((1, 2), bool))


def test_component_and_instances_on_real_labels(shared_data):
    """Real RoadAnomaly / RoadAnomaly21 labels (void 255 in the latter): the vectorised component
    statistics equal the literal procedure with the benchmark's sizes (500 / 100)."""
    import cv2

    ra = sorted((shared_data / "roadanomaly" / "frames").glob("*.labels/labels_instance.png"))[:2]
    cases = []
    for f in ra:
        sem = cv2.imread(str(f.parent / "labels_semantic.png"), cv2.IMREAD_UNCHANGED)
        inst = cv2.imread(str(f), cv2.IMREAD_UNCHANGED)
        cases.append((sem == 2, np.zeros(sem.shape, bool), inst))
    lab = cv2.imread(str(shared_data / "smiyc_roadanomaly21_val" / "labels_masks" / "0.png"), cv2.IMREAD_UNCHANGED)
    cases.append((lab == 1, lab == 255, None))
    for gt, void, inst in cases:
        assert gt.any()
        # a shifted, dilated copy of the GT plus two blobs: touching, partial and stray components
        pred = np.roll(cv2.dilate(gt.astype(np.uint8), np.ones((15, 15), np.uint8)) > 0, 20, axis=1)
        pred[10:40, 10:40] = True
        pred[-60:-20, 600:700] = True
        siou, ppv = brute_component(pred, gt, void, 500, 100)
        st_ = component_stats(pred, gt, void, 500, 100)
        assert sorted(Fraction(int(a), int(b)) for a, b in zip(st_["siou_num"], st_["siou_den"])) == sorted(siou)
        assert sorted(Fraction(int(a), int(b)) for a, b in zip(st_["ppv_num"], st_["pred_size"])) == sorted(ppv)
        if inst is not None:
            r = instance_stats(inst, inst)
            assert r["gt_matched"].all() and r["pred_matched"].all() and r["best_iou"].min() == 1.0
