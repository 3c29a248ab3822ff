"""2D instance masks + one LiDAR cloud -> 3D obstacles (ROS-free, vectorised).

Pipeline of :func:`fuse` (all geometry in the LiDAR frame, z up, unless stated):

1. drop non-finite points; fit the ground plane (vectorised RANSAC restricted to near-horizontal
   planes, so a sloped apron still fits, then a least-squares refit on the inliers); points within
   ``ground_band`` metres of the plane are ground and removed;
2. transform the rest to the camera frame, keep ``z > min_depth``, project ONCE (with the camera's lens
   distortion) and keep the points that land inside the image;
3. per mask: erode the cropped mask a little, take the projected points whose pixel lies in it (indexing
   the ROI crop, no full-frame image per mask), and keep only the nearest depth cluster along the camera
   rays, so background seen through the mask edges does not pull the obstacle away;
4. box (cv2.minAreaRect on x, y), ground footprint (convex hull at the ground height), height above the
   plane, horizontal range from the sensor, number of points;
5. a mask with no point above the ground band is FLAT when at least ``flat_min_points`` ground returns
   fall inside it and 90 % of them lie lower than ``flat_max_height`` (paint, a shadow: the LiDAR
   measured a flat surface there); the ground points in the camera's view are projected for this only
   when such a mask exists.

A mask with fewer than ``min_points`` supporting points is not dropped: it becomes an
:class:`Obstacle3D` with ``low_support=True`` (size 0, no footprint). Its centre is the median of its
few points when there are at least ``min_cluster_points``, else where the ray through the mask's
bottom-centre pixel (its ground contact) meets the ground plane, else NaN (no plane, ray not hitting
the ground in front of the camera, or hitting it beyond ``max_range``: a mask at the horizon has no
usable ground position). Consumers must check ``np.isfinite``.

Errors: masks whose frame size differs from the camera, a malformed cloud array or transform raise
``ValueError``. An empty or all-NaN cloud is not an error (a LiDAR may legitimately return nothing):
every mask is then reported with reason ``empty_cloud`` / ``no_finite_points``.
"""
import math
from dataclasses import dataclass, field
from typing import List, Optional

import cv2
import numpy as np

from s2m_ros.config import check_fields
from s2m_ros.obstacles.geometry import transform_points

from s2m_ros.obstacles.camera import PinholeCamera
from s2m_ros.types import Obstacle3D

# Per-mask status values of MaskReport.status
OK = "ok"
LOW_SUPPORT = "low_support"  # some points, fewer than min_points in the nearest cluster
NO_POINTS = "no_points"  # no projected point inside the (eroded) mask
OUTSIDE_IMAGE = "outside_image"  # mask ROI does not overlap the image
FLAT = "flat"  # no point above the ground band, and many ground returns in the mask, all flat: paint,
# a shadow or a stain, not an object (LiDAR measured the surface there)
EMPTY_CLOUD = "empty_cloud"
NO_FINITE_POINTS = "no_finite_points"


