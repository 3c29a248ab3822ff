"""Synthetic airport-apron images with exact object masks (numpy + OpenCV, ROS-free).

A small renderer for tests, benchmarks and demos of the weight-free path: a pinhole camera
``camera_height`` metres above a flat apron looks forward with its horizon at row
``horizon * height``. Every ground pixel is traced to ground coordinates (X right, Z forward,
metres), so texture, slab joints, painted lines and object sizes shrink with distance
(lower rows are nearer). The scene is:

- concrete (or asphalt) reflectance: multi-scale noise defined on the ground, each octave faded
  out where its period falls below two pixels (no aliasing towards the horizon), and mild stains;
- slab joints (thin dark grooves on a square grid), painted markings (a straight and a curved
  yellow taxi line, a white stop bar), worn;
- soft cast shadows (ground polygons, penumbra blur, slightly blue: skylight) and a mild global
  illumination gradient;
- above the horizon: sky and a band of far buildings;
- a camera: exposure, slight optical blur, sensor noise, 8 bits;
- planted objects of named kinds with typical apron colours: ``chock`` (black rubber wedge),
  ``cone`` (orange with a white band), ``suitcase`` (blue, with a handle), ``bolt`` (small grey
  metal part, a few pixels), ``hose`` (thin black curve lying on the ground).

Object masks are exact: an object's pixels are exactly the pixels its drawn shape covers (drawn
without anti-aliasing, later objects on top; a mild optical blur of the whole image then mixes
the colours at the outline, as a lens does). Everything random comes from
``numpy.random.default_rng(seed)``, so a seed gives the same image on every machine.
"""
import functools
import math
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from s2m_ros.types import Box, box_from_mask

KINDS = ("chock", "cone", "suitcase", "bolt", "hose")

# Typical reflectances (B, G, R in [0, 1]) of apron materials.
_CONCRETE = np.array([0.55, 0.57, 0.58], np.float32)
_ASPHALT = np.array([0.30, 0.30, 0.31], np.float32)
_YELLOW_PAINT = np.array([0.12, 0.62, 0.85], np.float32)
_WHITE_PAINT = np.array([0.86, 0.87, 0.86], np.float32)


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
    """A planted object: its kind, exact full-image mask, tight box and ground position."""

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
    """Ground truth of a rendered scene (all masks H x W bool)."""

    objects: List[PlantedObject] = field(default_factory=list)
    shadow: Optional[np.ndarray] = None  # inside a cast shadow (penumbra alpha >= 0.5)
    markings: Optional[np.ndarray] = None  # painted marking coverage >= 0.5 (all paint)
    stop_bar: Optional[np.ndarray] = None  # the white stop bar (the only white paint; beyond the near field)
    joints: Optional[np.ndarray] = None  # slab joint coverage >= 0.5
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


class _Camera:
    """Pinhole camera over a flat ground: pixel <-> ground (X right, Z forward) in metres."""

    def __init__(self, width, height, horizon, camera_height):
        self.w, self.h = width, height
        self.f = 0.75 * width
        self.cx = 0.5 * width
        self.v0 = horizon * height  # horizon row (may be fractional)
        self.hc = camera_height

    def z_of_row(self, v):
        return self.f * self.hc / np.maximum(v - self.v0, 1e-3)

    def project(self, x, z):
        """Ground point(s) -> image (u, v)."""
        z = np.maximum(z, 1e-3)
        return self.cx + self.f * x / z, self.v0 + self.f * self.hc / z

    def px_per_m(self, z):
        return self.f / z

    def visible_x(self, z, margin_px=0.0):
        half = (self.cx - margin_px) * z / self.f
        return -half, half


def _ground_maps(cam, g0):
    """Ground X (rows x W) and Z (rows x 1), float32, for the ground rows g0..H-1 (pixel centres)."""
    v = np.arange(g0, cam.h, dtype=np.float32) + np.float32(0.5)
    u = np.arange(cam.w, dtype=np.float32) + np.float32(0.5)
    z = cam.z_of_row(v).astype(np.float32)[:, None]
    x = (u[None, :] - np.float32(cam.cx)) * (z / np.float32(cam.f))
    return x, z


