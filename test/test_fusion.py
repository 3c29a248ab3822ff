"""Tests of the ROS-free mask + LiDAR fusion core (s2m_ros.obstacles.fusion)."""
import math

import cv2
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from s2m_ros.obstacles import fusion
from s2m_ros.obstacles.camera import PinholeCamera
from s2m_ros.obstacles.fusion import FusionConfig, fit_ground_plane, fuse, project_points
from s2m_ros.obstacles.geometry import transform_points
from s2m_ros.types import FrameMasks, InstanceMask

W, H = 1280, 720
K = np.array([[600.0, 0, 640], [0, 600, 360], [0, 0, 1]])
# camera <- LiDAR: camera looks along LiDAR +x; cam x = -lidar y, cam y = -lidar z; mounted 0.2 m above
T_CL = np.eye(4)
T_CL[:3, :3] = [[0, -1, 0], [0, 0, -1], [1, 0, 0]]
T_CL[:3, 3] = [0.0, -0.2, 0.1]
SLOPE = 0.03  # ground z = -1.7 + SLOPE * x (a gently sloped apron)
BOX_CENTER = np.array([10.0, 1.0, -1.7 + SLOPE * 10.0 + 0.6])
BOX_SIZE = np.array([2.0, 1.5, 1.2])


def ground_z(x):
    return -1.7 + SLOPE * np.asarray(x)


def camera(model="plumb_bob", D=None):
    return PinholeCamera(W, H, K, np.zeros(5) if D is None else D, model, "cam")


def scene(seed=0):
    """Sloped ground grid, a solid box of points at BOX_CENTER, a wall 10 m behind it."""
    rng = np.random.default_rng(seed)
    gx, gy = np.meshgrid(np.arange(2.0, 40.0, 0.25), np.arange(-15.0, 15.0, 0.25))
    ground = np.column_stack([gx.ravel(), gy.ravel(), ground_z(gx.ravel()) + rng.normal(0, 0.02, gx.size)])
    box = BOX_CENTER + (rng.random((3000, 3)) - 0.5) * BOX_SIZE
    wy, wz = np.meshgrid(np.arange(-10.0, 10.0, 0.1), np.arange(0.0, 3.0, 0.1))
    wall = np.column_stack([np.full(wy.size, 20.0), wy.ravel(), ground_z(20.0) + wz.ravel()])
    return np.vstack([ground, box, wall]), box, wall


def mask_of(points, cam=None, dilate=0, mask_id=1):
    """InstanceMask covering the convex hull of the projected points."""
    cam = cam or camera()
    uv, ok = project_points(cam, transform_points(T_CL, points))
    img = np.zeros((H, W), np.uint8)
    cv2.fillConvexPoly(img, cv2.convexHull(np.round(uv[ok]).astype(np.int32)), 1)
    if dilate:
        img = cv2.dilate(img, np.ones((2 * dilate + 1, 2 * dilate + 1), np.uint8))
    return InstanceMask.from_full_mask(mask_id, img.astype(bool), anomaly_score=0.9)


def frame(masks):
    return FrameMasks(stamp_ns=0, frame_id="cam", width=W, height=H, masks=list(masks))


def test_config_validation():
    FusionConfig()
    with pytest.raises(ValueError, match="cluster_gap"):
        FusionConfig(cluster_gap=0)
    with pytest.raises(ValueError, match="max_ground_slope_deg"):
        FusionConfig(max_ground_slope_deg=90)
    with pytest.raises(ValueError, match="min_points"):
        FusionConfig(min_points=0)


def test_ground_plane_fits_sloped_apron_not_wall():
    cloud, _, _ = scene()
    plane = fit_ground_plane(cloud, FusionConfig())
    expected = np.array([-SLOPE, 0, 1]) / math.hypot(SLOPE, 1)
    assert np.allclose(plane.normal, expected, atol=0.01)
    assert plane.z_at(10.0, 0.0) == pytest.approx(ground_z(10.0), abs=0.03)


