"""Synthetic apron drive (s2m_ros.sim.scenario): exact geometry, cross-sensor consistency, determinism."""
import json
import math

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s2m_ros.obstacles.fusion import project_points
from s2m_ros.obstacles.geometry import transform_points
from s2m_ros.sim.scenario import EPOCH_NS, FRAME_CAMERA, KINDS, TRUTH_FORMAT, ScenarioConfig, make_scenario, truth_dict
from s2m_ros.sim.solids import box_solid, ray_cast
from s2m_ros.types import box_from_mask


@pytest.fixture(scope="module")
def default():
    """The default scenario and a few of its frames (first, middle, last)."""
    sc = make_scenario(ScenarioConfig())
    return sc, {k: sc.frame(k) for k in (0, 20, 39)}


def _camera_from_lidar(sc, f):
    """camera(at the camera stamp) <- lidar(at the LiDAR stamp), through the two ego poses."""
    return (np.linalg.inv(f.T_world_base @ sc.T_base_camera) @ f.T_world_base_lidar @ sc.T_base_lidar)


def _world_points(sc, f):
    return transform_points(f.T_world_base_lidar @ sc.T_base_lidar, f.points[:, :3].astype(np.float64))


# ---------------------------------------------------------------- config

@pytest.mark.parametrize("name, value", [
    ("seed", -1), ("seed", 1.5), ("frames", 0), ("rate_hz", 0.0), ("rate_hz", float("nan")), ("width", 8),
    ("height", True), ("hfov_deg", 170.0), ("speed_mps", -1.0), ("yaw_rate_dps", 90.0), ("lidar_beams", 0),
    ("lidar_azimuth_steps", 4), ("lidar_elevation_deg", (5.0, -25.0)), ("lidar_elevation_deg", (1.0,)),
    ("lidar_max_range", 0.5), ("lidar_min_range", 70.0), ("lidar_range_noise", -0.1),
    ("lidar_offset_s", 0.1), ("objects", ("cone", "piano")), ("objects", (("cone", 1.0, float("inf"), 0.0),)),
    ("object_range", (30.0, 6.0)), ("shadows", 1), ("blur_sigma", -1.0), ("noise_sigma", float("inf")),
])
def test_invalid_config_names_the_field(name, value):
    with pytest.raises(ValueError, match=r"ScenarioConfig\.%s = " % name):
        ScenarioConfig(**{name: value})


def test_config_normalises_to_plain_json_types():
    cfg = ScenarioConfig(seed=np.int64(3), objects=[["cone", 10, 1, 0]], object_range=[6, 20])
    assert cfg.seed == 3 and type(cfg.seed) is int
    assert cfg.objects == (("cone", 10.0, 1.0, 0.0),) and cfg.object_range == (6.0, 20.0)
    d = cfg.to_dict()
    assert json.loads(json.dumps(d)) == d and d["objects"] == [["cone", 10.0, 1.0, 0.0]]


# ---------------------------------------------------------------- ray casting (exact numbers)

def test_ray_cast_hand_placed_box_exact():
    box = box_solid((10.0, 0.0, 0.5), (1.0, 1.0, 1.0))
    o = [[0, 0, 0.5], [0, 0, 2.0], [0, 0, 0.5], [0, 0, 0.5], [20, 0, 0.5]]
    d = [[1, 0, 0], [1, 0.02, -0.1], [1, 0.1, 0], [-1, 0, 0], [-2, 0, 0]]
    t, which, face = ray_cast([box], o, d)
    assert t[0] == pytest.approx(9.5, abs=1e-12)  # front face x = 9.5
    assert box.planes[face[0], :3] == pytest.approx([-1, 0, 0])
    assert t[1] == pytest.approx(10.0, abs=1e-12)  # over the front edge (z 1.05 there), onto the top at x = 10
    assert box.planes[face[1], :3] == pytest.approx([0, 0, 1])
    assert np.isinf(t[2]) and which[2] == -1 and face[2] == -1  # passes beside it (y 0.95..1.05 in x range)
    assert np.isinf(t[3])  # pointing away
    assert t[4] == pytest.approx(4.75, abs=1e-12)  # |dir| = 2: t in units of |dir|, hits the back face
    assert box.planes[face[4], :3] == pytest.approx([1, 0, 0])
    # a box yawed 45 degrees shows an edge: the axial ray meets it at 10 - sqrt(2) / 2
    diamond = box_solid((10.0, 0.0, 0.5), (1.0, 1.0, 1.0), yaw=math.pi / 4)
    t, which, _ = ray_cast([box_solid((30, 0, 0.5), (1, 1, 1)), diamond], [[0, 0, 0.5]], [[1, 0, 0]])
    assert t[0] == pytest.approx(10.0 - math.sqrt(0.5), abs=1e-12) and which[0] == 1  # nearest solid wins


