"""The apron surface of the synthetic world, fixed to the world frame: materials, slab joints, painted
markings, world-aligned noise grids, soft shadow polygons, and the sensor-noise table."""
import functools
import math

import cv2
import numpy as np

EPS = 1e-12

# Typical reflectances (B, G, R in [0, 1]) of apron materials.
CONCRETE = np.array([0.55, 0.57, 0.58], np.float32)
ASPHALT = np.array([0.30, 0.30, 0.31], np.float32)
YELLOW_PAINT = np.array([0.12, 0.62, 0.85], np.float32)
WHITE_PAINT = np.array([0.86, 0.87, 0.86], np.float32)


def box_cover(d, half, ext):
    """Fraction of a pixel footprint interval [d - ext/2, d + ext/2] inside [-half, half] (box filter)."""
    ext = np.maximum(ext, np.float32(1e-6))
    lo = np.maximum(d - ext * 0.5, -half)
    hi = np.minimum(d + ext * 0.5, half)
    return np.clip((hi - lo) / ext, 0.0, 1.0)


class GroundFeatures:
    """World-fixed ground features: joints, paint, shadows (as coverage functions of world x, y)."""

    def __init__(self, rng, markings):
        self.slab = float(rng.uniform(4.5, 6.0))
        self.ox, self.oy = (float(v) for v in rng.uniform(0, self.slab, 2))
        self.markings = markings
        self.yl = float(rng.uniform(-2.5, 2.5))  # taxi line: y = yl (world), along x
        self.arc_x = float(rng.uniform(10, 25))
        self.arc_side = float(rng.choice([-1.0, 1.0]))
        self.arc_r = float(rng.uniform(8, 14))
        self.bar_x = float(rng.uniform(12, 30))

    def joints(self, X, Y, eX, eY):
        s = self.slab
        dx = X - self.ox - s * np.round((X - self.ox) / s)
        dy = Y - self.oy - s * np.round((Y - self.oy) / s)
        a = box_cover(dx, 0.01, np.minimum(eX, s))
        b = box_cover(dy, 0.01, np.minimum(eY, s))
        return a + b - a * b

    def paint(self, X, Y, eX, eY, eR):
        """(yellow coverage, white coverage) at world points; eX / eY / eR: footprint along x / y / radial."""
        if not self.markings:
            z = np.zeros_like(X)
            return z, z
        yellow = box_cover(Y - self.yl, 0.075, eY)  # the straight line, along x
        cy = self.yl + self.arc_side * self.arc_r
        r = np.hypot(X - self.arc_x, Y - cy)
        quarter = (X >= self.arc_x) & (self.arc_side * (Y - cy) <= 0)
        yellow = np.maximum(yellow, box_cover(r - self.arc_r, 0.075, eR) * quarter)
        white = box_cover(X - self.bar_x, 0.2, eX) * box_cover(Y - self.yl, 4.0, eY)
        return yellow, white


GRID_MAX = 1024  # cells per axis of a world noise grid; larger areas repeat it (periodic)


def world_grid(draw, lo, hi, cell):
    """Random values on a world-aligned grid of ``cell`` metres covering [lo, hi] (x, y) plus a margin.

    ``draw(shape)`` makes the values. Beyond ``GRID_MAX`` cells an axis wraps around, so memory stays
    bounded on long drives (the finest octave then repeats every 30 m; the others much later).
    """
    org = np.asarray(lo, np.float64) - 2 * cell
    ext = np.asarray(hi, np.float64) + 2 * cell - org
    shape = tuple(min(int(math.ceil(e / cell)) + 2, GRID_MAX) for e in (ext[1], ext[0]))
    return np.asarray(draw(shape), np.float32), org, cell


def sample_grid(grid, X, Y):
    """Bilinear samples of a :func:`world_grid` at world points (float32 arrays of one shape)."""
    values, org, cell = grid
    h, w = values.shape
    mx = np.mod((X - np.float32(org[0])) * np.float32(1.0 / cell), np.float32(w))  # remap needs small coords
    my = np.mod((Y - np.float32(org[1])) * np.float32(1.0 / cell), np.float32(h))
    return cv2.remap(values, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)


class Shadow:
    """A convex ground polygon in world x, y: soft alpha from the signed distance to its edges."""

    def __init__(self, xy):
        xy = np.asarray(xy, np.float64)
        hull = cv2.convexHull(xy.astype(np.float32)).reshape(-1, 2).astype(np.float64)
        if hull.shape[0] < 3:
            hull = xy[:3]
        c = hull.mean(axis=0)
        q = np.roll(hull, -1, axis=0)
        e = q - hull
        n = np.column_stack([-e[:, 1], e[:, 0]])
        n /= np.maximum(np.linalg.norm(n, axis=1), EPS)[:, None]
        off = -np.sum(n * hull, axis=1)
        flip = (n @ c + off) < 0  # inward normals
        n[flip], off[flip] = -n[flip], -off[flip]
        self.xy, self.n, self.off = hull, n.astype(np.float32), off.astype(np.float32)
        self.lo, self.hi = hull.min(axis=0), hull.max(axis=0)

    def alpha(self, X, Y, soft):
        sd = np.min(X[..., None] * self.n[:, 0] + Y[..., None] * self.n[:, 1] + self.off, axis=-1)
        return np.clip(0.5 + sd / soft, 0.0, 1.0)


@functools.lru_cache(maxsize=8)
def gauss_table(sigma):
    """256 equiprobable quantiles of N(0, sigma^2): random bytes through it give cheap Gaussian noise."""
    out = np.empty(256, np.float32)
    for k in range(256):
        p = (k + 0.5) / 256.0
        lo, hi = -6.0, 6.0
        for _ in range(40):  # bisection on the normal CDF
            mid = 0.5 * (lo + hi)
            if 0.5 * math.erfc(-mid / math.sqrt(2.0)) < p:
                lo = mid
            else:
                hi = mid
        out[k] = sigma * 0.5 * (lo + hi)
    return out