def _octave_field(rng, cam, x, z, cell, z_max):
    """Band-limited noise with period ``cell`` metres on the ground, faded where it would alias.

    The octave fades out where its vertical period (``cell * f * hc / Z^2`` pixels) drops below two
    pixels, so its noise grid only covers the ground up to that distance and only those rows are
    interpolated.
    """
    z_lim = min(z_max, math.sqrt(cell * cam.f * cam.hc / 2.0)) + cell
    x_half = z_lim * cam.cx / cam.f + cell
    grid = rng.standard_normal((math.ceil(z_lim / cell) + 4, math.ceil(2 * x_half / cell) + 4)).astype(np.float32)
    period_px = np.float32(cell * cam.f * cam.hc) / (z[:, 0] * z[:, 0])
    fade = np.clip(period_px * np.float32(0.5) - np.float32(1.0), 0.0, 1.0)
    near = np.flatnonzero(fade > 0)
    out = np.zeros(x.shape, np.float32)
    if near.size:
        r0, r1 = int(near[0]), int(near[-1]) + 1  # z decreases with the row, so the near rows are contiguous
        map_x = (x[r0:r1] + np.float32(x_half)) * np.float32(1.0 / cell)
        map_y = np.broadcast_to(z[r0:r1] * np.float32(1.0 / cell), map_x.shape).astype(np.float32)
        out[r0:r1] = cv2.remap(grid, map_x, map_y, interpolation=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT) * fade[r0:r1, None]
    return out


def _ground_quad(cam, x0, x1, z0, z1):
    """Image polygon of the ground rectangle [x0, x1] x [z0, z1] (straight edges stay straight)."""
    xs = np.array([x0, x1, x1, x0], np.float64)
    zs = np.array([z0, z0, z1, z1], np.float64)
    pu, pv = cam.project(xs, zs)
    return np.stack([pu, pv], 1)


def _fill_aa(shape, polys):
    """uint8 coverage (0..255) of polygons, anti-aliased, with quarter-pixel vertex precision."""
    canvas = np.zeros(shape, np.uint8)
    if polys:
        pts = [np.round(np.clip(p, -1e5, 1e5) * 4.0).astype(np.int32) for p in polys]
        cv2.fillPoly(canvas, pts, 255, lineType=cv2.LINE_AA, shift=2)
    return canvas


class _Roi:
    """Bounding window of some image points (plus a pad), clipped to the image."""

    def __init__(self, pts, shape, pad):
        h, w = shape
        self.x0 = int(max(math.floor(np.min(pts[:, 0]) - pad), 0))
        self.y0 = int(max(math.floor(np.min(pts[:, 1]) - pad), 0))
        self.x1 = int(min(math.ceil(np.max(pts[:, 0]) + pad) + 1, w))
        self.y1 = int(min(math.ceil(np.max(pts[:, 1]) + pad) + 1, h))

    @property
    def empty(self):
        return self.x1 <= self.x0 or self.y1 <= self.y0

    def canvas(self):
        return np.zeros((max(self.y1 - self.y0, 1), max(self.x1 - self.x0, 1)), np.uint8)

    def local(self, pts):
        return np.round((np.asarray(pts, np.float64) - [self.x0, self.y0]) * 4.0).astype(np.int32)


def _shade(ys, xs, x_range, colour, rng, light=0.25, grain=0.03):
    """Object colours at pixels (ys, xs): a left-to-right shading ramp and fine grain (N x 3 BGR)."""
    x0, x1 = x_range
    t = np.clip((xs - x0) / max(x1 - x0, 1.0), 0.0, 1.0)
    gain = (1.0 - light) + 2.0 * light * t
    vals = colour[None, :] * (gain * (1.0 + grain * rng.standard_normal(ys.size)))[:, None]
    return vals.astype(np.float32)


