"""Drivable-surface appearance novelty score (numpy + OpenCV, no model weights).

On an airport apron the camera mostly sees one surface (concrete or asphalt with painted
markings, slab joints, stains and cast shadows). :class:`SurfaceScorer` models *this frame's*
surface from a sampling region in front of the vehicle and scores every pixel by how unlike that
surface it looks (higher = more anomalous). It needs no training data and no weights: it is the
scorer of the weight-free ``surface+grabcut`` profile.

Features per pixel, at a working resolution (long side ``max_side``):

0. ``lum``: log intensity minus a coarse robust local level (median over cells of ``illum_cell``
   of the long side, interpolated), so slow illumination gradients do not count.
1, 2. ``chroma``: log(R/G) and log(B/G). A change of illumination strength leaves them unchanged.
3. ``texture``: log of the smaller eigenvalue of the structure tensor of the log intensity (minus
   ``line_leak`` of the larger one): high for 2-D texture, blobs and corners, near zero along 1-D
   structures (slab joints, paint borders, shadow edges), which are not anomalies.

The surface model: samples of the sampling region (a trapezoid in front of the vehicle, regular grid
subsample) are clustered by colour with seeded k-means (robust-scaled, log-compressed features so a
far cluster such as paint does not take several centres); clusters whose colours agree within
``material_z`` sigmas form one *material* with robust (median / MAD) statistics of all features.
Materials that are both rare (``min_material_weight``) and spatially compact
(``min_material_span``) are dropped: that is what an object lying in the sampling region looks
like, whereas painted lines are rare but long, and shadows and slabs are common. Between every two
materials a *mixing segment* explains the pixels on their border (anti-aliased paint edges).

Distance of a pixel (diagonal metric, in sigmas, to the nearest material or mixing segment), with
tolerances that follow the physics of the apron: a darkening down to ``shadow_depth`` below the lit
surface (a cast shadow) and a brightening up to ``bright_tolerance`` are tolerated in ``lum``, with
``shadow_chroma`` per unit of tolerated darkening in each chroma ratio (skylit shadows are bluer);
texture counts only above the material's (distance and blur make the apron smoother, never
rougher). A tolerated deviation costs at most one sigma, like an ordinary surface pixel, so the
distance stays continuous and shadows look like surface. The score is the square root of that
distance: it compresses the range so an object's rim (mixed pixels) stays within half its peak.

Rows above the apron (sky, buildings, aircraft far away) are NaN ("not scored") when
``mask_above_ground`` is set: in vertical bands of columns the ground rises from the sampling region
while most of a row's pixels are within ``ground_sigmas`` of the surface in colour, and a robust
line through the band tops (the horizon) stops bands that climb into surface-coloured buildings. The
prompt generator treats NaN as the lowest score. Nothing here is a threshold in score units: every
decision is made in sigmas of this frame's own surface statistics.

Tiny images (fewer sampling-region pixels than features + 2) get an all-zero map (nothing can be
modelled, nothing is anomalous); maps of fewer than 32 rows are scored everywhere (no horizon).
"""
from dataclasses import dataclass
from typing import Tuple

import cv2
import numpy as np

_N_FEATURES = 4
# Spread floors per feature (feature units): luminance (log), chroma x2 (log ratio), texture (log).
# Below these, differences are camera noise and compression, not appearance.
_SIGMA_FLOOR = np.array([0.03, 0.015, 0.015, 0.15], np.float32)
# Maps with fewer rows have no room for a horizon: they are scored everywhere.
_MIN_ENVELOPE_ROWS = 32


