"""Drivable-surface appearance scorer (s2m_ros.segmentation.surface) on rendered apron scenes.

Scores are compared at image resolution (the working-resolution map bilinearly upscaled, as the
pipeline does). The bolt (a few pixels) is below what the default working resolution (480 px long
side) resolves, so its claims are made at full resolution (``max_side=1280``) and, more weakly, at
the default; every other kind must stand out at the default.
"""
import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s2m_ros.segmentation.prompts import generate_prompts
from s2m_ros.segmentation.surface import SurfaceConfig, SurfaceScorer
from s2m_ros.sim.still import SMALL_KINDS as KINDS, ObjectSpec, render_apron

SEEDS = range(6)
# The still views' camera is level with its horizon at 0.3 of the height: on a vehicle the mounting is
# known, so the horizon is configured (surface.horizon) rather than estimated.
MOUNTED = SurfaceConfig(horizon=0.3)
BIG = ("chock", "cone", "suitcase")
# thin: a 7 cm hose lying 10-20 m ahead is 1-2 working pixels wide, so its rim mixes with the surface
THIN = ("hose",)
W, H = 1280, 720


def auroc(pos, neg):
    """P(pos > neg) + 0.5 P(tie), from ranks."""
    v = np.concatenate([pos, neg]).astype(np.float64)
    order = np.argsort(v, kind="mergesort")
    ranks = np.empty(v.size)
    ranks[order] = np.arange(1, v.size + 1)
    sv = v[order]
    starts = np.flatnonzero(np.r_[True, sv[1:] != sv[:-1]])
    ends = np.r_[starts[1:], sv.size]
    ranks[order] = np.repeat(0.5 * (starts + ends + 1), ends - starts)
    return (ranks[:pos.size].sum() - pos.size * (pos.size + 1) / 2.0) / (pos.size * neg.size)


def upscaled(score):
    """Working-resolution map at image size; NaN (not scored) as the lowest score."""
    s = cv2.resize(score, (W, H), interpolation=cv2.INTER_LINEAR)
    return np.where(np.isfinite(s), s, np.float32(-1.0))


@pytest.fixture(scope="module")
def scenes():
    """(image, truth, score at image size) for one object of each kind per seed."""
    scorer = SurfaceScorer(MOUNTED)
    out = []
    for seed in SEEDS:
        img, truth = render_apron(W, H, seed, objects=list(KINDS))
        out.append((img, truth, upscaled(scorer.score(img))))
    return out


def test_every_object_kind_stands_far_above_the_surface(scenes):
    for _, truth, s in scenes:
        surface = s[truth.surface()]
        p99 = np.percentile(surface, 99)
        for obj in truth.objects:
            if obj.kind in BIG:
                assert auroc(s[obj.mask], surface[::7]) > 0.98, obj.kind
                assert np.median(s[obj.mask]) > p99, obj.kind
            if obj.kind in THIN:
                assert auroc(s[obj.mask], surface[::7]) > 0.95, obj.kind
                assert np.median(s[obj.mask]) > p99, obj.kind
    # the bolt at the default resolution: above the surface, but not cleanly separated
    bolts = [auroc(s[o.mask], s[t.surface()][::7]) for _, t, s in scenes for o in t.objects if o.kind == "bolt"]
    assert np.median(bolts) > 0.8


def test_bolts_a_few_pixels_wide_at_full_resolution():
    scorer = SurfaceScorer(SurfaceConfig(max_side=W, horizon=0.3))
    for seed in range(3):
        img, truth = render_apron(W, H, seed, objects=[ObjectSpec("bolt", z=7.0), ObjectSpec("bolt", z=9.0)])
        s = upscaled(scorer.score(img))
        for obj in truth.objects:
            assert obj.area <= 120  # a few pixels: a bolt of at most 10 cm seen from 7 m is at most 14 x 8 pixels
            assert auroc(s[obj.mask], s[truth.surface()][::7]) > 0.93


