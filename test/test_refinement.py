"""Objectomaly-style refinement (s2m_ros.segmentation.refinement): vectorised == the published per-pixel rules."""
import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from s2m_ros.segmentation.refinement import (RefinementConfig, boundary_refine, laplacian_edge_fill, oversegment,
                                     refine, segment_average, segment_average_masks)
from s2m_ros.segmentation.segmenter import Segment
from s2m_ros.types import InstanceMask


# ------------------------------------------------------------------ direct loop references

def loop_segment_average(s, labels):
    out = s.astype(np.float32).copy()
    for lab in np.unique(labels):
        if lab < 0:
            continue
        sel = labels == lab
        vals = s[sel][np.isfinite(s[sel])]
        if vals.size:
            out[sel & np.isfinite(s)] = np.float32(np.mean(vals.astype(np.float64)))
    return out


def loop_mbp_fill(s):
    """The published MBP edge rule, pixel by pixel, in place, as in Objectomaly's released code."""
    out = s.astype(np.float32).copy()
    edges = cv2.Laplacian(out, cv2.CV_32F)
    for i in range(1, out.shape[0] - 1):
        for j in range(1, out.shape[1] - 1):
            if edges[i, j] > 0:
                win = out[i - 1:i + 2, j - 1:j + 2][edges[i - 1:i + 2, j - 1:j + 2] == 0]
                if win.size > 0:
                    out[i, j] = np.mean(win)
    return out


def loop_mbp(s):
    return cv2.GaussianBlur(loop_mbp_fill(s), (7, 7), sigmaX=1, sigmaY=1)


def dyadic_map(draw_shape):
    """float32 maps of multiples of 1/8 in [-4, 4]: every Laplacian and small sum is exact."""
    return hnp.arrays(np.int8, draw_shape, elements=st.integers(-32, 32)).map(lambda a: a.astype(np.float32) / 8)


shapes = st.tuples(st.integers(1, 14), st.integers(1, 17))


# ------------------------------------------------------------------ OASC

@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_segment_average_equals_per_segment_loop(data):
    shape = data.draw(shapes)
    labels = data.draw(hnp.arrays(np.int32, shape, elements=st.integers(-1, 6)))
    s = data.draw(hnp.arrays(np.float32, shape, elements=st.floats(-1e3, 1e3, width=32)))
    nan = data.draw(hnp.arrays(np.bool_, shape))
    s[nan] = np.nan
    out = segment_average(s, labels)
    ref = loop_segment_average(s, labels)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(np.isnan(out), np.isnan(ref))
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6)
    # sparse (huge) label values take the compressing path and give the same result
    np.testing.assert_array_equal(segment_average(s, labels.astype(np.int64) * 10 ** 12), out)


def test_segment_average_exact_values():
    s = np.array([[1, 2, 3], [4, np.nan, 6]], np.float32)
    labels = np.array([[0, 0, 1], [0, 1, -1]])
    out = segment_average(s, labels)
    np.testing.assert_array_equal(out, np.array([[7 / 3, 7 / 3, 3], [7 / 3, np.nan, 6]], np.float32))
    with pytest.raises(ValueError):
        segment_average(s, labels[:, :2])
    with pytest.raises(ValueError):
        segment_average(s, labels.astype(float))


def test_segment_average_masks_overlap_rules():
    s = np.arange(36, dtype=np.float32).reshape(6, 6)
    big = Segment(0, (0, 0, 4, 4), np.ones((4, 4), bool))  # mean 10.5
    small = InstanceMask(id=1, roi=(2, 2, 3, 3), mask=np.ones((3, 3), bool), anomaly_score=0.0)  # mean 21
    for masks in ([big, small], [small, big]):
        largest = segment_average_masks(s, masks)
        expected = s.copy()
        expected[2:5, 2:5] = 21.0
        expected[0:4, 0:4] = 10.5  # the larger mask is written last and wins
        np.testing.assert_array_equal(largest, expected)
        smallest = segment_average_masks(s, masks, overlap="smallest")
        expected = s.copy()
        expected[0:4, 0:4] = 10.5
        expected[2:5, 2:5] = 21.0
        np.testing.assert_array_equal(smallest, expected)
    # means come from the original map, not from already averaged pixels; NaN pixels stay NaN
    s2 = s.copy()
    s2[0, 0] = np.nan
    out = segment_average_masks(s2, [big])
    assert np.isnan(out[0, 0]) and out[1, 1] == np.float32(np.nanmean(s2[:4, :4]))
    np.testing.assert_array_equal(segment_average_masks(s, []), s)
    with pytest.raises(ValueError):
        segment_average_masks(s, [big], overlap="max")


