"""GrabCut segmenter (s2m_ros.segmentation.grabcut): box prompts on rendered apron scenes, determinism, edge cases."""
import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s2m_ros.segmentation.grabcut import GrabCutConfig, GrabCutSegmenter
from s2m_ros.segmentation.prompts import Prompt
from s2m_ros.segmentation.segmenter import Segment
from s2m_ros.segmentation.surface import SurfaceScorer
from s2m_ros.sim.still import SMALL_KINDS as KINDS, render_apron

W, H = 1280, 720
BIG = ("chock", "cone", "suitcase", "hose")


def centre_point(mask):
    """The object pixel farthest from its border (what a prompt generator's positive point aims at)."""
    d = cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 3)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(d)), d.shape)
    return int(x), int(y)


def full_mask(seg, shape=(H, W)):
    out = np.zeros(shape, bool)
    x, y, w, h = seg.roi
    out[y:y + h, x:x + w] = seg.mask
    return out


def iou(a, b):
    return np.count_nonzero(a & b) / float(np.count_nonzero(a | b))


def scene(seed, **kwargs):
    img, truth = render_apron(W, H, seed, objects=list(KINDS), **kwargs)
    score = cv2.resize(SurfaceScorer().score(img), (W, H), interpolation=cv2.INTER_LINEAR)
    prompts = [Prompt(box=o.box, point=centre_point(o.mask)) for o in truth.objects]
    return img, truth, score, prompts


@pytest.fixture(scope="module")
def results():
    """IoU and quality per object over seeds 0..5 (default scenes: shadows, paint, joints)."""
    seg = GrabCutSegmenter()
    out = {k: [] for k in KINDS}
    for seed in range(6):
        img, truth, score, prompts = scene(seed)
        got = {s.prompt_index: s for s in seg.segment(img, score, prompts)}
        for i, obj in enumerate(truth.objects):
            s = got.get(i)
            out[obj.kind].append((iou(full_mask(s), obj.mask), s.quality) if s is not None else (0.0, 0.0))
    return out


def test_box_prompts_segment_objects(results):
    """Measured IoU (seeds 0..11): chock >= 0.97, cone >= 0.91 but 0.61 once (seed 9), suitcase >= 0.98,
    hose >= 0.90; the bolt (20-60 pixels) median 0.94 but 0.15-0.5 in three of twelve scenes."""
    for kind in BIG:
        ious = [v for v, _ in results[kind]]
        assert np.median(ious) >= 0.95, (kind, ious)
        assert min(ious) >= 0.75, (kind, ious)
        assert sum(v >= 0.8 for v in ious) >= 5, (kind, ious)
    assert np.median([v for v, _ in results["bolt"]]) >= 0.5


def test_quality_is_high_for_objects_and_low_for_plain_surface(results):
    # measured (seeds 0-5, 2026-12-07): 0.94-1.0, the hose once 0.897 (its ring holds its own contact shadow)
    for kind in BIG:
        assert all(0.85 <= q <= 1.0 for _, q in results[kind]), kind
    assert np.median([q for kind in BIG for _, q in results[kind]]) >= 0.98
    img, truth = render_apron(W, H, 3)  # nothing planted: a box on plain concrete
    score = cv2.resize(SurfaceScorer().score(img), (W, H), interpolation=cv2.INTER_LINEAR)
    qualities = []
    for x in range(100, 1100, 200):
        segs = GrabCutSegmenter().segment(img, score, [Prompt(box=(x, 560, 60, 40), point=(x + 30, 580))])
        qualities += [s.quality for s in segs]
    assert all(0.0 <= q <= 1.0 for q in qualities) and np.median(qualities) < 0.5


def test_deterministic_across_calls_and_instances():
    img, truth, score, prompts = scene(2)
    a = GrabCutSegmenter().segment(img, score, prompts)
    b = GrabCutSegmenter().segment(img, score, prompts)
    cv2.setRNGSeed(12345)  # whatever the global RNG state, the result is the same
    c = GrabCutSegmenter().segment(img, score, prompts)
    assert len(a) == len(b) == len(c) == len(prompts)
    for x, y, z in zip(a, b, c):
        assert x.roi == y.roi == z.roi and x.quality == y.quality == z.quality
        assert np.array_equal(x.mask, y.mask) and np.array_equal(x.mask, z.mask)