@settings(max_examples=60, deadline=None)
@given(st.floats(-3, 3), st.floats(-3, 3), st.floats(0.1, 3), st.floats(0.2, 2), st.floats(0.2, 2),
       st.floats(0.2, 2), st.floats(-math.pi, math.pi), st.floats(-1, 1), st.floats(-1, 1), st.floats(-1, 1))
def test_ray_cast_hits_lie_on_the_surface(cx, cy, cz, sx, sy, sz, yaw, dx, dy, dz):
    box = box_solid((cx, cy, cz), (sx, sy, sz), yaw)
    origin = np.array([cx, cy, cz]) + 6.0 * np.array([1.0, 0.3, 0.2])
    lx, ly = 0.45 * dx * sx, 0.45 * dy * sy  # a point inside the box, in its own axes
    target = np.array([cx + math.cos(yaw) * lx - math.sin(yaw) * ly, cy + math.sin(yaw) * lx + math.cos(yaw) * ly,
                       cz + 0.45 * dz * sz])
    assert box.signed_distance(target[None])[0] < 0
    t, which, face = ray_cast([box], [origin], [target - origin])
    assert which[0] == 0 and 0 < t[0] <= 1.0  # the ray reaches the inner target, so it enters before t = 1
    hit = origin + t[0] * (target - origin)
    assert abs(box.signed_distance(hit[None])[0]) < 1e-9  # on the surface
    n, d = box.planes[face[0], :3], box.planes[face[0], 3]
    assert abs(n @ hit + d) < 1e-9 and n @ (target - origin) < 0  # on the entry face, entering
    before = origin + 0.999 * t[0] * (target - origin)
    assert box.signed_distance(before[None])[0] > 0  # just before: outside


# ---------------------------------------------------------------- determinism, stamps, poses

def test_same_seed_same_frames_other_seed_differs(default):
    sc, frames = default
    again = make_scenario(ScenarioConfig())
    for k in (0, 39):
        a, b = frames[k], again.frame(k)
        for name in ("image", "instance_ids", "points", "ring", "point_ids", "T_world_base", "T_world_base_lidar"):
            assert np.array_equal(getattr(a, name), getattr(b, name)), name
        assert a.visible == b.visible and a.stamp_ns == b.stamp_ns and a.lidar_stamp_ns == b.lidar_stamp_ns
    assert [(o.kind, o.center.tolist(), o.yaw) for o in sc.objects] == \
        [(o.kind, o.center.tolist(), o.yaw) for o in again.objects]
    other = make_scenario(ScenarioConfig(seed=1))
    assert [o.center.tolist() for o in other.objects] != [o.center.tolist() for o in sc.objects]
    f = other.frame(0)
    assert not np.array_equal(f.image, frames[0].image)
    assert f.points.shape != frames[0].points.shape or not np.array_equal(f.points, frames[0].points)


def test_frames_iterator_is_lazy_and_matches_frame():
    sc = make_scenario(ScenarioConfig(frames=3, width=160, height=90, lidar_azimuth_steps=256))
    frames = list(sc.frames())
    assert [f.index for f in frames] == [0, 1, 2]
    assert np.array_equal(frames[2].image, sc.frame(2).image)
    with pytest.raises(IndexError):
        sc.frame(3)


