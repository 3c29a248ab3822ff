"""A deterministic synthetic apron DRIVE: camera images, LiDAR sweeps, ego poses and exact ground truth.

ROS-free (numpy + OpenCV). One 3D world (``map``, z up, REP-103): the ground is the plane z = 0; the
ego (``base_link``: x forward, y left, z up) drives on it at ``speed_mps`` (straight, or a gentle arc
with ``yaw_rate_dps``); a pinhole camera (optical frame: z forward, x right, y down, small plumb_bob
distortion) and a spinning multi-beam LiDAR are fixed to the ego at DIFFERENT positions and slightly
different orientations, so a wrong extrinsic is visible in the data.

Every object is a union of convex polyhedra (:class:`Solid`: boxes, prisms, cone frusta, octagonal
cylinder segments of a hose). The SAME solids are ray-cast analytically for both sensors:

- camera: every pixel centre's ray (the exact inverse of the lens distortion, computed once) is cast
  against the solids whose projection covers it (a slab test per pixel, restricted to the solid's
  image window), nearest hit wins (a z-buffer), so ``instance_ids`` is exact with occlusion and a LiDAR
  point on object k projects (with the same distortion) into object k's mask up to rounding at the
  outline. Faces are shaded from their normal and the sun.
- LiDAR: ``lidar_beams`` x ``lidar_azimuth_steps`` rays (elevations evenly spread over
  ``lidar_elevation_deg``) cast against the ground plane and the solids (only the azimuth columns a
  solid spans are tested), Gaussian range noise along the ray, rays that hit nothing within
  ``lidar_max_range`` dropped. All rays of a sweep use the ego pose at the sweep's stamp: motion
  distortion within a sweep is NOT modelled.

The ground texture is fixed to the WORLD (it moves correctly as the ego drives): concrete
reflectance from multi-scale noise on world grids (each octave faded where its period falls under
two pixels, so nothing aliases towards the horizon), stains, slab joints, a yellow taxi line with a
curved lead-off and a white stop bar (coverage = exact box filter of the pixel footprint), object
shadows cast by the sun (the solids projected onto the ground) and large shadows of off-scene
buildings; above the horizon sky and a ring of far buildings (fixed in world azimuth). The image goes
through exposure, a mild blur and sensor noise, as :mod:`s2m_ros.sim.still` does.

Determinism: the scene comes from ``numpy.random.default_rng(seed)``, each frame's noise from a
generator seeded with ``(seed, frame index)``, stamps from a fixed epoch: the same config gives
bit-identical frames on every run, and frames can be made in any order (:meth:`Scenario.frame`).
"""
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from s2m_ros.obstacles.camera import PinholeCamera
from s2m_ros.config import check_fields
from s2m_ros.sim.still import _CONCRETE, _WHITE_PAINT, _YELLOW_PAINT, _gauss_table
from s2m_ros.types import box_from_mask

FRAME_WORLD = "map"
FRAME_BASE = "base_link"
FRAME_LIDAR = "lidar"
FRAME_CAMERA = "camera_optical"
TRUTH_FORMAT = "s2m_ros/scenario-truth/1"
EPOCH_NS = 1_700_000_000 * 10 ** 9  # first camera stamp (fixed: never wall time)

# kind -> truth category
KINDS = {"bolt": "fod", "toolbox": "fod", "suitcase": "fod",
         "chock": "equipment", "cone": "equipment", "hose": "equipment",
         "tug": "structure", "dolly": "structure", "pillar": "structure"}
DEFAULT_OBJECTS = ("bolt", "toolbox", "suitcase", "chock", "cone", "cone", "hose", "tug", "pillar")

_NEAR = 0.05  # camera near plane (m)
_GROUND_MAX = 400.0  # ground farther than this (horizontal, m) is drawn as the far buildings / sky
_EPS = 1e-12


def _is_number(v):
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)


def _object_entry_ok(entry):
    if isinstance(entry, str):
        return entry in KINDS
    return (isinstance(entry, (tuple, list)) and len(entry) == 4 and entry[0] in KINDS
            and all(_is_number(v) for v in entry[1:]))


@dataclass
class ScenarioConfig:
    """What to generate. Lengths in metres, angles in degrees, rates in Hz.

    ``objects``: per object either a kind (see :data:`KINDS`), placed at random ``object_range``
    metres ahead of the ego's LAST pose, inside the camera's view and away from the other objects'
    lines of sight, or ``(kind, x, y, yaw_rad)`` placed exactly in the world frame.
    """

    seed: int = 0
    frames: int = 40  # camera frames
    rate_hz: float = 10.0  # camera and LiDAR rate
    width: int = 640
    height: int = 360
    hfov_deg: float = 80.0  # camera horizontal field of view (K from it)
    speed_mps: float = 2.0
    yaw_rate_dps: float = 0.0  # 0: straight drive along world +x; else a circular arc
    lidar_beams: int = 32
    lidar_azimuth_steps: int = 1024
    lidar_elevation_deg: Tuple[float, float] = (-25.0, 5.0)  # lowest, highest beam
    lidar_max_range: float = 60.0
    lidar_min_range: float = 0.5
    lidar_range_noise: float = 0.015  # sigma along the ray
    lidar_offset_s: float = 0.02  # LiDAR stamp - camera stamp
    objects: Tuple = DEFAULT_OBJECTS
    object_range: Tuple[float, float] = (5.0, 25.0)  # ahead of the LAST ego pose (5-33 m over the default drive)
    shadows: bool = True
    markings: bool = True
    blur_sigma: float = 0.6
    noise_sigma: float = 1.5  # sensor noise, grey levels

    def __post_init__(self):
        for name in ("lidar_elevation_deg", "object_range", "objects"):
            value = getattr(self, name)
            if isinstance(value, (list, tuple)):
                setattr(self, name, tuple(tuple(v) if isinstance(v, list) else v for v in value))
        el, rng_ = self.lidar_elevation_deg, self.object_range

        def integer(v, lo):
            return isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= lo

        def number(v, lo=-math.inf, hi=math.inf):
            return _is_number(v) and lo <= v <= hi

        def pair(v, lo, hi):
            return isinstance(v, tuple) and len(v) == 2 and all(number(x, lo, hi) for x in v)

        rows = [  # checked in order, lazily: later checks may rely on earlier fields being valid
            ("seed", lambda: integer(self.seed, 0), "an integer >= 0"),
            ("frames", lambda: integer(self.frames, 1), "an integer >= 1"),
            ("rate_hz", lambda: number(self.rate_hz, 1e-3, 1e4), "in [0.001, 10000] Hz"),
            ("width", lambda: integer(self.width, 16), "an integer >= 16"),
            ("height", lambda: integer(self.height, 16), "an integer >= 16"),
            ("hfov_deg", lambda: number(self.hfov_deg, 30.0, 120.0), "in [30, 120] degrees"),
            ("speed_mps", lambda: number(self.speed_mps, 0.0, 30.0), "in [0, 30] m/s"),
            ("yaw_rate_dps", lambda: number(self.yaw_rate_dps, -30.0, 30.0), "in [-30, 30] deg/s"),
            ("lidar_beams", lambda: integer(self.lidar_beams, 1), "an integer >= 1"),
            ("lidar_azimuth_steps", lambda: integer(self.lidar_azimuth_steps, 8), "an integer >= 8"),
            ("lidar_elevation_deg", lambda: pair(el, -89.0, 89.0) and el[0] <= el[1],
             "(lowest, highest) beam elevation in [-89, 89] degrees, lowest <= highest"),
            ("lidar_max_range", lambda: number(self.lidar_max_range, 1.0, 1000.0), "in [1, 1000] m"),
            ("lidar_min_range", lambda: number(self.lidar_min_range, 0.0, self.lidar_max_range)
             and self.lidar_min_range < self.lidar_max_range, ">= 0 and below lidar_max_range"),
            ("lidar_range_noise", lambda: number(self.lidar_range_noise, 0.0, 1.0), "in [0, 1] m"),
            ("lidar_offset_s", lambda: number(self.lidar_offset_s) and abs(self.lidar_offset_s) < 1.0 / self.rate_hz,
             "finite with |offset| below one frame period (1 / rate_hz)"),
            ("objects", lambda: isinstance(self.objects, tuple) and all(_object_entry_ok(o) for o in self.objects),
             "a sequence of kinds (%s) or (kind, x, y, yaw) with finite numbers" % ", ".join(KINDS)),
            ("object_range", lambda: pair(rng_, 1.0, 500.0) and rng_[0] < rng_[1],
             "(nearest, farthest) metres ahead with 1 <= nearest < farthest <= 500"),
            ("shadows", lambda: isinstance(self.shadows, bool), "a bool"),
            ("markings", lambda: isinstance(self.markings, bool), "a bool"),
            ("blur_sigma", lambda: number(self.blur_sigma, 0.0, 10.0), "in [0, 10] pixels"),
            ("noise_sigma", lambda: number(self.noise_sigma, 0.0, 50.0), "in [0, 50] grey levels"),
        ]
        for name, ok, allowed in rows:
            check_fields(self, [(name, ok(), allowed)])
        for name in ("seed", "frames", "width", "height", "lidar_beams", "lidar_azimuth_steps"):
            setattr(self, name, int(getattr(self, name)))  # numpy integers -> int (JSON-able)
        for name in ("rate_hz", "hfov_deg", "speed_mps", "yaw_rate_dps", "lidar_max_range", "lidar_min_range",
                     "lidar_range_noise", "lidar_offset_s", "blur_sigma", "noise_sigma"):
            setattr(self, name, float(getattr(self, name)))
        self.lidar_elevation_deg = tuple(float(v) for v in el)
        self.object_range = tuple(float(v) for v in rng_)
        self.objects = tuple(o if isinstance(o, str) else (o[0],) + tuple(float(v) for v in o[1:])
                             for o in self.objects)

    def to_dict(self):
        """Plain JSON-able dict (tuples as lists)."""
        return json.loads(json.dumps(asdict(self)))