@dataclass
class FusionConfig:
    """Parameters of :func:`fuse`. Lengths in metres, pixels for ``erode_px``."""

    # ground plane (RANSAC on a random subsample, then least squares on all inliers)
    ransac_iterations: int = 64
    ransac_sample: int = 3000  # points used to score hypotheses
    ransac_threshold: float = 0.15  # inlier distance to the plane while fitting
    max_ground_slope_deg: float = 15.0  # plane normals further than this from +z are rejected
    ground_band: float = 0.25  # points up to this height above the plane are ground
    min_ground_inliers: int = 50
    fallback_ground_z: Optional[float] = None  # plane z = value when the fit fails; None: no removal
    seed: int = 0
    # projection / association
    min_depth: float = 0.5  # camera-frame z below which points are ignored
    max_range: float = 80.0  # horizontal range beyond which points are ignored
    erode_px: int = 2
    cluster_gap: float = 0.8  # a depth gap larger than this starts a new cluster
    # depth extent kept from the cluster's nearest point: background continuous in depth (a fence, a
    # building side) has no gap to split at; None keeps the whole cluster
    max_cluster_extent: Optional[float] = 3.0
    min_cluster_points: int = 3  # nearest cluster with at least this many points is the object
    min_points: int = 5  # fewer supporting points -> low_support
    # a mask with no point above the ground band but at least flat_min_points ground returns inside it,
    # 90 % of them lower than flat_max_height above the plane, is FLAT (0 disables the test)
    flat_min_points: int = 12
    flat_max_height: float = 0.05

    def __post_init__(self):
        def positive(v):
            return math.isfinite(float(v)) and float(v) > 0

        check_fields(self, [(n, int(getattr(self, n)) >= 1, ">= 1") for n in (
            "ransac_iterations", "ransac_sample", "min_ground_inliers", "min_cluster_points", "min_points")]
            + [(n, positive(getattr(self, n)), "a positive finite number") for n in (
                "ransac_threshold", "ground_band", "cluster_gap", "max_range")]
            + [("max_ground_slope_deg", 0 <= self.max_ground_slope_deg < 90, "in [0, 90)"),
               ("min_depth", math.isfinite(self.min_depth) and self.min_depth >= 0, ">= 0"),
               ("erode_px", self.erode_px >= 0, ">= 0"),
               ("flat_min_points", int(self.flat_min_points) >= 0, ">= 0"),
               ("flat_max_height", positive(self.flat_max_height), "a positive finite number"),
               ("max_cluster_extent", self.max_cluster_extent is None or self.max_cluster_extent > 0,
                "positive or None"),
               ("fallback_ground_z", self.fallback_ground_z is None or math.isfinite(self.fallback_ground_z),
                "finite or None")])


@dataclass
class GroundPlane:
    """Plane n . p + d = 0 with unit normal n pointing up (n_z > 0); height(p) = n . p + d."""

    normal: np.ndarray
    d: float
    inliers: int = 0  # inliers among the (strided) points used for the least-squares refit
    fitted: bool = True  # False: the configured fallback plane

    def height(self, points):
        return np.asarray(points) @ self.normal + self.d

    def z_at(self, x, y):
        """z of the plane at horizontal position(s) x, y."""
        n = self.normal
        return -(n[0] * np.asarray(x) + n[1] * np.asarray(y) + self.d) / n[2]


@dataclass
class MaskReport:
    """What happened to one mask: status (see module constants), counts and a readable reason."""

    mask_id: int
    status: str
    reason: str = ""
    in_mask: int = 0  # projected non-ground points inside the eroded mask
    in_cluster: int = 0  # of which in the nearest depth cluster
    centroid: np.ndarray = field(default_factory=lambda: np.full(3, np.nan))  # mean of cluster points


@dataclass
class FusionResult:
    obstacles: List[Obstacle3D]
    reports: List[MaskReport]
    plane: Optional[GroundPlane] = None
    num_points: int = 0  # input points
    num_finite: int = 0
    num_ground: int = 0
    num_projected: int = 0  # non-ground points inside the image


# ---------------------------------------------------------------- projection

def _distort(camera, x, y):
    """Apply the camera's distortion model to normalised coordinates (vectorised)."""
    D = camera.D
    if D.size == 0 or not np.any(D != 0):
        return x, y
    model = camera.distortion_model
    r2 = x * x + y * y
    if model == "equidistant":
        k1, k2, k3, k4 = D[:4]
        r = np.sqrt(r2)
        theta = np.arctan(r)
        t2 = theta * theta
        theta_d = theta * (1 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4))))
        scale = np.where(r > 1e-12, theta_d / np.maximum(r, 1e-12), 1.0)
        return x * scale, y * scale
    k1, k2, p1, p2, k3 = D[:5]
    radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
    if model == "rational_polynomial" and D.size >= 8:
        k4, k5, k6 = D[5:8]
        radial = radial / (1 + r2 * (k4 + r2 * (k5 + r2 * k6)))
    xy = x * y
    xd = x * radial + 2 * p1 * xy + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * xy
    return xd, yd


