"""The LiDAR fusion workload of ``s2m bench`` (ray-cast 64-beam sweep, 8 masks at 1280x720) and its timing."""
import math
import time
from dataclasses import dataclass
from typing import List, Tuple

import cv2
import numpy as np

from s2m_ros.bench.timing import stats
from s2m_ros.files import progress
from s2m_ros.obstacles.camera import PinholeCamera
from s2m_ros.types import FrameMasks, InstanceMask


# ---------------------------------------------------------------- fusion stage (issue #6)

FUSION_PROFILE, FUSION_BACKEND = "fusion", "cpu"
LIDAR_PERIOD_MS = 100.0  # 10 Hz spinning LiDAR: the budget fusion + tracking must fit in


@dataclass
class FusionWorkload:
    """One apron scene seen by a 64-beam LiDAR (120k points) and a 1280x720 camera, with 8 masks.

    ``clouds`` are noise realisations of the same sweep (float32 (N, 3), LiDAR frame, NaN rows for
    rays without a return), cycled over the frames; ``masks`` are the camera masks: the planted
    objects' silhouettes first (``objects[k]`` is mask k + 1), then the bare-ground patches.
    """

    camera: PinholeCamera
    T_cam_lidar: np.ndarray  # 4x4 camera (optical) <- LiDAR
    clouds: List[np.ndarray]
    masks: List[InstanceMask]
    objects: List[Tuple[str, np.ndarray, np.ndarray, float]]  # (name, centre xyz, size lwh, yaw)
    ground_patches: List[np.ndarray]  # (4, 3) corners of each bare-ground patch (LiDAR frame)
    ground: Tuple[float, float, float]  # z = a * x + b * y + c: the apron in the LiDAR frame
    period_ns: int = int(LIDAR_PERIOD_MS * 1e6)

    def frame(self, i, epoch_ns=1_700_000_000 * 10 ** 9):
        """(FrameMasks, cloud, stamp_ns) of frame ``i``: consecutive 10 Hz stamps."""
        stamp = epoch_ns + i * self.period_ns
        fm = FrameMasks(stamp_ns=stamp, frame_id="camera_optical", width=self.camera.width,
                        height=self.camera.height, masks=self.masks)
        return fm, self.clouds[i % len(self.clouds)], stamp


# planted objects in the camera's view: name, (x, y) in the LiDAR frame, size (l, w, h), yaw
_FUSION_OBJECTS = (("cone", (7.0, 1.2), (0.40, 0.40, 0.70), 0.0),
                   ("suitcase", (10.0, -2.2), (0.70, 0.45, 0.55), 0.4),
                   ("toolbox", (14.0, 3.6), (1.00, 0.80, 0.90), -0.3),
                   ("dolly", (20.0, -5.5), (3.00, 1.60, 1.30), 0.2),
                   ("tyre_stack", (26.0, 1.5), (0.90, 0.90, 0.80), 0.8),
                   ("gpu_cart", (31.0, 12.5), (2.20, 1.20, 1.50), -0.5))
# bare-ground squares (centre x, y; side) that get a false-positive mask each
_FUSION_GROUND_PATCHES = (((8.5, -4.0), 1.2), ((16.5, 0.0), 2.5))
# background structure (never masked): centre (x, y, height of the bottom above the ground), size, yaw
_FUSION_BACKGROUND = (((76.0, 0.0, 0.0), (6.0, 150.0, 14.0), 0.0),  # terminal facade ahead
                      ((25.0, 42.0, 0.0), (60.0, 18.0, 12.0), 0.05),  # hangar on the left
                      ((5.0, -28.0, 3.5), (30.0, 3.5, 3.0), 0.3),  # jet bridge (raised)
                      ((18.0, -27.0, 0.0), (1.2, 1.2, 3.5), 0.0),  # its support leg
                      ((40.0, -16.0, 0.0), (0.3, 0.3, 15.0), 0.0),  # light poles
                      ((40.0, 16.0, 0.0), (0.3, 0.3, 15.0), 0.0),
                      ((-20.0, 12.0, 0.0), (0.3, 0.3, 15.0), 0.0),
                      ((-9.0, 3.0, 0.0), (3.2, 1.8, 1.6), 0.1),  # tug behind the ego
                      ((-4.0, -12.0, 0.0), (6.0, 2.5, 2.4), -0.2),  # catering truck
                      ((-30.0, -5.0, 0.0), (4.0, 40.0, 6.0), 0.0))  # building behind


def _plumb_bob_camera(width, height, hfov_deg=70.0):
    fx = 0.5 * width / math.tan(0.5 * math.radians(hfov_deg))
    K = [[fx, 0.0, 0.5 * (width - 1) + 3.1], [0.0, fx, 0.5 * (height - 1) - 2.4], [0.0, 0.0, 1.0]]
    return PinholeCamera(width, height, K, [-0.06, 0.015, 0.0004, -0.0003, 0.0], "plumb_bob", "camera_optical")


