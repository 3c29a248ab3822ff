"""Rigid transforms (ROS-free): quaternions, 4x4 matrices, extrinsics from parameters."""
import numpy as np


def quaternion_to_matrix(xyzw):
    """3x3 rotation matrix of a quaternion given as (x, y, z, w); normalised first."""
    q = np.asarray(xyzw, dtype=float).reshape(4)
    norm = np.linalg.norm(q)
    if not np.isfinite(norm) or norm < 1e-9:
        raise ValueError("quaternion %s has zero or non-finite norm" % (q.tolist(),))
    x, y, z, w = q / norm
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def transform_matrix(translation, xyzw):
    """4x4 homogeneous transform from a translation (3,) and a quaternion (x, y, z, w)."""
    t = np.asarray(translation, dtype=float).reshape(3)
    out = np.eye(4)
    out[:3, :3] = quaternion_to_matrix(xyzw)
    out[:3, 3] = t
    return out


def rigid_matrix_problem(matrix16, tol=1e-4):
    """None if the 16 row-major values form a rigid 4x4 transform, else a description of the problem."""
    m = np.asarray(matrix16, dtype=float)
    if m.size != 16:
        return "needs 16 values (row-major 4x4), got %d" % m.size
    m = m.reshape(4, 4)
    if not np.all(np.isfinite(m)):
        return "contains NaN or inf"
    if not np.allclose(m[3], [0, 0, 0, 1], atol=tol):
        return "last row must be 0 0 0 1"
    r = m[:3, :3]
    if not np.allclose(r @ r.T, np.eye(3), atol=tol) or np.linalg.det(r) < 0:
        return "upper-left 3x3 is not a rotation (orthonormal, det +1)"
    return None


def extrinsics_from_params(translation, rotation_xyzw, matrix16=()):
    """camera <- LiDAR 4x4 transform: ``matrix16`` (row-major) when given, else translation + quaternion."""
    if len(matrix16):
        problem = rigid_matrix_problem(matrix16)
        if problem:
            raise ValueError("extrinsics matrix: " + problem)
        return np.asarray(matrix16, dtype=float).reshape(4, 4)
    return transform_matrix(translation, rotation_xyzw)


def transform_points(matrix, points):
    """Apply a 4x4 transform to (N, 3) points."""
    points = np.asarray(points)
    return points @ matrix[:3, :3].T + matrix[:3, 3]