def _undistort_pixels(camera, pixels):
    """Normalised (x, y) of pixel positions (M, 2), inverting the distortion."""
    pts = np.asarray(pixels, dtype=np.float64).reshape(-1, 1, 2)
    D = camera.D
    if D.size == 0 or not np.any(D != 0):
        out = (pts.reshape(-1, 2) - camera.K[:2, 2]) / np.diag(camera.K)[:2]
        return out
    if camera.distortion_model == "equidistant":
        return cv2.fisheye.undistortPoints(pts, camera.K, D[:4].reshape(4, 1)).reshape(-1, 2)
    return cv2.undistortPoints(pts, camera.K, D.reshape(-1, 1)).reshape(-1, 2)


def _max_normalised_radius(camera):
    """Radius in normalised coordinates beyond which projections are not trusted.

    Polynomial distortion models fold back for rays far outside the field of view (a point behind the
    image border can land inside it); rays outside 1.2x the undistorted image border are discarded.
    """
    if camera.D.size == 0 or not np.any(camera.D != 0):
        return np.inf
    w, h = camera.width, camera.height
    border = np.array([[0, 0], [w / 2, 0], [w, 0], [w, h / 2], [w, h], [w / 2, h], [0, h], [0, h / 2]])
    radius = np.linalg.norm(_undistort_pixels(camera, border), axis=1)
    return 1.2 * float(np.max(radius)) if np.all(np.isfinite(radius)) else np.inf


def project_points(camera, points_cam, min_depth=1e-6):
    """Pixels (N, 2) of camera-frame points and a validity mask (in front, distortion trustworthy).

    Invalid rows hold NaN. Pixel centres are at integer coordinates (OpenCV convention).
    """
    p = np.asarray(points_cam)
    p = (p if p.dtype in (np.float32, np.float64) else p.astype(np.float64)).reshape(-1, 3)
    z = p[:, 2]
    valid = z > max(min_depth, 1e-9)
    zs = np.where(valid, z, 1.0)
    x, y = p[:, 0] / zs, p[:, 1] / zs
    rmax = _max_normalised_radius(camera)
    if np.isfinite(rmax):
        valid &= (x * x + y * y) <= rmax * rmax
    xd, yd = _distort(camera, x, y)
    K = camera.K
    uv = np.empty((p.shape[0], 2), dtype=p.dtype)
    uv[:, 0] = K[0, 0] * xd + K[0, 1] * yd + K[0, 2]
    uv[:, 1] = K[1, 1] * yd + K[1, 2]
    uv[~valid] = np.nan
    return uv, valid


# ---------------------------------------------------------------- ground