def test_segment_average_masks_equals_published_loop_order():
    rng = np.random.default_rng(0)
    s = rng.random((30, 40)).astype(np.float32)
    masks = []
    for i in range(8):
        x, y = rng.integers(0, 30), rng.integers(0, 20)
        w, h = rng.integers(3, 15), rng.integers(3, 12)
        masks.append(Segment(i, (x, y, w, h), rng.random((h, w)) < 0.7))
    # published: ascending area (stable), each mask set to its mean over the ORIGINAL map
    fulls = []
    for m in masks:  # full-frame masks, as SAM's automatic generator gives them (clipped to the map)
        full = np.zeros(s.shape, bool)
        x, y, w, h = m.roi
        part = m.mask[:s.shape[0] - y, :s.shape[1] - x]
        full[y:y + part.shape[0], x:x + part.shape[1]] = part
        fulls.append(full)
    ref = s.copy()
    for full in sorted(fulls, key=lambda f: int(f.sum())):
        ref[full] = np.float32(np.mean(s[full].astype(np.float64)))
    np.testing.assert_array_equal(segment_average_masks(s, masks), ref)


# ------------------------------------------------------------------ MBP

@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_vectorised_mbp_equals_published_loop_exactly_on_dyadic_maps(data):
    shape = data.draw(st.tuples(st.integers(1, 12), st.integers(1, 15)))
    s = data.draw(dyadic_map(shape))
    np.testing.assert_array_equal(laplacian_edge_fill(s), loop_mbp_fill(s))
    np.testing.assert_array_equal(boundary_refine(s), loop_mbp(s))


@pytest.mark.parametrize("seed", range(5))
def test_vectorised_mbp_equals_published_loop_on_random_maps(seed):
    rng = np.random.default_rng(seed)
    s = cv2.GaussianBlur(rng.standard_normal((40, 56)).astype(np.float32), (5, 5), 1.5)
    s[10:20, 10:30] += 3.0  # a plateau with edges
    s[25:30, 40:50] = 1.0  # an exactly flat patch (Laplacian 0 inside)
    np.testing.assert_allclose(laplacian_edge_fill(s), loop_mbp_fill(s), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(boundary_refine(s), loop_mbp(s), rtol=1e-6, atol=1e-6)


def test_mbp_fills_a_pit_from_its_non_edge_neighbours():
    s = np.ones((7, 8), np.float32)
    s[3, 3] = 0.0  # a pit: Laplacian +4 there, -1 on its 4-neighbours, 0 on its diagonals
    s[0, 5] = 0.0  # a pit on the image border: never replaced
    edges = cv2.Laplacian(s, cv2.CV_32F)
    assert edges[3, 3] == 4 and edges[2, 3] == -1 and edges[2, 2] == 0
    fill = laplacian_edge_fill(s)
    expected = s.copy()
    expected[3, 3] = 1.0  # mean of the four diagonal neighbours
    np.testing.assert_array_equal(fill, expected)
    # a peak (negative Laplacian) is left alone by the published rule
    np.testing.assert_array_equal(laplacian_edge_fill(2 - s)[3, 3], 2.0)


def test_constant_map_stays_constant():
    for c in (0.0, 0.3721, -12.5, 1e6):
        s = np.full((20, 30), c, np.float32)
        for out in (boundary_refine(s), refine(s), refine(s, image_bgr=np.zeros((20, 30, 3), np.uint8))):
            np.testing.assert_allclose(out, c, rtol=1e-6, atol=0)


@settings(max_examples=30, deadline=None)
@given(data=st.data(), shift=st.integers(-64, 64), scale=st.sampled_from([0.25, 0.5, 2.0, 4.0]))
def test_mbp_commutes_with_affine_maps(data, shift, scale):
    s = data.draw(dyadic_map(st.tuples(st.integers(3, 12), st.integers(3, 12))))
    b = np.float32(shift / 4)
    base = boundary_refine(s)
    np.testing.assert_allclose(boundary_refine(s + b), base + b, rtol=0, atol=1e-4)
    np.testing.assert_allclose(boundary_refine(s * np.float32(scale)), base * scale, rtol=1e-5, atol=1e-5)


def test_mbp_is_not_symmetric_under_negation():
    # the published rule only replaces pixels with a POSITIVE Laplacian, so it is not odd
    s = np.zeros((9, 9), np.float32)
    s[3:6, 3:6] = 1.0
    assert not np.allclose(laplacian_edge_fill(-s), -laplacian_edge_fill(s))


def test_nan_stays_nan_and_does_not_spread():
    rng = np.random.default_rng(1)
    s = rng.random((30, 40)).astype(np.float32)
    s[5:9, 5:9] = np.nan
    out = boundary_refine(s)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(s))
    fill = laplacian_edge_fill(s)
    np.testing.assert_array_equal(fill, loop_mbp_fill(s))  # the published rule is NaN-safe as written
    # far from the NaN hole the result equals the published blur of the filled map
    ref = cv2.GaussianBlur(np.nan_to_num(fill), (7, 7), sigmaX=1, sigmaY=1)
    np.testing.assert_allclose(out[20:, 20:], ref[20:, 20:], rtol=1e-6)