def test_box_recovered_wall_excluded_ground_removed():
    cloud, box, wall = scene()
    m = mask_of(box)
    res = fuse(frame([m]), cloud, camera(), T_CL)
    (ob,), (rep,) = res.obstacles, res.reports
    assert rep.status == fusion.OK and not ob.low_support
    assert np.linalg.norm(ob.center - BOX_CENTER) < 0.1
    # wall (10 m behind) is seen through the mask but excluded; ground is removed
    assert rep.in_mask > rep.in_cluster
    assert ob.num_points == rep.in_cluster <= box.shape[0]
    assert res.num_ground > 0.9 * (cloud.shape[0] - box.shape[0] - wall.shape[0])
    assert np.allclose(sorted(ob.size[:2]), sorted(BOX_SIZE[:2]), atol=0.15)
    assert ob.size[2] == pytest.approx(BOX_SIZE[2], abs=0.1)
    assert ob.height == pytest.approx(BOX_SIZE[2], abs=0.1)
    assert ob.range == pytest.approx(math.hypot(*BOX_CENTER[:2]), abs=0.1)
    # box axis-aligned with x/y: yaw is a multiple of 90 degrees
    assert min(abs(ob.yaw), abs(abs(ob.yaw) - math.pi / 2)) < 0.05
    # footprint: hull polygon lying on the ground plane
    assert ob.footprint.shape[0] >= 4
    assert np.allclose(ob.footprint[:, 2], ground_z(ob.footprint[:, 0]), atol=0.05)
    assert ob.mask_id == m.id and ob.anomaly_score == pytest.approx(0.9)


def test_without_cluster_step_wall_would_pull_it_away():
    """The background points really are inside the mask: a huge gap keeps them and moves the centre."""
    cloud, box, _ = scene()
    res = fuse(frame([mask_of(box)]), cloud, camera(), T_CL, FusionConfig(cluster_gap=50.0, max_cluster_extent=None))
    assert np.linalg.norm(res.obstacles[0].center - BOX_CENTER) > 1.0


def test_low_support_and_no_points_are_reported_not_dropped():
    cloud, box, _ = scene()
    far = np.array([[16.0, -6.0, ground_z(16.0) + 0.5], [16.0, -6.1, ground_z(16.0) + 0.6],
                    [16.1, -6.0, ground_z(16.0) + 0.55]])
    lone = np.array([[14.0, 4.0, ground_z(14.0) + 0.5]])
    cloud = np.vstack([cloud, far, lone])
    few = mask_of(np.vstack([far, [[16.0, -6.0, ground_z(16.0)]]]), dilate=3, mask_id=2)
    one = mask_of(np.vstack([lone, [[14.0, 4.0, ground_z(14.0)]]]), dilate=3, mask_id=4)
    sky = InstanceMask(3, (600, 5, 20, 20), np.ones((20, 20), bool), anomaly_score=0.5)
    res = fuse(frame([mask_of(box), few, sky, one]), cloud, camera(), T_CL)
    assert [r.status for r in res.reports] == [fusion.OK, fusion.LOW_SUPPORT, fusion.NO_POINTS,
                                               fusion.LOW_SUPPORT]
    assert [o.mask_id for o in res.obstacles] == [1, 2, 3, 4]
    low = res.obstacles[1]
    # 3 points (>= min_cluster_points): centre = their median
    assert low.low_support and low.num_points == 3
    assert np.allclose(low.center, np.median(far, axis=0))
    # 1 point: the ray through the mask's bottom-centre meets the ground near the object
    single = res.obstacles[3]
    assert single.low_support and single.num_points == 1
    assert np.linalg.norm(single.center[:2] - [14.0, 4.0]) < 1.0
    assert single.center[2] == pytest.approx(ground_z(single.center[0]), abs=0.05)
    # sky mask: the ray goes upwards, never meets the ground -> NaN centre
    assert res.obstacles[2].low_support and np.all(np.isnan(res.obstacles[2].center))


def test_nan_points_are_ignored():
    cloud, box, _ = scene()
    m = mask_of(box)
    ref = fuse(frame([m]), cloud, camera(), T_CL).obstacles[0]
    bad = cloud.copy()
    bad[::7, 1] = np.nan
    bad[::11, 2] = np.inf
    dirty = np.vstack([cloud, bad[::7], bad[::11]])
    res = fuse(frame([m]), dirty, camera(), T_CL)
    assert res.num_finite == cloud.shape[0]
    assert np.allclose(res.obstacles[0].center, ref.center)
    assert res.obstacles[0].num_points == ref.num_points


