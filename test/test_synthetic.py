"""Synthetic apron renderer (s2m_ros.sim.still): deterministic, exact masks, plausible geometry."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s2m_ros.sim.still import SMALL_KINDS as KINDS, ObjectSpec, render_apron
from s2m_ros.types import box_from_mask


def test_same_seed_same_scene_and_different_seeds_differ():
    a, ma = render_apron(320, 180, 7, objects=list(KINDS))
    b, mb = render_apron(320, 180, 7, objects=list(KINDS))
    c, _ = render_apron(320, 180, 8, objects=list(KINDS))
    assert np.array_equal(a, b)
    assert [o.kind for o in ma.objects] == [o.kind for o in mb.objects]
    for oa, ob in zip(ma.objects, mb.objects):
        assert np.array_equal(oa.mask, ob.mask) and oa.box == ob.box
    for name in ("shadow", "markings", "stop_bar", "joints", "ground"):
        assert np.array_equal(getattr(ma, name), getattr(mb, name))
    assert not np.array_equal(a, c)


def test_image_and_masks_are_consistent():
    img, m = render_apron(640, 360, 3, objects=list(KINDS))
    assert img.shape == (360, 640, 3) and img.dtype == np.uint8
    assert [o.kind for o in m.objects] == list(KINDS)
    union = np.zeros((360, 640), int)
    for o in m.objects:
        assert o.mask.shape == (360, 640) and o.mask.dtype == bool
        assert o.box == box_from_mask(o.mask) and o.area == np.count_nonzero(o.mask) > 0
        union += o.mask
    assert union.max() == 1  # object masks are disjoint
    # ground = rows from the first ground row down; the horizon itself (row 0.3 * 360 = 108) is at
    # infinity, so the first ground row lies a few rows below it (ground beyond ~150 m is not drawn)
    assert 108 < m.horizon_row <= 108 + int(0.75 * 640 * 2.0 / 150.0)
    assert not m.ground[:m.horizon_row].any() and m.ground[m.horizon_row:].all()
    for name in ("shadow", "markings", "stop_bar", "joints"):
        assert not (getattr(m, name) & m.object_union()).any()
        assert not getattr(m, name)[:m.horizon_row].any()
    assert (m.stop_bar <= m.markings).all()
    assert np.array_equal(m.surface(), m.ground & ~m.object_union())


def _colour_name(bgr, surface):
    """The name of a mean B, G, R colour: black (dark grey), orange, yellow, blue, red, green or other."""
    b, g, r = bgr
    if bgr.mean() < 0.4 * surface.mean() and np.ptp(bgr) < 15:
        return "black"
    if r > 1.2 * g and g > 1.5 * b and r > 2.5 * b:
        return "yellow" if g > 0.6 * r else "orange"
    if b > 1.5 * g and b > 2 * r:
        return "blue"
    if r > 2 * g and r > 2 * b:
        return "red"
    if g > 1.3 * b and g > 1.5 * r:
        return "green"
    return "other"


def test_objects_have_their_kind_colours():
    allowed = {"cone": {"orange"}, "hose": {"black"}, "chock": {"black", "yellow"},  # rubber or painted
               "suitcase": {"blue", "black", "red", "green"}}
    seen = {kind: set() for kind in allowed}
    for seed in range(6):
        img, m = render_apron(640, 360, seed, objects=list(KINDS), shadows=False)
        f = img.astype(float)
        surface = f[m.surface() & ~m.markings].mean(axis=0)
        for o in m.objects:
            if o.kind in allowed:
                name = _colour_name(f[o.mask].mean(axis=0), surface)
                assert name in allowed[o.kind], (seed, o.kind, name, f[o.mask].mean(axis=0))
                seen[o.kind].add(name)
    assert len(seen["suitcase"]) >= 2 and seen["chock"] == {"black", "yellow"}  # colours vary by seed


def test_nearer_objects_are_lower_and_larger():
    _, m = render_apron(640, 360, 0, objects=[ObjectSpec("cone", x=0.0, z=8.0), ObjectSpec("cone", x=0.0, z=16.0)])
    near, far = m.objects
    assert near.box[1] + near.box[3] > far.box[1] + far.box[3]
    assert near.area > 3 * far.area
    # pinhole geometry: the base row is horizon + f * h / z_near (f = 0.75 * width, camera 2 m high), z_near
    # the nearest point of the cone's 0.38 m square base: 0.19 to 0.27 m nearer than its centre, by yaw
    for o in (near, far):
        lo, hi = (0.3 * 360 + 0.75 * 640 * 2.0 / (o.z - d) for d in (0.19, 0.27))
        assert lo - 1.5 <= o.box[1] + o.box[3] <= hi + 1.5


def test_options_and_errors():
    img, m = render_apron(320, 180, 2, shadows=False, markings=False)
    assert not m.shadow.any() and not m.markings.any() and m.objects == []
    asphalt, _ = render_apron(320, 180, 2, surface="asphalt", shadows=False, markings=False)
    assert asphalt[m.ground].mean() < 0.75 * img[m.ground].mean()
    with pytest.raises(ValueError, match="unknown object kind"):
        render_apron(64, 36, 0, objects=["piano"])
    with pytest.raises(ValueError, match="16 x 16"):
        render_apron(4, 64, 0)
    with pytest.raises(ValueError, match="horizon"):
        render_apron(64, 36, 0, horizon=0.95)
    with pytest.raises(ValueError, match="surface"):
        render_apron(64, 36, 0, surface="grass")


@settings(max_examples=25, deadline=None)
@given(w=st.integers(16, 200), h=st.integers(16, 120), seed=st.integers(0, 2**31 - 1),
       horizon=st.floats(0.0, 0.85), kinds=st.lists(st.sampled_from(KINDS), max_size=4))
def test_any_size_renders_valid_scenes(w, h, seed, horizon, kinds):
    img, m = render_apron(w, h, seed, objects=kinds, horizon=horizon)
    assert img.shape == (h, w, 3) and img.dtype == np.uint8
    assert 0 < m.horizon_row < h
    assert len(m.objects) <= len(kinds)
    for o in m.objects:
        assert o.kind in kinds and o.mask.any() and o.box == box_from_mask(o.mask)