@dataclass
class SurfaceConfig:
    """Parameters of :class:`SurfaceScorer`. None is a threshold in score units."""

    # Working resolution: the image is area-downscaled so its long side is at most this (never
    # upscaled). The score map is returned at this resolution.
    max_side: int = 480
    # Sampling region, a trapezoid as fractions of the image: top and bottom rows, and the x extent of
    # its top and bottom edges. The default is the apron just in front of a forward-looking camera.
    sample_top: float = 0.70
    sample_bottom: float = 0.97
    sample_top_x: Tuple[float, float] = (0.25, 0.75)
    sample_bottom_x: Tuple[float, float] = (0.05, 0.95)
    # At most this many samples (a regular grid over the sampling region) for the surface model.
    max_samples: int = 3000
    # k-means clusters of the samples' colours (merged into materials afterwards), seeded.
    components: int = 6
    kmeans_attempts: int = 1
    kmeans_iterations: int = 15
    seed: int = 0
    # Clusters whose colours differ by at most this many sigmas in every colour feature are one material.
    material_z: float = 3.0
    # A material is kept when it holds at least this fraction of the samples ...
    min_material_weight: float = 0.03
    # ... or when its samples spread over at least this fraction of the sampling region's width or
    # height (robust 5-95 % range): long painted lines are rare but spread out, objects are compact.
    min_material_span: float = 0.6
    # At most this many materials (heaviest first) make the surface model.
    max_materials: int = 5
    # Explain pixels that mix two surface materials (paint borders) by the segment between them.
    mixing: bool = True
    # Largest darkening (log intensity) a surface pixel may show and still be surface: a cast shadow.
    # 0.8 covers deep sunlit shadows in gamma-encoded images (x0.45); black rubber is about -1.5.
    shadow_depth: float = 0.8
    # Largest brightening (log intensity) tolerated: the lit side of a shadow edge, glints on paint.
    bright_tolerance: float = 0.15
    # Chroma shift (log ratio) tolerated per unit of tolerated darkening (skylit shadows are bluer).
    shadow_chroma: float = 0.2
    # Cell size of the local illumination level, as a fraction of the working long side.
    illum_cell: float = 1.0 / 12.0
    # Gaussian sigma (working pixels) of the structure tensor (texture feature).
    texture_sigma: float = 1.0
    # Share of the structure tensor's larger eigenvalue removed from the smaller one: sampled thin
    # lines leak a little energy across their direction (aliasing), which is not texture.
    line_leak: float = 0.08
    # Offset added to sqrt(eigenvalue) (log-intensity gradient units) before the logarithm.
    texture_offset: float = 0.05
    # Weight of the texture residual in the distance (0 = colour only).
    texture_weight: float = 1.0
    # Offset (grey levels, 0..255) added before logarithms: keeps dark pixels' ratios stable.
    dark_offset: float = 6.0
    # Mark pixels above the apron as NaN (not scored).
    mask_above_ground: bool = True
    # Ground pixels: colour distance (in the surface model's sigmas) at most this; a shadow costs
    # about one sigma, the sky and most buildings many.
    ground_sigmas: float = 3.0
    # Width (fraction of the working width) of the bands of columns in which the ground's top is found.
    envelope_window: float = 0.125
    # Largest run of non-surface rows (fraction of the height) the ground may have below its top:
    # shadows, far slab joints and objects interrupt the surface, the sky and buildings end it.
    envelope_gap: float = 0.06
    # Rows (fraction of the height) removed below the ground's top (they mix sky and ground), and the
    # most a band may rise above the common horizon line.
    envelope_trim: float = 0.01

    def __post_init__(self):
        _validate(self)


