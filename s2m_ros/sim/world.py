"""The synthetic apron world: static objects (convex solids), the world-fixed ground, light, sky and far
buildings, rendered for a camera (exact instance ids with occlusion, plus truth layers) and ray-cast for a
spinning LiDAR, both from the same solids. :mod:`s2m_ros.sim.scenario` drives an ego through it;
:mod:`s2m_ros.sim.still` looks at it from a parked camera.
"""
import math
from dataclasses import dataclass

import cv2
import numpy as np

from s2m_ros.sim.ground import (ASPHALT, CONCRETE, WHITE_PAINT, YELLOW_PAINT, GroundFeatures, Shadow,
                                gauss_table, sample_grid, world_grid)
from s2m_ros.sim.objects import CATEGORIES, Part
from s2m_ros.sim.solids import slab_hits, yaw_matrix

NEAR = 0.05  # camera near plane (m)
GROUND_MAX = 400.0  # ground farther than this (horizontal, m) is drawn as the far buildings / sky


def distort(D, x, y):
    """plumb_bob: normalised -> distorted normalised coordinates."""
    k1, k2, p1, p2, k3 = D[:5]
    r2 = x * x + y * y
    radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
    return (x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x),
            y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y)


def pixel_rays(camera):
    """Normalised (x, y) of every pixel centre (integer coordinates), inverting the distortion exactly."""
    K, D = camera.K, camera.D
    v, u = np.mgrid[0:camera.height, 0:camera.width].astype(np.float64)
    yd = (v - K[1, 2]) / K[1, 1]
    xd = (u - K[0, 2] - K[0, 1] * yd) / K[0, 0]
    x, y = xd.copy(), yd.copy()
    k1, k2, p1, p2, k3 = D[:5]
    for _ in range(40 if np.any(D[:5] != 0) else 0):  # fixed point: contraction for mild distortion, converges to machine precision
        r2 = x * x + y * y
        radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
        x = (xd - 2 * p1 * x * y - p2 * (r2 + 2 * x * x)) / radial
        y = (yd - p1 * (r2 + 2 * y * y) - 2 * p2 * x * y) / radial
    return x, y


@dataclass
class TruthObject:
    """One object's ground truth: its box (centre, size = length, width, height, yaw) in the world frame."""

    id: int  # >= 1, also the value in ScenarioFrame.instance_ids / point_ids
    kind: str
    category: str  # "fod" | "equipment" | "structure"
    center: np.ndarray  # (3,) box centre, world frame
    size: np.ndarray  # (3,) length (along yaw), width, height
    yaw: float  # about world z