def _camera_extrinsics():
    """4x4 camera (optical) <- LiDAR: camera 0.4 m ahead of, 0.2 m left of and 0.25 m below the LiDAR,
    pitched 8 deg down, yawed 1.5 deg, rolled 0.5 deg."""
    roll, pitch, yaw = (math.radians(v) for v in (0.5, 8.0, 1.5))
    cr, sr, cp, sp, cy, sy = (math.cos(roll), math.sin(roll), math.cos(pitch), math.sin(pitch),
                              math.cos(yaw), math.sin(yaw))
    R_body = (np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]]) @ np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
              @ np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]]))
    optical = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])  # optical x, y, z in LiDAR axes
    R_lc = R_body @ optical  # LiDAR <- camera
    c = np.array([0.4, 0.2, -0.25])
    T = np.eye(4)
    T[:3, :3] = R_lc.T
    T[:3, 3] = -R_lc.T @ c
    return T


def _silhouette(camera, T_cam_lidar, corners, dilate_px=1):
    """Filled image region of a convex set given by its corners (LiDAR frame): the hull of the projections
    of points sampled along all corner-to-corner segments (so lens distortion bends the outline)."""
    from s2m_ros.obstacles.fusion import project_points
    from s2m_ros.obstacles.geometry import transform_points

    a, b = np.repeat(corners, len(corners), axis=0), np.tile(corners, (len(corners), 1))
    s = np.linspace(0.0, 1.0, 24)[:, None, None]
    pts = (a[None] * (1 - s) + b[None] * s).reshape(-1, 3)
    uv, ok = project_points(camera, transform_points(T_cam_lidar, pts))
    img = np.zeros((camera.height, camera.width), np.uint8)
    cv2.fillConvexPoly(img, cv2.convexHull(np.round(uv[ok] * 16).astype(np.int32)), 1, cv2.LINE_8, 4)
    if dilate_px:  # a segmenter's mask bleeds a little over the outline
        img = cv2.dilate(img, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilate_px + 1,) * 2))
    return img.astype(bool)


def fusion_workload(seed=0, beams=64, azimuth_steps=1875, width=1280, height=720, nan_fraction=0.05,
                    variants=4):
    """The fusion benchmark's inputs, deterministic in ``seed`` (object jitter and all noise).

    LiDAR frame: x forward, y left, z up, 1.95 m above an apron that rises 1 deg forward and 0.4 deg
    to the left. A spinning LiDAR (``beams`` x ``azimuth_steps`` rays, elevations -25..+2 deg) is
    ray-cast analytically against the apron, 6 planted obstacles in the camera's view and background
    structure all around (terminal facade, hangar, raised jet bridge, poles, vehicles), with 2 cm range
    noise; rays without a return (sky, beyond 120 m) plus random drop-outs make exactly
    ``nan_fraction`` of the rows NaN. Masks: each object's silhouette (dilated 1 px, as a segmenter's),
    then the image of a square of bare ground per entry of ``_FUSION_GROUND_PATCHES`` (false positives
    on a stain or shadow, which fusion has to check against the ground returns): 8 masks.
    """
    from s2m_ros.sim.solids import box_solid, ray_cast

    rng = np.random.default_rng(seed)
    camera = _plumb_bob_camera(width, height)
    T_cl = _camera_extrinsics()
    a, b, c = math.tan(math.radians(1.0)), math.tan(math.radians(0.4)), -1.95

    def ground_z(x, y):
        return a * x + b * y + c

    objects, solids = [], []
    for name, (x, y), size, yaw in _FUSION_OBJECTS:
        x, y = x + rng.uniform(-0.3, 0.3), y + rng.uniform(-0.3, 0.3)
        yaw += rng.uniform(-0.2, 0.2)
        centre = np.array([x, y, ground_z(x, y) + 0.5 * size[2] - 0.02])  # sunk 2 cm: no gap on the slope
        objects.append((name, centre, np.array(size, float), yaw))
        solids.append(box_solid(centre, size, yaw))
    for (x, y, lift), size, yaw in _FUSION_BACKGROUND:
        solids.append(box_solid((x, y, ground_z(x, y) + lift + 0.5 * size[2] - 0.05), size, yaw))

    elev = np.radians(np.linspace(-25.0, 2.0, beams))
    azim = 2 * math.pi * np.arange(azimuth_steps) / azimuth_steps
    ce, se = np.cos(elev)[:, None], np.sin(elev)[:, None]
    dirs = np.stack([ce * np.cos(azim), ce * np.sin(azim), se + 0.0 * azim], axis=-1).reshape(-1, 3)  # by beam
    t_obj, _, _ = ray_cast(solids, np.zeros((1, 3)), dirs)
    n_up = np.array([-a, -b, 1.0])
    den = dirs @ n_up  # ray o + t d meets z = a x + b y + c where t (d . n_up) = c
    with np.errstate(divide="ignore"):
        t_gnd = np.where(den < 0, c / den, np.inf)
    t = np.minimum(t_obj, t_gnd)
    t[t > 120.0] = np.inf
    n = t.size
    n_nan = int(round(nan_fraction * n))
    no_return = np.flatnonzero(~np.isfinite(t))
    if no_return.size > n_nan:
        raise ValueError("%d rays see nothing: more than the %d NaN points asked for" % (no_return.size, n_nan))
    clouds = []
    for k in range(variants):
        vr = np.random.default_rng([seed, k])
        drop = vr.choice(np.flatnonzero(np.isfinite(t)), n_nan - no_return.size, replace=False)
        r = t + vr.normal(0.0, 0.02, n)
        r[drop] = np.nan
        cloud = (dirs * r[:, None]).astype(np.float32)
        cloud[~np.isfinite(r)] = np.nan  # no return: the whole row NaN (as an organised cloud stores it)
        clouds.append(cloud)

    masks, patches = [], []
    for k, (name, centre, size, yaw) in enumerate(objects):
        corners = box_solid(centre, size, yaw).vertices
        masks.append(InstanceMask.from_full_mask(k + 1, _silhouette(camera, T_cl, corners),
                                                 anomaly_score=round(float(rng.uniform(0.6, 0.95)), 3)))
    for (x, y), side in _FUSION_GROUND_PATCHES:
        h = 0.5 * side
        xy = np.array([[x - h, y - h], [x + h, y - h], [x + h, y + h], [x - h, y + h]])
        corners = np.column_stack([xy, ground_z(xy[:, 0], xy[:, 1])])
        patches.append(corners)
        masks.append(InstanceMask.from_full_mask(len(masks) + 1, _silhouette(camera, T_cl, corners, 0),
                                                 anomaly_score=round(float(rng.uniform(0.3, 0.5)), 3)))
    return FusionWorkload(camera=camera, T_cam_lidar=T_cl, clouds=clouds, masks=masks, objects=objects,
                          ground_patches=patches, ground=(a, b, c))