def fit_ground_plane(points, config):
    """Robust ground plane of (N, 3) finite points, or None when no near-horizontal plane is supported.

    Vectorised RANSAC: all hypotheses (seeded rng) are built and scored at once on a subsample, planes
    tilted more than ``max_ground_slope_deg`` are rejected, the best one's inliers over the full cloud
    are refitted by least squares (SVD), twice.
    """
    n_pts = points.shape[0]
    if n_pts < 3:
        return None
    rng = np.random.default_rng(config.seed)
    sub = points if n_pts <= config.ransac_sample else points[rng.choice(n_pts, config.ransac_sample,
                                                                           replace=False)]
    sub = sub.astype(np.float64, copy=False)
    idx = rng.integers(0, sub.shape[0], size=(config.ransac_iterations, 3))
    a, b, c = sub[idx[:, 0]], sub[idx[:, 1]], sub[idx[:, 2]]
    normals = np.cross(b - a, c - a)
    norm = np.linalg.norm(normals, axis=1)
    ok = norm > 1e-9
    normals = normals / np.where(ok, norm, 1.0)[:, None]
    normals *= np.where(normals[:, 2] < 0, -1.0, 1.0)[:, None]
    ok &= normals[:, 2] >= math.cos(math.radians(config.max_ground_slope_deg))
    if not np.any(ok):
        return None
    normals, a = normals[ok], a[ok]
    d = -np.einsum("ij,ij->i", normals, a)
    dist = np.abs(sub @ normals.T + d)  # (S, H)
    counts = np.count_nonzero(dist < config.ransac_threshold, axis=0)
    best = int(np.argmax(counts))
    normal, dbest = normals[best], float(d[best])
    # least-squares refit on a strided subsample (<= 20k points: plenty for 3 parameters, keeps it fast)
    refit = points[::max(1, n_pts // 20000)].astype(np.float64, copy=False)
    inliers = None
    for _ in range(2):
        inliers = np.abs(refit @ normal + dbest) < config.ransac_threshold
        if np.count_nonzero(inliers) < max(3, config.min_ground_inliers):
            return None
        q = refit[inliers]
        centre = q.mean(axis=0)
        _, _, vt = np.linalg.svd(q - centre, full_matrices=False)
        n_new = vt[2] if vt[2, 2] >= 0 else -vt[2]
        if n_new[2] < math.cos(math.radians(config.max_ground_slope_deg)):
            break  # keep the RANSAC plane rather than a refit that tilted too far
        normal, dbest = n_new, float(-n_new @ centre)
    return GroundPlane(normal=normal, d=dbest, inliers=int(np.count_nonzero(inliers)))


# ---------------------------------------------------------------- per mask

def _nearest_cluster(depth, gap, min_points, max_extent=None):
    """Indices (into ``depth``) of the nearest depth cluster with >= min_points; else the largest one.

    With ``max_extent``, only its points within that depth of the cluster's nearest point are kept.
    """
    order = np.argsort(depth, kind="stable")
    sd = depth[order]
    cuts = np.flatnonzero(np.diff(sd) > gap) + 1
    starts = np.concatenate(([0], cuts))
    ends = np.concatenate((cuts, [sd.size]))
    sizes = ends - starts
    big = np.flatnonzero(sizes >= min_points)
    k = int(big[0]) if big.size else int(np.argmax(sizes))
    end = ends[k]
    if max_extent is not None:
        end = starts[k] + int(np.searchsorted(sd[starts[k]:end], sd[starts[k]] + max_extent, side="right"))
    return order[starts[k]:end]


def _eroded_crop(mask, erode_px):
    crop = mask.mask.astype(np.uint8)
    if erode_px <= 0 or crop.size == 0:
        return crop.astype(bool), False
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * erode_px + 1, 2 * erode_px + 1))
    eroded = cv2.erode(crop, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)
    if not eroded.any():  # thin mask: keep it whole rather than lose it
        return crop.astype(bool), True
    return eroded, False


def _ground_contact_pixel(mask):
    """Bottom-centre pixel (x, y) of a mask: where a standing object touches the ground."""
    rows = np.flatnonzero(mask.mask.any(axis=1))
    if rows.size == 0:
        x, y, w, h = mask.roi
        return x + (w - 1) / 2.0, y + h - 1.0
    r = rows[-1]
    cols = np.flatnonzero(mask.mask[r])
    return mask.roi[0] + cols.mean(), mask.roi[1] + r


def _ray_ground_point(camera, T_lidar_cam, plane, pixel, max_range=math.inf):
    """LiDAR-frame point where the camera ray through ``pixel`` meets the plane; None if it does not."""
    if plane is None:
        return None
    xn = _undistort_pixels(camera, np.array([pixel]))[0]
    ray = T_lidar_cam[:3, :3] @ np.array([xn[0], xn[1], 1.0])
    origin = T_lidar_cam[:3, 3]
    denom = float(plane.normal @ ray)
    if abs(denom) < 1e-9:
        return None
    t = -(float(plane.normal @ origin) + plane.d) / denom
    if not (t > 0 and np.isfinite(t)):
        return None
    point = origin + t * ray
    if math.hypot(point[0], point[1]) > max_range:  # a ray grazing the ground (horizon): no usable position
        return None
    return point