class SurfaceScorer:
    """Scores every pixel by its distance to this frame's drivable-surface appearance model.

    ``score(image_bgr) -> HxW float32`` at the working resolution (see :meth:`working_size`),
    higher = more anomalous, NaN above the apron when ``mask_above_ground``. Deterministic.
    """

    name = "surface"

    def __init__(self, config: SurfaceConfig = None):
        self.config = config if config is not None else SurfaceConfig()  # validated when made

    def working_size(self, width: int, height: int) -> Tuple[int, int]:
        """(w, h) of the score map for an input of ``width`` x ``height``."""
        scale = min(1.0, float(self.config.max_side) / max(width, height))
        return max(1, int(round(width * scale))), max(1, int(round(height * scale)))

    def score(self, image_bgr: np.ndarray) -> np.ndarray:
        """Anomaly score map (working resolution, float32, higher = more anomalous, NaN = not scored)."""
        cfg = self.config
        img = _check_image(image_bgr)
        h0, w0 = img.shape[:2]
        w, h = self.working_size(w0, h0)
        small = img if (w, h) == (w0, h0) else cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        planes = self.features(small)
        region = self.sample_mask(w, h)
        idx = _grid_indices(region, cfg.max_samples)
        if idx.size < _N_FEATURES + 2:
            return np.zeros((h, w), np.float32)
        x = planes.reshape(_N_FEATURES, -1)
        model = _fit_surface(np.ascontiguousarray(x[:, idx].T), idx, region, cfg)
        d2, d2_colour = _distances(x, model, cfg)
        # the square root of the distance; below 1e-3 sigma a difference is float rounding, not appearance
        score = np.sqrt(np.sqrt(np.where(d2 < 1e-6, np.float32(0.0), d2))).reshape(h, w)
        if cfg.mask_above_ground and h >= _MIN_ENVELOPE_ROWS:
            score = _mask_above_ground(score, d2_colour.reshape(h, w), region, cfg)
        return score

    def features(self, img_bgr: np.ndarray) -> np.ndarray:
        """4 x H x W float32 feature planes of a working-resolution BGR uint8 image (see module doc)."""
        cfg = self.config
        h, w = img_bgr.shape[:2]
        off = np.float32(cfg.dark_offset)
        b, g, r = [np.log(c.astype(np.float32) + off) for c in cv2.split(img_bgr)]
        grey = img_bgr.astype(np.float32).sum(axis=2)
        log_i = np.log(grey * np.float32(1.0 / 3.0) + off)
        out = np.empty((_N_FEATURES, h, w), np.float32)
        out[0] = log_i - _local_reference(log_i, cfg.illum_cell)
        out[1] = r - g
        out[2] = b - g
        gx = cv2.Sobel(log_i, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REFLECT)
        gy = cv2.Sobel(log_i, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REFLECT)
        sig = float(cfg.texture_sigma)
        jxx = cv2.GaussianBlur(gx * gx, (0, 0), sigmaX=sig, borderType=cv2.BORDER_REFLECT)
        jyy = cv2.GaussianBlur(gy * gy, (0, 0), sigmaX=sig, borderType=cv2.BORDER_REFLECT)
        jxy = cv2.GaussianBlur(gx * gy, (0, 0), sigmaX=sig, borderType=cv2.BORDER_REFLECT)
        half_tr = (jxx + jyy) * np.float32(0.5)
        half_df = (jxx - jyy) * np.float32(0.5)
        root = np.sqrt(half_df * half_df + jxy * jxy)
        lam2 = half_tr - root - np.float32(cfg.line_leak) * (half_tr + root)
        out[3] = np.log(np.sqrt(np.maximum(lam2, np.float32(0.0))) + np.float32(cfg.texture_offset))
        return out

    def sample_mask(self, width: int, height: int) -> np.ndarray:
        """Bool (height, width) mask of the sampling trapezoid (at least one pixel)."""
        cfg = self.config
        y0, y1 = cfg.sample_top * height, cfg.sample_bottom * height
        pts = np.array([[cfg.sample_top_x[0] * width, y0], [cfg.sample_top_x[1] * width, y0],
                        [cfg.sample_bottom_x[1] * width, y1], [cfg.sample_bottom_x[0] * width, y1]])
        m = np.zeros((height, width), np.uint8)
        cv2.fillPoly(m, [np.round(pts * 4).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=2)
        if not m.any():
            m[min(int(0.5 * (y0 + y1)), height - 1), min(int(0.5 * width), width - 1)] = 1
        return m.astype(bool)


# -- features ---------------------------------------------------------------------------------------


def _validate(cfg):
    def bad(name, rule):
        raise ValueError("SurfaceConfig.%s = %r: %s" % (name, getattr(cfg, name), rule))

    def in_range(name, lo, hi, lo_open=False, hi_open=False):
        v = getattr(cfg, name)
        ok = (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
        if not ok:
            bad(name, "must be in %s%g, %g%s" % ("(" if lo_open else "[", lo, hi, ")" if hi_open else "]"))

    if int(cfg.max_side) < 8:
        bad("max_side", "must be >= 8")
    in_range("sample_top", 0.0, 1.0)
    in_range("sample_bottom", 0.0, 1.0)
    if not cfg.sample_top < cfg.sample_bottom:
        bad("sample_top", "must be < sample_bottom (%r)" % (cfg.sample_bottom,))
    for name in ("sample_top_x", "sample_bottom_x"):
        v = getattr(cfg, name)
        if len(v) != 2 or not 0.0 <= v[0] < v[1] <= 1.0:
            bad(name, "must be (lo, hi) with 0 <= lo < hi <= 1")
    if int(cfg.max_samples) < 50:
        bad("max_samples", "must be >= 50")
    for name in ("components", "kmeans_attempts", "kmeans_iterations", "max_materials"):
        if int(getattr(cfg, name)) < 1:
            bad(name, "must be >= 1")
    in_range("min_material_weight", 0.0, 1.0, hi_open=True)
    in_range("min_material_span", 0.0, 1.0)
    for name in ("material_z", "illum_cell", "texture_sigma", "texture_offset", "dark_offset", "ground_sigmas"):
        if not getattr(cfg, name) > 0:
            bad(name, "must be > 0")
    in_range("illum_cell", 0.0, 1.0, lo_open=True)
    for name in ("shadow_depth", "bright_tolerance", "shadow_chroma", "texture_weight"):
        if not getattr(cfg, name) >= 0:
            bad(name, "must be >= 0")
    in_range("line_leak", 0.0, 1.0, hi_open=True)
    in_range("envelope_window", 0.0, 1.0, lo_open=True)
    in_range("envelope_gap", 0.0, 1.0, hi_open=True)
    in_range("envelope_trim", 0.0, 1.0, hi_open=True)


def _check_image(image):
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] not in (3, 4) or img.shape[0] == 0 or img.shape[1] == 0:
        raise ValueError("image must be H x W x 3 BGR (or H x W grey), got shape %s" % (img.shape,))
    if img.dtype != np.uint8:
        raise ValueError("image must be uint8, got %s" % img.dtype)
    return np.ascontiguousarray(img[..., :3])


def _local_reference(log_i, cell_frac):
    """Coarse robust local level of ``log_i``: cell means, 3x3 median across cells, interpolated."""
    h, w = log_i.shape
    cell = max(2, int(round(cell_frac * max(h, w))))
    gw, gh = max(1, int(round(w / float(cell)))), max(1, int(round(h / float(cell))))
    coarse = cv2.resize(log_i, (gw, gh), interpolation=cv2.INTER_AREA)
    if gw >= 3 and gh >= 3:
        coarse = cv2.medianBlur(coarse, 3)
    return cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR)