def test_stamps_and_ego_motion():
    for yaw_rate in (0.0, 5.0):
        cfg = ScenarioConfig(frames=12, speed_mps=3.0, yaw_rate_dps=yaw_rate, lidar_offset_s=-0.03)
        sc = make_scenario(cfg)
        poses, prev = [], None
        for k in range(cfg.frames):
            cam, lid = sc.stamps(k)
            assert cam == EPOCH_NS + k * 100_000_000 and lid == cam - 30_000_000
            T = sc.ego_pose(cam)
            assert np.allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3)) and T[2, 3] == 0.0
            yaw = math.atan2(T[1, 0], T[0, 0])
            assert yaw == pytest.approx(math.radians(yaw_rate) * k * 0.1, abs=1e-12)
            if prev is not None:
                step = np.linalg.norm(T[:3, 3] - prev[:3, 3])
                w = math.radians(yaw_rate) * 0.1
                chord = 3.0 * 0.1 * (1.0 if w == 0 else math.sin(w / 2) / (w / 2))  # arc of length v * dt
                assert step == pytest.approx(chord, abs=1e-12)
            prev = T
            poses.append(T)
        assert np.array_equal(poses[0], np.eye(4))
    f = sc.frame(4)
    assert np.array_equal(f.T_world_base, sc.ego_pose(f.stamp_ns))
    assert np.array_equal(f.T_world_base_lidar, sc.ego_pose(f.lidar_stamp_ns))


def test_default_stamps_speed_and_frames(default):
    sc, frames = default
    f0, f1 = frames[0], frames[20]
    assert f1.stamp_ns - f0.stamp_ns == 20 * 100_000_000
    assert f0.lidar_stamp_ns - f0.stamp_ns == 20_000_000
    assert np.linalg.norm(f1.T_world_base[:3, 3] - f0.T_world_base[:3, 3]) == pytest.approx(2.0 * 2.0, abs=1e-12)
    assert np.linalg.norm(f0.T_world_base_lidar[:3, 3] - f0.T_world_base[:3, 3]) == pytest.approx(0.04, abs=1e-12)


# ---------------------------------------------------------------- sensors and extrinsics

def test_camera_model_and_extrinsics(default):
    sc, _ = default
    cam = sc.camera
    assert (cam.width, cam.height, cam.frame_id, cam.distortion_model) == (640, 360, FRAME_CAMERA, "plumb_bob")
    assert cam.K[0, 0] == pytest.approx(320.0 / math.tan(math.radians(40.0)))
    assert cam.D.size == 5 and np.any(cam.D != 0)
    # the sensors are apart and differently oriented, so a wrong extrinsic shows
    T = sc.T_camera_lidar
    assert np.allclose(T, np.linalg.inv(sc.T_base_camera) @ sc.T_base_lidar)
    assert np.linalg.norm(sc.T_base_camera[:3, 3] - sc.T_base_lidar[:3, 3]) > 0.3
    optical = np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], float)  # camera axes of a level, forward camera
    angle = math.degrees(math.acos(np.clip((np.trace(optical.T @ T[:3, :3].T) - 1) / 2, -1, 1)))
    assert 2.0 < angle < 15.0
    for M in (sc.T_base_camera, sc.T_base_lidar):
        assert np.allclose(M[:3, :3] @ M[:3, :3].T, np.eye(3)) and np.linalg.det(M[:3, :3]) == pytest.approx(1)
    assert 1.5 <= sc.T_base_camera[2, 3] <= 2.0 and 1.8 <= sc.T_base_lidar[2, 3] <= 2.0
    # optical axis forward and a little down
    z_axis = sc.T_base_camera[:3, 2]
    assert z_axis[0] > 0.95 and z_axis[2] < 0


def test_pixel_rays_invert_the_distortion_exactly(default):
    sc, _ = default
    w = sc._world
    rays = np.stack([w.xn.ravel(), w.yn.ravel(), np.ones(w.xn.size)], 1)
    uv, ok = project_points(sc.camera, rays)
    v, u = np.mgrid[0:sc.camera.height, 0:sc.camera.width]
    assert ok.all()
    assert np.abs(uv[:, 0] - u.ravel()).max() < 1e-6 and np.abs(uv[:, 1] - v.ravel()).max() < 1e-6