@pytest.mark.parametrize("cloud,status", [(np.zeros((0, 3)), fusion.EMPTY_CLOUD),
                                          (np.full((100, 3), np.nan), fusion.NO_FINITE_POINTS)])
def test_empty_and_all_nan_cloud(cloud, status):
    _, box, _ = scene()
    res = fuse(frame([mask_of(box)]), cloud, camera(), T_CL)
    assert [r.status for r in res.reports] == [status]
    assert res.obstacles[0].low_support and np.all(np.isnan(res.obstacles[0].center))
    # with a configured fallback ground plane, the ground-contact ray still gives a position
    res = fuse(frame([mask_of(box)]), cloud, camera(), T_CL, FusionConfig(fallback_ground_z=-1.4))
    c = res.obstacles[0].center
    assert c[2] == pytest.approx(-1.4) and 8.0 < c[0] < 13.0


def test_bad_inputs_raise():
    cloud, box, _ = scene()
    m = mask_of(box)
    with pytest.raises(ValueError, match="masks are 640x360"):
        fuse(FrameMasks(0, "cam", 640, 360, [m]), cloud, camera(), T_CL)
    with pytest.raises(ValueError, match="T_cam_lidar"):
        fuse(frame([m]), cloud, camera(), np.eye(3))
    with pytest.raises(ValueError, match="points"):
        fuse(frame([m]), cloud[:, :2], camera(), T_CL)


def test_no_masks_gives_nothing():
    cloud, _, _ = scene()
    res = fuse(frame([]), cloud, camera(), T_CL)
    assert res.obstacles == [] and res.reports == [] and res.num_projected > 0


DISTORTIONS = [
    ("plumb_bob", np.array([-0.28, 0.07, 0.001, -0.0005, 0.0])),
    ("rational_polynomial", np.array([0.3, -0.1, 0.001, 0.0005, 0.02, 0.6, -0.05, 0.04])),
]


@pytest.mark.parametrize("model,D", DISTORTIONS)
def test_projection_matches_opencv(model, D):
    rng = np.random.default_rng(1)
    pts = np.column_stack([rng.uniform(-4, 4, 500), rng.uniform(-2, 2, 500), rng.uniform(2, 20, 500)])
    uv, ok = project_points(camera(model, D), pts)
    ref, _ = cv2.projectPoints(pts.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), K, D)
    assert ok.all()
    assert np.allclose(uv, ref.reshape(-1, 2), atol=1e-6)


def test_projection_equidistant_matches_opencv_fisheye():
    D = np.array([0.05, -0.01, 0.002, -0.0005])
    rng = np.random.default_rng(2)
    pts = np.column_stack([rng.uniform(-4, 4, 300), rng.uniform(-2, 2, 300), rng.uniform(2, 20, 300)])
    uv, ok = project_points(camera("equidistant", D), pts)
    ref, _ = cv2.fisheye.projectPoints(pts.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), K, D)
    assert ok.all() and np.allclose(uv, ref.reshape(-1, 2), atol=1e-6)


def test_projection_rejects_points_behind_and_folded_back():
    cam = camera("plumb_bob", np.array([-0.4, 0.15, 0, 0, 0]))
    pts = np.array([[0.0, 0.0, -5.0], [0.0, 0.0, 5.0], [60.0, 0.0, 1.0]])  # behind, centre, far off-axis
    uv, ok = project_points(cam, pts)
    assert ok.tolist() == [False, True, False]
    assert np.isnan(uv[0]).all() and np.allclose(uv[1], [640, 360])


@pytest.mark.parametrize("model,D", DISTORTIONS)
def test_fusion_with_distorted_camera(model, D):
    cloud, box, _ = scene()
    cam = camera(model, D)
    res = fuse(frame([mask_of(box, cam)]), cloud, cam, T_CL)
    assert res.reports[0].status == fusion.OK
    assert np.linalg.norm(res.obstacles[0].center - BOX_CENTER) < 0.1


_GROUND = None


def _ground():
    global _GROUND
    if _GROUND is None:
        gx, gy = np.meshgrid(np.arange(2.0, 40.0, 0.3), np.arange(-15.0, 15.0, 0.3))
        _GROUND = np.column_stack([gx.ravel(), gy.ravel(), ground_z(gx.ravel())])
    return _GROUND