def _grid_indices(region, max_samples):
    """Flat indices of a regular subsample (at most ``max_samples``) of the region's pixels."""
    idx = np.flatnonzero(region.ravel())
    if idx.size > max_samples:
        idx = idx[np.linspace(0, idx.size - 1, max_samples).astype(np.int64)]
    return idx


# -- surface model ----------------------------------------------------------------------------------


class _Model:
    """Materials (K): ``means`` / ``sigmas`` (K x D, raw feature units), ``shadow_room`` (K,), the
    darkening each may still show as a shadow. Mixing segments (P): colour endpoints ``mix_a`` /
    ``mix_b`` (P x 3) and spread ``mix_sigma`` (P x 3)."""

    def __init__(self, means, sigmas, shadow_room):
        self.means = np.asarray(means, np.float32)
        self.sigmas = np.asarray(sigmas, np.float32)
        self.shadow_room = np.asarray(shadow_room, np.float32)
        self.mix_a = np.zeros((0, 3), np.float32)
        self.mix_b = np.zeros((0, 3), np.float32)
        self.mix_sigma = np.ones((0, 3), np.float32)


def _robust(v):
    """Median and floored robust spread (1.4826 MAD) of the rows of v, per feature."""
    mu = np.median(v, axis=0)
    sd = np.float32(1.4826) * np.median(np.abs(v - mu), axis=0)
    floor = _SIGMA_FLOOR[:v.shape[1]]
    return mu, np.sqrt(sd * sd + floor * floor)