def _object_pixels(kind, cam, x, z, yaw, scale, rng, shape):
    """Exact pixels (ys, xs) and colours (N x 3 BGR) of one object standing / lying at ground (x, z)."""
    u, v = cam.project(x, z)
    s = cam.px_per_m(z) * scale  # pixels per metre at that distance
    polys, lines, ellipse = [], [], None
    if kind == "cone":
        hgt, base, top = 0.50 * s, 0.36 * s, 0.07 * s
        polys = [np.array([[u - 0.55 * base, v], [u + 0.55 * base, v], [u + 0.5 * base, v - 0.06 * s],
                           [u - 0.5 * base, v - 0.06 * s]]),
                 np.array([[u - base / 2, v - 0.04 * s], [u + base / 2, v - 0.04 * s],
                           [u + top / 2, v - hgt], [u - top / 2, v - hgt]])]
        x_range, colour, light, grain = (u - base / 2, u + base / 2), (0.05, 0.30, 0.92), 0.25, 0.03
    elif kind == "chock":
        length, hgt = 0.38 * s, 0.16 * s
        half = 0.5 * length * abs(math.cos(yaw)) + 0.12 * s * abs(math.sin(yaw))
        polys = [np.array([[u - half, v], [u + half, v], [u + 0.35 * half, v - hgt], [u - 0.6 * half, v - hgt]])]
        x_range, colour, light, grain = (u - half, u + half), (0.085, 0.085, 0.095), 0.3, 0.08
    elif kind == "suitcase":
        wid, hgt = 0.48 * s * (0.6 + 0.4 * abs(math.cos(yaw))), 0.62 * s
        hw, hh = 0.16 * s, 0.07 * s
        polys = [np.array([[u - wid / 2, v], [u + wid / 2, v], [u + wid / 2, v - hgt], [u - wid / 2, v - hgt]]),
                 np.array([[u - hw / 2, v - hgt + 1], [u + hw / 2, v - hgt + 1], [u + hw / 2, v - hgt - hh],
                           [u - hw / 2, v - hgt - hh]])]
        x_range, colour, light, grain = (u - wid / 2, u + wid / 2), (0.62, 0.28, 0.10), 0.25, 0.03
    elif kind == "bolt":
        r = max(2.5, 0.035 * s)  # a few pixels at any distance (a bolt / nut / small tool piece)
        ellipse = ((u, v - 0.5 * r), (r, 0.6 * r), math.degrees(yaw))
        x_range, colour, light, grain = (u - r, u + r), (0.26, 0.27, 0.29), 0.3, 0.03
    elif kind == "hose":
        n = 40
        heading = yaw + np.cumsum(rng.normal(0.0, 0.12, n))
        step = 2.4 * scale / n
        gx = x + np.concatenate([[0.0], np.cumsum(step * np.sin(heading))])
        gz = np.maximum(z + np.concatenate([[0.0], np.cumsum(step * np.cos(heading))]), 1.0)
        pu, pv = cam.project(gx, gz)
        thick = np.maximum(2, np.round(0.07 * cam.px_per_m(0.5 * (gz[:-1] + gz[1:])) * scale)).astype(int)
        lines = [((pu[k], pv[k]), (pu[k + 1], pv[k + 1]), int(thick[k])) for k in range(n)]
        x_range, colour, light, grain = (pu.min(), pu.max() + 1), (0.07, 0.07, 0.075), 0.15, 0.08
    else:
        raise ValueError("unknown object kind %r (known: %s)" % (kind, ", ".join(KINDS)))
    pts = [p for p in polys]
    if lines:
        pts.append(np.array([a for a, _, _ in lines] + [b for _, b, _ in lines]))
    if ellipse is not None:
        pts.append(np.array([ellipse[0]]))
    pad = 2 + max([t for _, _, t in lines] + [ellipse[1][0] if ellipse else 0])
    roi = _Roi(np.concatenate(pts), shape, pad)
    if roi.empty:
        return np.zeros(0, int), np.zeros(0, int), np.zeros((0, 3), np.float32)
    m = roi.canvas()
    if polys:
        cv2.fillPoly(m, [roi.local(p) for p in polys], 1, lineType=cv2.LINE_8, shift=2)
    for a, b, t in lines:
        pa, pb = roi.local([a, b])
        cv2.line(m, tuple(int(c) for c in pa), tuple(int(c) for c in pb), 1, thickness=t, lineType=cv2.LINE_8, shift=2)
    if ellipse is not None:
        (cx, cy), (ax, ay), ang = ellipse
        c = roi.local([(cx, cy)])[0]
        cv2.ellipse(m, (int(c[0]), int(c[1])), (max(4, int(round(ax * 4))), max(4, int(round(ay * 4)))),
                    float(ang), 0, 360, 1, thickness=-1, lineType=cv2.LINE_8, shift=2)
    ys, xs = np.nonzero(m)
    ys, xs = ys + roi.y0, xs + roi.x0
    vals = _shade(ys, xs, x_range, np.array(colour, np.float32), rng, light=light, grain=grain)
    if kind == "cone":  # white reflective band
        rel = (v - ys) / max(0.50 * s, 1.0)
        band = (rel > 0.45) & (rel < 0.62)
        vals[band] = np.array([0.85, 0.86, 0.86], np.float32) * (0.8 + 0.4 * np.clip(
            (xs[band] - x_range[0]) / max(x_range[1] - x_range[0], 1.0), 0, 1))[:, None]
    elif kind == "suitcase":  # darker trim along the edges
        wid = x_range[1] - x_range[0]
        trim = (np.abs(xs - u) > 0.42 * wid) | (ys < v - 0.57 * s)
        vals[trim] *= 0.45
    elif kind == "bolt":  # specular highlight
        r = ellipse[1][0]
        spot = np.hypot(xs - (u - 0.3 * r), ys - (v - 0.7 * r)) <= max(1.0, 0.35 * r)
        vals[spot] = np.array([0.95, 0.95, 0.97], np.float32)
    return ys, xs, vals


