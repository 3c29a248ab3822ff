"""Convex solids (polyhedra as plane sets) and their exact ray casting: the geometry both the camera and
the LiDAR of :mod:`s2m_ros.sim` see."""
import math

import numpy as np


class Solid:
    """A convex polyhedron: vertices (V, 3), faces (vertex index lists) and their planes.

    ``planes`` (F, 4) hold (n, d) with unit outward normals: a point p is inside when
    ``n . p + d <= 0`` for every face.
    """

    def __init__(self, vertices, faces, _planes=None, _edges=None):
        self.vertices = np.asarray(vertices, np.float64).reshape(-1, 3)
        if _planes is not None:
            self.faces, self.planes, self.edges = faces, _planes, _edges
            return
        centroid = self.vertices.mean(axis=0)
        planes, fixed, edges = [], [], set()
        for face in faces:
            idx = [int(i) for i in face]
            p = self.vertices[idx]
            q = np.roll(p, -1, axis=0)
            n = np.array([np.sum((p[:, 1] - q[:, 1]) * (p[:, 2] + q[:, 2])),  # Newell's normal
                          np.sum((p[:, 2] - q[:, 2]) * (p[:, 0] + q[:, 0])),
                          np.sum((p[:, 0] - q[:, 0]) * (p[:, 1] + q[:, 1]))])
            norm = np.linalg.norm(n)
            if norm < 1e-12:
                raise ValueError("degenerate face %s" % (idx,))
            n /= norm
            d = -float(n @ p.mean(axis=0))
            if n @ centroid + d > 0:  # make the normal point outwards
                n, d, idx = -n, -d, idx[::-1]
            planes.append(np.append(n, d))
            fixed.append(idx)
            for a, b in zip(idx, idx[1:] + idx[:1]):
                edges.add((min(a, b), max(a, b)))
        self.faces = fixed
        self.planes = np.array(planes)
        self.edges = np.array(sorted(edges), np.int64)

    def transformed(self, T):
        """The solid moved by a 4x4 rigid transform."""
        R, t = T[:3, :3], T[:3, 3]
        n = self.planes[:, :3] @ R.T
        planes = np.column_stack([n, self.planes[:, 3] - n @ t])
        return Solid(self.vertices @ R.T + t, self.faces, planes, self.edges)

    def signed_distance(self, points):
        """max over faces of n . p + d: 0 on the surface, < 0 inside (exact distance near a face)."""
        return np.max(np.asarray(points, np.float64) @ self.planes[:, :3].T + self.planes[:, 3], axis=1)


def yaw_matrix(x, y, z, yaw):
    c, s = math.cos(yaw), math.sin(yaw)
    T = np.eye(4)
    T[:2, :2] = [[c, -s], [s, c]]
    T[:3, 3] = x, y, z
    return T


def box_solid(center, size, yaw=0.0):
    """An upright box: centre (3,), size (length along yaw, width, height), yaw about z."""
    L, W, H = (0.5 * float(v) for v in size)
    v = np.array([[sx * L, sy * W, sz * H] for sz in (-1, 1) for sy in (-1, 1) for sx in (-1, 1)])
    faces = [[0, 1, 3, 2], [4, 5, 7, 6], [0, 1, 5, 4], [2, 3, 7, 6], [0, 2, 6, 4], [1, 3, 7, 5]]
    return Solid(v, faces).transformed(yaw_matrix(*np.asarray(center, float), yaw))


def loft_solid(ring0, ring1):
    """Convex solid between two corresponding convex rings (n, 3) each: prisms, frusta, wedges."""
    ring0, ring1 = np.asarray(ring0, float), np.asarray(ring1, float)
    n = ring0.shape[0]
    faces = [list(range(n)), list(range(n, 2 * n))]
    faces += [[i, (i + 1) % n, n + (i + 1) % n, n + i] for i in range(n)]
    return Solid(np.vstack([ring0, ring1]), faces)


def polygon_ring(center, u, v, radius, sides, phase=0.0):
    """Regular polygon of ``sides`` vertices around ``center`` in the plane spanned by unit u, v."""
    a = phase + 2.0 * math.pi * np.arange(sides) / sides
    return (np.asarray(center, float)[None] + radius * np.cos(a)[:, None] * np.asarray(u, float)[None]
            + radius * np.sin(a)[:, None] * np.asarray(v, float)[None])


def slab_hits(planes, dirs, origin_term):
    """Entry distance and entry face of rays x = o + t * dir against ONE convex solid.

    ``planes`` (F, 4), ``dirs`` (..., 3), ``origin_term`` (F,) or (..., F): n . o + d. Returns
    ``(t, face)``; t = inf where the ray misses or starts inside.
    """
    den = dirs @ planes[:, :3].T  # (..., F)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        tp = -origin_term / den
    entering = np.where(den < 0, tp, -np.inf)
    face = np.argmax(entering, axis=-1)
    t_in = np.take_along_axis(entering, face[..., None], axis=-1)[..., 0]
    t_out = np.min(np.where(den > 0, tp, np.inf), axis=-1)
    miss = np.any((den == 0) & (origin_term > 0), axis=-1) | ~(t_in <= t_out) | ~(t_in > 0)
    return np.where(miss, np.inf, t_in), face


def ray_cast(solids, origins, dirs):
    """Nearest hit of rays (origins (N, 3), dirs (N, 3)) among convex solids.

    Returns ``(t, solid_index, face_index)``: t in units of |dir| (inf where nothing is hit),
    indices -1 there. Rays starting inside a solid do not hit it.
    """
    origins = np.asarray(origins, np.float64).reshape(-1, 3)
    dirs = np.asarray(dirs, np.float64).reshape(-1, 3)
    best = np.full(dirs.shape[0], np.inf)
    which = np.full(dirs.shape[0], -1, np.int64)
    face = np.full(dirs.shape[0], -1, np.int64)
    for k, s in enumerate(solids):
        t, f = slab_hits(s.planes, dirs, origins @ s.planes[:, :3].T + s.planes[:, 3])
        win = t < best
        best[win], which[win], face[win] = t[win], k, f[win]
    return best, which, face
