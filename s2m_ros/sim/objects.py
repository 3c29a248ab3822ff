"""Object models of the synthetic apron: each kind is a few convex solids with a colour, a LiDAR
reflectivity, an optional retro-reflective band and a metal flag, sized with some randomness."""
import math
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from s2m_ros.sim.solids import Solid, box_solid, loft_solid, polygon_ring, yaw_matrix

# kind -> truth category
CATEGORIES = {"bolt": "fod", "toolbox": "fod", "suitcase": "fod",
              "chock": "equipment", "cone": "equipment", "hose": "equipment",
              "tug": "structure", "dolly": "structure", "pillar": "structure"}
KINDS = tuple(CATEGORIES)


@dataclass
class Part:
    solid: Solid  # world frame
    colour: np.ndarray  # BGR reflectance
    intensity: float  # LiDAR reflectivity
    band: Optional[Tuple[float, float]] = None  # world z range of a retro-reflective white band (cones)
    metal: bool = False  # specular shading


def bgr(*values):
    return np.array(values, np.float32)


_BLACK_RUBBER = bgr(0.085, 0.085, 0.095)


def kind_parts(kind, rng):
    """Local-frame parts of one object: list of (Solid, colour, intensity, band_fraction, metal).

    Local frame: x along the object's length, z up, resting on z = 0.
    """
    s = float(rng.uniform(0.9, 1.1))
    parts = []
    if kind == "bolt":
        length = float(rng.uniform(0.05, 0.10))
        rad = 0.18 * length
        head_r, head_l = 1.7 * rad, 0.25 * length
        axis_z = head_r * math.sin(math.pi / 3)  # the head rests on a flat
        ey, ez = (0, 1, 0), (0, 0, 1)
        head = loft_solid(polygon_ring((0, 0, axis_z), ey, ez, head_r, 6), polygon_ring((head_l, 0, axis_z), ey, ez, head_r, 6))
        shaft = loft_solid(polygon_ring((head_l, 0, axis_z), ey, ez, rad, 6),
                           polygon_ring((length, 0, axis_z), ey, ez, rad, 6))
        grey = bgr(0.30, 0.31, 0.33)
        parts = [(head, grey, 90.0, None, True), (shaft, grey * 0.9, 90.0, None, True)]
    elif kind == "toolbox":
        L, W, H = 0.45 * s, 0.21 * s, 0.20 * s
        parts = [(box_solid((0, 0, H / 2), (L, W, H)), bgr(0.10, 0.12, 0.70), 40.0, None, False),
                 (box_solid((0, 0, H + 0.02), (0.6 * L, 0.03, 0.04)), _BLACK_RUBBER, 10.0, None, False)]
    elif kind == "suitcase":  # lying flat, handle on a long side
        L, W, H = 0.70 * s, 0.45 * s, 0.25 * s
        colour = [bgr(0.45, 0.20, 0.08), bgr(0.10, 0.10, 0.11), bgr(0.12, 0.12, 0.55),
                  bgr(0.20, 0.35, 0.15)][int(rng.integers(0, 4))]
        parts = [(box_solid((0, 0, H / 2), (L, W, H)), colour, 25.0, None, False),
                 (box_solid((0, W / 2 + 0.02, H / 2), (0.18, 0.04, 0.05)), _BLACK_RUBBER, 10.0, None, False)]
    elif kind == "chock":  # rubber wedge: trapezoid cross-section extruded across
        L, W, H = 0.38 * s, 0.20 * s, 0.16 * s
        xz = np.array([[-L / 2, 0], [L / 2, 0], [L / 2 - 0.05 * s, H], [-L / 2 + 0.20 * s, H]])
        r0 = np.column_stack([xz[:, 0], np.full(4, -W / 2), xz[:, 1]])
        r1 = r0 + [0, W, 0]
        colour = _BLACK_RUBBER if rng.uniform() < 0.5 else bgr(0.10, 0.65, 0.88)
        parts = [(loft_solid(r0, r1), colour, 12.0, None, False)]
    elif kind == "cone":
        H = float(rng.uniform(0.5, 0.7))
        base_h = 0.03
        body = loft_solid(polygon_ring((0, 0, base_h), (1, 0, 0), (0, 1, 0), 0.16, 16),
                          polygon_ring((0, 0, H), (1, 0, 0), (0, 1, 0), 0.03, 16))
        parts = [(box_solid((0, 0, base_h / 2), (0.38, 0.38, base_h)), bgr(0.08, 0.08, 0.09), 10.0, None, False),
                 (body, bgr(0.05, 0.30, 0.92), 35.0, (0.45 * H, 0.62 * H), False)]
    elif kind == "hose":  # octagonal segments along a wiggly line, resting on the ground
        n, seg, rad = 8, 0.30 * s, 0.035
        heading = np.concatenate([[0.0], np.cumsum(rng.normal(0.0, 0.35, n - 1))])
        pts = np.zeros((n + 1, 2))
        pts[1:, 0] = np.cumsum(seg * np.cos(heading))
        pts[1:, 1] = np.cumsum(seg * np.sin(heading))
        zc = rad * math.cos(math.pi / 8)  # a flat rests on the ground
        for k in range(n):
            a = np.append(pts[k + 1] - pts[k], 0.0)
            a /= np.linalg.norm(a)
            u = np.array([-a[1], a[0], 0.0])
            p0 = np.append(pts[k], zc) - 0.5 * rad * a  # overlap the joints a little
            p1 = np.append(pts[k + 1], zc) + 0.5 * rad * a
            solid = loft_solid(polygon_ring(p0, u, (0, 0, 1), rad, 8, math.pi / 8),
                               polygon_ring(p1, u, (0, 0, 1), rad, 8, math.pi / 8))
            parts.append((solid, bgr(0.07, 0.07, 0.075), 8.0, None, False))
    elif kind in ("tug", "dolly"):
        if kind == "tug":
            L, W = 2.6 * s, 1.3 * s
            colour = [bgr(0.15, 0.65, 0.90), bgr(0.85, 0.85, 0.85), bgr(0.15, 0.15, 0.70)][
                int(rng.integers(0, 3))]
            parts = [(box_solid((0, 0, 0.70), (L, W, 1.0)), colour, 45.0, None, False),
                     (box_solid((-0.25 * L, 0, 1.65), (0.4 * L, 0.92 * W, 0.9)), colour * 0.8, 40.0, None, False)]
            wheel_r, wheel_w = 0.3, 0.22
        else:
            L, W = 3.0 * s, 1.6 * s
            steel = bgr(0.45, 0.42, 0.38)
            parts = [(box_solid((0, 0, 0.51), (L, W, 0.12)), steel, 30.0, None, False),
                     (box_solid((L / 2 - 0.03, 0, 1.06), (0.06, W, 1.0)), steel, 30.0, None, False),
                     (box_solid((-L / 2 + 0.03, 0, 1.06), (0.06, W, 1.0)), steel, 30.0, None, False)]
            wheel_r, wheel_w = 0.2, 0.15
        for sx in (-1, 1):
            for sy in (-1, 1):
                c = np.array([sx * 0.32 * L, sy * (W / 2 - wheel_w / 2), wheel_r * math.cos(math.pi / 8)])
                ring = polygon_ring(c - [0, wheel_w / 2, 0], (1, 0, 0), (0, 0, 1), wheel_r, 8, math.pi / 8)
                parts.append((loft_solid(ring, ring + [0, wheel_w, 0]), _BLACK_RUBBER, 10.0, None, False))
    elif kind == "pillar":  # jet-bridge support: column on a wheel bogie
        H = float(rng.uniform(4.0, 5.0))
        col = loft_solid(polygon_ring((0, 0, 0.6), (1, 0, 0), (0, 1, 0), 0.35, 8, math.pi / 8),
                         polygon_ring((0, 0, H), (1, 0, 0), (0, 1, 0), 0.35, 8, math.pi / 8))
        parts = [(box_solid((0, 0, 0.3), (1.8, 1.0, 0.6)), bgr(0.30, 0.30, 0.32), 35.0, None, False),
                 (col, bgr(0.72, 0.72, 0.70), 50.0, None, False)]
    else:
        raise ValueError("unknown object kind %r" % (kind,))
    return parts


def centred(parts):
    """Shift local parts so their bounding box is centred on x = y = 0; returns (parts, size)."""
    v = np.vstack([p[0].vertices for p in parts])
    lo, hi = v.min(axis=0), v.max(axis=0)
    T = yaw_matrix(-0.5 * (lo[0] + hi[0]), -0.5 * (lo[1] + hi[1]), -lo[2], 0.0)
    return [(p[0].transformed(T),) + tuple(p[1:]) for p in parts], hi - lo


def scaled(parts, factor):
    """Local parts (as :func:`kind_parts` returns them) scaled about the local origin by ``factor``."""
    if factor == 1.0:
        return parts
    out = []
    for solid, col, inten, band, metal in parts:
        out.append((Solid(solid.vertices * factor, solid.faces), col, inten,
                    None if band is None else (band[0] * factor, band[1] * factor), metal))
    return out
