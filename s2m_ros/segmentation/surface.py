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
Materials that are spatially compact (``min_material_span``) are dropped unless they hold a large share
of the samples (``compact_material_weight``): that is what an object lying in the sampling region
looks like (a suitcase a few metres ahead), whereas painted lines are rare but long, and shadows and
slabs are common. Between every two
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
``mask_above_ground`` is set. The drivable region is the set of surface-coloured pixels (within
``ground_sigmas`` of the model, shadows included) connected to the sampling region
(:func:`drivable_region`); in vertical bands of columns everything above the region's highest row is
NaN, so the scored area follows the surface as far as it is visible (a narrow road up to its vanishing
point, an open apron up to the horizon) and keeps every object lying on it (objects interrupt the
surface, the surface continues behind them). Surface-coloured structures standing on the horizon
(grey buildings, an overcast sky) connect to the apron through their base; where the camera's mounting
is known, ``horizon`` (the horizon row) ends the scored area there whatever the colours. The
prompt generator treats NaN as the lowest score. Nothing here is a threshold in score units: every
decision is made in sigmas of this frame's own surface statistics.

Tiny images (fewer sampling-region pixels than features + 2) get an all-zero map (nothing can be
modelled, nothing is anomalous); maps of fewer than 32 rows are scored everywhere (no horizon).
"""
import math
from dataclasses import dataclass
from typing import ClassVar, Tuple

import cv2
import numpy as np

from s2m_ros.segmentation.config_check import bad, check_fields

_N_FEATURES = 4
# Spread floors per feature (feature units): luminance (log), chroma x2 (log ratio), texture (log).
# Below these, differences are camera noise and compression, not appearance.
_SIGMA_FLOOR = np.array([0.03, 0.015, 0.015, 0.15], np.float32)
# Maps with fewer rows have no room for a horizon: they are scored everywhere.
_MIN_ENVELOPE_ROWS = 32
# The lit level of the surface: this percentile of the sampling region's illumination. High, so that a
# region mostly under a cast shadow (a building's, an aircraft's) still takes its level from the lit
# part (5 % of the samples or more); the illumination is a median over large windows, so thin
# bright paint does not reach it.
_LIT_PERCENTILE = 95


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
    # A material is a surface material when it holds at least this fraction of the samples ...
    min_material_weight: float = 0.03
    # ... and its samples spread over at least this fraction of the sampling region's width or
    # height (robust 5-95 % range): long painted lines are rare but spread out, objects are compact.
    # A spread material below min_material_weight is a marking (see paint_mask).
    min_material_span: float = 0.6
    # A compact material is kept only from this share of the samples on (below, it is an object lying
    # in the sampling region, however large its share).
    compact_material_weight: float = 0.25
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
    # Painted markings (yellow and white, elongated) the sampling region did not show count as surface.
    paint: bool = True
    # Chroma (log ratio) a white marking may differ from the surface's.
    paint_chroma: float = 0.08
    # Length / mean width from which a paint-coloured part is a marking.
    paint_elongation: float = 5.0
    # Parts thinner than this (working pixels) are judged apart from thicker ones (see paint_mask).
    paint_width_px: int = 5
    # Mark pixels above the apron as NaN (not scored).
    mask_above_ground: bool = True
    # Ground pixels: colour distance (in the surface model's sigmas) at most this; a shadow costs
    # about one sigma, the sky and most buildings many.
    ground_sigmas: float = 3.0
    # Width (fraction of the working width) of the bands of columns in which the ground's top is found.
    envelope_window: float = 0.125
    # Rows (fraction of the height) removed below the ground's top (they mix sky and ground).
    envelope_trim: float = 0.01
    # The horizon row as a fraction of the image height, when the camera's mounting is known (a level
    # camera pitched down by p: (cy - fy * tan(p)) / height); nothing above it is scored, whatever its
    # colour (surface-coloured buildings, grey sky). Negative: only the drivable region decides.
    horizon: float = -1.0

    # field -> rule (s2m_ros.segmentation.config_check); the types come from the annotations above
    RULES: ClassVar[dict] = {
        "max_side": "[8, inf)", "sample_top": "[0, 1]", "sample_bottom": "[0, 1]",
        "sample_top_x": "[0, 1]", "sample_bottom_x": "[0, 1]", "max_samples": "[50, inf)",
        "components": "[1, inf)", "kmeans_attempts": "[1, inf)", "kmeans_iterations": "[1, inf)",
        "seed": "[0, 2147483647]", "material_z": "(0, inf)", "min_material_weight": "[0, 1)",
        "min_material_span": "[0, 1]", "compact_material_weight": "[0, 1]", "max_materials": "[1, inf)",
        "shadow_depth": "[0, inf)", "bright_tolerance": "[0, inf)", "shadow_chroma": "[0, inf)",
        "illum_cell": "(0, 1]", "texture_sigma": "(0, inf)", "line_leak": "[0, 1)", "texture_offset": "(0, inf)",
        "texture_weight": "[0, inf)", "dark_offset": "(0, inf)", "paint_chroma": "[0, 1]",
        "paint_elongation": "[1, inf)", "paint_width_px": "[1, inf)", "ground_sigmas": "(0, inf)",
        "envelope_window": "(0, 1]", "envelope_trim": "[0, 1)",
        "horizon": "(-inf, 1)",  # a fraction of the height below 1; negative: estimated
    }

    def __post_init__(self):
        check_fields(self)
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
        x = planes[:_N_FEATURES].reshape(_N_FEATURES, -1)
        # illumination relative to the lit surface: the sampling region's brightly lit level
        illum = planes[_N_FEATURES].reshape(-1)
        illum = illum - np.float32(np.percentile(illum[idx], _LIT_PERCENTILE))
        model = _fit_surface(np.ascontiguousarray(x[:, idx].T), idx, region, cfg, illum[idx])
        d2, d2_colour = _distances(x, model, cfg, illum)
        if cfg.paint:  # painted markings: explained like a material where their shape says marking
            seen = None
            if model.line.any():
                seen = (_distances(x, model, cfg, illum, line=True)[1] <= np.float32(cfg.ground_sigmas ** 2))
                for k in np.flatnonzero(model.line):
                    seen |= _mix_towards(x, model, k)
                seen = seen.reshape(h, w)
            paint = paint_mask(planes, model, cfg, illum.reshape(h, w), seen, d2_colour.reshape(h, w)).reshape(-1)
            d2 = np.where(paint, np.minimum(d2, np.float32(1.0)), d2)
            d2_colour = np.where(paint, np.minimum(d2_colour, np.float32(1.0)), d2_colour)
        # the square root of the distance; below 1e-3 sigma a difference is float rounding, not appearance
        score = np.sqrt(np.sqrt(np.where(d2 < 1e-6, np.float32(0.0), d2))).reshape(h, w)
        if cfg.mask_above_ground and h >= _MIN_ENVELOPE_ROWS:
            score = _mask_above_ground(score, d2_colour.reshape(h, w), region, cfg)
        return score

    def features(self, img_bgr: np.ndarray) -> np.ndarray:
        """5 x H x W float32 planes of a working-resolution BGR uint8 image: the 4 features of the module
        doc and the illumination level (log intensity, edge-preserving local median) ``lum`` is taken from."""
        cfg = self.config
        h, w = img_bgr.shape[:2]
        off = np.float32(cfg.dark_offset)
        b, g, r = [np.log(c.astype(np.float32) + off) for c in cv2.split(img_bgr)]
        grey = img_bgr.astype(np.float32).sum(axis=2)
        log_i = np.log(grey * np.float32(1.0 / 3.0) + off)
        out = np.empty((_N_FEATURES + 1, h, w), np.float32)
        out[_N_FEATURES] = _illumination(log_i, cfg.illum_cell, float(cfg.dark_offset))
        out[0] = log_i - out[_N_FEATURES]
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
    """The rules between fields (each field's own type and range: ``SurfaceConfig.RULES``)."""
    if not cfg.sample_top < cfg.sample_bottom:
        raise bad(cfg, "sample_top", "must be < sample_bottom (%r)" % (cfg.sample_bottom,))
    for name in ("sample_top_x", "sample_bottom_x"):
        lo, hi = getattr(cfg, name)
        if not lo < hi:
            raise bad(cfg, name, "must be (lo, hi) with 0 <= lo < hi <= 1")


def _check_image(image):
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] not in (3, 4) or img.shape[0] == 0 or img.shape[1] == 0:
        raise ValueError("image must be H x W x 3 BGR (or H x W grey), got shape %s" % (img.shape,))
    if img.dtype != np.uint8:
        raise ValueError("image must be uint8, got %s" % img.dtype)
    return np.ascontiguousarray(img[..., :3])


