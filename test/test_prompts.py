"""Prompt generation from anomaly score maps (s2m_ros.segmentation.prompts): no global threshold, noise rejected."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s2m_ros.segmentation.prompts import Prompt, PromptConfig, box_iou, generate_prompts, nms

H, W = 240, 320
RECT = (50, 100, 20, 14)  # x, y, w, h


def noise(seed, shape=(H, W)):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def plant(m, box, value):
    x, y, w, h = box
    m[y:y + h, x:x + w] += value
    return m


def inside(point, box):
    x, y, w, h = box
    return x <= point[0] < x + w and y <= point[1] < y + h


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_rectangle_on_noise_gives_one_prompt(seed):
    prompts = generate_prompts(plant(noise(seed), RECT, 5.0))
    assert len(prompts) == 1
    p = prompts[0]
    assert box_iou(p.box, RECT) >= 0.7
    assert inside(p.point, RECT)
    assert p.prominence > 4 and p.stability >= PromptConfig().min_stability
    assert 0.7 * 280 <= p.area <= 1.3 * 280


def test_one_rectangle_on_zero_background_is_exact():
    m = plant(np.zeros((H, W), np.float32), RECT, 5.0)
    (p,) = generate_prompts(m)
    assert p.box == RECT and p.area == 280 and p.peak == 5.0
    assert inside(p.point, (55, 104, 10, 6))  # a central point, not a corner of the plateau


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gaussian_bump_box_matches_half_maximum(seed):
    yy, xx = np.mgrid[0:H, 0:W]
    bump = 8.0 * np.exp(-((xx - 160) ** 2 + (yy - 120) ** 2) / (2 * 8.0 ** 2))
    ys, xs = np.nonzero(bump >= 4.0)
    truth = (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
    (p,) = generate_prompts(noise(seed) + bump)
    assert box_iou(p.box, truth) >= 0.7
    assert np.hypot(p.point[0] - 160, p.point[1] - 120) <= 6


def test_two_separated_blobs_of_very_different_strength():
    m = plant(plant(noise(3), RECT, 25.0), (220, 30, 16, 12), 5.0)
    prompts = generate_prompts(m)
    assert len(prompts) == 2
    strong, weak = prompts
    assert box_iou(strong.box, RECT) >= 0.7 and box_iou(weak.box, (220, 30, 16, 12)) >= 0.7
    assert strong.prominence > weak.prominence
    assert inside(strong.point, RECT) and inside(weak.point, (220, 30, 16, 12))


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_pure_noise_gives_no_prompts(seed):
    assert generate_prompts(noise(seed)) == []


@pytest.mark.parametrize("sigma", [1.5, 4.0])
def test_spatially_correlated_noise_gives_no_prompts(sigma):
    cv2 = pytest.importorskip("cv2")
    for seed in range(4):
        assert generate_prompts(cv2.GaussianBlur(noise(seed), (0, 0), sigma)) == []


def test_constant_all_nan_and_ramps_give_no_prompts():
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    assert generate_prompts(np.full((H, W), 3.5, np.float32)) == []
    assert generate_prompts(np.full((H, W), np.nan, np.float32)) == []
    assert generate_prompts(xx) == []
    assert generate_prompts(0.3 * xx - 0.7 * yy + 100.0) == []
    assert generate_prompts(0.02 * xx + 0.01 * yy + noise(4)) == []
    # even without the plane removal a ramp is not an object
    assert generate_prompts(0.02 * xx + noise(5), PromptConfig(detrend=False)) == []


def test_ramp_does_not_hide_an_object():
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    m = plant(0.03 * xx + noise(6), RECT, 5.0)
    (p,) = generate_prompts(m)
    assert box_iou(p.box, RECT) >= 0.7


@pytest.mark.parametrize("background", ["noise", "zero"])
def test_tiny_3x3_blob_is_found(background):
    m = noise(7) if background == "noise" else np.zeros((H, W), np.float32)
    (p,) = generate_prompts(plant(m, (200, 150, 3, 3), 6.0))
    assert box_iou(p.box, (200, 150, 3, 3)) >= 0.7 and inside(p.point, (200, 150, 3, 3))


@pytest.mark.parametrize("background", ["noise", "zero"])
def test_single_pixel_spike_gives_nothing(background):
    m = noise(8) if background == "noise" else np.zeros((H, W), np.float32)
    m[120, 160] = 1000.0
    assert generate_prompts(m) == []


@settings(max_examples=20, deadline=None)
@given(a=st.floats(0.01, 100.0), b=st.floats(-1000.0, 1000.0), seed=st.integers(0, 3))
def test_scale_and_offset_invariance(a, b, seed):
    m = plant(plant(noise(seed).astype(np.float64), RECT, 6.0), (220, 30, 5, 5), 7.0)
    ref = generate_prompts(m)
    out = generate_prompts(a * m + b)
    assert len(ref) == 2
    assert [p.box for p in out] == [p.box for p in ref]
    assert [p.point for p in out] == [p.point for p in ref]
    np.testing.assert_allclose([p.prominence for p in out], [p.prominence for p in ref], rtol=1e-6)


def test_max_prompts_cap_and_order():
    m = noise(9)
    for k in range(12):
        plant(m, (10 + 25 * k, 20 + 15 * (k % 4), 8, 8), 6.0 + k)
    assert len(generate_prompts(m, PromptConfig(max_prompts=50))) == 12
    prompts = generate_prompts(m, PromptConfig(max_prompts=5))
    assert len(prompts) == 5
    proms = [p.prominence for p in prompts]
    assert proms == sorted(proms, reverse=True)
    assert {p.box[0] for p in prompts} == {10 + 25 * k for k in range(7, 12)}  # the five strongest


def test_box_iou_hand_examples():
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 10, 10), (5, 5, 10, 10)) == pytest.approx(25 / 175)
    assert box_iou((0, 0, 4, 4), (1, 1, 2, 2)) == pytest.approx(4 / 16)
    assert box_iou((0, 0, 10, 10), (10, 0, 5, 5)) == 0.0  # touching edges
    assert box_iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0


def test_nms_drops_lower_prominence_duplicate():
    a = Prompt(box=(0, 0, 10, 10), point=(5, 5), prominence=5.0)
    b = Prompt(box=(1, 1, 10, 10), point=(6, 6), prominence=9.0)
    c = Prompt(box=(50, 50, 10, 10), point=(55, 55), prominence=1.0)
    assert nms([a, b, c], 0.5) == [b, c]
    assert nms([a, b, c], 0.9) == [b, a, c]


def test_nan_pixels_are_background():
    m = plant(noise(10), RECT, 5.0)
    m[:, 200:210] = np.nan
    m[101, 55] = np.nan  # a hole inside the object
    m[5:40, 5:40] = np.inf
    (p,) = generate_prompts(m)
    assert box_iou(p.box, RECT) >= 0.7


def test_negative_points_and_margin():
    m = plant(noise(11), RECT, 5.0)
    (p,) = generate_prompts(m, PromptConfig(negative_points=2, box_margin=0.1))
    x, y, w, h = p.box
    assert w >= 22 and h >= 15
    assert len(p.negative_points) == 2
    for q in p.negative_points:
        assert not inside(q, p.box) and 0 <= q[0] < W and 0 <= q[1] < H
        assert m[q[1], q[0]] < 1.0


@pytest.mark.parametrize("bad", [np.zeros(10), np.zeros((4, 5, 3)), np.zeros((0, 0)), np.zeros((5, 0))])
def test_wrong_input_raises(bad):
    with pytest.raises(ValueError, match="score_map"):
        generate_prompts(bad)


def test_integer_map_accepted():
    m = np.zeros((60, 80), np.uint8)
    m[20:25, 30:36] = 200
    (p,) = generate_prompts(m)
    assert p.box == (30, 20, 6, 5) and p.peak == 200.0


# --- local (block) branch: maps whose global spread is class structure, not noise -----------------------
BANDS_BLOB = (150, 190, 16, 12)


def banded(seed, amp=5.0):
    """Noise on three "classes" 20 and 12 sigma apart (as max-logit of sky / vegetation / road), and a
    5-sigma blob on the "road": the global MAD is about 10 sigma, so globally the blob is 0.5 "sigma"."""
    m = noise(seed).astype(np.float64)
    m[:80] += 20.0
    m[80:150] += 12.0
    return plant(m, BANDS_BLOB, amp)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_blob_on_class_structured_map_is_found_only_by_the_local_branch(seed):
    m = banded(seed)
    assert generate_prompts(m, PromptConfig(local_grid=0)) == []
    prompts = generate_prompts(m)
    best = max(prompts, key=lambda p: box_iou(p.box, BANDS_BLOB))
    assert box_iou(best.box, BANDS_BLOB) >= 0.9 and inside(best.point, BANDS_BLOB)
    assert best.prominence > 3
    assert len(prompts) <= 4  # the rest lie on the band edges (bilinear background; see the docstring)


@settings(max_examples=10, deadline=None)
@given(st.floats(1e-3, 1e3), st.floats(-1e3, 1e3), st.integers(0, 3))
def test_local_branch_is_invariant_to_positive_affine_maps(a, b, seed):
    m = banded(seed)
    ref = generate_prompts(m)
    got = generate_prompts(a * m + b)
    assert [(p.box, p.point) for p in got] == [(p.box, p.point) for p in ref]


def test_blocks_without_valid_pixels_are_handled_quietly():
    import warnings
    m = banded(0)
    m[:, :160] = np.nan  # whole blocks of the local grid are invalid
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prompts = generate_prompts(m)
    assert any(box_iou(p.box, (160, 190, 6, 12)) >= 0.9 for p in prompts)
    assert all(p.box[0] >= 160 for p in prompts)


@pytest.mark.parametrize("grid", [4, 6, 8])
def test_local_branch_adds_no_prompt_on_correlated_noise_or_large_blobs(grid):
    cv2 = pytest.importorskip("cv2")
    cfg = PromptConfig(local_grid=grid)
    for seed in range(3):
        assert generate_prompts(cv2.GaussianBlur(noise(seed), (0, 0), 4.0), cfg) == []
    # an object larger than a block: the global branch finds it whole, the local one adds nothing
    big = (60, 50, 140, 110)
    (p,) = generate_prompts(plant(noise(7), big, 5.0), cfg)
    assert box_iou(p.box, big) >= 0.9