def _obstacle_from_points(pts, plane, mask, obstacle_id):
    """Oriented box, footprint, height and range of the cluster points (LiDAR frame)."""
    xy = np.ascontiguousarray(pts[:, :2], dtype=np.float32)
    (cx, cy), (w, h), angle = cv2.minAreaRect(xy)
    yaw = math.radians(angle)
    length, width = float(w), float(h)
    if width > length:  # yaw along the long side, in (-pi/2, pi/2]
        length, width = width, length
        yaw += math.pi / 2
    yaw = (yaw + math.pi / 2) % math.pi - math.pi / 2
    hull = cv2.convexHull(xy).reshape(-1, 2).astype(np.float64)
    if plane is not None:
        ground_z = float(plane.z_at(cx, cy))
        above = plane.height(pts)
        hull_z = plane.z_at(hull[:, 0], hull[:, 1])
    else:
        ground_z = float(pts[:, 2].min())
        above = pts[:, 2] - ground_z
        hull_z = np.full(hull.shape[0], ground_z)
    top = float(pts[:, 2].max())
    height = float(max(above.max(), 0.0))
    bottom = min(ground_z, float(pts[:, 2].min()))
    footprint = np.column_stack([hull, hull_z])
    return Obstacle3D(id=obstacle_id, center=[cx, cy, (bottom + top) / 2], size=[length, width, top - bottom],
                      yaw=yaw, footprint=footprint, range=float(math.hypot(cx, cy)), height=height,
                      anomaly_score=mask.anomaly_score, num_points=int(pts.shape[0]), mask_id=mask.id)


def _low_support(mask, obstacle_id, camera, T_lidar_cam, plane, pts, min_cluster_points=3, max_range=math.inf):
    """Low-support obstacle: centre = median of the few points when there are at least
    ``min_cluster_points`` (LiDAR range beats a ground ray far away, where one pixel is metres), else
    the ground-contact ray's intersection with the plane, else NaN."""
    centre = None
    if pts.shape[0] >= min_cluster_points:
        centre = np.median(pts, axis=0)
    if centre is None:
        centre = _ray_ground_point(camera, T_lidar_cam, plane, _ground_contact_pixel(mask), max_range)
    if centre is None and pts.shape[0]:
        centre = np.median(pts, axis=0)
    if centre is None:
        centre = np.full(3, np.nan)
    rng = float(math.hypot(centre[0], centre[1]))
    return Obstacle3D(id=obstacle_id, center=centre, size=np.zeros(3), range=rng, low_support=True,
                      anomaly_score=mask.anomaly_score, num_points=int(pts.shape[0]), mask_id=mask.id,
                      footprint=np.zeros((0, 3)), height=math.nan)


# ---------------------------------------------------------------- main entry