@dataclass
class TruthObject:
    """One object's ground truth: its box (centre, size = length, width, height, yaw) in the world frame."""

    id: int  # >= 1, also the value in ScenarioFrame.instance_ids / point_ids
    kind: str
    category: str  # "fod" | "equipment" | "structure"
    center: np.ndarray  # (3,) box centre, world frame
    size: np.ndarray  # (3,) length (along yaw), width, height
    yaw: float  # about world z


@dataclass
class ScenarioFrame:
    """One camera frame and the LiDAR sweep matched to it (``lidar_offset_s`` later), with ground truth.

    ``point_ids`` (beyond the shared contract) labels every LiDAR point with the object it hit.
    """

    index: int
    stamp_ns: int  # camera stamp
    image: np.ndarray  # H x W x 3 uint8 BGR
    instance_ids: np.ndarray  # H x W uint16: 0 background, else TruthObject.id
    lidar_stamp_ns: int
    points: np.ndarray  # (N, 4) float32 x, y, z, intensity in the LiDAR frame
    ring: np.ndarray  # (N,) uint16 beam index (0 = lowest beam)
    T_world_base: np.ndarray  # (4, 4) ego pose at stamp_ns
    T_world_base_lidar: np.ndarray  # (4, 4) ego pose at lidar_stamp_ns
    visible: list  # ids with >= 1 pixel in instance_ids
    point_ids: Optional[np.ndarray] = None  # (N,) uint16: object id each point hit, 0 = ground


# ---------------------------------------------------------------- convex solids and ray casting

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


def _yaw_matrix(x, y, z, yaw):
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
    return Solid(v, faces).transformed(_yaw_matrix(*np.asarray(center, float), yaw))


def loft_solid(ring0, ring1):
    """Convex solid between two corresponding convex rings (n, 3) each: prisms, frusta, wedges."""
    ring0, ring1 = np.asarray(ring0, float), np.asarray(ring1, float)
    n = ring0.shape[0]
    faces = [list(range(n)), list(range(n, 2 * n))]
    faces += [[i, (i + 1) % n, n + (i + 1) % n, n + i] for i in range(n)]
    return Solid(np.vstack([ring0, ring1]), faces)


def _ring(center, u, v, radius, sides, phase=0.0):
    """Regular polygon of ``sides`` vertices around ``center`` in the plane spanned by unit u, v."""
    a = phase + 2.0 * math.pi * np.arange(sides) / sides
    return (np.asarray(center, float)[None] + radius * np.cos(a)[:, None] * np.asarray(u, float)[None]
            + radius * np.sin(a)[:, None] * np.asarray(v, float)[None])


def _slab(planes, dirs, origin_term):
    """Entry distance and entry face of rays x = o + t * dir against ONE convex solid.

    ``planes`` (F, 4), ``dirs`` (..., 3), ``origin_term`` (F,) or (..., F): n . o + d. Returns
    ``(t, face)``; t = inf where the ray misses or starts inside.
    """
    den = dirs @ planes[:, :3].T  # (..., F)
    with np.errstate(divide="ignore", invalid="ignore"):
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
        t, f = _slab(s.planes, dirs, origins @ s.planes[:, :3].T + s.planes[:, 3])
        win = t < best
        best[win], which[win], face[win] = t[win], k, f[win]
    return best, which, face


# ---------------------------------------------------------------- object models

@dataclass
class _Part:
    solid: Solid  # world frame
    colour: np.ndarray  # BGR reflectance
    intensity: float  # LiDAR reflectivity
    band: Optional[Tuple[float, float]] = None  # world z range of a retro-reflective white band (cones)
    metal: bool = False  # specular shading


def _colour(*bgr):
    return np.array(bgr, np.float32)


_BLACK_RUBBER = _colour(0.085, 0.085, 0.095)