def _place(spec, cam, rng, placed, z_range):
    """Fill a spec's unset position fields, avoiding overlap with already placed footprints."""
    x, z = spec.x, spec.z
    yaw = spec.yaw if spec.yaw is not None else float(rng.uniform(-math.pi, math.pi))
    if x is not None and z is not None:
        return float(x), float(z), yaw
    best = None
    for _ in range(30):
        zz = float(z) if z is not None else float(rng.uniform(*z_range))
        lo, hi = cam.visible_x(zz, margin_px=0.08 * cam.w)
        xx = float(x) if x is not None else float(rng.uniform(lo, hi))
        gap = min([math.hypot((xx - px) / max(pz, 1.0), (zz - pz) / max(pz, 1.0) * 0.5) * 20.0
                   for px, pz in placed] or [1e9])
        if best is None or gap > best[0]:
            best = (gap, xx, zz)
        if gap > 2.5:
            break
    return best[1], best[2], yaw


@functools.lru_cache(maxsize=8)
def _gauss_table(sigma):
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


def _joint_polys(cam, slab, ox, oz, z_near, z_far, width):
    """Image polygons of the slab joints (a square grid of ``width``-metre grooves) between z_near and z_far."""
    polys = []
    z_far = min(z_far, 150.0)  # farther, the grid is a sub-pixel blur
    x_half = min(z_far, 80.0) * cam.cx / cam.f  # lines leaving the view before 80 m are left out
    k0, k1 = int(math.floor((-x_half - ox) / slab)), int(math.ceil((x_half - ox) / slab))
    for k in range(k0, k1 + 1):  # lines along Z (converge to the vanishing point)
        xk = ox + k * slab
        polys.append(_ground_quad(cam, xk - width / 2, xk + width / 2, z_near, z_far))
    k0, k1 = int(math.ceil((z_near - oz) / slab)), int(math.floor((min(z_far, 80.0) - oz) / slab))
    for k in range(k0, k1 + 1):  # lines across (horizontal in the image)
        zk = oz + k * slab
        xh = zk * cam.cx / cam.f + 1.0
        polys.append(_ground_quad(cam, -xh, xh, zk - width / 2, zk + width / 2))
    return polys