@settings(max_examples=30, deadline=None)
@given(x=st.floats(4.0, 30.0), y=st.floats(-0.3, 0.3), lift=st.floats(0.4, 2.0), radius=st.floats(0.1, 0.8),
       n=st.integers(5, 200), seed=st.integers(0, 2 ** 16))
def test_property_points_in_mask_are_recovered(x, y, lift, radius, n, seed):
    """A compact blob above the ground, masked by its own projection: fusion returns exactly its points."""
    rng = np.random.default_rng(seed)
    y = y * x  # stay inside the horizontal field of view
    centre = np.array([x, y, ground_z(x) + lift + radius])
    blob = centre + rng.uniform(-radius, radius, (n, 3))
    cam = camera()
    res = fuse(frame([mask_of(blob, cam, dilate=1)]), np.vstack([_ground(), blob]), cam, T_CL,
               FusionConfig(erode_px=0))
    rep, ob = res.reports[0], res.obstacles[0]
    assert rep.in_cluster == n
    assert np.allclose(rep.centroid, blob.mean(axis=0), atol=1e-9)  # float64 cloud: exact
    assert not ob.low_support and ob.num_points == n


# ---------------------------------------------------------------- KITTI (real data)

def _kitti_calib(path):
    vals = {}
    for line in path.read_text().splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            vals[k] = np.array(v.split(), dtype=float)
    P2 = vals["P2"].reshape(3, 4)
    R0 = np.eye(4)
    R0[:3, :3] = vals["R0_rect"].reshape(3, 3)
    Tr = np.eye(4)
    Tr[:3, :] = vals["Tr_velo_to_cam"].reshape(3, 4)
    K2 = P2[:, :3]
    shift = np.eye(4)
    shift[:3, 3] = np.linalg.solve(K2, P2[:, 3])  # camera 2 offset from the rectified reference camera
    return K2, shift @ R0 @ Tr, R0 @ Tr


def kitti_errors(root):
    """Per labelled object: (frame, class, num_points, box-centre error, centroid error, range)."""
    rows = []
    for calib in sorted((root / "calib").glob("*.txt")):
        name = calib.stem
        img = cv2.imread(str(root / "image_2" / (name + ".png")))
        h, w = img.shape[:2]
        K2, T_cam_lidar, T_rect_lidar = _kitti_calib(calib)
        cam = PinholeCamera(w, h, K2, np.zeros(5), "plumb_bob", "cam2")
        cloud = np.fromfile(str(root / "velodyne" / (name + ".bin")), dtype=np.float32).reshape(-1, 4)
        masks, truth = [], []
        for i, line in enumerate((root / "label_2" / (name + ".txt")).read_text().splitlines()):
            f = line.split()
            if f[0] == "DontCare":
                continue
            x0, y0, x1, y1 = [float(v) for v in f[4:8]]
            hh, loc = float(f[8]), np.array(f[11:14], dtype=float)
            c_rect = loc - [0, hh / 2, 0]  # label location is the bottom centre; y points down
            truth.append((f[0], transform_points(np.linalg.inv(T_rect_lidar), c_rect[None])[0]))
            xi0, yi0 = int(math.floor(x0)), int(math.floor(y0))
            xi1, yi1 = min(int(math.ceil(x1)), w), min(int(math.ceil(y1)), h)
            masks.append(InstanceMask(i, (xi0, yi0, xi1 - xi0, yi1 - yi0),
                                      np.ones((yi1 - yi0, xi1 - xi0), bool), anomaly_score=1.0))
        res = fuse(FrameMasks(0, "cam2", w, h, masks), cloud, cam, T_cam_lidar)
        for (cls, c), ob, rep in zip(truth, res.obstacles, res.reports):
            rows.append((name, cls, ob.num_points, float(np.linalg.norm(ob.center - c)),
                         float(np.linalg.norm(rep.centroid - c)), float(math.hypot(c[0], c[1]))))
    return rows