def _kind_parts(kind, rng):
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
        head = loft_solid(_ring((0, 0, axis_z), ey, ez, head_r, 6), _ring((head_l, 0, axis_z), ey, ez, head_r, 6))
        shaft = loft_solid(_ring((head_l, 0, axis_z), ey, ez, rad, 6),
                           _ring((length, 0, axis_z), ey, ez, rad, 6))
        grey = _colour(0.30, 0.31, 0.33)
        parts = [(head, grey, 90.0, None, True), (shaft, grey * 0.9, 90.0, None, True)]
    elif kind == "toolbox":
        L, W, H = 0.45 * s, 0.21 * s, 0.20 * s
        parts = [(box_solid((0, 0, H / 2), (L, W, H)), _colour(0.10, 0.12, 0.70), 40.0, None, False),
                 (box_solid((0, 0, H + 0.02), (0.6 * L, 0.03, 0.04)), _BLACK_RUBBER, 10.0, None, False)]
    elif kind == "suitcase":  # lying flat, handle on a long side
        L, W, H = 0.70 * s, 0.45 * s, 0.25 * s
        colour = [_colour(0.45, 0.20, 0.08), _colour(0.10, 0.10, 0.11), _colour(0.12, 0.12, 0.55),
                  _colour(0.20, 0.35, 0.15)][int(rng.integers(0, 4))]
        parts = [(box_solid((0, 0, H / 2), (L, W, H)), colour, 25.0, None, False),
                 (box_solid((0, W / 2 + 0.02, H / 2), (0.18, 0.04, 0.05)), _BLACK_RUBBER, 10.0, None, False)]
    elif kind == "chock":  # rubber wedge: trapezoid cross-section extruded across
        L, W, H = 0.38 * s, 0.20 * s, 0.16 * s
        xz = np.array([[-L / 2, 0], [L / 2, 0], [L / 2 - 0.05 * s, H], [-L / 2 + 0.20 * s, H]])
        r0 = np.column_stack([xz[:, 0], np.full(4, -W / 2), xz[:, 1]])
        r1 = r0 + [0, W, 0]
        colour = _BLACK_RUBBER if rng.uniform() < 0.5 else _colour(0.10, 0.65, 0.88)
        parts = [(loft_solid(r0, r1), colour, 12.0, None, False)]
    elif kind == "cone":
        H = float(rng.uniform(0.5, 0.7))
        base_h = 0.03
        body = loft_solid(_ring((0, 0, base_h), (1, 0, 0), (0, 1, 0), 0.16, 16),
                          _ring((0, 0, H), (1, 0, 0), (0, 1, 0), 0.03, 16))
        parts = [(box_solid((0, 0, base_h / 2), (0.38, 0.38, base_h)), _colour(0.08, 0.08, 0.09), 10.0, None, False),
                 (body, _colour(0.05, 0.30, 0.92), 35.0, (0.45 * H, 0.62 * H), False)]
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
            solid = loft_solid(_ring(p0, u, (0, 0, 1), rad, 8, math.pi / 8),
                               _ring(p1, u, (0, 0, 1), rad, 8, math.pi / 8))
            parts.append((solid, _colour(0.07, 0.07, 0.075), 8.0, None, False))
    elif kind in ("tug", "dolly"):
        if kind == "tug":
            L, W = 2.6 * s, 1.3 * s
            colour = [_colour(0.15, 0.65, 0.90), _colour(0.85, 0.85, 0.85), _colour(0.15, 0.15, 0.70)][
                int(rng.integers(0, 3))]
            parts = [(box_solid((0, 0, 0.70), (L, W, 1.0)), colour, 45.0, None, False),
                     (box_solid((-0.25 * L, 0, 1.65), (0.4 * L, 0.92 * W, 0.9)), colour * 0.8, 40.0, None, False)]
            wheel_r, wheel_w = 0.3, 0.22
        else:
            L, W = 3.0 * s, 1.6 * s
            steel = _colour(0.45, 0.42, 0.38)
            parts = [(box_solid((0, 0, 0.51), (L, W, 0.12)), steel, 30.0, None, False),
                     (box_solid((L / 2 - 0.03, 0, 1.06), (0.06, W, 1.0)), steel, 30.0, None, False),
                     (box_solid((-L / 2 + 0.03, 0, 1.06), (0.06, W, 1.0)), steel, 30.0, None, False)]
            wheel_r, wheel_w = 0.2, 0.15
        for sx in (-1, 1):
            for sy in (-1, 1):
                c = np.array([sx * 0.32 * L, sy * (W / 2 - wheel_w / 2), wheel_r * math.cos(math.pi / 8)])
                ring = _ring(c - [0, wheel_w / 2, 0], (1, 0, 0), (0, 0, 1), wheel_r, 8, math.pi / 8)
                parts.append((loft_solid(ring, ring + [0, wheel_w, 0]), _BLACK_RUBBER, 10.0, None, False))
    elif kind == "pillar":  # jet-bridge support: column on a wheel bogie
        H = float(rng.uniform(4.0, 5.0))
        col = loft_solid(_ring((0, 0, 0.6), (1, 0, 0), (0, 1, 0), 0.35, 8, math.pi / 8),
                         _ring((0, 0, H), (1, 0, 0), (0, 1, 0), 0.35, 8, math.pi / 8))
        parts = [(box_solid((0, 0, 0.3), (1.8, 1.0, 0.6)), _colour(0.30, 0.30, 0.32), 35.0, None, False),
                 (col, _colour(0.72, 0.72, 0.70), 50.0, None, False)]
    else:
        raise ValueError("unknown object kind %r" % (kind,))
    return parts


def _centred(parts):
    """Shift local parts so their bounding box is centred on x = y = 0; returns (parts, size)."""
    v = np.vstack([p[0].vertices for p in parts])
    lo, hi = v.min(axis=0), v.max(axis=0)
    T = _yaw_matrix(-0.5 * (lo[0] + hi[0]), -0.5 * (lo[1] + hi[1]), -lo[2], 0.0)
    return [(p[0].transformed(T),) + tuple(p[1:]) for p in parts], hi - lo


# ---------------------------------------------------------------- ego motion and sensors

def _ego_pose(cfg, t):
    """4x4 world <- base_link at time t seconds after the first camera stamp (start at the origin)."""
    v, w = cfg.speed_mps, math.radians(cfg.yaw_rate_dps)
    if abs(w) < 1e-12:
        x, y, yaw = v * t, 0.0, 0.0
    else:
        x, y, yaw = v / w * math.sin(w * t), v / w * (1.0 - math.cos(w * t)), w * t
    return _yaw_matrix(x, y, 0.0, yaw)


def _rpy(roll, pitch, yaw):
    cr, sr, cp, sp, cy, sy = (math.cos(roll), math.sin(roll), math.cos(pitch), math.sin(pitch),
                              math.cos(yaw), math.sin(yaw))
    Rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    Ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    Rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    return Rz @ Ry @ Rx


def _extrinsics():
    """Static T_base_camera (optical) and T_base_lidar: different positions, slightly different attitudes."""
    optical = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])  # columns: optical x, y, z in body
    T_bc = np.eye(4)
    T_bc[:3, :3] = _rpy(math.radians(0.5), math.radians(8.0), math.radians(1.5)) @ optical
    T_bc[:3, 3] = 1.60, 0.12, 1.70
    T_bl = np.eye(4)
    T_bl[:3, :3] = _rpy(math.radians(0.3), math.radians(0.6), math.radians(-2.0))
    T_bl[:3, 3] = 1.20, -0.10, 1.95
    return T_bc, T_bl


def _make_camera(cfg):
    fx = 0.5 * cfg.width / math.tan(0.5 * math.radians(cfg.hfov_deg))
    K = np.array([[fx, 0.0, 0.5 * (cfg.width - 1) + 0.004 * cfg.width],
                  [0.0, fx, 0.5 * (cfg.height - 1) - 0.003 * cfg.height], [0.0, 0.0, 1.0]])
    return PinholeCamera(cfg.width, cfg.height, K, [-0.04, 0.012, 0.0004, -0.0003, 0.0], "plumb_bob", FRAME_CAMERA)


def _distort(D, x, y):
    """plumb_bob: normalised -> distorted normalised coordinates."""
    k1, k2, p1, p2, k3 = D[:5]
    r2 = x * x + y * y
    radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
    return (x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x),
            y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y)


