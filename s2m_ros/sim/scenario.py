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

import numpy as np

from s2m_ros.config import check_fields
from s2m_ros.obstacles.camera import PinholeCamera
from s2m_ros.sim.objects import CATEGORIES, centred, kind_parts
from s2m_ros.sim.solids import yaw_matrix
from s2m_ros.sim.world import TruthObject, World
from s2m_ros.types import box_from_mask

FRAME_WORLD = "map"
FRAME_BASE = "base_link"
FRAME_LIDAR = "lidar"
FRAME_CAMERA = "camera_optical"
TRUTH_FORMAT = "s2m_ros/scenario-truth/1"
EPOCH_NS = 1_700_000_000 * 10 ** 9  # first camera stamp (fixed: never wall time)

KINDS = CATEGORIES  # kind -> truth category
SURFACES = ("concrete", "asphalt")
DEFAULT_OBJECTS = ("bolt", "toolbox", "suitcase", "chock", "cone", "cone", "hose", "tug", "pillar")



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
    surface: str = "concrete"  # "concrete" | "asphalt"
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
            ("surface", lambda: self.surface in SURFACES, "one of %s" % ", ".join(SURFACES)),
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


def _ego_pose(cfg, t):
    """4x4 world <- base_link at time t seconds after the first camera stamp (start at the origin)."""
    v, w = cfg.speed_mps, math.radians(cfg.yaw_rate_dps)
    if abs(w) < 1e-12:
        x, y, yaw = v * t, 0.0, 0.0
    else:
        x, y, yaw = v / w * math.sin(w * t), v / w * (1.0 - math.cos(w * t)), w * t
    return yaw_matrix(x, y, 0.0, yaw)


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
        stamp, lstamp = self.stamps(index)
        T_wb = self.ego_pose(stamp)
        T_wbl = self.ego_pose(lstamp)
        world, seed = self._world, self.config.seed
        image, ids = world.render_image(T_wb, np.random.default_rng([seed, 1, index]))
        points, ring, pids = world.cast_lidar(T_wbl, np.random.default_rng([seed, 2, index]))
        visible = [int(v) for v in np.unique(ids) if v]
        return ScenarioFrame(index=index, stamp_ns=stamp, image=image, instance_ids=ids, lidar_stamp_ns=lstamp,
                             points=points, ring=ring, T_world_base=T_wb, T_world_base_lidar=T_wbl,
                             visible=visible, point_ids=pids)

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
        models[i] = centred(kind_parts(kind, rng))
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


def make_scenario(config: Optional[ScenarioConfig] = None) -> Scenario:
    """Build the scene of a config (objects, textures, light); frames are rendered lazily."""
    cfg = config if config is not None else ScenarioConfig()
    if not isinstance(cfg, ScenarioConfig):
        raise ValueError("config must be a ScenarioConfig, got %r" % type(cfg).__name__)
    rng = np.random.default_rng(cfg.seed)
    camera = _make_camera(cfg)
    T_bc, T_bl = _extrinsics()
    placed = _place_objects(cfg, rng, T_bc)
    n_t = cfg.frames
    ts = [k / cfg.rate_hz for k in range(n_t)] + [k / cfg.rate_hz + cfg.lidar_offset_s for k in range(n_t)]
    path = np.array([_ego_pose(cfg, tt)[:2, 3] for tt in ts])
    world = World(cfg, rng, camera, T_bc, T_bl, placed, path)
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