def fuse(frame_masks, points_xyz, camera, T_cam_lidar, config=None):
    """Fuse the masks of one camera frame with one LiDAR cloud into 3D obstacles.

    frame_masks: :class:`FrameMasks` (size must equal the camera's); points_xyz: (N, 3) (extra columns
    ignored) in the LiDAR frame; camera: :class:`PinholeCamera`; T_cam_lidar: 4x4 camera <- LiDAR.
    Returns a :class:`FusionResult`: one obstacle and one report per mask, in mask order (obstacle ids
    are the mask ids). Obstacles are in the LiDAR frame; ``center`` is the oriented box's centre (x, y
    of cv2.minAreaRect, z halfway between the ground and the highest point), which for a partly seen
    object is nearer its true centre than the mean of the visible points (``MaskReport.centroid``).
    """
    config = config or FusionConfig()
    if not isinstance(camera, PinholeCamera):
        raise ValueError("camera must be a PinholeCamera, got %r" % type(camera).__name__)
    if (frame_masks.width, frame_masks.height) != (camera.width, camera.height):
        raise ValueError("masks are %dx%d but the camera image is %dx%d" % (
            frame_masks.width, frame_masks.height, camera.width, camera.height))
    T = np.asarray(T_cam_lidar, dtype=np.float64)
    if T.shape != (4, 4) or not np.all(np.isfinite(T)):
        raise ValueError("T_cam_lidar must be a finite 4x4 matrix, got shape %s" % (T.shape,))
    pts = np.asarray(points_xyz)
    if pts.ndim != 2 or (pts.shape[0] and pts.shape[1] < 3):
        raise ValueError("points must be (N, >=3), got shape %s" % (pts.shape,))
    n_in = pts.shape[0]
    # float32 clouds stay float32 (half the memory traffic; mm precision at 100 m is ample)
    dtype = np.float32 if pts.dtype == np.float32 else np.float64
    pts = pts[:, :3].astype(dtype, copy=False) if n_in else np.zeros((0, 3))
    T_lidar_cam = np.linalg.inv(T)
    masks = list(frame_masks.masks)
    result = FusionResult(obstacles=[], reports=[], num_points=n_in)

    # finite and within range in one pass: NaN/inf in x or y fail the comparison
    x, y, z = pts[:, 0], pts[:, 1], pts[:, 2]
    r2 = x * x + y * y
    keep = (r2 <= config.max_range ** 2) & (np.abs(z) < np.inf)
    pts = pts[keep]
    result.num_finite = int(pts.shape[0])
    fallback = None if config.fallback_ground_z is None else GroundPlane(
        np.array([0.0, 0.0, 1.0]), -config.fallback_ground_z, fitted=False)
    if pts.shape[0] == 0:
        status = EMPTY_CLOUD if n_in == 0 else NO_FINITE_POINTS
        result.plane = plane = fallback
        for m in masks:
            result.obstacles.append(_low_support(m, m.id, camera, T_lidar_cam, plane, np.zeros((0, 3)),
                                                max_range=config.max_range))
            result.reports.append(MaskReport(m.id, status, "cloud has %d points, none finite within %g m"
                                             % (n_in, config.max_range)))
        return result

    # 1. ground
    plane = fit_ground_plane(pts, config) or fallback
    result.plane = plane
    flat_test = False
    if plane is not None:
        keep = pts @ plane.normal.astype(dtype) > dtype(config.ground_band - plane.d)
        result.num_ground = int(pts.shape[0] - np.count_nonzero(keep))
        obj = pts[keep]
        flat_test = bool(config.flat_min_points) and plane.fitted and result.num_ground > 0
    else:
        obj = pts
    ground_px = None  # (col, row, height) of the ground points, projected only when a mask needs them

    def ground_in(m, crop):
        nonlocal ground_px
        if ground_px is None:
            # only the ground the camera can see: depth first (one row of T), then project the rest
            # only the ground the camera can see (in front, inside a generous horizontal view cone: 1.5x
            # the pinhole half-width for lens distortion), selected before any copy or projection
            Tg = T.astype(dtype)
            zc = pts @ Tg[2, :3] + Tg[2, 3]
            xc = pts @ Tg[0, :3] + Tg[0, 3]
            half = dtype(1.5 * max(camera.K[0, 2], camera.width - camera.K[0, 2]) / camera.K[0, 0])
            front = pts[~keep & (zc > max(config.min_depth, 1e-6)) & (np.abs(xc) < zc * half)]
            g_cam = transform_points(Tg, front)
            g_uv, g_ok = project_points(camera, g_cam, config.min_depth)
            gc, gr = np.floor(g_uv[:, 0] + 0.5), np.floor(g_uv[:, 1] + 0.5)
            g_ok &= (gc >= 0) & (gc < camera.width) & (gr >= 0) & (gr < camera.height)
            sel = np.flatnonzero(g_ok)
            ground_px = (gc[sel].astype(np.int64), gr[sel].astype(np.int64), plane.height(front[sel]))
        gc, gr, gh = ground_px
        x, y, w, h = m.roi
        idx = np.flatnonzero((gc >= x) & (gc < x + w) & (gr >= y) & (gr < y + h))
        return gh[idx[crop[gr[idx] - y, gc[idx] - x]]]

    # 2. transform, keep points in front, project once
    cam = transform_points(T.astype(dtype), obj)
    front = np.flatnonzero(cam[:, 2] > max(config.min_depth, 1e-6))
    cam, obj = cam[front], obj[front]
    uv, valid = project_points(camera, cam, config.min_depth)
    col = np.floor(uv[:, 0] + 0.5)
    row = np.floor(uv[:, 1] + 0.5)
    valid &= (col >= 0) & (col < camera.width) & (row >= 0) & (row < camera.height)
    sel = np.flatnonzero(valid)
    col = col[sel].astype(np.int64)
    row = row[sel].astype(np.int64)
    cs = cam[sel]
    depth = np.sqrt(np.einsum("ij,ij->i", cs, cs))
    obj = obj[sel].astype(np.float64)
    result.num_projected = int(sel.size)

    # 3. per mask
    for m in masks:
        x, y, w, h = m.roi
        if x >= camera.width or y >= camera.height or x + w <= 0 or y + h <= 0 or w <= 0 or h <= 0:
            result.obstacles.append(_low_support(m, m.id, camera, T_lidar_cam, plane, np.zeros((0, 3)),
                                                max_range=config.max_range))
            result.reports.append(MaskReport(m.id, OUTSIDE_IMAGE, "roi %s does not overlap the image" % (m.roi,)))
            continue
        crop, kept_whole = _eroded_crop(m, config.erode_px)
        in_roi = np.flatnonzero((col >= x) & (col < x + w) & (row >= y) & (row < y + h))
        hit = in_roi[crop[row[in_roi] - y, col[in_roi] - x]]
        if hit.size == 0:
            result.obstacles.append(_low_support(m, m.id, camera, T_lidar_cam, plane, np.zeros((0, 3)),
                                                max_range=config.max_range))
            heights = ground_in(m, crop) if flat_test else ()
            if len(heights) >= max(config.flat_min_points, 1) and \
                    np.percentile(heights, 90) < config.flat_max_height:
                result.reports.append(MaskReport(m.id, FLAT, "%d ground returns in the mask, 90 %% lower than %.2f m: "
                                                 "flat surface (paint, shadow)" % (len(heights),
                                                                                   config.flat_max_height)))
            else:
                result.reports.append(MaskReport(m.id, NO_POINTS,
                                                 "no non-ground LiDAR point projects into the mask"))
            continue
        cluster = hit[_nearest_cluster(depth[hit], config.cluster_gap, config.min_cluster_points,
                                             config.max_cluster_extent)]
        cpts = obj[cluster]
        report = MaskReport(m.id, OK, "", in_mask=int(hit.size), in_cluster=int(cluster.size),
                            centroid=cpts.mean(axis=0))
        if cluster.size < config.min_points:
            report.status = LOW_SUPPORT
            report.reason = "%d points in the nearest cluster (< min_points %d)" % (cluster.size, config.min_points)
            result.obstacles.append(_low_support(m, m.id, camera, T_lidar_cam, plane, cpts,
                                                config.min_cluster_points, config.max_range))
        else:
            if kept_whole:
                report.reason = "mask too thin to erode; used unaltered"
            result.obstacles.append(_obstacle_from_points(cpts, plane, m, m.id))
        result.reports.append(report)
    return result