def _pixel_rays(camera):
    """Normalised (x, y) of every pixel centre (integer coordinates), inverting the distortion exactly."""
    K, D = camera.K, camera.D
    v, u = np.mgrid[0:camera.height, 0:camera.width].astype(np.float64)
    yd = (v - K[1, 2]) / K[1, 1]
    xd = (u - K[0, 2] - K[0, 1] * yd) / K[0, 0]
    x, y = xd.copy(), yd.copy()
    k1, k2, p1, p2, k3 = D[:5]
    for _ in range(40):  # fixed point: contraction for mild distortion, converges to machine precision
        r2 = x * x + y * y
        radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
        x = (xd - 2 * p1 * x * y - p2 * (r2 + 2 * x * x)) / radial
        y = (yd - p1 * (r2 + 2 * y * y) - 2 * p2 * x * y) / radial
    return x, y


# ---------------------------------------------------------------- ground features

def _box_cover(d, half, ext):
    """Fraction of a pixel footprint interval [d - ext/2, d + ext/2] inside [-half, half] (box filter)."""
    ext = np.maximum(ext, np.float32(1e-6))
    lo = np.maximum(d - ext * 0.5, -half)
    hi = np.minimum(d + ext * 0.5, half)
    return np.clip((hi - lo) / ext, 0.0, 1.0)


class _Ground:
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
        a = _box_cover(dx, 0.01, np.minimum(eX, s))
        b = _box_cover(dy, 0.01, np.minimum(eY, s))
        return a + b - a * b

    def paint(self, X, Y, eX, eY, eR):
        """(yellow coverage, white coverage) at world points; eX / eY / eR: footprint along x / y / radial."""
        if not self.markings:
            z = np.zeros_like(X)
            return z, z
        yellow = _box_cover(Y - self.yl, 0.075, eY)  # the straight line, along x
        cy = self.yl + self.arc_side * self.arc_r
        r = np.hypot(X - self.arc_x, Y - cy)
        quarter = (X >= self.arc_x) & (self.arc_side * (Y - cy) <= 0)
        yellow = np.maximum(yellow, _box_cover(r - self.arc_r, 0.075, eR) * quarter)
        white = _box_cover(X - self.bar_x, 0.2, eX) * _box_cover(Y - self.yl, 4.0, eY)
        return yellow, white


_GRID_MAX = 1024  # cells per axis of a world noise grid; larger areas repeat it (periodic)


def _world_grid(draw, lo, hi, cell):
    """Random values on a world-aligned grid of ``cell`` metres covering [lo, hi] (x, y) plus a margin.

    ``draw(shape)`` makes the values. Beyond ``_GRID_MAX`` cells an axis wraps around, so memory stays
    bounded on long drives (the finest octave then repeats every 30 m; the others much later).
    """
    org = np.asarray(lo, np.float64) - 2 * cell
    ext = np.asarray(hi, np.float64) + 2 * cell - org
    shape = tuple(min(int(math.ceil(e / cell)) + 2, _GRID_MAX) for e in (ext[1], ext[0]))
    return np.asarray(draw(shape), np.float32), org, cell


def _sample_grid(grid, X, Y):
    """Bilinear samples of a :func:`_world_grid` at world points (float32 arrays of one shape)."""
    values, org, cell = grid
    h, w = values.shape
    mx = np.mod((X - np.float32(org[0])) * np.float32(1.0 / cell), np.float32(w))  # remap needs small coords
    my = np.mod((Y - np.float32(org[1])) * np.float32(1.0 / cell), np.float32(h))
    return cv2.remap(values, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)


class _Shadow:
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
        n /= np.maximum(np.linalg.norm(n, axis=1), _EPS)[:, None]
        off = -np.sum(n * hull, axis=1)
        flip = (n @ c + off) < 0  # inward normals
        n[flip], off[flip] = -n[flip], -off[flip]
        self.xy, self.n, self.off = hull, n.astype(np.float32), off.astype(np.float32)
        self.lo, self.hi = hull.min(axis=0), hull.max(axis=0)

    def alpha(self, X, Y, soft):
        sd = np.min(X[..., None] * self.n[:, 0] + Y[..., None] * self.n[:, 1] + self.off, axis=-1)
        return np.clip(0.5 + sd / soft, 0.0, 1.0)


# ---------------------------------------------------------------- the scenario

@dataclass
class Scenario:
    """A generated scene: config, camera, objects, static extrinsics; frames are rendered on demand."""

    config: ScenarioConfig
    camera: PinholeCamera
    objects: List[TruthObject]
    T_base_lidar: np.ndarray
    T_base_camera: np.ndarray
    _world: "object" = field(default=None, repr=False, compare=False)

    @property
    def T_camera_lidar(self):
        """camera_optical <- lidar (what fusion takes as the extrinsics)."""
        return np.linalg.inv(self.T_base_camera) @ self.T_base_lidar

    def stamps(self, index):
        """(camera stamp, LiDAR stamp) of frame ``index`` in ns."""
        cam = EPOCH_NS + int(round(index * 1e9 / self.config.rate_hz))
        return cam, cam + int(round(self.config.lidar_offset_s * 1e9))

    def ego_pose(self, stamp_ns):
        """4x4 world <- base_link at a stamp (ns)."""
        return _ego_pose(self.config, (stamp_ns - EPOCH_NS) * 1e-9)

    def frame(self, index):
        """Frame ``index`` (0 <= index < config.frames); independent of the other frames."""
        if not 0 <= index < self.config.frames:
            raise IndexError("frame %d outside 0..%d" % (index, self.config.frames - 1))
        return self._world.frame(self, index)

    def frames(self) -> Iterator[ScenarioFrame]:
        for k in range(self.config.frames):
            yield self.frame(k)


