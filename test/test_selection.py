"""Mask selection / merging and the composed anomaly map (s2m_ros.segmentation.selection)."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s2m_ros.segmentation.prompts import Prompt
from s2m_ros.segmentation.segmenter import Segment
from s2m_ros.segmentation.selection import (REASONS, Decision, SelectionConfig, _auc, composed_anomaly_map,
                                    select_masks)
from s2m_ros.types import InstanceMask

H, W = 120, 160
BLOB = (40, 30, 30, 20)  # x, y, w, h
BLOB2 = (110, 70, 24, 18)


def noise(seed=0):
    return np.random.default_rng(seed).standard_normal((H, W)).astype(np.float32)


def plant(m, box, value):
    x, y, w, h = box
    m[y:y + h, x:x + w] += value
    return m


def rect_segment(i, box, quality=0.9):
    x, y, w, h = box
    return Segment(prompt_index=i, roi=box, mask=np.ones((h, w), bool), quality=quality)


def reasons(report):
    return {d.prompt_index: d.reason for d in report}


def box_mean(m, box):
    x, y, w, h = box
    return float(np.mean(m[y:y + h, x:x + w], dtype=np.float64))


def test_blob_kept_flat_background_rejected_low_contrast():
    m = plant(noise(0), BLOB, 8.0)
    segs = [rect_segment(0, BLOB), rect_segment(1, (100, 80, 30, 20))]
    prompts = [Prompt(box=(38, 28, 34, 24), point=(55, 40)), Prompt(box=(99, 79, 32, 22), point=(115, 90))]
    masks, report = select_masks(segs, m, prompts=prompts)
    assert reasons(report) == {0: "kept", 1: "low_contrast"}
    assert len(masks) == 1
    k = masks[0]
    assert k.id == 1 and k.roi == BLOB and k.mask.all() and k.prompt_box == (38, 28, 34, 24)
    assert k.anomaly_score == pytest.approx(box_mean(m, BLOB), rel=1e-6)
    assert k.quality == pytest.approx(0.9)
    assert 6.0 < k.contrast < 10.0  # about 8 sigma of unit noise
    rejected = report[1]
    assert isinstance(rejected, Decision) and abs(rejected.values["contrast"]) < 0.5
    assert abs(rejected.values["auc"] - 0.5) < 0.1 and report[0].values["auc"] > 0.99
    assert report[0].values["contrast"] == k.contrast
    # the sigma statistic takes the same decisions here
    masks_sigma, report_sigma = select_masks(segs, m, SelectionConfig(statistic="sigma"), prompts=prompts)
    assert reasons(report_sigma) == {0: "kept", 1: "low_contrast"} and masks_sigma[0].roi == BLOB


def test_exact_blob_on_zero_background_has_infinite_contrast():
    m = plant(np.zeros((H, W), np.float32), BLOB, 2.0)
    masks, report = select_masks([rect_segment(3, BLOB)], m)
    assert reasons(report) == {3: "kept"}
    assert masks[0].contrast == math.inf and masks[0].anomaly_score == 2.0 and report[0].values["auc"] == 1.0


@pytest.mark.parametrize("statistic", ["auc", "sigma"])
def test_flat_map_gives_no_contrast(statistic):
    m = np.full((H, W), 0.25, np.float32)
    masks, report = select_masks([rect_segment(0, BLOB)], m, SelectionConfig(statistic=statistic))
    assert masks == [] and report[0].reason == "low_contrast"
    assert report[0].values["contrast"] == 0.0 and report[0].values["auc"] == 0.5


def test_statistics_can_disagree():
    # every inside pixel (10.5) is above every ring pixel (uniform 0..10): AUC 1, but only
    # (10.5 - 5) / (1.4826 * 2.5) = 1.48 robust ring sigmas
    rng = np.random.default_rng(0)
    m = rng.uniform(0.0, 10.0, (H, W)).astype(np.float32)
    x, y, w, h = BLOB
    m[y:y + h, x:x + w] = 10.5
    _, report = select_masks([rect_segment(0, BLOB)], m)
    assert report[0].reason == "kept" and report[0].values["auc"] == 1.0
    assert report[0].values["contrast"] == pytest.approx(1.48, abs=0.1)
    _, report = select_masks([rect_segment(0, BLOB)], m, SelectionConfig(statistic="sigma"))
    assert report[0].reason == "low_contrast"
    _, report = select_masks([rect_segment(0, BLOB)], m, SelectionConfig(statistic="sigma", min_contrast=1.4))
    assert report[0].reason == "kept"
    # "both": AUC passes, sigma does not -> rejected; lower the sigma bar -> kept
    _, report = select_masks([rect_segment(0, BLOB)], m, SelectionConfig(statistic="both"))
    assert report[0].reason == "low_contrast"
    _, report = select_masks([rect_segment(0, BLOB)], m, SelectionConfig(statistic="both", min_contrast=1.4))
    assert report[0].reason == "kept"
    _, report = select_masks([rect_segment(0, BLOB)], m, SelectionConfig(statistic="both", min_contrast=1.4,
                                                                          min_auc=1.0))
    assert report[0].reason == "kept"  # AUC is exactly 1.0 >= 1.0


@settings(max_examples=50, deadline=None)
@given(inside=st.lists(st.integers(-5, 5), min_size=1, max_size=30),
       ring=st.lists(st.integers(-5, 5), min_size=1, max_size=30))
def test_auc_equals_pairwise_count(inside, ring):
    a, b = np.array(inside, np.float32), np.array(ring, np.float32)
    brute = sum((u > v) + 0.5 * (u == v) for u in inside for v in ring) / (len(inside) * len(ring))
    assert _auc(np.sort(a), np.sort(b)) == pytest.approx(brute, abs=1e-12)  # takes sorted inputs


def test_mask_covering_80_percent_is_too_large():
    m = plant(noise(1), BLOB, 8.0)
    big = (0, 0, W, int(0.8 * H))
    masks, report = select_masks([rect_segment(0, big), rect_segment(1, BLOB)], m)
    assert reasons(report) == {0: "too_large", 1: "kept"}
    assert report[0].values["area_fraction"] == pytest.approx(0.8)
    assert [k.id for k in masks] == [1]


def test_too_large_relative_to_scored_area():
    # 25 % of the image (below 0.3) but 50 % of the scored pixels
    m = plant(noise(2), BLOB, 8.0)
    m[:, W // 2:] = np.nan
    seg = rect_segment(0, (0, 0, W // 2, H // 2))
    _, report = select_masks([seg], m)
    assert report[0].reason == "too_large" and report[0].values["valid_fraction"] == pytest.approx(0.5)


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_part_of_the_same_object_is_a_duplicate(order):
    m = plant(noise(3), BLOB, 8.0)
    x, y, w, h = BLOB
    whole = rect_segment(0, BLOB)
    part = rect_segment(1, (x, y, w // 2, h))  # IoU 0.5 exactly, fully contained
    segs = [[whole, part][i] for i in order]
    masks, report = select_masks(segs, m)
    assert reasons(report) == {0: "kept", 1: "duplicate"}
    dup = [d for d in report if d.prompt_index == 1][0]
    assert dup.values["by"] == 0 and dup.values["containment"] == 1.0 and dup.values["iou"] == pytest.approx(0.5)
    assert len(masks) == 1 and masks[0].roi == BLOB


def test_shifted_mask_of_the_same_object_loses_to_the_better_supported_one():
    m = plant(noise(4), BLOB, 8.0)
    x, y, w, h = BLOB
    shifted = rect_segment(0, (x + 4, y, w, h), quality=0.99)  # IoU 520 / 680
    exact = rect_segment(1, BLOB, quality=0.6)
    masks, report = select_masks([shifted, exact], m)
    assert reasons(report) == {0: "duplicate", 1: "kept"}
    assert report[0].values["iou"] == pytest.approx(520 / 680)
    assert report[1].values["contrast"] > report[0].values["contrast"]
    assert masks[0].roi == BLOB


def test_disjoint_masks_both_kept_ids_by_support():
    m = plant(plant(noise(5), BLOB, 4.0), BLOB2, 12.0)
    masks, report = select_masks([rect_segment(0, BLOB), rect_segment(1, BLOB2)], m)
    assert reasons(report) == {0: "kept", 1: "kept"}
    assert [k.id for k in masks] == [1, 2]
    assert [k.roi for k in masks] == [BLOB2, BLOB]  # the stronger blob first
    assert masks[0].contrast > masks[1].contrast


def test_nan_inside_and_around():
    m = plant(noise(6), BLOB, 8.0)
    x, y, w, h = BLOB
    part_nan = m.copy()
    part_nan[y:y + 6, x:x + w] = np.nan  # 30 % of the mask unscored: still kept, NaN-free mean
    masks, _ = select_masks([rect_segment(0, BLOB)], part_nan)
    assert masks[0].anomaly_score == pytest.approx(float(np.nanmean(part_nan[y:y + h, x:x + w])), rel=1e-6)
    all_nan = m.copy()
    all_nan[y:y + h, x:x + w] = np.nan
    _, report = select_masks([rect_segment(0, BLOB)], all_nan)
    assert report[0].reason == "unscored"
    isolated = m.copy()  # the mask's surroundings (beyond any ring width) are unscored
    isolated[max(y - 30, 0):y + h + 30, max(x - 30, 0):x + w + 30] = np.nan
    isolated[y:y + h, x:x + w] = 5.0
    _, report = select_masks([rect_segment(0, BLOB)], isolated)
    assert report[0].reason == "no_ring" and report[0].values["ring_valid"] == 0


def test_rule_reasons_and_clipping():
    m = plant(noise(7), BLOB, 8.0)
    segs = [
        Segment(0, (W + 5, 0, 10, 10), np.ones((10, 10), bool), 0.9),  # entirely outside
        Segment(1, (5, 5, 3, 3), np.ones((3, 3), bool), 0.9),  # 9 px
        rect_segment(2, BLOB, quality=0.2),
        rect_segment(3, BLOB, quality=float("nan")),  # no quality (GrabCut): passes
    ]
    masks, report = select_masks(segs, m)
    assert [d.reason for d in report] == ["empty", "too_small", "low_quality", "kept"]
    assert all(d.reason in REASONS for d in report)
    assert math.isnan(masks[0].quality)
    # a mask hanging over the image border is clipped to its part inside, with a tight roi
    x = BLOB[0]
    hanging = Segment(0, (x, -5, 30, 25), np.ones((25, 30), bool), 0.9)
    pl = plant(np.zeros((H, W), np.float32), (x, 0, 30, 20), 3.0)
    masks, report = select_masks([hanging], pl)
    assert report[0].reason == "kept" and masks[0].roi == (x, 0, 30, 20)


def test_empty_inputs_and_bad_maps():
    assert select_masks([], noise(0)) == ([], [])
    with pytest.raises(ValueError):
        select_masks([], np.zeros((3, 4, 2), np.float32))
    with pytest.raises(ValueError):
        SelectionConfig(max_area_fraction=0.0)
    with pytest.raises(ValueError, match="statistic"):
        SelectionConfig(statistic="mean")


def test_max_masks_limit():
    m = noise(8)
    boxes = [(10 + 35 * i, 10, 20, 20) for i in range(4)]
    for i, b in enumerate(boxes):
        plant(m, b, 5.0 + i)
    masks, report = select_masks([rect_segment(i, b) for i, b in enumerate(boxes)], m,
                                 SelectionConfig(max_masks=2))
    assert [d.reason for d in report] == ["too_many", "too_many", "kept", "kept"]
    assert [k.roi for k in masks] == [boxes[3], boxes[2]]


def _scene(seed):
    m = plant(plant(noise(seed), BLOB, 6.0), BLOB2, 1.0)
    segs = [rect_segment(0, BLOB), rect_segment(1, BLOB2), rect_segment(2, (90, 10, 20, 20)),
            rect_segment(3, (BLOB[0] + 3, BLOB[1], 30, 20))]
    return m, segs


@settings(max_examples=25, deadline=None)
@given(a=st.floats(0.01, 100.0), b=st.floats(-100.0, 100.0), seed=st.integers(0, 10),
       statistic=st.sampled_from(["auc", "sigma"]))
def test_decisions_invariant_to_affine_rescaling(a, b, seed, statistic):
    m, segs = _scene(seed)
    cfg = SelectionConfig(statistic=statistic)
    m1, r1 = select_masks(segs, m, cfg)
    m2, r2 = select_masks(segs, (a * m.astype(np.float64) + b).astype(np.float32), cfg)
    assert [d.reason for d in r1] == [d.reason for d in r2]
    assert [k.roi for k in m1] == [k.roi for k in m2]
    for k1, k2, d1, d2 in zip(m1, m2, [d for d in r1 if d.reason == "kept"], [d for d in r2 if d.reason == "kept"]):
        assert k2.contrast == pytest.approx(k1.contrast, rel=1e-3, abs=1e-3)
        assert d2.values["auc"] == pytest.approx(d1.values["auc"], abs=1e-3)
        assert k2.anomaly_score == pytest.approx(a * k1.anomaly_score + b, rel=1e-4, abs=1e-4 * (a + abs(b)))


@pytest.mark.parametrize("seed", [0, 1])
def test_auc_decisions_invariant_to_monotone_transforms(seed):
    m, segs = _scene(seed)
    _, r1 = select_masks(segs, m)
    for f in (np.exp, lambda v: v ** 3, lambda v: 1.0 / (1.0 + np.exp(-v))):
        _, r2 = select_masks(segs, f(m.astype(np.float64)).astype(np.float32))
        assert [d.reason for d in r1] == [d.reason for d in r2]
        assert [d.values.get("auc") for d in r1] == pytest.approx([d.values.get("auc") for d in r2], abs=1e-3)


# ---------------------------------------------------------------- composed map

def _im(id, box, score, mask=None):
    x, y, w, h = box
    return InstanceMask(id=id, roi=box, mask=np.ones((h, w), bool) if mask is None else mask, anomaly_score=score)


def test_composed_map_s2m_values_exact():
    a = _im(1, (1, 1, 3, 2), 2.5)
    tri = np.array([[1, 0, 0], [1, 1, 0], [1, 1, 1]], bool)
    b = _im(2, (2, 2, 3, 3), 1.0, tri)
    c = _im(3, (0, 0, 2, 2), float("nan"))  # ignored
    out = composed_anomaly_map([b, a, c], shape=(6, 6))
    expected = np.zeros((6, 6), np.float32)
    expected[3:5, 2:5][tri[1:, :]] = 1.0
    expected[2, 2] = 1.0
    expected[1:3, 1:4] = 2.5  # higher score wins on the overlap pixel (2, 2)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(composed_anomaly_map([a, b], shape=(6, 6)), expected)  # order-free
    bg = composed_anomaly_map([a], shape=(6, 6), background=-np.inf)
    assert np.isneginf(bg).sum() == 30 and (bg == 2.5).sum() == 6


def test_composed_map_keep_mode_and_clipping():
    s = np.arange(20, dtype=np.float32).reshape(4, 5)
    s[0, 0] = np.nan
    a = _im(1, (3, 2, 4, 4), 100.0)  # hangs over the right/bottom border
    out = composed_anomaly_map([a], s, mode="keep")
    expected = s.copy()
    expected[2:4, 3:5] = 100.0
    np.testing.assert_array_equal(out, expected)
    assert np.isnan(s[0, 0])  # input untouched
    np.testing.assert_array_equal(composed_anomaly_map([], s, mode="keep"), s)
    np.testing.assert_array_equal(composed_anomaly_map([], s), np.zeros((4, 5), np.float32))
    with pytest.raises(ValueError):
        composed_anomaly_map([a])
    with pytest.raises(ValueError):
        composed_anomaly_map([a], s, mode="other")


def test_selection_then_composed_map_end_to_end():
    m = plant(plant(noise(9), BLOB, 8.0), BLOB2, 5.0)
    masks, _ = select_masks([rect_segment(0, BLOB), rect_segment(1, BLOB2), rect_segment(2, (100, 5, 20, 20))], m)
    out = composed_anomaly_map(masks, m)
    x, y, w, h = BLOB
    x2, y2, w2, h2 = BLOB2
    assert np.all(out[y:y + h, x:x + w] == np.float32(box_mean(m, BLOB)))
    assert np.all(out[y2:y2 + h2, x2:x2 + w2] == np.float32(box_mean(m, BLOB2)))
    assert np.count_nonzero(out) == w * h + w2 * h2


def test_auc_quantile_subsampling_is_close():
    rng = np.random.default_rng(3)
    a = np.sort(rng.standard_normal(30000).astype(np.float32) + 0.7)
    b = np.sort(rng.standard_normal(25000).astype(np.float32))
    exact = _auc(a, b, max_samples=10 ** 6)
    assert abs(_auc(a, b) - exact) < 1e-3
    assert abs(_auc(a, b, max_samples=256) - exact) < 1e-2


# ------------------------------------------------------------------ band merge


def _rect(id, x, y, w, h, score=5.0, prompt=None):
    from s2m_ros.types import InstanceMask

    return InstanceMask(id=id, roi=(x, y, w, h), mask=np.ones((h, w), bool), anomaly_score=score,
                        contrast=float(id), quality=float("nan"), prompt_box=prompt or (x, y, w, h))


def test_band_merge_joins_the_parts_of_a_collared_cone_exactly():
    from s2m_ros.segmentation.selection import merge_bands

    top = _rect(1, 12, 10, 6, 8, score=6.0)  # columns 12..17, rows 10..17
    bottom = _rect(2, 10, 21, 10, 9, score=3.0)  # columns 10..19, rows 21..29: gap rows 18..20
    other = _rect(3, 40, 12, 5, 5)
    out = merge_bands([other, bottom, top])
    assert [m.id for m in out] == [1, 2]
    cone = out[1] if out[1].roi[0] == 10 else out[0]
    assert cone.roi == (10, 10, 10, 20)
    full = cone.full_mask(60, 40)
    # the band: edges interpolated from 12..17 (top part) to 10..19 (bottom part) over the 3 gap rows
    # (halves rounded up)
    assert [tuple(np.flatnonzero(full[r])[[0, -1]]) for r in (18, 19, 20)] == [(12, 18), (11, 18), (11, 19)]
    assert full[10:18, 12:18].all() and full[21:30, 10:20].all() and not full[10:18, 10:12].any()
    assert cone.anomaly_score == pytest.approx((6.0 * 48 + 3.0 * 90) / 138)
    assert cone.contrast == 2.0 and cone.prompt_box == (10, 10, 10, 20)


def test_band_merge_leaves_separate_objects_alone():
    from s2m_ros.segmentation.selection import SelectionConfig, merge_bands

    top = _rect(1, 12, 10, 6, 8)
    cases = [
        [top, _rect(2, 30, 21, 10, 9)],  # not below it
        [top, _rect(2, 10, 30, 10, 9)],  # gap 12 rows > 0.5 x 8
        [_rect(1, 5, 10, 20, 8), _rect(2, 10, 21, 10, 9)],  # the upper part is wider than the lower's top
        [top, _rect(2, 12, 14, 6, 8)],  # overlapping rows: not one above the other
    ]
    for masks in cases:
        assert [m.roi for m in merge_bands(masks)] == [m.roi for m in masks]
    off = SelectionConfig(merge_bands=False)
    masks = [top, _rect(2, 10, 21, 10, 9)]
    assert len(merge_bands(masks, off)) == 2 and len(merge_bands(masks)) == 1
    # a barrier with two stripes: three parts, one object
    assert [m.roi for m in merge_bands([_rect(1, 10, 0, 10, 6), _rect(2, 10, 8, 10, 6), _rect(3, 10, 16, 10, 6)])] \
        == [(10, 0, 10, 22)]
    for bad in (dict(merge_max_gap=-1.0), dict(merge_min_overlap=0.0), dict(merge_bands="yes")):
        with pytest.raises(ValueError):
            SelectionConfig(**bad)