def test_lidar_ground_points_are_on_the_ground():
    for noise in (0.0, 0.02):
        sc = make_scenario(ScenarioConfig(frames=2, lidar_range_noise=noise, width=160, height=90))
        f = sc.frame(1)
        assert f.points.dtype == np.float32 and f.points.shape[1] == 4 and np.isfinite(f.points).all()
        assert f.ring.dtype == np.uint16 and f.ring.max() < 32 and f.point_ids.shape == f.ring.shape
        pw = _world_points(sc, f)
        g = f.point_ids == 0
        assert g.sum() > 20000
        if noise == 0:
            assert np.abs(pw[g, 2]).max() < 1e-4  # float32 storage of the points
        else:  # noise is along the ray: world z = noise * sin(depression)
            dirs = pw[g] - (f.T_world_base_lidar @ sc.T_base_lidar)[:3, 3]
            sin_dep = -dirs[:, 2] / np.linalg.norm(dirs, axis=1)
            z_over = pw[g, 2] / sin_dep
            assert np.std(z_over) == pytest.approx(noise, rel=0.05)
            assert np.abs(pw[g, 2]).max() < 6 * noise
        rng = np.linalg.norm(f.points[:, :3], axis=1)
        assert rng.max() <= 60.0 + 6 * max(noise, 1e-3) and rng.min() >= 0.5
        ground_rings = np.unique(f.ring[g])  # beams that reach the ground within 60 m: all below ~ -1.8 deg
        assert ground_rings.min() == 0 and ground_rings.max() <= 24


def test_lidar_ray_hits_hand_placed_tug_front_face():
    """An independent computation from truth + extrinsics + pose: the azimuth-0 rays hit the tug's front."""
    cfg = ScenarioConfig(frames=2, speed_mps=0.0, lidar_range_noise=0.0, objects=(("tug", 15.0, -0.4, 0.0),),
                         width=160, height=90)
    sc = make_scenario(cfg)
    tug = sc.objects[0]
    f = sc.frame(0)
    T_wl = f.T_world_base_lidar @ sc.T_base_lidar
    o = T_wl[:3, 3]
    x_front = tug.center[0] - tug.size[0] / 2
    checked = 0
    lo, hi = np.radians(cfg.lidar_elevation_deg)
    for b, el in enumerate(np.linspace(lo, hi, cfg.lidar_beams)):
        d = T_wl[:3, :3] @ [math.cos(el), 0.0, math.sin(el)]  # azimuth step 0
        t = (x_front - o[0]) / d[0]
        hit = o + t * d
        if not (0.25 < hit[2] < 1.15 and abs(hit[1] - tug.center[1]) < tug.size[1] / 2 - 0.05):
            continue  # not on the body's front face (wheels below, cab behind)
        sel = (f.ring == b) & (f.points[:, 1] == 0) & (f.points[:, 0] > 0)
        assert sel.sum() == 1 and f.point_ids[sel][0] == tug.id
        assert np.allclose(f.points[sel, :3][0], t * np.array([math.cos(el), 0.0, math.sin(el)]), atol=1e-4)
        checked += 1
    assert checked >= 3


def test_lidar_points_on_an_object_project_into_its_mask(default):
    """Both sensors see the same solids: a point on object k lands in k's mask (pixel-centre sampling of
    the outline may put it up to 2 px outside: thin tips and edges), never on another object."""
    sc, frames = default
    checked = 0
    for f in frames.values():
        pc = transform_points(_camera_from_lidar(sc, f), f.points[:, :3].astype(np.float64))
        uv, ok = project_points(sc.camera, pc)
        for oid in np.unique(f.point_ids[f.point_ids > 0]):
            sel = (f.point_ids == oid) & ok
            u, v = np.round(uv[sel, 0]).astype(int), np.round(uv[sel, 1]).astype(int)
            inside = (u >= 0) & (v >= 0) & (u < sc.camera.width) & (v < sc.camera.height)
            assert inside.all() and oid in f.visible
            at = f.instance_ids[v, u]
            assert np.all((at == oid) | (at == 0))
            mask = f.instance_ids == oid
            dist = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
            assert dist[v, u].max() <= 2.0
            if sel.sum() >= 10:
                assert np.mean(at == oid) >= 0.9, (f.index, oid, np.mean(at == oid))
                checked += 1
    assert checked >= 5