class World:
    """Everything static of a scene (objects, ground, light, precomputed pixel geometry), the camera renderer
    and the LiDAR caster.

    ``cfg``: a :class:`s2m_ros.sim.scenario.ScenarioConfig` (image size, LiDAR, markings, shadows, surface,
    optics); ``camera`` / ``T_bc`` / ``T_bl``: the camera model and base <- camera optical / base <- LiDAR;
    ``placed``: (index, kind, x, y, yaw, local parts, size) per object in the world frame; ``path``: (N, 2)
    world x, y of every ego pose the sensors will be rendered from (sizes the world texture grids). The ego
    stays level on the flat ground z = 0, so the pixel geometry is computed once.
    """

    def __init__(self, cfg, rng, camera, T_bc, T_bl, placed, path):
        self.cfg = cfg
        self.seed = cfg.seed
        self.T_bc, self.T_bl = T_bc, T_bl
        H, W = cfg.height, cfg.width
        self.H, self.W = H, W
        self.D = camera.D
        self.K = camera.K

        # --- objects (world solids) ---
        self.parts = []  # (object id, Part)
        self.objects = []
        for oid, (_, kind, x, y, yaw, parts, size) in enumerate(placed, start=1):
            T = yaw_matrix(x, y, 0.0, yaw)
            for solid, colour, inten, band, metal in parts:
                self.parts.append((oid, Part(solid.transformed(T), colour, inten, band, metal)))
            self.objects.append(TruthObject(id=oid, kind=kind, category=CATEGORIES[kind],
                                            center=np.array([x, y, 0.5 * size[2]]), size=np.asarray(size, float),
                                            yaw=float(math.atan2(math.sin(yaw), math.cos(yaw)))))

        # --- camera pixel geometry (static: the ego stays level on a flat ground) ---
        self.xn, self.yn = pixel_rays(camera)
        self.nx_lo, self.nx_hi = float(self.xn.min()), float(self.xn.max())
        self.ny_lo, self.ny_hi = float(self.yn.min()), float(self.yn.max())
        R, p = T_bc[:3, :3], T_bc[:3, 3]
        rb = self.xn[..., None] * R[:, 0] + self.yn[..., None] * R[:, 1] + R[:, 2]  # ray dirs in base
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # masked by the where
            t = np.where(rb[..., 2] < -1e-9, -p[2] / rb[..., 2], np.inf)
        horiz = np.hypot(rb[..., 0], rb[..., 1])
        ground = np.isfinite(t) & (t * horiz <= GROUND_MAX)
        rows = np.flatnonzero(ground.any(axis=1))
        self.g0 = int(rows[0]) if rows.size else H
        g0 = self.g0
        self.ground = ground[g0:]
        tb = np.where(self.ground, t[g0:], GROUND_MAX / np.maximum(horiz[g0:], 1e-9))
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
        path = np.asarray(path, np.float64).reshape(-1, 2)
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
            grid = world_grid(rng.standard_normal, self.path_lo - reach, self.path_hi + reach, cell)
            if act.size:
                self.octaves.append((grid, amp, fade.astype(np.float32), int(act[0]), int(act[-1]) + 1))
        self.wear = world_grid(lambda shape: rng.uniform(0.7, 1.0, shape), self.path_lo - 60.0,
                                self.path_hi + 60.0, 0.5)
        self.stains = []
        for _ in range(int(rng.integers(2, 5))):
            sx = float(rng.uniform(self.path_lo[0], self.path_hi[0] + 30.0))
            sy = float(rng.uniform(-6, 6))
            self.stains.append((sx, sy, float(rng.uniform(0.4, 1.5)), float(math.log(rng.uniform(0.85, 0.93)))))
        self.gfeat = GroundFeatures(rng, cfg.markings)
        base = (ASPHALT if cfg.surface == "asphalt" else CONCRETE) * np.float32(rng.uniform(0.85, 1.12))
        self.base = (base * (1.0 + rng.normal(0.0, 0.02, 3))).astype(np.float32)

        # --- light: sun, shadows (objects' and off-scene buildings'), exposure ---
        sun_el, sun_az = math.radians(float(rng.uniform(35, 60))), float(rng.uniform(-math.pi, math.pi))
        self.sun = np.array([math.cos(sun_el) * math.cos(sun_az), math.cos(sun_el) * math.sin(sun_az),
                             math.sin(sun_el)])
        self.shadows, self.big_shadows = [], []
        if cfg.shadows:
            for _, part in self.parts:
                v = part.solid.vertices
                self.shadows.append(Shadow(v[:, :2] - v[:, 2:3] * (self.sun[:2] / self.sun[2])))
            for _ in range(int(rng.integers(1, 3))):
                cx = float(rng.uniform(self.path_lo[0] + 4.0, self.path_hi[0] + 30.0))
                cy = float(rng.uniform(-5.0, 5.0))
                ln, wd, ang = float(rng.uniform(8, 20)), float(rng.uniform(2, 5)), float(rng.uniform(-1.2, 1.2))
                c, s = math.cos(ang), math.sin(ang)
                corners = np.array([[-ln, -wd], [ln, -wd], [ln, wd], [-ln, wd]]) * 0.5
                xy = np.column_stack([cx + corners[:, 0] * c - corners[:, 1] * s,
                                      cy + corners[:, 0] * s + corners[:, 1] * c])
                self.big_shadows.append(Shadow(xy))
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
        xd, yd = distort(self.D, bx, by)
        u = self.K[0, 0] * xd + self.K[0, 1] * yd + self.K[0, 2]
        v = self.K[1, 1] * yd + self.K[1, 2]
        u0, u1 = max(int(math.floor(u.min())) - 2, 0), min(int(math.ceil(u.max())) + 3, self.W)
        v0, v1 = max(int(math.floor(v.min())) - 2, 0), min(int(math.ceil(v.max())) + 3, self.H)
        if u1 <= u0 or v1 <= v0:
            return None
        return v0, v1, u0, u1

    def _solid_window(self, verts_c, edges):
        z = verts_c[:, 2]
        front = z >= NEAR
        if not front.any():
            return None
        pts = verts_c[front]
        if not front.all():  # clip at the near plane: add the crossings of the edges
            a, b = verts_c[edges[:, 0]], verts_c[edges[:, 1]]
            cross = (a[:, 2] - NEAR) * (b[:, 2] - NEAR) < 0
            if cross.any():
                a, b = a[cross], b[cross]
                f = (NEAR - a[:, 2]) / (b[:, 2] - a[:, 2])
                pts = np.vstack([pts, a + f[:, None] * (b - a)])
        return self._pixel_window(pts)

    def render_image(self, T_wb, rng, layers=False):
        """The camera image (H x W x 3 uint8 BGR) and instance ids (H x W uint16) with the ego at ``T_wb``.

        ``layers=True`` also returns the truth layers of the surface as a dict of H x W float32 coverage /
        alpha maps in [0, 1]: ``yellow`` and ``white`` paint, ``joints``, ``shadow`` (cast-shadow alpha on the
        ground) and the bool ``ground`` (pixels whose ray meets the ground within the drawn distance). The
        image is the same either way.
        """
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
            bld = (self.elev < self.b_el[b]) & (self.b_el[b] > 0)
            far = ~bld & (self.elev < 0)  # the apron beyond GROUND_MAX, between the buildings: its plain colour
            for ch in range(3):
                planes[ch][:] = np.where(bld, self.b_col[b, ch], np.where(far, self.base[ch], self.sky[ch]))

        # --- ground (world-fixed texture) ---
        if g0 < H:
            gm = self.ground
            X = ex + c * self.gbx - s * self.gby
            Y = ey + s * self.gbx + c * self.gby
            log_r = np.zeros(X.shape, np.float32)
            for grid, amp, fade, r0, r1 in self.octaves:
                log_r[r0:r1] += np.float32(amp) * sample_grid(grid, X[r0:r1], Y[r0:r1]) * fade[r0:r1]
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
            joint_cov = self.gfeat.joints(X, Y, eX, eY)
            grey *= np.float32(1.0) - np.float32(0.35) * joint_cov
            band = [grey * self.base[ch] for ch in range(3)]
            if cfg.markings:
                g = self.gfeat
                cyc = np.float32(g.yl + g.arc_side * g.arc_r)
                rx, ry = X - np.float32(g.arc_x), Y - cyc
                rn = np.maximum(np.hypot(rx, ry), np.float32(1e-6))
                eR = (np.abs(jux_w * rx + juy_w * ry) + np.abs(jvx_w * rx + jvy_w * ry)) / rn
                yellow, white = g.paint(X, Y, eX, eY, eR)
                paint = (yellow, white)
                wear = sample_grid(self.wear, X, Y)
                for cov, colour in ((yellow, YELLOW_PAINT), (white, WHITE_PAINT)):
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
            t, face = slab_hits(np.column_stack([n_c, d_c]), rays, d_c)
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
        ground_alpha = alpha
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
            table = np.round(gauss_table(float(cfg.noise_sigma))).astype(np.int16)
            noise = cv2.LUT(np.frombuffer(rng.bytes(image.size), np.uint8).reshape(image.shape), table)
            image = cv2.convertScaleAbs(cv2.add(image.astype(np.int16), noise))
        if not layers:
            return image, ids
        out = {name: np.zeros((H, W), np.float32) for name in ("yellow", "white", "joints")}
        out["ground"] = np.zeros((H, W), bool)
        if g0 < H:
            out["ground"][g0:] = self.ground
            out["joints"][g0:] = joint_cov * self.ground
            if cfg.markings:
                out["yellow"][g0:], out["white"][g0:] = (c * self.ground for c in paint)
        out["shadow"] = ground_alpha.copy()
        return image, ids, out

    def _ground_window(self, sh, R_cw, t_cw):
        """Pixel window of a ground polygon (None: not in view)."""
        xy = sh.xy
        pts = np.column_stack([xy, np.zeros(len(xy))]) @ R_cw.T + t_cw
        if np.all(pts[:, 2] < NEAR):
            return None
        if np.any(pts[:, 2] < NEAR):  # crossing the near plane: clip the polygon's edges
            q = np.roll(pts, -1, axis=0)
            cross = (pts[:, 2] - NEAR) * (q[:, 2] - NEAR) < 0
            f = (NEAR - pts[cross, 2]) / (q[cross, 2] - pts[cross, 2])
            pts = np.vstack([pts[pts[:, 2] >= NEAR], pts[cross] + f[:, None] * (q[cross] - pts[cross])])
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
            t, face = slab_hits(np.column_stack([n_l, d_l]), sub, d_l)
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
