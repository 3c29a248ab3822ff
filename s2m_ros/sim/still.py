"""A still view of the synthetic apron world: one camera frame (and, on request, one LiDAR sweep) from a
parked vehicle, with exact truth masks of the objects and of the surface's distractors.

The same world as the drive of :mod:`s2m_ros.sim.scenario` (:class:`s2m_ros.sim.world.World`: convex
solids ray-cast for camera and LiDAR, world-fixed concrete or asphalt with slab joints, a yellow taxi line
with a curved lead-off, a white stop bar, stains, object and building shadows, sky and far buildings,
exposure, blur and sensor noise), seen by a level pinhole camera ``camera_height`` metres above the ground
whose horizon is at row ``horizon * height`` (focal length 0.75 x width, no distortion). Ground positions
are in the camera's ground frame: ``x`` metres to the right, ``z`` metres ahead.

Objects of every kind in :data:`s2m_ros.sim.objects.KINDS`; :data:`SMALL_KINDS` are the small apron
objects (chock, cone, suitcase, bolt, hose). Deterministic per ``seed``.
"""
import math
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from s2m_ros.obstacles.camera import PinholeCamera
from s2m_ros.sim.objects import KINDS, centred, kind_parts, scaled
from s2m_ros.sim.world import World
from s2m_ros.types import Box, box_from_mask

SMALL_KINDS = ("chock", "cone", "suitcase", "bolt", "hose")
SURFACES = ("concrete", "asphalt")


@dataclass
class ObjectSpec:
    """One object to plant. Unset fields are drawn at random (deterministically from the seed).

    ``x`` / ``z``: ground position of the object's footprint centre, metres right of the camera /
    ahead of it. ``yaw``: rotation on the ground (radians). ``scale``: size factor.
    """

    kind: str
    x: Optional[float] = None
    z: Optional[float] = None
    yaw: Optional[float] = None
    scale: float = 1.0


@dataclass
class PlantedObject:
    """A planted object: its kind, exact full-image mask (visible pixels), tight box and ground position."""

    kind: str
    mask: np.ndarray  # bool, H x W
    box: Box
    x: float
    z: float

    @property
    def area(self):
        return int(np.count_nonzero(self.mask))


@dataclass
class SceneMasks:
    """Ground truth of a rendered scene (all masks H x W bool; object pixels belong to no other layer)."""

    objects: List[PlantedObject] = field(default_factory=list)
    shadow: Optional[np.ndarray] = None  # inside a cast shadow (alpha >= 0.5) on the ground
    markings: Optional[np.ndarray] = None  # painted marking coverage >= 0.5 (all paint)
    stop_bar: Optional[np.ndarray] = None  # the white stop bar (the only white paint)
    joints: Optional[np.ndarray] = None  # slab joint coverage >= 0.5, outside paint
    ground: Optional[np.ndarray] = None  # below the horizon (apron surface or object)
    horizon_row: int = 0  # first ground row

    def object_union(self):
        """All object pixels (bool H x W)."""
        out = np.zeros_like(self.ground)
        for obj in self.objects:
            out |= obj.mask
        return out

    def surface(self):
        """Ground pixels that belong to no object (bool H x W)."""
        return self.ground & ~self.object_union()


ObjectArg = Union[str, ObjectSpec]


@dataclass
class StillView:
    """A parked camera (and LiDAR) in a world: render with :meth:`image`, sweep with :meth:`lidar`."""

    world: World
    camera: PinholeCamera
    T_base_camera: np.ndarray
    T_base_lidar: np.ndarray
    specs: List[Tuple[str, float, float]]  # (kind, x, z) per planted object, in order (object id = index + 1)
    seed: int

    def image(self):
        """``(image BGR uint8 H x W x 3, SceneMasks)``."""
        image, ids, layers = self.world.render_image(np.eye(4), np.random.default_rng([self.seed, 1, 0]), layers=True)
        occupied = ids > 0
        planted = []
        for oid, (kind, x, z) in enumerate(self.specs, start=1):
            m = ids == oid
            box = box_from_mask(m)
            if box is not None:  # fully hidden or outside the image: not planted
                planted.append(PlantedObject(kind=kind, mask=m, box=box, x=x, z=z))
        free = ~occupied
        markings = ((layers["yellow"] >= 0.5) | (layers["white"] >= 0.5)) & free
        ground = layers["ground"] | occupied
        rows = np.flatnonzero(ground.any(axis=1))
        truth = SceneMasks(objects=planted, shadow=(layers["shadow"] >= 0.5) & free & layers["ground"],
                           markings=markings, stop_bar=(layers["white"] >= 0.5) & free,
                           joints=(layers["joints"] >= 0.5) & free & ~markings, ground=ground,
                           horizon_row=int(rows[0]) if rows.size else self.camera.height)
        return image, truth

    def lidar(self):
        """``(points (N, 4) x, y, z, intensity in the LiDAR frame, ring (N,), object id per point (N,))``."""
        return self.world.cast_lidar(np.eye(4), np.random.default_rng([self.seed, 2, 0]))