def _arc_poly(cam, xl, zc, radius, width, side, z_far):
    """Image polygon of a painted quarter arc leaving the straight line ``X = xl`` tangentially at ``zc``.

    The circle's centre is ``(xl + side * radius, zc)``; the arc turns towards ``side`` going forward.
    """
    t = np.linspace(0.0, 0.5 * math.pi, 48)
    xc = xl + side * radius
    inner = np.stack([xc - side * (radius - width / 2) * np.cos(t), zc + (radius - width / 2) * np.sin(t)], 1)
    outer = np.stack([xc - side * (radius + width / 2) * np.cos(t), zc + (radius + width / 2) * np.sin(t)], 1)
    ring = np.concatenate([inner, outer[::-1]])
    ring[:, 1] = np.clip(ring[:, 1], 0.5, z_far)
    pu, pv = cam.project(ring[:, 0], ring[:, 1])
    return np.stack([pu, pv], 1)


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
    if width < 8 or height < 8:
        raise ValueError("render_apron needs at least 8 x 8 pixels, got %d x %d" % (width, height))
    if not 0.0 <= horizon < 0.9:
        raise ValueError("horizon must be in [0, 0.9), got %r" % (horizon,))
    if surface not in ("concrete", "asphalt"):
        raise ValueError("surface must be 'concrete' or 'asphalt', got %r" % (surface,))
    rng = np.random.default_rng(seed)
    cam = _Camera(width, height, horizon, camera_height)
    h, w = height, width
    shape = (h, w)
    g0 = min(h - 1, int(math.floor(cam.v0)) + 1)  # first ground row (strictly below the horizon)
    gx, gz = _ground_maps(cam, g0)
    z_far = min(float(cam.z_of_row(g0)), 400.0)
    z_near = float(cam.z_of_row(h + 1.0))

    # --- ground reflectance: grey level = exp(multi-scale noise + stains) ---
    log_r = np.zeros(gx.shape, np.float32)
    for cell, amp in ((6.0, 0.05), (1.5, 0.05), (0.4, 0.04), (0.1, 0.05), (0.03, 0.05)):
        log_r += np.float32(amp) * _octave_field(rng, cam, gx, gz, cell, z_far)
    zrow = gz[:, 0]
    for _ in range(int(rng.integers(1, 4))):  # stains: a few soft darker blobs (computed in their window)
        sx, sz, rad = rng.uniform(-6, 6), rng.uniform(6, 30), rng.uniform(0.4, 1.5)
        depth = np.float32(math.log(rng.uniform(0.85, 0.93)))
        rsel = np.flatnonzero(np.abs(zrow - sz) < 3 * rad)
        if rsel.size == 0:
            continue
        zmin = float(zrow[rsel].min())
        c0 = max(int(cam.cx + cam.f * (sx - 3 * rad) / zmin), 0)
        c1 = min(int(cam.cx + cam.f * (sx + 3 * rad) / zmin) + 1, w)
        if c1 <= c0:
            continue
        r0, r1 = int(rsel[0]), int(rsel[-1]) + 1
        dx = gx[r0:r1, c0:c1] - np.float32(sx)
        dz = gz[r0:r1] - np.float32(sz)
        log_r[r0:r1, c0:c1] += depth * np.exp((dx * dx + dz * dz) * np.float32(-1.0 / (rad * rad)))
    grey = np.exp(log_r)

    # --- slab joints (dark grooves) and painted markings, as anti-aliased ground polygons ---
    slab = float(rng.uniform(4.5, 6.0))
    ox, oz = (float(v) for v in rng.uniform(0, slab, 2))
    joint_cov = _fill_aa(shape, _joint_polys(cam, slab, ox, oz, z_near, z_far, 0.02))[g0:]
    grey *= np.float32(1.0) - np.float32(0.35 / 255.0) * joint_cov
    base = (_CONCRETE if surface == "concrete" else _ASPHALT) * np.float32(rng.uniform(0.85, 1.12))
    base = base * (1.0 + rng.normal(0.0, 0.02, 3)).astype(np.float32)
    planes = [np.empty(shape, np.float32) for _ in range(3)]
    for c in range(3):
        planes[c][g0:] = grey * np.float32(base[c])
    mark_cov = np.zeros((h - g0, w), np.uint8)
    bar_cov = np.zeros((h - g0, w), np.uint8)
    if markings:
        wear = cv2.resize(rng.uniform(0.7, 1.0, (max(2, h // 24), max(2, w // 24))).astype(np.float32), (w, h - g0),
                          interpolation=cv2.INTER_CUBIC)
        xl = float(rng.uniform(-2.5, 2.5))
        yellow = [_ground_quad(cam, xl - 0.075, xl + 0.075, z_near, z_far)]  # straight taxi centre line
        side = float(rng.choice([-1.0, 1.0]))
        radius = float(rng.uniform(8, 14))
        yellow.append(_arc_poly(cam, xl, float(rng.uniform(8, 20)), radius, 0.15, side, z_far))
        zs = float(rng.uniform(11, 22))
        white = [_ground_quad(cam, xl - 4.0, xl + 4.0, zs - 0.2, zs + 0.2)]  # stop bar across the line
        for polys, colour in ((yellow, _YELLOW_PAINT), (white, _WHITE_PAINT)):
            cov = _fill_aa(shape, polys)[g0:]
            a = cov.astype(np.float32) * np.float32(1.0 / 255.0) * wear
            for c in range(3):
                planes[c][g0:] += (np.float32(colour[c]) - planes[c][g0:]) * a
            mark_cov = np.maximum(mark_cov, cov)
            if polys is white:
                bar_cov = cov

    # --- sky and far buildings above the horizon ---
    if g0 > 0:
        t = np.linspace(0.0, 1.0, g0, dtype=np.float32)[:, None]
        top, low = (0.80, 0.62, 0.45), (0.92, 0.86, 0.80)
        for c in range(3):
            planes[c][:g0] = np.float32(top[c]) * (1 - t) + np.float32(low[c]) * t
        xpos = 0
        while xpos < w:
            bw = max(1, int(rng.uniform(0.08, 0.3) * w))
            bh = int(rng.uniform(0.02, 0.10) * h)
            col = rng.uniform(0.35, 0.75) * (1 + rng.normal(0, 0.06, 3))
            for c in range(3):
                planes[c][max(0, g0 - bh):g0, xpos:xpos + bw] = col[c]
            xpos += bw + int(rng.uniform(0.0, 0.15) * w)

    # --- planted objects (drawn in order, later on top) ---
    placed, drawn = [], []
    specs = [o if isinstance(o, ObjectSpec) else ObjectSpec(kind=o) for o in objects]
    for spec in specs:
        if spec.kind not in KINDS:
            raise ValueError("unknown object kind %r (known: %s)" % (spec.kind, ", ".join(KINDS)))
        x, z, yaw = _place(spec, cam, rng, placed, object_z)
        placed.append((x, z))
        ys, xs, vals = _object_pixels(spec.kind, cam, x, z, yaw, spec.scale, rng, shape)
        for c in range(3):
            planes[c][ys, xs] = vals[:, c]
        drawn.append((spec.kind, x, z, ys, xs))

    # --- lighting: cast shadows (soft penumbra, bluish skylight), global gradient, exposure ---
    gu, gv = (float(v) for v in rng.uniform(-0.15, 0.15, 2))
    exposure = float(rng.uniform(205, 235))
    gain = (np.float32(exposure * (1.0 + 0.5 * gu + 0.5 * gv))
            - np.linspace(0.0, exposure * gu, w, dtype=np.float32)[None, :]
            - np.linspace(0.0, exposure * gv, h, dtype=np.float32)[:, None])
    alpha8 = np.zeros(shape, np.uint8)
    if shadows:
        polys = []
        for _ in range(int(rng.integers(1, 3))):
            zc, xc = float(rng.uniform(5.0, 18.0)), float(rng.uniform(-4.0, 4.0))
            ln, wd, ang = (float(v) for v in (rng.uniform(3.0, 12.0), rng.uniform(1.0, 3.0), rng.uniform(-1.2, 1.2)))
            c, s = math.cos(ang), math.sin(ang)
            corners = np.array([[-ln, -wd], [ln, -wd], [ln, wd], [-ln, wd]]) * 0.5
            gxz = np.stack([xc + corners[:, 0] * c - corners[:, 1] * s, zc + corners[:, 0] * s + corners[:, 1] * c], 1)
            gxz[:, 1] = np.maximum(gxz[:, 1], 2.0)
            pu, pv = cam.project(gxz[:, 0], gxz[:, 1])
            polys.append(np.stack([pu, pv], 1))
        alpha8 = _fill_aa(shape, polys)
        alpha8[:g0] = 0
        alpha8 = cv2.GaussianBlur(alpha8, (0, 0), sigmaX=float(rng.uniform(1.5, 3.5)))
        depth = float(rng.uniform(0.45, 0.6))
        shade = np.array([1.08, 1.0, 0.95]) * depth  # bluish: lit by the sky only
        g_alpha = gain * alpha8.astype(np.float32) * np.float32(1.0 / 255.0)
        for c in range(3):
            planes[c] *= gain - np.float32(1.0 - shade[c]) * g_alpha
    else:
        for c in range(3):
            planes[c] *= gain

    # --- camera: 8 bit, optics blur, sensor noise ---
    image = cv2.convertScaleAbs(cv2.merge(planes))
    if blur_sigma > 0:
        image = cv2.GaussianBlur(image, (0, 0), sigmaX=float(blur_sigma))
    if noise_sigma > 0:
        table = np.round(_gauss_table(float(noise_sigma))).astype(np.int16)
        noise = cv2.LUT(np.frombuffer(rng.bytes(image.size), np.uint8).reshape(image.shape), table)
        image = cv2.convertScaleAbs(cv2.add(image.astype(np.int16), noise))

    ground = np.zeros(shape, bool)
    ground[g0:] = True
    masks = []
    occupied = np.zeros(shape, bool)
    for kind, x, z, ys, xs in reversed(drawn):  # later objects hide earlier ones
        m = np.zeros(shape, bool)
        m[ys, xs] = True
        m &= ~occupied
        occupied |= m
        masks.append((kind, x, z, m))
    planted = []
    for kind, x, z, m in reversed(masks):
        box = box_from_mask(m)
        if box is not None:  # fully hidden or outside the image: not planted
            planted.append(PlantedObject(kind=kind, mask=m, box=box, x=x, z=z))
    full_mark = np.zeros(shape, bool)
    full_mark[g0:] = mark_cov >= 128
    full_bar = np.zeros(shape, bool)
    full_bar[g0:] = bar_cov >= 128
    full_joint = np.zeros(shape, bool)
    full_joint[g0:] = joint_cov >= 128
    truth = SceneMasks(objects=planted, shadow=(alpha8 >= 128) & ~occupied, markings=full_mark & ~occupied,
                       stop_bar=full_bar & ~occupied, joints=full_joint & ~occupied & ~full_mark,
                       ground=ground | occupied, horizon_row=g0)
    return image, truth