def test_kitti_fused_centres_match_labels(shared_data):
    root = shared_data / "kitti_object_3frames" / "training"
    if not root.is_dir():
        pytest.skip("kitti_object_3frames is absent from shared data")
    rows = kitti_errors(root)
    for r in rows:
        print("kitti %s %-10s points=%4d box-centre err=%.2f m centroid err=%.2f m range=%.1f m" % r)
    good = [r for r in rows if r[2] >= 20]
    err = np.array([r[3] for r in good])
    print("kitti: %d/%d objects with >= 20 points; box-centre median %.2f m, within 0.5 m %.0f %%; "
          "point-centroid median %.2f m" % (len(good), len(rows), np.median(err), 100 * np.mean(err < 0.5),
                                           np.median([r[4] for r in good])))
    assert len(good) >= 4
    assert np.median(err) < 1.0


# ---------------------------------------------------------------- nuScenes (real data)

def nuscenes_errors(root):
    """CAM_FRONT objects of the one nuScenes-mini sample: (class, num_points, box-centre err, range)."""
    import json

    info = json.loads((root / "sample_info.json").read_text())["data_list"][0]
    front = info["images"]["CAM_FRONT"]
    T_cam_lidar = np.array(front["lidar2cam"], dtype=float)
    img = cv2.imread(str(root / front["img_path"]))
    h, w = img.shape[:2]
    cam = PinholeCamera(w, h, np.array(front["cam2img"])[:3, :3], np.zeros(5), "plumb_bob", "CAM_FRONT")
    cloud = np.fromfile(str(root / info["lidar_points"]["lidar_path"]), dtype=np.float32).reshape(-1, 5)
    boxes, truth = [], []
    for inst in info["cam_instances"]["CAM_FRONT"]:
        x0, y0, x1, y1 = inst["bbox"]
        xi0, yi0 = max(int(math.floor(x0)), 0), max(int(math.floor(y0)), 0)
        xi1, yi1 = min(int(math.ceil(x1)), w), min(int(math.ceil(y1)), h)
        if xi1 <= xi0 or yi1 <= yi0:
            continue
        # camera frame x, y, z, l, h, w, yaw; the position is the LiDAR-frame box centre of the sample's
        # `instances` (mmdetection3d v1.1 infos, gravity centre: origin (0.5, 0.5, 0.5)) moved by lidar2cam
        c_cam = np.array(inst["bbox_3d"][:3])
        boxes.append((xi0, yi0, xi1, yi1, float(np.linalg.norm(c_cam))))
        truth.append((inst["bbox_label"], transform_points(np.linalg.inv(T_cam_lidar), c_cam[None])[0]))
    masks = [InstanceMask(i, (x0, y0, x1 - x0, y1 - y0), np.ones((y1 - y0, x1 - x0), bool), anomaly_score=1.0)
             for i, (x0, y0, x1, y1, _) in enumerate(boxes)]
    res = fuse(FrameMasks(0, "CAM_FRONT", w, h, masks), cloud, cam, T_cam_lidar)
    return [(cls, ob.num_points, float(np.linalg.norm(ob.center - c)), float(math.hypot(c[0], c[1])))
            for (cls, c), ob in zip(truth, res.obstacles)]


def test_nuscenes_fused_centres_match_labels(shared_data):
    root = shared_data / "nuscenes_mini_1sample"
    if not (root / "sample_info.json").is_file():
        pytest.skip("nuscenes_mini_1sample is absent from shared data")
    rows = nuscenes_errors(root)
    for r in rows:
        print("nuscenes class=%d points=%4d box-centre err=%.2f m range=%.1f m" % r)
    good = np.array([r[2] for r in rows if r[1] >= 10])
    allf = np.array([r[2] for r in rows if np.isfinite(r[2])])
    print("nuscenes: %d/%d objects with >= 10 points; median %.2f m, within 0.5 m %.0f %%; all finite: median "
          "%.2f m" % (good.size, len(rows), np.median(good), 100 * np.mean(good < 0.5), np.median(allf)))
    # Looser than KITTI: one sparse 32-beam sweep, rectangular boxes of a row of overlapping barriers
    # (the nearest cluster is the neighbour in front), an unlabelled pole in front of a pedestrian, a truck
    # seen side-on (visible-surface bias ~ half its width). Measured: median 1.57 m over 10 objects.
    assert good.size >= 5
    assert np.median(good) < 2.0