def test_lidar_projection_uses_the_stamps_pose():
    """With the ego moving 20 cm per frame, ignoring the 20 ms stamp offset costs accuracy; using it is exact."""
    sc = make_scenario(ScenarioConfig(frames=2, speed_mps=10.0, lidar_offset_s=0.04, lidar_range_noise=0.0,
                                      objects=(("tug", 14.0, 0.0, 0.3), ("pillar", 16.0, -4.0, 0.0))))
    f = sc.frame(1)
    score = {}
    for name, T in (("exact", _camera_from_lidar(sc, f)), ("static", sc.T_camera_lidar)):
        pc = transform_points(T, f.points[:, :3].astype(np.float64))
        uv, ok = project_points(sc.camera, pc)
        sel = (f.point_ids > 0) & ok
        u, v = np.round(uv[sel, 0]).astype(int), np.round(uv[sel, 1]).astype(int)
        inside = (u >= 0) & (v >= 0) & (u < 640) & (v < 360)
        score[name] = np.mean(f.instance_ids[v[inside], u[inside]] == f.point_ids[sel][inside])
    assert score["exact"] > 0.97 and score["static"] < score["exact"] - 0.05


def test_truth_centres_inside_hit_point_boxes(default):
    sc, frames = default
    f = frames[39]
    T_lw = np.linalg.inv(f.T_world_base_lidar @ sc.T_base_lidar)
    checked = 0
    for obj in sc.objects:
        sel = f.point_ids == obj.id
        if sel.sum() < 5:
            continue
        pts = f.points[sel, :3]
        c = transform_points(T_lw, obj.center[None])[0]
        tol = 0.5 * np.max(obj.size) + 0.05
        assert np.all(c >= pts.min(axis=0) - tol) and np.all(c <= pts.max(axis=0) + tol), obj.kind
        # every hit lies on the object's surface: inside its truth box (+ noise)
        pw = _world_points(sc, f)[sel]
        cy, sy = math.cos(obj.yaw), math.sin(obj.yaw)
        rel = pw - obj.center
        local = np.column_stack([cy * rel[:, 0] + sy * rel[:, 1], -sy * rel[:, 0] + cy * rel[:, 1], rel[:, 2]])
        assert np.all(np.abs(local) <= obj.size / 2 + 0.1), obj.kind
        checked += 1
    assert checked >= 3


def test_lidar_intensity_paint_objects_ground():
    sc = make_scenario(ScenarioConfig(frames=1, width=160, height=90, objects=(("cone", 9.0, 0.0, 0.0),)))
    f = sc.frame(0)
    inten = f.points[:, 3]
    assert inten.min() >= 0 and inten.max() <= 255
    g = f.point_ids == 0
    pw = _world_points(sc, f)
    paint = g & (np.abs(pw[:, 1] - sc._world.gfeat.yl) < 0.05) & (pw[:, 0] < 40)  # on the taxi line
    plain = g & (np.abs(pw[:, 1] - sc._world.gfeat.yl) > 1.0) & (pw[:, 0] < 40)
    assert paint.sum() >= 5 and np.median(inten[paint]) > 2 * np.median(inten[plain])
    cone = f.point_ids == 1
    assert cone.sum() >= 10 and inten[cone].max() > 100  # the retro-reflective band


# ---------------------------------------------------------------- images and masks