def _place_objects(cfg, rng, T_bc):
    """World placement (x, y, yaw) per object: ahead of the last pose, in view, lines of sight apart."""
    t_end = max((cfg.frames - 1) / cfg.rate_hz, (cfg.frames - 1) / cfg.rate_hz + cfg.lidar_offset_s)
    T_end = _ego_pose(cfg, t_end)
    T_start = _ego_pose(cfg, min(0.0, cfg.lidar_offset_s))
    cams = [(T @ T_bc)[:2, 3] for T in (T_start, T_end)]
    tan_half = math.tan(0.5 * math.radians(cfg.hfov_deg))
    lo, hi = cfg.object_range
    placed = []  # (x, y, footprint radius)
    out = []
    order = sorted(range(len(cfg.objects)), key=lambda i: 0 if not isinstance(cfg.objects[i], str)
                   else (1 if KINDS[cfg.objects[i]] == "structure" else 2))
    models = {}
    for i in range(len(cfg.objects)):  # models first: their random draws do not depend on placement
        kind = cfg.objects[i] if isinstance(cfg.objects[i], str) else cfg.objects[i][0]
        models[i] = _centred(_kind_parts(kind, rng))
    for i in order:
        entry = cfg.objects[i]
        parts, size = models[i]
        radius = 0.5 * math.hypot(size[0], size[1])
        if not isinstance(entry, str):
            kind, x, y, yaw = entry[0], float(entry[1]), float(entry[2]), float(entry[3])
            placed.append((x, y, radius))
            out.append((i, kind, x, y, yaw, parts, size))
            continue
        kind = entry
        structure = KINDS[kind] == "structure"
        if structure:  # large: farther away, off the path
            r_lo, r_hi = max(lo, min(12.0, hi - 1.0)), hi
        elif kind == "bolt":  # a few pixels only when near
            r_lo, r_hi = lo, min(hi, lo + 10.0)
        else:
            r_lo, r_hi = lo, hi
        best = None
        for _ in range(300):
            r = float(rng.uniform(r_lo, r_hi))
            half_view = max(0.75 * (r - T_bc[0, 3]) * tan_half - radius, 0.0)
            if structure:
                side = float(rng.choice([-1.0, 1.0]))
                lat = side * float(rng.uniform(min(3.5, half_view), max(half_view, 3.5)))
            else:
                lat = float(rng.uniform(-half_view, half_view))
            yaw = float(rng.uniform(-math.pi, math.pi))
            p = T_end @ np.array([r, lat, 0.0, 1.0])
            x, y = float(p[0]), float(p[1])
            clash = 0.0
            for (px, py, pr) in placed:
                gap = math.hypot(x - px, y - py) - (radius + pr + 0.5)
                clash += max(0.0, -gap) * 10.0
                for c in cams:  # lines of sight from the camera (start and end) must not overlap
                    d1, d2 = math.hypot(x - c[0], y - c[1]), math.hypot(px - c[0], py - c[1])
                    if d1 < 1.0 or d2 < 1.0:
                        continue
                    sep = abs((math.atan2(y - c[1], x - c[0]) - math.atan2(py - c[1], px - c[0]) + math.pi)
                              % (2 * math.pi) - math.pi)
                    need = math.asin(min(1.0, radius / d1)) + math.asin(min(1.0, pr / d2)) + math.radians(1.5)
                    clash += max(0.0, need - sep)
            if best is None or clash < best[0]:
                best = (clash, x, y, yaw)
            if clash == 0.0:
                break
        _, x, y, yaw = best
        placed.append((x, y, radius))
        out.append((i, kind, x, y, yaw, parts, size))
    out.sort(key=lambda o: o[0])
    return out