def _illumination(log_i, cell_frac, dark_offset):
    """Edge-preserving local illumination level of ``log_i``: a median over a square window of
    ``cell_frac`` of the long side (on log intensity quantised to 256 levels over its possible range).

    A median follows the straight edges of cast shadows (a step stays a step) while thin structures
    (joints, painted lines, wires) and objects smaller than half the window stay out of it, so they are
    measured against the light they lie in, whether sunlit or shadowed.
    """
    h, w = log_i.shape
    k = max(3, 2 * int(round(0.5 * cell_frac * max(h, w))) + 1)
    k = min(k, 2 * ((min(h, w) - 1) // 2) + 1) if min(h, w) >= 3 else 1
    if k < 3:
        return np.full_like(log_i, np.float32(np.median(log_i)))
    lo, hi = math.log(dark_offset), math.log(255.0 + dark_offset)
    q = np.clip((log_i - np.float32(lo)) * np.float32(255.0 / (hi - lo)) + np.float32(0.5), 0, 255).astype(np.uint8)
    med = cv2.medianBlur(q, k)
    return med.astype(np.float32) * np.float32((hi - lo) / 255.0) + np.float32(lo)


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

    def __init__(self, means, sigmas, shadow_room, light):
        self.means = np.asarray(means, np.float32)
        self.sigmas = np.asarray(sigmas, np.float32)
        self.shadow_room = np.asarray(shadow_room, np.float32)
        # each material's light: the median illumination of its samples relative to the lit surface
        # (negative: it was sampled in shadow)
        self.light = np.asarray(light, np.float32)
        self.mix_light = np.zeros(0, np.float32)  # the mean light of each segment's two materials
        self.mix_a = np.zeros((0, 3), np.float32)
        self.mix_b = np.zeros((0, 3), np.float32)
        self.mix_sigma = np.ones((0, 3), np.float32)
        self.mix_room = np.zeros(0, np.float32)  # darkening each segment tolerates (the smaller of its two)
        self.line = np.zeros(self.means.shape[0], bool)  # marking materials (rare, elongated; see paint_mask)
        self.mix_line = np.zeros(0, bool)  # segments with a marking material


def _robust(v):
    """Median and floored robust spread (1.4826 MAD) of the rows of v, per feature."""
    mu = np.median(v, axis=0)
    sd = np.float32(1.4826) * np.median(np.abs(v - mu), axis=0)
    floor = _SIGMA_FLOOR[:v.shape[1]]
    return mu, np.sqrt(sd * sd + floor * floor)


def _fit_surface(samples, idx, region, cfg, sample_illum):
    """Materials of the sampling region (N x D samples at flat indices ``idx``, illumination
    ``sample_illum`` (N,) relative to the lit surface) and mixing segments."""
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
        spread = float(np.max((hi - lo) / span)) >= cfg.min_material_span
        if spread or weight >= cfg.compact_material_weight:
            kept.append((weight,) + _robust(samples[stats]) + (support,))
    if not kept:
        kept = [(1.0,) + _robust(samples) + (np.ones(n, bool),)]
    kept = sorted(kept, key=lambda c: -c[0])[:cfg.max_materials]
    means = np.stack([c[1] for c in kept])
    sigmas = np.stack([c[2] for c in kept])
    # markings: rare materials kept for their spread (a line crossing the region) and materials of a marking
    # colour (see paint_mask); they explain only marking-shaped parts of the image
    line = np.array([c[0] < cfg.min_material_weight for c in kept])
    if cfg.paint:
        for k in range(1, len(kept)):
            line[k] |= bool(_marking_colour(means[k, 0] - means[0, 0], means[k, 1] - means[0, 1],
                                            means[k, 2] - means[0, 2], cfg, np.float32(cfg.paint_chroma)))
    line[0] = False  # the heaviest material is the surface itself
    # darkening room per material: a shadow below the lit surface (the samples' median luminance)
    # may reach shadow_depth in total, so a material that is itself shadowed tolerates only the rest
    room = np.clip(cfg.shadow_depth - (med[0] - means[:, 0]), 0.0, cfg.shadow_depth)
    light = [float(np.median(sample_illum[c[3]])) for c in kept]  # supports are never empty (>= 3 samples)
    model = _Model(means, sigmas, room, light)
    model.line = line
    if cfg.mixing and len(kept) > 1:
        pairs = [(i, j) for i in range(len(kept)) for j in range(i + 1, len(kept))]
        model.mix_light = np.array([0.5 * (light[i] + light[j]) for i, j in pairs], np.float32)
        model.mix_line = np.array([bool(line[i] or line[j]) for i, j in pairs])
        model.mix_a = np.array([means[i, :3] for i, _ in pairs], np.float32)
        model.mix_b = np.array([means[j, :3] for _, j in pairs], np.float32)
        model.mix_sigma = np.array([np.maximum(sigmas[i, :3], sigmas[j, :3]) for i, j in pairs], np.float32)
        model.mix_room = np.array([min(room[i], room[j]) for i, j in pairs], np.float32)
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


def _distances(x, model, cfg, illum, line=False):
    """Squared distances of the pixels (x: D x N feature planes) to the surface model.

    ``illum`` (N,): the illumination level relative to the lit surface (log intensity; negative in
    shadow). A darkening of the illumination down to ``shadow_depth`` (a cast shadow, with sharp or soft
    edges) and a brightening up to ``bright_tolerance`` cost at most one sigma, like the local
    luminance residual's own tolerances; both tolerated darkenings together set the chroma shift a
    shadow may show (skylight is bluer), for the materials and for the mixing segments alike.

    Returns ``(d2, d2_colour)`` (N,): the full squared distance in sigmas and its illumination +
    luminance + chroma part, each the minimum over materials and mixing segments (see the module doc).
    """
    lum, c1, c2, tex = x
    s_i = float(_SIGMA_FLOOR[0])
    ri = illum * np.float32(1.0 / s_i)
    cap_i = np.where(ri < 0, np.float32(cfg.shadow_depth / s_i), np.float32(cfg.bright_tolerance / s_i))
    ci = _capped(np.abs(ri), cap_i)
    d2_ill = ci * ci
    dark_cap = np.float32(cfg.shadow_depth / s_i)

    def dark_light(light):
        """Tolerated light difference (log intensity) between a pixel and a material sampled in light
        ``light``: either may be the one in shadow (a region sampled mostly in a cast shadow)."""
        return np.clip(np.abs(ri - np.float32(light / s_i)) - np.float32(1.0), np.float32(0.0), dark_cap) * np.float32(s_i)

    bright_cap = np.float32(cfg.bright_tolerance) + np.maximum(-illum, np.float32(0.0))
    d2_best = d2c_best = None
    for k in range(model.means.shape[0]):
        if bool(model.line[k]) != line:
            continue
        mu, sig = model.means[k], model.sigmas[k]
        r = (lum - mu[0]) * np.float32(1.0 / sig[0])
        # brighter than the local light by up to the light's own shadow darkening: lit surface in a gap of a
        # shadow (narrower than the illumination window) is no brighter than the lit surface
        cap = np.where(r < 0, np.float32(model.shadow_room[k] / sig[0]), bright_cap * np.float32(1.0 / sig[0]))
        dark = np.clip(-r - np.float32(1.0), np.float32(0.0), cap) * np.float32(sig[0]) + dark_light(model.light[k])
        c = _capped(np.abs(r), cap)
        d2 = d2_ill + c * c
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
    if d2_best is None:  # no material of the kind asked for
        far = np.full(lum.shape, np.inf, np.float32)
        d2_best, d2c_best = far, far.copy()
    for p in range(model.mix_a.shape[0]):
        if line or model.mix_line[p]:  # a marking's rims are covered by the marking mask's margin
            continue
        # nearest point a + t (b - a), t in [0, 1], of the segment between two materials' colours; the
        # position along it from the chroma alone when the two differ in chroma (a shadow changes the
        # luminance, not the mixing), and the luminance residual tolerated like a material's
        a, delta, inv = model.mix_a[p], model.mix_b[p] - model.mix_a[p], np.float32(1.0) / model.mix_sigma[p]
        u = [(plane - a[j]) * inv[j] for j, plane in enumerate((lum, c1, c2))]
        e = delta * inv
        dims = (1, 2) if float(e[1] ** 2 + e[2] ** 2) >= 1.0 else (0, 1, 2)
        norm = np.float32(1.0 / max(float(sum(e[j] ** 2 for j in dims)), 1e-12))
        t = np.clip(sum(u[j] * e[j] for j in dims) * norm, 0.0, 1.0)
        r = u[0] - t * e[0]
        room = np.float32(model.mix_room[p]) * inv[0]
        cap = np.where(r < 0, room, bright_cap * inv[0])
        dark = np.clip(-r - np.float32(1.0), np.float32(0.0), cap) / inv[0] + dark_light(model.mix_light[p])
        c = _capped(np.abs(r), cap)
        m2 = d2_ill + c * c
        tol = dark * np.float32(cfg.shadow_chroma)
        for j in (1, 2):
            c = _capped(np.abs(u[j] - t * e[j]), tol * inv[j])
            m2 = m2 + c * c
        d2c_best = np.minimum(d2c_best, m2)
        d2_best = np.minimum(d2_best, m2)
    return d2_best, d2c_best


# -- painted markings ------------------------------------------------------------------------------


_YELLOW = np.array([0.27, -1.1]) / math.hypot(0.27, -1.1)  # chroma direction of yellow paint from grey


def _marking_colour(dl, d1, d2, cfg, tol, split=False, strength=1.0):
    """Yellow or white marking colour, from differences to the surface (log luminance residual, log R/G,
    log B/G), or a mix of one with the surface (thin far lines are mostly rim); see :func:`paint_mask`.

    Yellow: the chroma difference points within 20 degrees of yellow paint's direction from grey (red
    above green, blue well below) with at least a quarter of full paint's strength, and red not above
    green by more than 0.6 (the orange of a cone is redder). ``split``: the two masks apart.
    ``strength``: a fraction of those strengths (yellow and white brightening), for the faint mixes
    at a marking's edge.
    """
    mag = np.sqrt(d1 * d1 + d2 * d2)
    along = d1 * np.float32(_YELLOW[0]) + d2 * np.float32(_YELLOW[1])
    yellow = ((along >= np.float32(0.28 * strength)) & (along >= np.float32(math.cos(math.radians(20.0))) * mag)
              & (d1 <= 0.6))
    white = (dl >= cfg.bright_tolerance * strength) & (np.abs(d1) <= tol) & (np.abs(d2) <= tol)
    return (yellow, white) if split else yellow | white


def _mix_towards(x, model, k):
    """Pixels (N,) whose colour lies between the surface's (material 0) and material ``k``'s, at least a
    quarter of the way, within 3 sigmas of the segment (a marking's rim and its far, thin parts)."""
    a, b = model.means[0, :3], model.means[k, :3]
    inv = np.float32(1.0) / np.maximum(model.sigmas[0, :3], model.sigmas[k, :3])
    e = (b - a) * inv
    u = [(x[j] - a[j]) * inv[j] for j in range(3)]
    t = np.clip((u[0] * e[0] + u[1] * e[1] + u[2] * e[2]) * np.float32(1.0 / max(float(e @ e), 1e-12)), 0.0, 1.0)
    r2 = sum((u[j] - t * e[j]) ** 2 for j in range(3))
    return (t >= np.float32(0.25)) & (r2 <= np.float32(9.0))


def _elongation(part, labels, n, stats, with_width=False):
    """Per connected-component label 0..n-1: its length (box diagonal) over its mean width (twice the
    area over the number of boundary pixels): large for lines, bars, arcs and forks of lines, about 1-2
    for compact shapes. ``with_width``: also return the mean widths."""
    inner = cv2.erode(part, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    boundary = np.bincount(labels[(part > 0) & (inner == 0)], minlength=n).astype(np.float64)
    area = stats[:, cv2.CC_STAT_AREA].astype(np.float64)
    width = np.maximum(2.0 * area / np.maximum(boundary, 1.0), 1.0)
    length = np.hypot(stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT]).astype(np.float64)
    return (length / width, width) if with_width else length / width


def paint_mask(planes, model, cfg, illum=None, seen=None, surface_d2=None):
    """Bool H x W: pixels of painted markings (marking colours, elongated shapes).

    Apron and road markings are yellow (taxi guidance lines) or white (stop bars, stand and road
    markings): yellow = red above green by 0.1-0.6 and blue below green by at least 0.3 (log ratios,
    relative to the surface's chroma: not the orange of a cone); white = at least ``bright_tolerance``
    brighter than the surface with the surface's chroma (within ``paint_chroma``); and ``seen``, the
    pixels of the marking materials the sampling region showed (rare, spread-out materials: a line
    crossing it), which likewise explain only marking-shaped parts. Paint is also flat
    and elongated: a connected paint-coloured part counts when its length (box diagonal) is at least
    ``paint_elongation`` times its mean width (lines, bars, arcs, hatching stripes), separately for the parts thinner than
    ``paint_width_px`` working pixels (far lines) and the thicker ones (near lines), so a compact
    yellow object touching a yellow line stays an object. Rims (a marking mixed with the surface) count
    from a quarter of the marking's colour on, and one pixel around a marking unless it is darker than
    a shadow (an object's dark base touching a line). With ``surface`` (bool H x W, pixels the surface model explains)
    a part must also be bordered by the surface (or by marking colour) for at least half its outline: markings lie on the apron,
    whereas the white band of a cone or a stripe on a vehicle is bordered by the object. Known limitation: compact markings (stand numbers, arrows'
    heads) and elongated objects of a marking colour (a yellow strap) are not told apart by shape; where
    a line widens or crosses another, the widened piece can be compact and is then not explained (the
    same shape as a small yellow chock lying on the line, which must stay an object).
    """
    lum, c1, c2 = planes[0], planes[1], planes[2]
    mu = model.means[0]
    tol = np.float32(cfg.paint_chroma)
    if illum is not None:  # a marking in a cast shadow is bluer, like the shadowed surface
        tol = tol + np.float32(cfg.shadow_chroma) * np.clip(-illum, np.float32(0.0), np.float32(cfg.shadow_depth))
    diffs = (lum - mu[0], c1 - mu[1], c2 - mu[2])
    layers = list(_marking_colour(*diffs, cfg, tol, split=True))
    if seen is not None:  # the colours of markings the sampling region showed
        layers.append(seen)
    coloured = np.logical_or.reduce(layers)
    if not coloured.any():
        return coloured
    # the faint mix of a marking colour with the surface at a marking's edge (blur, far thin lines) borders
    # a marking as the surface does; an object's own colours do not
    edge = coloured | _marking_colour(*diffs, cfg, tol, strength=0.25)
    surface = foreign = None
    if surface_d2 is not None:  # explained by the surface model; clearly not (twice as far: an object)
        surface = surface_d2 <= np.float32(cfg.ground_sigmas ** 2)
        foreign = surface_d2 > np.float32((2.0 * cfg.ground_sigmas) ** 2)
    # one colour at a time (a marking has one colour: a yellow object beside a white edge stays apart),
    # the thick parts first, then the thin ones: those around a compact thick part are its rim
    k = max(1, int(cfg.paint_width_px))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    out = np.zeros(coloured.shape, bool)
    compact = np.zeros(coloured.shape, bool)
    thin = []
    for layer in layers:
        layer = layer.astype(np.uint8)
        thick = cv2.morphologyEx(layer, cv2.MORPH_OPEN, kernel)
        marking, solid = _marking_parts(thick, edge, surface, foreign, cfg)
        out |= marking
        compact |= solid
        thin.append(layer & (1 - thick))
    compact = cv2.dilate(compact.astype(np.uint8), kernel) > 0
    for part in thin:
        out |= _marking_parts(part, edge, surface, foreign, cfg, compact)[0]
    # the rim: one pixel around, where the colour mixes marking and surface (never a much darker object part)
    rim = cv2.dilate(out.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & (diffs[0] >= -cfg.shadow_depth)
    return out | rim


def _marking_parts(part, coloured, surface, foreign, cfg, compact=None):
    """Bool H x W: the marking-shaped connected parts of ``part`` (uint8), the thick or the thin pixels of
    one marking colour (see :func:`paint_mask`); thin parts mostly within ``compact`` (around a compact
    thick part of any colour: an object's rim) are not markings. Also returns the compact parts."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(part, connectivity=8)
    if n <= 1:
        return np.zeros(part.shape, bool), np.zeros(part.shape, bool)
    ok = _elongation(part, labels, n, stats) >= cfg.paint_elongation
    if surface is not None:  # lying on the surface: bordered mostly by surface, hardly by an object
        ring = cv2.dilate(labels.astype(np.float32), np.ones((3, 3), np.uint8)).astype(np.int32)
        ring[part > 0] = 0
        flat = ring.ravel()
        total = np.maximum(np.bincount(flat, minlength=n).astype(np.float64), 1.0)
        on = np.bincount(flat, weights=(surface | coloured).ravel().astype(np.float64), minlength=n)
        off = np.bincount(flat, weights=(foreign & ~coloured).ravel().astype(np.float64), minlength=n)
        ok &= (on >= 0.5 * total) & (off < 0.25 * total)
    ok[0] = False
    if compact is not None:
        near = np.bincount(labels[compact & (part > 0)], minlength=n)
        ok &= near < 0.5 * stats[:, cv2.CC_STAT_AREA]  # mostly around a compact part: its outline
    return ok[labels], (labels > 0) & ~ok[labels]


# -- ground envelope --------------------------------------------------------------------------------


def drivable_region(d2_colour, region, cfg):
    """Bool H x W: the drivable surface seen from the sampling region.

    Pixels within ``ground_sigmas`` of the surface model in colour (shadows included), opened by a 3 x 3
    square so one-pixel bridges do not connect unrelated surface-coloured structures, and 4-connected
    to the sampling region. It follows the surface as far as it is visible: a narrow road up to its
    vanishing point, an open apron up to the horizon, around objects lying on it.
    """
    like = (d2_colour <= np.float32(cfg.ground_sigmas ** 2)).astype(np.uint8)
    opened = cv2.morphologyEx(like, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    _, labels = cv2.connectedComponents(opened, connectivity=4)
    seeds = np.unique(labels[region & (opened > 0)])
    seeds = seeds[seeds > 0]
    if seeds.size == 0:
        return region.copy()
    return np.isin(labels, seeds)


def _mask_above_ground(score, d2_colour, region, cfg):
    """NaN above the apron (see the module doc)."""
    h, w = score.shape
    ground = drivable_region(d2_colour, region, cfg)
    rows = np.flatnonzero(region.any(axis=1))
    start = int(rows[0]) if rows.size else h - 1
    n_bands = max(1, int(round(1.0 / cfg.envelope_window)))
    edges = np.linspace(0, w, n_bands + 1).round().astype(int)
    trim = max(1, int(round(cfg.envelope_trim * h)))
    horizon = int(round(cfg.horizon * h)) if cfg.horizon >= 0 else -1
    out = score.astype(np.float32, copy=True)
    for x0, x1 in zip(edges[:-1], edges[1:]):
        if x1 <= x0:
            continue
        # the band's ground top: the highest row holding at least two drivable-surface pixels of the band
        ok = np.flatnonzero(np.count_nonzero(ground[:start + 1, x0:x1], axis=1) >= min(2, x1 - x0))
        top = int(ok[0]) if ok.size else start
        if horizon >= 0:  # a known horizon: nothing above it is ground, whatever its colour
            top = max(top, horizon)
        if top > 0:  # a band whose ground reaches the image's top row has no horizon to trim
            out[:int(min(top + trim, start)), x0:x1] = np.nan
    return out