def test_image_and_masks(default):
    sc, frames = default
    ids_all = {o.id for o in sc.objects}
    assert [o.id for o in sc.objects] == list(range(1, len(sc.objects) + 1))
    assert {o.category for o in sc.objects} <= {"fod", "equipment", "structure"}
    assert all(o.category == KINDS[o.kind] for o in sc.objects)
    assert sum(o.category == "structure" for o in sc.objects) in (1, 2) and 6 <= len(sc.objects) <= 10
    for f in frames.values():
        assert f.image.shape == (360, 640, 3) and f.image.dtype == np.uint8
        assert f.instance_ids.shape == (360, 640) and f.instance_ids.dtype == np.uint16
        present = set(np.unique(f.instance_ids).tolist()) - {0}
        assert present == set(f.visible) and present <= ids_all and f.visible == sorted(f.visible)
        for oid in ids_all:
            assert (np.count_nonzero(f.instance_ids == oid) > 0) == (oid in f.visible)
    assert len(frames[39].visible) >= 7  # placement keeps lines of sight apart
    # the ego approaches every object: each one's mask grows
    a0, a1 = (np.bincount(frames[k].instance_ids.ravel(), minlength=len(ids_all) + 1) for k in (0, 39))
    for oid in ids_all:
        if a0[oid] >= 10:
            assert a1[oid] > 1.3 * a0[oid], (oid, a0[oid], a1[oid])


def test_object_colours_and_shading(default):
    sc, frames = default
    f = frames[39]
    img = f.image.astype(float)
    ground = f.instance_ids == 0
    ground[:200] = False
    for obj in sc.objects:
        m = f.instance_ids == obj.id
        if obj.kind == "cone" and m.sum() >= 20:
            b, g, r = np.median(img[m], axis=0)
            assert r > 1.5 * g and r > 2 * b  # orange
        if obj.kind in ("hose",) and m.sum() >= 20:
            assert img[m].mean() < 0.5 * img[ground].mean()


def test_truth_dict_round_trips(default):
    sc, frames = default
    fr = [frames[0], frames[39]]
    d = truth_dict(sc, fr)
    assert json.loads(json.dumps(d)) == d
    assert d["format"] == TRUTH_FORMAT and d["seed"] == 0
    assert d["frames_ids"] == {"world": "map", "base": "base_link", "lidar": "lidar", "camera": "camera_optical"}
    assert np.allclose(d["extrinsics"]["T_camera_lidar"], sc.T_camera_lidar)
    assert d["camera"]["K"] == sc.camera.K.tolist() and d["camera"]["distortion_model"] == "plumb_bob"
    assert [o["id"] for o in d["objects"]] == [o.id for o in sc.objects]
    assert d["objects"][0]["center"] == sc.objects[0].center.tolist()
    for fd, f in zip(d["frames"], fr):
        assert fd["visible"] == f.visible and fd["stamp_ns"] == f.stamp_ns
        assert fd["T_world_base"] == f.T_world_base.tolist()
        assert set(fd["boxes_2d"]) == {str(i) for i in f.visible}
        for key, box in fd["boxes_2d"].items():
            assert tuple(box) == box_from_mask(f.instance_ids == int(key))
    assert ScenarioConfig(**{k: v for k, v in d["config"].items()}) == sc.config


@pytest.mark.parametrize("yaw_rate", [0.0, 8.0])
def test_ground_texture_is_fixed_to_the_world(yaw_rate):
    """A ground point looks the same from two ego poses 2 m apart; a point 0.7 m aside does not."""
    sc = make_scenario(ScenarioConfig(seed=2, frames=11, objects=(), shadows=False, noise_sigma=0.0, blur_sigma=0.0,
                                      yaw_rate_dps=yaw_rate, width=320, height=180))
    first, last = sc.frame(0), sc.frame(10)
    gx, gy = np.meshgrid(np.linspace(8, 16, 40), np.linspace(-3, 3, 40))
    world = transform_points(last.T_world_base, np.stack([gx.ravel(), gy.ravel(), np.zeros(gx.size)], 1))

    def colours(f, pw):
        uv, ok = project_points(sc.camera, transform_points(np.linalg.inv(f.T_world_base @ sc.T_base_camera), pw))
        assert ok.all()
        m = uv.astype(np.float32).reshape(-1, 1, 2)
        return cv2.remap(f.image, m[..., 0], m[..., 1], cv2.INTER_LINEAR).reshape(-1, 3).astype(float)

    same = np.abs(colours(first, world) - colours(last, world)).mean()
    aside = np.abs(colours(first, world + [0.0, 0.7, 0.0]) - colours(last, world)).mean()
    assert same < 2.5 and aside > 2 * same