class _World:
    """Everything static of a scenario (scene, precomputed pixel geometry), and the frame renderer."""

    def __init__(self, cfg, rng, camera, T_bc, T_bl, placed):
        self.cfg = cfg
        self.seed = cfg.seed
        self.T_bc, self.T_bl = T_bc, T_bl
        H, W = cfg.height, cfg.width
        self.H, self.W = H, W
        self.D = camera.D
        self.K = camera.K

        # --- objects (world solids) ---
        self.parts = []  # (object id, _Part)
        self.objects = []
        for oid, (_, kind, x, y, yaw, parts, size) in enumerate(placed, start=1):
            T = _yaw_matrix(x, y, 0.0, yaw)
            for solid, colour, inten, band, metal in parts:
                self.parts.append((oid, _Part(solid.transformed(T), colour, inten, band, metal)))
            self.objects.append(TruthObject(id=oid, kind=kind, category=KINDS[kind],
                                            center=np.array([x, y, 0.5 * size[2]]), size=np.asarray(size, float),
                                            yaw=float(math.atan2(math.sin(yaw), math.cos(yaw)))))

        # --- camera pixel geometry (static: the ego stays level on a flat ground) ---
        self.xn, self.yn = _pixel_rays(camera)
        self.nx_lo, self.nx_hi = float(self.xn.min()), float(self.xn.max())
        self.ny_lo, self.ny_hi = float(self.yn.min()), float(self.yn.max())
        R, p = T_bc[:3, :3], T_bc[:3, 3]
        rb = self.xn[..., None] * R[:, 0] + self.yn[..., None] * R[:, 1] + R[:, 2]  # ray dirs in base
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(rb[..., 2] < -1e-9, -p[2] / rb[..., 2], np.inf)
        horiz = np.hypot(rb[..., 0], rb[..., 1])
        ground = np.isfinite(t) & (t * horiz <= _GROUND_MAX)
        rows = np.flatnonzero(ground.any(axis=1))
        self.g0 = int(rows[0]) if rows.size else H
        g0 = self.g0
        self.ground = ground[g0:]
        tb = np.where(self.ground, t[g0:], _GROUND_MAX / np.maximum(horiz[g0:], 1e-9))
        gbx = p[0] + tb * rb[g0:, :, 0]
        gby = p[1] + tb * rb[g0:, :, 1]
        self.gbx, self.gby = gbx.astype(np.float32), gby.astype(np.float32)
        if g0 < H:
            jv = np.gradient(gbx, axis=0) if gbx.shape[0] > 1 else np.zeros_like(gbx)
            ju = np.gradient(gbx, axis=1)
            jvy = np.gradient(gby, axis=0) if gby.shape[0] > 1 else np.zeros_like(gby)
            juy = np.gradient(gby, axis=1)
            lim = 1e3
            self.J = [np.clip(a, -lim, lim).astype(np.float32) for a in (ju, juy, jv, jvy)]
            self.fp = np.maximum(np.hypot(self.J[0], self.J[1]), np.hypot(self.J[2], self.J[3]))
            self.gdist = np.hypot(gbx, gby).astype(np.float32)
        elev = np.arctan2(rb[..., 2], horiz)
        self.elev = elev.astype(np.float32)
        self.azim = np.arctan2(rb[..., 1], rb[..., 0]).astype(np.float32)

        # --- ego path (for the extents of world texture grids) ---
        n_t = cfg.frames
        ts = [k / cfg.rate_hz for k in range(n_t)] + [k / cfg.rate_hz + cfg.lidar_offset_s for k in range(n_t)]
        path = np.array([_ego_pose(cfg, tt)[:2, 3] for tt in ts])
        self.path_lo, self.path_hi = path.min(axis=0), path.max(axis=0)

        # --- ground texture: world octaves (grid, origin, cell, amp, fade, row range) ---
        self.octaves = []
        for cell, amp in ((6.0, 0.05), (1.5, 0.05), (0.4, 0.04), (0.1, 0.05), (0.03, 0.05)):
            if g0 >= H:
                break
            fade = np.clip(np.float32(0.5 * cell) / np.maximum(self.fp, 1e-6) - np.float32(1.0), 0.0, 1.0)
            fade[~self.ground] = 0
            act = np.flatnonzero(fade.max(axis=1) > 0)
            reach = float(self.gdist[fade > 0].max()) if act.size else 0.0
            grid = _world_grid(rng.standard_normal, self.path_lo - reach, self.path_hi + reach, cell)
            if act.size:
                self.octaves.append((grid, amp, fade.astype(np.float32), int(act[0]), int(act[-1]) + 1))
        self.wear = _world_grid(lambda shape: rng.uniform(0.7, 1.0, shape), self.path_lo - 60.0,
                                self.path_hi + 60.0, 0.5)
        self.stains = []
        for _ in range(int(rng.integers(2, 5))):
            sx = float(rng.uniform(self.path_lo[0], self.path_hi[0] + 30.0))
            sy = float(rng.uniform(-6, 6))
            self.stains.append((sx, sy, float(rng.uniform(0.4, 1.5)), float(math.log(rng.uniform(0.85, 0.93)))))
        self.gfeat = _Ground(rng, cfg.markings)
        base = _CONCRETE * np.float32(rng.uniform(0.85, 1.12))
        self.base = (base * (1.0 + rng.normal(0.0, 0.02, 3))).astype(np.float32)

        # --- light: sun, shadows (objects' and off-scene buildings'), exposure ---
        sun_el, sun_az = math.radians(float(rng.uniform(35, 60))), float(rng.uniform(-math.pi, math.pi))
        self.sun = np.array([math.cos(sun_el) * math.cos(sun_az), math.cos(sun_el) * math.sin(sun_az),
                             math.sin(sun_el)])
        self.shadows, self.big_shadows = [], []
        if cfg.shadows:
            for _, part in self.parts:
                v = part.solid.vertices
                self.shadows.append(_Shadow(v[:, :2] - v[:, 2:3] * (self.sun[:2] / self.sun[2])))
            for _ in range(int(rng.integers(1, 3))):
                cx = float(rng.uniform(self.path_lo[0] + 4.0, self.path_hi[0] + 30.0))
                cy = float(rng.uniform(-5.0, 5.0))
                ln, wd, ang = float(rng.uniform(8, 20)), float(rng.uniform(2, 5)), float(rng.uniform(-1.2, 1.2))
                c, s = math.cos(ang), math.sin(ang)
                corners = np.array([[-ln, -wd], [ln, -wd], [ln, wd], [-ln, wd]]) * 0.5
                xy = np.column_stack([cx + corners[:, 0] * c - corners[:, 1] * s,
                                      cy + corners[:, 0] * s + corners[:, 1] * c])
                self.big_shadows.append(_Shadow(xy))
        self.shadow_depth = float(rng.uniform(0.45, 0.6))
        self.penumbra = float(rng.uniform(0.03, 0.08))
        gu, gv = (float(v) for v in rng.uniform(-0.15, 0.15, 2))
        exposure = float(rng.uniform(205, 235))
        self.gain = (np.float32(exposure * (1.0 + 0.5 * gu + 0.5 * gv))
                     - np.linspace(0.0, exposure * gu, W, dtype=np.float32)[None, :]
                     - np.linspace(0.0, exposure * gv, H, dtype=np.float32)[:, None])

        # --- sky and a ring of far buildings (by world azimuth, 0.1 degree bins) ---
        t_el = np.clip(self.elev / np.float32(math.radians(30.0)), 0.0, 1.0)
        top, low = np.array([0.80, 0.62, 0.45], np.float32), np.array([0.92, 0.86, 0.80], np.float32)
        self.sky = [low[c] * (1 - t_el) + top[c] * t_el for c in range(3)]
        nb = 3600
        b_el = np.zeros(nb, np.float32)
        b_col = np.zeros((nb, 3), np.float32)
        k = 0
        while k < nb:
            wdt = int(rng.uniform(20, 120))
            gap = int(rng.uniform(0, 60))
            b_el[k:k + wdt] = math.radians(float(rng.uniform(0.8, 4.0)))
            b_col[k:k + wdt] = rng.uniform(0.35, 0.75) * (1 + rng.normal(0, 0.06, 3))
            k += wdt + gap
        self.b_el, self.b_col = b_el, b_col

        # --- LiDAR ray directions (beams x azimuth steps) in the LiDAR frame ---
        B, A = cfg.lidar_beams, cfg.lidar_azimuth_steps
        lo_el, hi_el = (math.radians(v) for v in cfg.lidar_elevation_deg)
        el = np.linspace(lo_el, hi_el, B) if B > 1 else np.array([0.5 * (lo_el + hi_el)])
        az = 2.0 * math.pi * np.arange(A) / A
        self.az_step = 2.0 * math.pi / A
        self.ldirs = np.stack([np.cos(el)[:, None] * np.cos(az)[None, :], np.cos(el)[:, None] * np.sin(az)[None, :],
                               np.broadcast_to(np.sin(el)[:, None], (B, A))], axis=-1)

    # ------------------------------------------------------------ frame

    def frame(self, scenario, index):
        cfg = self.cfg
        stamp, lstamp = scenario.stamps(index)
        T_wb = _ego_pose(cfg, (stamp - EPOCH_NS) * 1e-9)
        T_wbl = _ego_pose(cfg, (lstamp - EPOCH_NS) * 1e-9)
        rng = np.random.default_rng([self.seed, 1, index])
        image, ids = self.render_image(T_wb, rng)
        points, ring, pids = self.cast_lidar(T_wbl, np.random.default_rng([self.seed, 2, index]))
        visible = [int(v) for v in np.unique(ids) if v]
        return ScenarioFrame(index=index, stamp_ns=stamp, image=image, instance_ids=ids, lidar_stamp_ns=lstamp,
                             points=points, ring=ring, T_world_base=T_wb, T_world_base_lidar=T_wbl,
                             visible=visible, point_ids=pids)

    def _pixel_window(self, pts_c):
        """Pixel window (v0, v1, u0, u1) that holds the projection of camera-frame points' convex hull."""
        nx = pts_c[:, 0] / pts_c[:, 2]
        ny = pts_c[:, 1] / pts_c[:, 2]
        x0, x1 = max(nx.min(), self.nx_lo), min(nx.max(), self.nx_hi)
        y0, y1 = max(ny.min(), self.ny_lo), min(ny.max(), self.ny_hi)
        if x0 > x1 or y0 > y1:
            return None
        s = np.linspace(0.0, 1.0, 9)
        bx = np.concatenate([x0 + (x1 - x0) * s, np.full(9, x1), x0 + (x1 - x0) * s, np.full(9, x0)])
        by = np.concatenate([np.full(9, y0), y0 + (y1 - y0) * s, np.full(9, y1), y0 + (y1 - y0) * s])
        xd, yd = _distort(self.D, bx, by)
        u = self.K[0, 0] * xd + self.K[0, 1] * yd + self.K[0, 2]
        v = self.K[1, 1] * yd + self.K[1, 2]
        u0, u1 = max(int(math.floor(u.min())) - 2, 0), min(int(math.ceil(u.max())) + 3, self.W)
        v0, v1 = max(int(math.floor(v.min())) - 2, 0), min(int(math.ceil(v.max())) + 3, self.H)
        if u1 <= u0 or v1 <= v0:
            return None
        return v0, v1, u0, u1

    def _solid_window(self, verts_c, edges):
        z = verts_c[:, 2]
        front = z >= _NEAR
        if not front.any():
            return None
        pts = verts_c[front]
        if not front.all():  # clip at the near plane: add the crossings of the edges
            a, b = verts_c[edges[:, 0]], verts_c[edges[:, 1]]
            cross = (a[:, 2] - _NEAR) * (b[:, 2] - _NEAR) < 0
            if cross.any():
                a, b = a[cross], b[cross]
                f = (_NEAR - a[:, 2]) / (b[:, 2] - a[:, 2])
                pts = np.vstack([pts, a + f[:, None] * (b - a)])
        return self._pixel_window(pts)

    def render_image(self, T_wb, rng):
        cfg, H, W, g0 = self.cfg, self.H, self.W, self.g0
        T_wc = T_wb @ self.T_bc
        R_wc, o_wc = T_wc[:3, :3], T_wc[:3, 3]
        ex, ey = np.float32(T_wb[0, 3]), np.float32(T_wb[1, 3])
        yaw = math.atan2(T_wb[1, 0], T_wb[0, 0])
        c, s = np.float32(math.cos(yaw)), np.float32(math.sin(yaw))
        planes = [np.empty((H, W), np.float32) for _ in range(3)]
        alpha = np.zeros((H, W), np.float32)

        # --- sky and far buildings ---
        if g0 > 0 or not self.ground.all():
            az = (self.azim + np.float32(yaw)) % np.float32(2 * math.pi)
            b = np.minimum((az * np.float32(3600 / (2 * math.pi))).astype(np.int32), 3599)
            bld = self.elev < self.b_el[b]
            for ch in range(3):
                planes[ch][:] = np.where(bld, self.b_col[b, ch], self.sky[ch])

        # --- ground (world-fixed texture) ---
        if g0 < H:
            gm = self.ground
            X = ex + c * self.gbx - s * self.gby
            Y = ey + s * self.gbx + c * self.gby
            log_r = np.zeros(X.shape, np.float32)
            for grid, amp, fade, r0, r1 in self.octaves:
                log_r[r0:r1] += np.float32(amp) * _sample_grid(grid, X[r0:r1], Y[r0:r1]) * fade[r0:r1]
            for sx, sy, rad, depth in self.stains:
                near = (np.abs(X - sx) < 3 * rad) & (np.abs(Y - sy) < 3 * rad)
                if near.any():
                    dx, dy = X[near] - np.float32(sx), Y[near] - np.float32(sy)
                    log_r[near] += np.float32(depth) * np.exp((dx * dx + dy * dy) * np.float32(-1.0 / (rad * rad)))
            grey = np.exp(log_r)
            ju, juy, jv, jvy = self.J
            jux_w, juy_w = c * ju - s * juy, s * ju + c * juy  # footprint Jacobian in world axes
            jvx_w, jvy_w = c * jv - s * jvy, s * jv + c * jvy
            eX = np.abs(jux_w) + np.abs(jvx_w)
            eY = np.abs(juy_w) + np.abs(jvy_w)
            grey *= np.float32(1.0) - np.float32(0.35) * self.gfeat.joints(X, Y, eX, eY)
            band = [grey * self.base[ch] for ch in range(3)]
            if cfg.markings:
                g = self.gfeat
                cyc = np.float32(g.yl + g.arc_side * g.arc_r)
                rx, ry = X - np.float32(g.arc_x), Y - cyc
                rn = np.maximum(np.hypot(rx, ry), np.float32(1e-6))
                eR = (np.abs(jux_w * rx + juy_w * ry) + np.abs(jvx_w * rx + jvy_w * ry)) / rn
                yellow, white = g.paint(X, Y, eX, eY, eR)
                wear = _sample_grid(self.wear, X, Y)
                for cov, colour in ((yellow, _YELLOW_PAINT), (white, _WHITE_PAINT)):
                    a = cov * wear
                    for ch in range(3):
                        band[ch] += (np.float32(colour[ch]) - band[ch]) * a
            for ch in range(3):
                planes[ch][g0:] = np.where(gm, band[ch], planes[ch][g0:])
            if self.shadows or self.big_shadows:
                soft = np.maximum(self.fp, np.float32(self.penumbra))
                a_band = alpha[g0:]
                R_cw, t_cw = R_wc.T, -R_wc.T @ o_wc
                for sh in self.shadows + self.big_shadows:
                    win = self._ground_window(sh, R_cw, t_cw)
                    if win is None:
                        continue
                    v0, v1, u0, u1 = win
                    v0, v1 = max(v0 - g0, 0), max(v1 - g0, 0)
                    if v1 <= v0:
                        continue
                    a = sh.alpha(X[v0:v1, u0:u1], Y[v0:v1, u0:u1], soft[v0:v1, u0:u1])
                    np.maximum(a_band[v0:v1, u0:u1], a * gm[v0:v1, u0:u1], out=a_band[v0:v1, u0:u1])

        # --- objects: per solid, cast the pixel rays of its window; nearest hit wins ---
        zbuf = np.full((H, W), np.inf)
        ids = np.zeros((H, W), np.uint16)
        obj_alpha = np.zeros((H, W), np.float32)
        R_cw = R_wc.T
        t_cw = -R_cw @ o_wc
        for oid, part in self.parts:
            solid = part.solid
            verts_c = solid.vertices @ R_cw.T + t_cw
            win = self._solid_window(verts_c, solid.edges)
            if win is None:
                continue
            v0, v1, u0, u1 = win
            n_c = solid.planes[:, :3] @ R_cw.T
            d_c = solid.planes[:, 3] - n_c @ t_cw
            xs, ys = self.xn[v0:v1, u0:u1], self.yn[v0:v1, u0:u1]
            rays = np.stack([xs, ys, np.ones_like(xs)], axis=-1)
            t, face = _slab(np.column_stack([n_c, d_c]), rays, d_c)
            zb = zbuf[v0:v1, u0:u1]
            win_px = t < zb
            if not win_px.any():
                continue
            zb[win_px] = t[win_px]
            ids[v0:v1, u0:u1][win_px] = oid
            f = face[win_px]
            n_w = solid.planes[f, :3]
            lam = np.maximum(n_w @ self.sun, 0.0)
            if part.metal:
                shade = 0.35 + 0.5 * lam + 1.6 * lam ** 8
            else:
                shade = 0.45 + 0.65 * lam + 0.1 * n_w[:, 2]
            col = np.repeat(part.colour[None], f.size, axis=0)
            a = np.zeros(f.size, np.float32)
            if part.band is not None or self.big_shadows:
                hit = o_wc + (t[win_px][:, None] * rays[win_px]) @ R_wc.T
                if part.band is not None:  # retro-reflective band by height
                    inb = (hit[:, 2] >= part.band[0]) & (hit[:, 2] <= part.band[1])
                    col[inb] = (0.85, 0.86, 0.86)
                # objects standing in an off-scene building's shadow (objects' own shadows fall on the ground only)
                gx = (hit[:, 0] - hit[:, 2] * self.sun[0] / self.sun[2]).astype(np.float32)
                gy = (hit[:, 1] - hit[:, 2] * self.sun[1] / self.sun[2]).astype(np.float32)
                for sh in self.big_shadows:
                    a = np.maximum(a, sh.alpha(gx, gy, np.float32(self.penumbra)))
            obj_alpha[v0:v1, u0:u1][win_px] = a
            vals = col * shade[:, None].astype(np.float32)
            for ch in range(3):
                planes[ch][v0:v1, u0:u1][win_px] = vals[:, ch]
        obj = ids > 0
        if obj.any():  # object grain; object pixels take their own shadow alpha, not the ground's
            grain = (1.0 + 0.03 * rng.standard_normal(int(np.count_nonzero(obj)))).astype(np.float32)
            for ch in range(3):
                planes[ch][obj] *= grain
            alpha = np.where(obj, obj_alpha, alpha)

        # --- lighting, exposure, optics, sensor ---
        shade = np.array([1.08, 1.0, 0.95]) * self.shadow_depth
        for ch in range(3):
            planes[ch] *= self.gain * (np.float32(1.0) - np.float32(1.0 - shade[ch]) * alpha)
        image = cv2.convertScaleAbs(cv2.merge(planes))
        if cfg.blur_sigma > 0:
            image = cv2.GaussianBlur(image, (0, 0), sigmaX=float(cfg.blur_sigma))
        if cfg.noise_sigma > 0:
            table = np.round(_gauss_table(float(cfg.noise_sigma))).astype(np.int16)
            noise = cv2.LUT(np.frombuffer(rng.bytes(image.size), np.uint8).reshape(image.shape), table)
            image = cv2.convertScaleAbs(cv2.add(image.astype(np.int16), noise))
        return image, ids

    def _ground_window(self, sh, R_cw, t_cw):
        """Pixel window of a ground polygon (None: not in view)."""
        xy = sh.xy
        pts = np.column_stack([xy, np.zeros(len(xy))]) @ R_cw.T + t_cw
        if np.all(pts[:, 2] < _NEAR):
            return None
        if np.any(pts[:, 2] < _NEAR):  # crossing the near plane: clip the polygon's edges
            q = np.roll(pts, -1, axis=0)
            cross = (pts[:, 2] - _NEAR) * (q[:, 2] - _NEAR) < 0
            f = (_NEAR - pts[cross, 2]) / (q[cross, 2] - pts[cross, 2])
            pts = np.vstack([pts[pts[:, 2] >= _NEAR], pts[cross] + f[:, None] * (q[cross] - pts[cross])])
        return self._pixel_window(pts)

    # ------------------------------------------------------------ LiDAR

    def cast_lidar(self, T_wb, rng):
        cfg = self.cfg
        T_wl = T_wb @ self.T_bl
        R, o = T_wl[:3, :3], T_wl[:3, 3]
        dirs = self.ldirs  # (B, A, 3) lidar frame
        B, A = dirs.shape[:2]
        up = R[2]  # world z axis in the lidar frame (row 2 of R = R^T e_z)
        den = dirs @ up
        with np.errstate(divide="ignore"):
            best = np.where(den < -1e-12, -o[2] / den, np.inf)
        pid = np.zeros((B, A), np.uint16)
        refl = np.zeros((B, A))
        cos_inc = np.abs(den)
        band = np.zeros((B, A), bool)
        for oid, part in self.parts:
            solid = part.solid
            v_l = (solid.vertices - o) @ R
            if np.min(np.linalg.norm(v_l, axis=1)) > cfg.lidar_max_range + 20.0:  # parts are < 20 m across
                continue
            azv = np.arctan2(v_l[:, 1], v_l[:, 0])
            ac = math.atan2(float(v_l[:, 1].mean()), float(v_l[:, 0].mean()))
            rel = (azv - ac + math.pi) % (2 * math.pi) - math.pi
            if np.ptp(rel) > math.pi:  # around the sensor's axis (not expected): all columns
                cols = np.arange(A)
            else:
                k0 = int(math.floor((ac + rel.min()) / self.az_step)) - 1
                k1 = int(math.ceil((ac + rel.max()) / self.az_step)) + 1
                cols = np.arange(k0, k1 + 1) % A
                if cols.size > A:
                    cols = np.arange(A)
            n_l = solid.planes[:, :3] @ R
            d_l = solid.planes[:, 3] + solid.planes[:, :3] @ o
            sub = dirs[:, cols]
            t, face = _slab(np.column_stack([n_l, d_l]), sub, d_l)
            cur = best[:, cols]
            win = t < cur
            if not win.any():
                continue
            bi, ci = np.nonzero(win)
            cc = cols[ci]
            best[bi, cc] = t[bi, ci]
            pid[bi, cc] = oid
            refl[bi, cc] = part.intensity
            cos_inc[bi, cc] = np.abs(np.sum(sub[bi, ci] * n_l[face[bi, ci]], axis=1))
            if part.band is not None:
                z = o[2] + t[bi, ci] * (sub[bi, ci] @ R[2])
                band[bi, cc] = (z >= part.band[0]) & (z <= part.band[1])
        noisy = best + rng.normal(0.0, cfg.lidar_range_noise, best.shape) if cfg.lidar_range_noise > 0 else best
        keep = np.isfinite(best) & (best <= cfg.lidar_max_range) & (noisy >= cfg.lidar_min_range)
        # firing order: azimuth outer, beams inner
        ai, bi = np.nonzero(keep.T)
        r = noisy[bi, ai]
        xyz = dirs[bi, ai] * r[:, None]
        ids = pid[bi, ai]
        inten = refl[bi, ai]
        g = ids == 0
        if g.any():  # ground reflectivity: concrete, joints, paint (hard coverage at the hit point)
            pw = (dirs[bi[g], ai[g]] * best[bi[g], ai[g]][:, None]) @ R.T + o
            X, Y = pw[:, 0].astype(np.float32), pw[:, 1].astype(np.float32)
            tiny = np.full(X.shape, 1e-4, np.float32)
            gi = 14.0 * (1.0 - 0.6 * self.gfeat.joints(X, Y, tiny, tiny))
            yellow, white = self.gfeat.paint(X, Y, tiny, tiny, tiny)
            gi = np.where(yellow > 0.5, 60.0, gi)
            gi = np.where(white > 0.5, 75.0, gi)
            inten[g] = gi
        inten = np.where(band[bi, ai], 220.0, inten)
        inten = inten * (0.4 + 0.6 * cos_inc[bi, ai]) + rng.normal(0.0, 1.0, inten.shape)
        points = np.column_stack([xyz, np.clip(inten, 0.0, 255.0)]).astype(np.float32)
        return points, bi.astype(np.uint16), ids.astype(np.uint16)


