"""A small exact LiDAR + camera scene for obstacle tests (imported by test modules, not a test itself).

LiDAR frame: x forward, y left, z up, 1.8 m above a flat ground (z = -1.8). The camera (optical frame)
looks along LiDAR +x from 0.1 m left of and 0.2 m above the LiDAR.
Obstacles are boxes of surface points standing on the ground; their masks are the filled convex hull
of the box points' projections (what a perfect segmenter would return).
"""
import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from s2m_ros.obstacles.camera import PinholeCamera
from s2m_ros.obstacles.fusion import project_points
from s2m_ros.obstacles.geometry import transform_points
from s2m_ros.types import FrameMasks, InstanceMask

W, H = 640, 360
K = np.array([[400.0, 0.0, 320.0], [0.0, 400.0, 180.0], [0.0, 0.0, 1.0]])
GROUND_Z = -1.8
T_CL = np.eye(4)  # camera <- LiDAR
T_CL[:3, :3] = [[0, -1, 0], [0, 0, -1], [1, 0, 0]]
T_CL[:3, 3] = [0.1, 0.2, 0.0]
CL_TRANSLATION = [float(v) for v in T_CL[:3, 3]]
CL_QUATERNION = [float(v) for v in Rotation.from_matrix(T_CL[:3, :3]).as_quat()]  # x, y, z, w


def camera(frame_id="camera"):
    return PinholeCamera(W, H, K, np.zeros(5), "plumb_bob", frame_id)


def box_points(center_xy, size, step=0.05):
    """Points on the 5 visible faces of a box standing on the ground (LiDAR frame)."""
    (cx, cy), (lx, ly, lz) = center_xy, size
    xs = np.arange(-lx / 2, lx / 2 + 1e-9, step)
    ys = np.arange(-ly / 2, ly / 2 + 1e-9, step)
    zs = np.arange(0.0, lz + 1e-9, step)
    faces = []
    for x in (-lx / 2, lx / 2):
        yy, zz = np.meshgrid(ys, zs)
        faces.append(np.column_stack([np.full(yy.size, x), yy.ravel(), zz.ravel()]))
    for y in (-ly / 2, ly / 2):
        xx, zz = np.meshgrid(xs, zs)
        faces.append(np.column_stack([xx.ravel(), np.full(xx.size, y), zz.ravel()]))
    xx, yy = np.meshgrid(xs, ys)
    faces.append(np.column_stack([xx.ravel(), yy.ravel(), np.full(xx.size, lz)]))
    pts = np.vstack(faces)
    return pts + [cx, cy, GROUND_Z]


def ground_points(step=0.3, x_max=40.0, y_half=15.0):
    gx, gy = np.meshgrid(np.arange(1.0, x_max, step), np.arange(-y_half, y_half, step))
    return np.column_stack([gx.ravel(), gy.ravel(), np.full(gx.size, GROUND_Z)])


def cloud(boxes, seed=0, noise=0.01):
    """(N, 3) float32 cloud: ground + every box (list of (center_xy, size)), with range noise."""
    rng = np.random.default_rng(seed)
    pts = np.vstack([ground_points()] + [box_points(c, s) for c, s in boxes])
    return (pts + rng.normal(0.0, noise, pts.shape)).astype(np.float32)


def mask_for(center_xy, size, mask_id, score=0.9):
    """The box's exact image mask (filled hull of its projected surface points)."""
    uv, ok = project_points(camera(), transform_points(T_CL, box_points(center_xy, size)))
    img = np.zeros((H, W), np.uint8)
    cv2.fillConvexPoly(img, cv2.convexHull(np.round(uv[ok]).astype(np.int32)), 1)
    return InstanceMask.from_full_mask(mask_id, img.astype(bool), anomaly_score=score)


def rect_mask(x, y, w, h, mask_id, score=0.5):
    """A rectangular mask (e.g. a false positive on the ground)."""
    img = np.zeros((H, W), bool)
    img[y:y + h, x:x + w] = True
    return InstanceMask.from_full_mask(mask_id, img, anomaly_score=score)


def frame_masks(stamp_ns, masks, width=W, height=H):
    return FrameMasks(stamp_ns=int(stamp_ns), frame_id="camera", width=width, height=height, masks=list(masks))