# ------------------------------------------------------------------ over-segmentation and refine

def two_tone_image(h=60, w=80):
    img = np.zeros((h, w, 3), np.uint8)
    img[:, : w // 2] = (200, 40, 40)
    img[:, w // 2:] = (40, 200, 40)
    return img


def test_oversegment_two_tone_image():
    labels = oversegment(two_tone_image())
    assert labels.dtype == np.int32 and labels.shape == (60, 80)
    # each half is one segment away from the (smoothed) colour boundary
    assert len(np.unique(labels[:, :36])) == 1 and len(np.unique(labels[:, 44:])) == 1
    assert labels[0, 0] != labels[0, -1]
    assert labels.min() == 0 and labels.max() == len(np.unique(labels)) - 1
    big = cv2.resize(two_tone_image(), (1280, 720), interpolation=cv2.INTER_NEAREST)
    labels = oversegment(big)  # runs downscaled, returns full size
    assert labels.shape == (720, 1280)
    assert len(np.unique(labels[:, :600])) == 1 and len(np.unique(labels[:, 680:])) == 1
    np.testing.assert_array_equal(oversegment(big), labels)  # deterministic
    with pytest.raises(ValueError):
        oversegment(np.zeros((10, 10, 4), np.uint8))


def test_refine_paths():
    s = np.zeros((60, 80), np.float32)
    s[10:30, 10:30] = 1.0
    s[12, 12] = 5.0  # one hot pixel inside the object
    img = two_tone_image()
    cfg_oasc_only = RefinementConfig(boundary=False)
    # without masks: OASC over the over-segmentation; the left segment holds the object -> its mean
    labels = oversegment(img)
    out = refine(s, image_bgr=img, config=cfg_oasc_only)
    np.testing.assert_array_equal(out, segment_average(s, labels))
    left = labels == labels[0, 0]
    np.testing.assert_allclose(out[left], np.mean(s[left], dtype=np.float64), rtol=1e-6)
    # segmenter masks take precedence over the over-segmentation
    seg = Segment(0, (10, 10, 20, 20), np.ones((20, 20), bool))
    out = refine(s, image_bgr=img, segments=[seg], config=cfg_oasc_only)
    np.testing.assert_allclose(out[10:30, 10:30], np.mean(s[10:30, 10:30], dtype=np.float64), rtol=1e-6)
    assert np.all(out[40:, :] == 0)  # outside the mask unchanged
    both = refine(s, image_bgr=img, segments=[seg],
                  config=RefinementConfig(boundary=False, oversegment_with_segments=True))
    np.testing.assert_allclose(both[10:30, 10:30], out[10:30, 10:30])
    assert both[50, 5] == pytest.approx(float(s[left].mean()), rel=1e-6)  # background: segment mean
    # full pipeline = boundary step of the OASC result; no OASC input = boundary step alone
    np.testing.assert_array_equal(refine(s, segments=[seg]), boundary_refine(segment_average_masks(s, [seg])))
    np.testing.assert_array_equal(refine(s), boundary_refine(s))
    untouched = refine(s, config=RefinementConfig(oasc=False, boundary=False))
    np.testing.assert_array_equal(untouched, s)
    assert untouched is not s
    with pytest.raises(ValueError):
        refine(s, image_bgr=np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(ValueError):
        RefinementConfig(gaussian_ksize=4)


def test_oversegment_real_frame(shared_data):
    frames = sorted((shared_data / "roadanomaly" / "frames").glob("*.jpg"))
    if not frames:
        pytest.skip("no RoadAnomaly frames in shared data")
    img = cv2.imread(str(frames[0]))
    labels = oversegment(img)
    assert labels.shape == img.shape[:2] and labels.dtype == np.int32
    n = len(np.unique(labels))
    assert 30 <= n <= 1000
    assert labels.min() == 0 and labels.max() == n - 1