def test_shadows_painted_lines_and_joints_score_below_objects(scenes):
    for _, truth, s in scenes:
        # the score map is 2.7x coarser than the image: leave a 4-pixel halo around objects out
        near = cv2.dilate(truth.object_union().astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
        medians = [np.median(s[o.mask]) for o in truth.objects if o.kind in BIG]
        yellow = truth.markings & ~truth.stop_bar  # paint that crosses the sampling region
        for nuisance in (truth.shadow, yellow, truth.joints):
            v = s[nuisance & ~near]
            if v.size:  # (one-pixel mixes at the horizon aside: 99.9th percentile, not the maximum)
                assert np.percentile(v, 99) < min(medians)
                assert np.percentile(v, 99.9) < np.median(medians)


def test_empty_scenes_give_few_weak_prompts_and_objects_strong_ones(scenes):
    """The prompt generator has no threshold: it reports the most structured surface elements of an
    empty scene (far slab joints, the ends of markings near the horizon, shadow corners) as weak
    prompts, which selection and fusion then weigh. Measured on seeds 0..5 (2026-12-07): 4, 10, 9, 10,
    5, 9 prompts, prominence median 8.8, 95th percentile 25, maximum 48 (one 3 x 2 pixel mix where a
    shadow edge crosses the taxi line); prompts on the planted objects: 10-85, median 41."""
    scorer = SurfaceScorer(MOUNTED)
    empty = []
    for seed in SEEDS:
        img, _ = render_apron(W, H, seed)
        empty.extend(p.prominence for p in generate_prompts(scorer.score(img)))
    assert len(empty) <= 10 * len(SEEDS)
    found = []
    for img, truth, _ in scenes:
        score = scorer.score(img)
        prompts = generate_prompts(score)
        sh, sw = score.shape
        for obj in truth.objects:
            small = cv2.resize(obj.mask.astype(np.float32), (sw, sh), interpolation=cv2.INTER_AREA) > 0.2
            hits = [p.prominence for p in prompts if small[p.point[1], p.point[0]]]
            if obj.kind in BIG and hits:
                found.append(max(hits))
    assert np.percentile(empty, 95) < np.median(found)
    assert np.median(empty) < 0.5 * min(found)


def test_end_to_end_prompts_cover_every_large_object(scenes):
    """surface score -> generate_prompts -> one prompt box overlapping each planted object."""
    scorer = SurfaceScorer(MOUNTED)
    recall = {k: [] for k in KINDS}
    for img, truth, _ in scenes:
        score = scorer.score(img)
        sh, sw = score.shape
        prompts = generate_prompts(score)
        for obj in truth.objects:
            small = cv2.resize(obj.mask.astype(np.float32), (sw, sh), interpolation=cv2.INTER_AREA) > 0.2
            recall[obj.kind].append(any(small[p.box[1]:p.box[1] + p.box[3], p.box[0]:p.box[0] + p.box[2]].any()
                                        for p in prompts))
    for kind in BIG:
        assert np.mean(recall[kind]) >= 5 / 6.0, (kind, recall[kind])


def test_small_objects_inside_the_sampling_region_stay_anomalous():
    """A cone and a chock 4.6-5 m ahead lie in the sampling region: their colours form rare, compact
    clusters, which the surface model drops (each covers about 1-2 % of the region). An object
    covering more than ``min_material_weight`` (3 %) of the region would become surface."""
    for seed in range(4):
        img, truth = render_apron(W, H, seed, objects=[ObjectSpec("cone", x=-1.0, z=5.0),
                                                       ObjectSpec("chock", x=1.2, z=4.6)])
        scorer = SurfaceScorer(MOUNTED)
        region = cv2.resize(scorer.sample_mask(480, 270).astype(np.uint8), (W, H),
                            interpolation=cv2.INTER_NEAREST).astype(bool)
        s = upscaled(scorer.score(img))
        for obj in truth.objects:
            assert (obj.mask & region).sum() > 0.5 * obj.area  # mostly inside the sampling region
            assert auroc(s[obj.mask], s[truth.surface()][::7]) > 0.93, (seed, obj.kind)


def test_a_sampling_region_mostly_in_a_cast_shadow_keeps_the_sunlit_apron_as_surface():
    """A building's shadow covers most of the region in front of the vehicle: the surface model is
    fitted on shadowed concrete, yet the sunlit concrete beyond is the same material in more light
    (brighter, less blue), so it stays surface and scored, and the objects on it stand out. (Before the
    materials carried their own light, the sunlit apron was scored like an object and cut off as "not
    ground": all three objects of this scene were missed.)"""
    w, h = 960, 540
    img, truth = render_apron(w, h, 5, objects=["cone", "suitcase", "chock"], object_z=(6.0, 14.0))
    scorer = SurfaceScorer(MOUNTED)
    region = cv2.resize(scorer.sample_mask(480, 270).astype(np.uint8), (w, h),
                        interpolation=cv2.INTER_NEAREST).astype(bool)
    assert (truth.shadow & region).sum() > 0.8 * region.sum()  # the premise of this scene
    s = cv2.resize(scorer.score(img), (w, h), interpolation=cv2.INTER_LINEAR)
    sunlit = truth.surface() & ~truth.shadow & ~truth.markings
    assert np.isfinite(s[sunlit]).mean() > 0.95
    s = np.where(np.isfinite(s), s, np.float32(-1.0))
    assert np.median(s[sunlit]) < np.median(s[truth.shadow & ~truth.object_union()]) + 0.5
    for obj in truth.objects:
        assert auroc(s[obj.mask], s[truth.surface()][::7]) > 0.9, obj.kind


def test_brightness_change_keeps_objects_detected():
    img, truth = render_apron(W, H, 4, objects=["cone", "suitcase", "chock"])
    darker = np.clip(img.astype(np.float32) * 0.6, 0, 255).astype(np.uint8)
    s = upscaled(SurfaceScorer(MOUNTED).score(darker))
    for obj in truth.objects:
        assert auroc(s[obj.mask], s[truth.surface()][::7]) > 0.98


def test_deterministic_and_shapes():
    img, _ = render_apron(W, H, 1, objects=list(KINDS))
    scorer = SurfaceScorer()
    a, b = scorer.score(img), SurfaceScorer().score(img)
    assert np.array_equal(a, b, equal_nan=True)
    assert a.dtype == np.float32 and a.shape == (270, 480) == scorer.working_size(W, H)[::-1]
    region = scorer.sample_mask(480, 270)
    assert np.isfinite(a[region]).all()  # the sampling region is always scored
    # NaN only above the apron: whole top rows, never below the sampling region's top
    rows_with_nan = np.flatnonzero(np.isnan(a).any(axis=1))
    assert rows_with_nan.size == 0 or rows_with_nan.max() < np.flatnonzero(region.any(axis=1))[0]
    assert np.isnan(a[0]).all()  # the sky is not scored


def test_uniform_tiny_and_grey_images_are_nan_free_and_prompt_free():
    scorer = SurfaceScorer()
    for value in (0, 128, 255):
        s = scorer.score(np.full((360, 640, 3), value, np.uint8))
        assert np.isfinite(s).all() and np.ptp(s) < 0.01 and generate_prompts(s) == []
    for shape in ((8, 8, 3), (1, 1, 3), (3, 200, 3), (8, 8)):
        s = scorer.score(np.random.default_rng(0).integers(0, 256, shape).astype(np.uint8))
        assert s.shape == scorer.working_size(shape[1], shape[0])[::-1] and np.isfinite(s).all()


def test_invalid_inputs_and_config_are_rejected():
    scorer = SurfaceScorer()
    with pytest.raises(ValueError, match="uint8"):
        scorer.score(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ValueError, match="H x W x 3"):
        scorer.score(np.zeros((10, 10, 5), np.uint8))
    with pytest.raises(ValueError, match="H x W x 3"):
        scorer.score(np.zeros((0, 10, 3), np.uint8))
    for kwargs, name in ((dict(max_side=4), "max_side"), (dict(sample_top=0.9, sample_bottom=0.5), "sample_top"),
                         (dict(sample_top_x=(0.8, 0.2)), "sample_top_x"), (dict(shadow_depth=-1), "shadow_depth"),
                         (dict(components=0), "components"), (dict(horizon=1.5), "horizon")):
        with pytest.raises(ValueError, match=name):
            SurfaceScorer(SurfaceConfig(**kwargs))


@settings(max_examples=20, deadline=None)
@given(w=st.integers(1, 300), h=st.integers(1, 200), seed=st.integers(0, 2**31 - 1))
def test_random_images_give_finite_scores_in_the_sampling_region(w, h, seed):
    img = np.random.default_rng(seed).integers(0, 256, (h, w, 3)).astype(np.uint8)
    scorer = SurfaceScorer()
    s = scorer.score(img)
    ww, hh = scorer.working_size(w, h)
    assert s.shape == (hh, ww) and s.dtype == np.float32
    assert np.isfinite(s[scorer.sample_mask(ww, hh)]).all()
    assert not np.isinf(s).any() and (np.nan_to_num(s) >= 0).all()


def test_real_road_frames_score_anomalies_above_the_road(shared_data):
    """RoadAnomaly (1280x720 road scenes with animals, objects on the road): a sanity check of the
    scorer on real images. Measured: per-frame AUROC median 0.69 (pooled 0.57; MSP of the Cityscapes
    ESPNet: pooled 0.53). Roads are not aprons (grass verges, no slab joints), so the bar is low."""
    frames = sorted((shared_data / "roadanomaly" / "frames").glob("*.jpg"))
    if not frames:
        pytest.skip("no RoadAnomaly frames in %s" % shared_data)
    scorer = SurfaceScorer()
    aucs = []
    for path in frames:
        img = cv2.imread(str(path))
        labels = cv2.imread(str(path.with_suffix("")) + ".labels/labels_semantic.png", cv2.IMREAD_GRAYSCALE)
        if img is None or labels is None or not (labels == 2).any():
            continue
        s = cv2.resize(scorer.score(img), (img.shape[1], img.shape[0]), interpolation=cv2.INTER_LINEAR)
        s = np.where(np.isfinite(s), s, -1.0)
        aucs.append(auroc(s[labels == 2][::5], s[labels != 2][::31]))
    assert len(aucs) >= 10
    assert np.median(aucs) > 0.6


def test_a_blurred_yellow_line_outside_the_sampling_region_is_paint_and_a_yellow_block_is_not():
    """A taxi line seen beside the sampled surface: its blurred edge is a faint mix of yellow and grey
    (under a quarter of the paint's colour, yet far from the surface's colour). That edge borders the line
    like the surface does (it made the line an 'object' in the drive scenario, seed 0); a compact yellow
    block (a chock) on the same surface stays an object."""
    rng = np.random.default_rng(3)
    img = np.clip(rng.normal(110, 1.5, (270, 480, 3)), 0, 255).astype(np.uint8)
    line = np.zeros((270, 480), np.uint8)
    cv2.line(line, (300, 90), (475, 265), 1, thickness=7)
    block = np.zeros((270, 480), bool)
    block[150:162, 60:76] = True
    paint = np.zeros((270, 480, 3), np.float32)
    paint[line > 0] = (40, 165, 205)
    paint[block] = (40, 165, 205)
    alpha = cv2.GaussianBlur(np.maximum(line, block.astype(np.uint8)).astype(np.float32), (0, 0), 1.5)[..., None]
    mixed = cv2.GaussianBlur(paint, (0, 0), 1.5) / np.maximum(alpha, 1e-6)
    img = np.clip(img * (1 - alpha) + mixed * alpha, 0, 255).astype(np.uint8)
    s = SurfaceScorer(SurfaceConfig(horizon=0.2)).score(img)
    core = cv2.erode(line, np.ones((3, 3), np.uint8)).astype(bool)
    far = cv2.dilate(np.maximum(line, block.astype(np.uint8)), np.ones((9, 9), np.uint8)) == 0
    surface = s[far & np.isfinite(s)]
    assert np.isfinite(s[core]).mean() > 0.9
    assert np.median(s[core]) <= np.percentile(surface, 99)
    assert np.median(s[block]) > 3 * np.percentile(surface, 99)