def _check(width, height, horizon, surface, camera_height):
    if width < 16 or height < 16:
        raise ValueError("render_apron needs at least 16 x 16 pixels, got %d x %d" % (width, height))
    if not 0.0 <= horizon < 0.9:
        raise ValueError("horizon must be in [0, 0.9), got %r" % (horizon,))
    if surface not in SURFACES:
        raise ValueError("surface must be one of %s, got %r" % (", ".join(SURFACES), surface))
    if not 0.2 <= camera_height <= 20.0:
        raise ValueError("camera_height must be in [0.2, 20] m, got %r" % (camera_height,))


def _place(spec, rng, placed, z_range, half_view):
    """Fill a spec's unset position fields, keeping lines of sight apart from the objects placed so far."""
    x, z = spec.x, spec.z
    yaw = spec.yaw if spec.yaw is not None else float(rng.uniform(-math.pi, math.pi))
    if x is not None and z is not None:
        return float(x), float(z), yaw
    best = None
    for _ in range(30):
        zz = float(z) if z is not None else float(rng.uniform(*z_range))
        half = half_view * zz
        xx = float(x) if x is not None else float(rng.uniform(-half, half))
        gap = min([math.hypot((xx - px) / max(pz, 1.0), (zz - pz) / max(pz, 1.0) * 0.5) * 20.0
                   for px, pz in placed] or [1e9])
        if best is None or gap > best[0]:
            best = (gap, xx, zz)
        if gap > 2.5:
            break
    return best[1], best[2], yaw


def still_view(width: int = 1280, height: int = 720, seed: int = 0, objects: Sequence[ObjectArg] = (),
               shadows: bool = True, markings: bool = True, horizon: float = 0.3, camera_height: float = 2.0,
               surface: str = "concrete", object_z: Tuple[float, float] = (6.0, 22.0),
               blur_sigma: float = 0.6, noise_sigma: float = 1.5) -> StillView:
    """Build the world and the parked sensors of a still scene (arguments as :func:`render_apron`)."""
    from s2m_ros.sim.scenario import ScenarioConfig

    _check(width, height, horizon, surface, camera_height)
    specs = [o if isinstance(o, ObjectSpec) else ObjectSpec(kind=o) for o in objects]
    for spec in specs:
        if spec.kind not in KINDS:
            raise ValueError("unknown object kind %r (known: %s)" % (spec.kind, ", ".join(KINDS)))
    rng = np.random.default_rng(seed)
    f = 0.75 * width
    K = np.array([[f, 0.0, 0.5 * (width - 1)], [0.0, f, horizon * height], [0.0, 0.0, 1.0]])
    camera = PinholeCamera(width, height, K, np.zeros(5), "plumb_bob", "camera_optical")
    T_bc = np.eye(4)
    T_bc[:3, :3] = [[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]  # optical x right, y down, z ahead
    T_bc[:3, 3] = 0.0, 0.0, camera_height
    T_bl = np.eye(4)
    T_bl[:3, 3] = 0.0, 0.0, camera_height + 0.25
    half_view = 0.5 * width / f - 0.08  # margin: 8 % of the half width
    models = [centred(scaled(kind_parts(s.kind, rng), float(s.scale))) for s in specs]
    placed, out, ground_xz = [], [], []
    for i, spec in enumerate(specs):
        x, z, yaw = _place(spec, rng, ground_xz, object_z, half_view)
        ground_xz.append((x, z))
        parts, size = models[i]
        out.append((i, spec.kind, z, -x, -yaw, parts, size))  # camera ground (x right, z ahead) -> world
        placed.append((spec.kind, x, z))
    cfg = ScenarioConfig(seed=int(seed), frames=1, width=int(width), height=int(height),
                         hfov_deg=math.degrees(2.0 * math.atan(0.5 * width / f)), speed_mps=0.0,
                         shadows=bool(shadows), markings=bool(markings), surface=surface,
                         blur_sigma=float(blur_sigma), noise_sigma=float(noise_sigma),
                         objects=tuple((k, z, -x, 0.0) for k, x, z in placed))
    world = World(cfg, rng, camera, T_bc, T_bl, out, np.zeros((1, 2)))
    return StillView(world=world, camera=camera, T_base_camera=T_bc, T_base_lidar=T_bl, specs=placed, seed=int(seed))


def render_apron(width: int = 1280, height: int = 720, seed: int = 0, objects: Sequence[ObjectArg] = (),
                 shadows: bool = True, markings: bool = True, horizon: float = 0.3, camera_height: float = 2.0,
                 surface: str = "concrete", object_z: Tuple[float, float] = (6.0, 22.0),
                 blur_sigma: float = 0.6, noise_sigma: float = 1.5) -> Tuple[np.ndarray, SceneMasks]:
    """Render an apron scene: ``(image BGR uint8 H x W x 3, SceneMasks)``.

    ``objects``: kinds (``"cone"``) or :class:`ObjectSpec`; unset positions are drawn between
    ``object_z`` metres ahead, inside the view, away from each other. ``horizon``: horizon row as a
    fraction of the height (sky and buildings above it). ``surface``: ``"concrete"`` or
    ``"asphalt"``. ``noise_sigma``: sensor noise in grey levels. Deterministic per ``seed``.
    """
    return still_view(width, height, seed, objects, shadows, markings, horizon, camera_height, surface, object_z,
                      blur_sigma, noise_sigma).image()