def time_fusion(workload, frames, warmup, desc="fusion"):
    """Per-stage samples (ms): ``ObstaclePipeline.process`` (its ``fusion`` and ``tracking`` stages and
    ``total``) over ``warmup + frames`` consecutive 10 Hz frames, then the bare ``fuse`` call as ``fuse``
    (warm-up runs excluded from both). Returns (samples, last ObstacleStep)."""
    from s2m_ros.obstacles.fusion import fuse
    from s2m_ros.obstacles.pipeline import ObstaclePipeline

    pipe = ObstaclePipeline()
    samples, step = {}, None
    for i in progress(range(warmup + frames), total=warmup + frames, desc=desc):
        fm, cloud, stamp = workload.frame(i)
        t0 = time.perf_counter()
        step = pipe.process(fm, cloud, workload.camera, workload.T_cam_lidar, stamp, lidar_frame="lidar")
        t1 = time.perf_counter()
        if i < warmup:
            continue
        row = dict(step.stage_ms, total=(t1 - t0) * 1e3)
        for k, v in row.items():
            samples.setdefault(k, []).append(v)
    for i in range(warmup + frames):
        fm, cloud, _ = workload.frame(i)
        t0 = time.perf_counter()
        fuse(fm, cloud, workload.camera, workload.T_cam_lidar, pipe.fusion_config)
        if i >= warmup:
            samples.setdefault("fuse", []).append((time.perf_counter() - t0) * 1e3)
    return samples, step


def bench_fusion(result, frames, warmup, seed=0):
    """Adds the ``fusion/cpu/<stage>`` stages, the LiDAR-period ratios and a workload summary to ``result``."""
    workload = fusion_workload(seed)
    samples, step = time_fusion(workload, frames, warmup)
    key = "%s/%s" % (FUSION_PROFILE, FUSION_BACKEND)
    for stage in ("fuse", "fusion", "tracking", "total"):
        result["stages"]["%s/%s" % (key, stage)] = stats(samples[stage])
    comp = result["comparisons"]
    median = {stage: result["stages"]["%s/%s" % (key, stage)]["median_ms"] for stage in ("fusion", "total")}
    comp["fusion_vs_lidar_period"] = round(median["fusion"] / LIDAR_PERIOD_MS, 4)
    comp["fusion_tracking_vs_lidar_period"] = round(median["total"] / LIDAR_PERIOD_MS, 4)
    cloud = workload.clouds[0]
    result["fusion_workload"] = {
        "points": int(cloud.shape[0]), "nan_points": int(np.count_nonzero(np.isnan(cloud[:, 0]))),
        "masks": len(workload.masks), "image": [workload.camera.width, workload.camera.height],
        "lidar_period_ms": LIDAR_PERIOD_MS, "seed": seed,
        "detections_ok": sum(r.status == "ok" for r in step.fusion.reports) if step and step.fusion else 0,
        "confirmed_tracks": len(step.confirmed) if step else 0}
    return workload