def test_degenerate_prompts_are_skipped_and_the_rest_segmented():
    img, truth, score, prompts = scene(0)
    bad = [Prompt(box=(10, 10, 0, 20), point=(10, 10)), Prompt(box=(10, 10, 20, -5), point=(10, 10)),
           Prompt(box=(W + 5, 10, 30, 30), point=(W + 10, 20)), Prompt(box=(-50, -50, 20, 20), point=(-40, -40))]
    segs = GrabCutSegmenter().segment(img, score, bad + prompts[:2])
    assert [s.prompt_index for s in segs] == [4, 5]
    assert GrabCutSegmenter().segment(img, score, []) == []
    # a box partly outside the image is clipped, not skipped
    x, y, w, h = prompts[2].box
    (s,) = GrabCutSegmenter().segment(img, score, [Prompt(box=(x, y, w + 5000, h), point=prompts[2].point)])
    assert s.roi[0] + s.roi[2] <= W


def test_negative_points_are_background():
    img, truth, score, prompts = scene(1, shadows=False)
    k = [o.kind for o in truth.objects].index("suitcase")
    obj, prompt = truth.objects[k], prompts[k]
    (plain,) = GrabCutSegmenter().segment(img, score, [prompt])
    assert iou(full_mask(plain), obj.mask) > 0.9
    # a negative point on the suitcase's left part: that pixel (and its disk) becomes background
    ys, xs = np.nonzero(obj.mask)
    neg = (int(xs.min()) + 3, int(np.median(ys)))
    (cut,) = GrabCutSegmenter().segment(img, score, [Prompt(box=prompt.box, point=prompt.point, negative_points=[neg])])
    assert not full_mask(cut)[neg[1], neg[0]]
    assert full_mask(cut)[prompt.point[1], prompt.point[0]]


def test_segments_are_well_formed_without_scores():
    """All-NaN score map (no evidence): GrabCut from the box alone; quality from colour contrast."""
    img, truth, _, prompts = scene(5, shadows=False)
    nan = np.full((H, W), np.nan, np.float32)
    segs = GrabCutSegmenter().segment(img, nan, prompts)
    assert len(segs) == len(prompts)
    for s in segs:
        assert isinstance(s, Segment) and s.mask.any() and 0.0 <= s.quality <= 1.0
        x, y, w, h = s.roi
        assert 0 <= x and 0 <= y and x + w <= W and y + h <= H and s.mask.shape == (h, w)
    k = [o.kind for o in truth.objects].index("cone")
    assert iou(full_mask(segs[k]), truth.objects[k].mask) > 0.8


def test_input_validation():
    seg = GrabCutSegmenter()
    img = np.zeros((20, 30, 3), np.uint8)
    with pytest.raises(ValueError, match="score_map shape"):
        seg.segment(img, np.zeros((10, 10), np.float32), [])
    with pytest.raises(ValueError, match="uint8"):
        seg.segment(img.astype(np.float32), np.zeros((20, 30), np.float32), [])
    for kwargs, name in ((dict(min_side=4), "min_side"), (dict(max_pixels=100), "max_pixels"),
                         (dict(iterations=0), "iterations"), (dict(score_k=-1), "score_k")):
        with pytest.raises(ValueError, match=name):
            GrabCutSegmenter(GrabCutConfig(**kwargs))


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(-40, 140), st.integers(-40, 100), st.integers(-5, 120), st.integers(-5, 90),
                          st.integers(-20, 140), st.integers(-20, 100)), min_size=1, max_size=4),
       st.integers(0, 1000))
def test_random_prompts_never_crash_and_stay_in_the_image(boxes, seed):
    img, _ = render_apron(128, 96, seed, objects=["cone", "chock"])
    score = cv2.resize(SurfaceScorer().score(img), (128, 96), interpolation=cv2.INTER_LINEAR)
    prompts = [Prompt(box=(x, y, w, h), point=(px, py)) for x, y, w, h, px, py in boxes]
    segs = GrabCutSegmenter().segment(img, score, prompts)
    assert len({s.prompt_index for s in segs}) == len(segs)
    for s in segs:
        x, y, w, h = s.roi
        assert 0 <= x and 0 <= y and x + w <= 128 and y + h <= 96 and s.mask.any()
        assert 0.0 <= s.quality <= 1.0
        bx, by, bw, bh = prompts[s.prompt_index].box
        assert bw > 0 and bh > 0  # degenerate boxes give no segment