def _fit_surface(samples, idx, region, cfg):
    """Materials of the sampling region (N x D samples at flat indices ``idx``) and mixing segments."""
    n = samples.shape[0]
    med = np.median(samples, axis=0)
    scale = np.maximum(np.float32(1.4826) * np.median(np.abs(samples - med), axis=0), _SIGMA_FLOOR)
    z = (samples[:, :3] - med[:3]) / scale[:3]
    zc = np.ascontiguousarray(np.sign(z) * np.log1p(np.abs(z)), np.float32)
    k = int(min(cfg.components, max(1, n // 20)))
    labels = np.zeros(n, np.int32)
    if k > 1 and np.ptp(zc, axis=0).max() > 0:
        cv2.setRNGSeed(int(cfg.seed))
        criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, int(cfg.kmeans_iterations), 1e-3)
        _, lab, _ = cv2.kmeans(zc, k, None, criteria, int(cfg.kmeans_attempts), cv2.KMEANS_PP_CENTERS)
        labels = lab.ravel()
    clusters = []
    for c in np.unique(labels):
        sel = labels == c
        if np.count_nonzero(sel) >= 3:
            clusters.append((int(np.count_nonzero(sel)),) + _robust(samples[sel, :3]) + (sel,))
    clusters.sort(key=lambda c: -c[0])
    # materials: [colour median, colour sigma, members for the statistics, members for the support]
    materials = []
    for _, mu, sd, sel in clusters:
        for m in materials:
            sig = np.maximum(sd, m[1])
            if np.all(np.abs(mu - m[0]) <= cfg.material_z * sig):  # same colour: same material
                m[2] = m[2] | sel
                m[3] = m[3] | sel
                break
            shade = _shadowed(mu - m[0], sig, cfg)
            if shade != 0:  # one is the other in a cast shadow: one material, lit statistics
                if shade > 0:
                    m[0], m[1], m[2] = mu, sd, sel
                m[3] = m[3] | sel
                break
        else:
            materials.append([mu, sd, sel, sel])
    h, w = region.shape
    ys, xs = np.divmod(idx, w)
    coords = np.stack([xs, ys], 1).astype(np.float64)
    span = np.maximum(coords.max(0) - coords.min(0), 1.0)
    kept = []
    for _, _, stats, support in materials:
        weight = np.count_nonzero(support) / float(n)
        lo, hi = np.percentile(coords[support], [5, 95], axis=0)
        if weight >= cfg.min_material_weight or float(np.max((hi - lo) / span)) >= cfg.min_material_span:
            kept.append((weight,) + _robust(samples[stats]))
    if not kept:
        kept = [(1.0,) + _robust(samples)]
    kept = sorted(kept, key=lambda c: -c[0])[:cfg.max_materials]
    means = np.stack([c[1] for c in kept])
    sigmas = np.stack([c[2] for c in kept])
    # darkening room per material: a shadow below the lit surface (the samples' median luminance)
    # may reach shadow_depth in total, so a material that is itself shadowed tolerates only the rest
    room = np.clip(cfg.shadow_depth - (med[0] - means[:, 0]), 0.0, cfg.shadow_depth)
    model = _Model(means, sigmas, room)
    if cfg.mixing and len(kept) > 1:
        pairs = [(i, j) for i in range(len(kept)) for j in range(i + 1, len(kept))]
        model.mix_a = np.array([means[i, :3] for i, _ in pairs], np.float32)
        model.mix_b = np.array([means[j, :3] for _, j in pairs], np.float32)
        model.mix_sigma = np.array([np.maximum(sigmas[i, :3], sigmas[j, :3]) for i, j in pairs], np.float32)
    return model


def _shadowed(diff, sig, cfg):
    """-1 / +1 when colour ``a`` = ``b + diff`` is ``b`` in a cast shadow / ``b`` is ``a`` in one, else 0.

    A shadow darkens by more than the colours' spread but at most ``shadow_depth``, and shifts each
    chroma ratio by at most ``shadow_chroma`` per unit of darkening (beyond the spread).
    """
    dl = float(diff[0])
    depth = abs(dl)
    if not cfg.material_z * sig[0] < depth <= cfg.shadow_depth:
        return 0
    if np.any(np.abs(diff[1:]) > cfg.material_z * sig[1:] + cfg.shadow_chroma * depth):
        return 0
    return -1 if dl < 0 else 1


def _capped(a, cap):
    """Cost (in sigmas) of an absolute deviation ``a`` (in sigmas) with ``cap`` sigmas tolerated.

    Up to one sigma counts as is, the next ``cap`` sigmas are free, the rest counts again: a tolerated
    deviation (a shadow) costs at most one sigma, like an ordinary surface pixel, and the cost stays
    a continuous function of the appearance.
    """
    return np.minimum(a, np.float32(1.0)) + np.maximum(a - np.float32(1.0) - cap, np.float32(0.0))


def _distances(x, model, cfg):
    """Squared distances of the pixels (x: D x N feature planes) to the surface model.

    Returns ``(d2, d2_colour)`` (N,): the full squared distance in sigmas and its luminance + chroma
    part, each the minimum over materials and mixing segments (see the module doc).
    """
    lum, c1, c2, tex = x
    d2_best = d2c_best = None
    for k in range(model.means.shape[0]):
        mu, sig = model.means[k], model.sigmas[k]
        r = (lum - mu[0]) * np.float32(1.0 / sig[0])
        cap = np.where(r < 0, np.float32(model.shadow_room[k] / sig[0]), np.float32(cfg.bright_tolerance / sig[0]))
        dark = np.clip(-r - np.float32(1.0), np.float32(0.0), cap) * np.float32(sig[0])  # tolerated darkening
        c = _capped(np.abs(r), cap)
        d2 = c * c
        tol = dark * np.float32(cfg.shadow_chroma)
        for j, plane in ((1, c1), (2, c2)):
            c = _capped(np.abs(plane - mu[j]) * np.float32(1.0 / sig[j]), tol * np.float32(1.0 / sig[j]))
            d2 += c * c
        d2c_best = d2.copy() if d2c_best is None else np.minimum(d2c_best, d2)
        if cfg.texture_weight > 0:
            # rougher than the material counts; smoother costs at most one sigma
            wt = float(cfg.texture_weight)
            c = np.maximum((tex - mu[3]) * np.float32(wt / sig[3]), np.float32(-wt))
            d2 += c * c
        d2_best = d2 if d2_best is None else np.minimum(d2_best, d2)
    for p in range(model.mix_a.shape[0]):
        # nearest point a + t (b - a), t in [0, 1], of the segment between two materials' colours
        a, delta, inv = model.mix_a[p], model.mix_b[p] - model.mix_a[p], np.float32(1.0) / model.mix_sigma[p]
        u = [(plane - a[j]) * inv[j] for j, plane in enumerate((lum, c1, c2))]
        e = delta * inv
        t = np.clip((u[0] * e[0] + u[1] * e[1] + u[2] * e[2]) * np.float32(1.0 / max(float(e @ e), 1e-12)), 0.0, 1.0)
        m2 = sum((u[j] - t * e[j]) ** 2 for j in range(3))
        d2c_best = np.minimum(d2c_best, m2)
        d2_best = np.minimum(d2_best, m2)
    return d2_best, d2c_best


# -- ground envelope --------------------------------------------------------------------------------


def _ground_top(good, start, max_gap):
    """Highest row reached walking up from row ``start`` through ``good`` rows (runs of at most
    ``max_gap`` bad rows are crossed)."""
    top, gap = start, 0
    for y in range(start, -1, -1):
        if good[y]:
            top, gap = y, 0
        else:
            gap += 1
            if gap > max_gap:
                break
    return top


def _mask_above_ground(score, d2_colour, region, cfg):
    """NaN above the apron (see the module doc)."""
    h, w = score.shape
    like = d2_colour <= np.float32(cfg.ground_sigmas ** 2)
    rows = np.flatnonzero(region.any(axis=1))
    start = int(rows[0]) if rows.size else h - 1
    n_bands = max(1, int(round(1.0 / cfg.envelope_window)))
    edges = np.linspace(0, w, n_bands + 1).round().astype(int)
    max_gap = max(2, int(round(cfg.envelope_gap * h)))
    tops, centres, spans = [], [], []
    for b in range(n_bands):
        x0, x1 = edges[b], edges[b + 1]
        if x1 > x0:
            tops.append(_ground_top(like[:, x0:x1].mean(axis=1) >= 0.5, start, max_gap))
            centres.append(0.5 * (x0 + x1 - 1))
            spans.append((x0, x1))
    tops, centres = np.array(tops, np.float64), np.array(centres)
    # the apron ends at a (nearly straight) horizon: a robust line through the band tops (Theil-Sen
    # slope, intercept at the lower quartile) stops bands that climb into surface-coloured buildings
    if tops.size >= 2:
        i, j = np.triu_indices(tops.size, 1)
        slope = float(np.median((tops[j] - tops[i]) / (centres[j] - centres[i])))
        line = slope * centres + float(np.percentile(tops - slope * centres, 75))
        tops = np.maximum(tops, line - cfg.envelope_trim * h)
    trim = max(1, int(round(cfg.envelope_trim * h)))  # the horizon's own rows mix sky and ground
    out = score.astype(np.float32, copy=True)
    for (x0, x1), top in zip(spans, tops):
        if top > 0:  # a band whose ground reaches the image's top row has no horizon to trim
            out[:int(min(top + trim, start)), x0:x1] = np.nan
    return out