def make_scenario(config: Optional[ScenarioConfig] = None) -> Scenario:
    """Build the scene of a config (objects, textures, light); frames are rendered lazily."""
    cfg = config if config is not None else ScenarioConfig()
    if not isinstance(cfg, ScenarioConfig):
        raise ValueError("config must be a ScenarioConfig, got %r" % type(cfg).__name__)
    rng = np.random.default_rng(cfg.seed)
    camera = _make_camera(cfg)
    T_bc, T_bl = _extrinsics()
    placed = _place_objects(cfg, rng, T_bc)
    world = _World(cfg, rng, camera, T_bc, T_bl, placed)
    return Scenario(config=cfg, camera=camera, objects=world.objects, T_base_lidar=T_bl, T_base_camera=T_bc,
                    _world=world)


def _mat(m):
    return [[float(v) for v in row] for row in np.asarray(m)]


def truth_dict(scenario: Scenario, frames: Sequence[ScenarioFrame]) -> dict:
    """JSON-able ground truth of a scenario and some of its frames (``boxes_2d`` keys: str(id))."""
    cam = scenario.camera
    out = {
        "format": TRUTH_FORMAT,
        "seed": int(scenario.config.seed),
        "config": scenario.config.to_dict(),
        "frames_ids": {"world": FRAME_WORLD, "base": FRAME_BASE, "lidar": FRAME_LIDAR, "camera": FRAME_CAMERA},
        "extrinsics": {"T_base_lidar": _mat(scenario.T_base_lidar), "T_base_camera": _mat(scenario.T_base_camera),
                       "T_camera_lidar": _mat(scenario.T_camera_lidar)},
        "camera": {"width": int(cam.width), "height": int(cam.height), "K": _mat(cam.K),
                   "D": [float(v) for v in cam.D], "distortion_model": cam.distortion_model},
        "objects": [{"id": int(o.id), "kind": o.kind, "category": o.category,
                     "center": [float(v) for v in o.center], "size": [float(v) for v in o.size],
                     "yaw": float(o.yaw)} for o in scenario.objects],
        "frames": [],
    }
    for f in frames:
        boxes = {}
        for oid in f.visible:
            box = box_from_mask(f.instance_ids == oid)
            if box is not None:
                boxes[str(int(oid))] = [int(v) for v in box]
        out["frames"].append({"index": int(f.index), "stamp_ns": int(f.stamp_ns),
                              "lidar_stamp_ns": int(f.lidar_stamp_ns), "T_world_base": _mat(f.T_world_base),
                              "visible": [int(v) for v in f.visible], "boxes_2d": boxes})
    return out
