"""Prompts for a promptable segmenter from an anomaly score map, without a global threshold (ROS-free).

S2M turns the per-pixel anomaly score map into box (and point) prompts for a
promptable segmenter. A fixed score threshold does not transfer between
scorers, images or lighting, so every decision here is made relative to the
map's own statistics:

1. **Robust background model.** NaN and +/-inf pixels are invalid and count as
   the lowest score. A robust plane (least squares, iteratively trimmed to the
   inliers within ``trim_z`` robust sigmas) is removed so that a smooth global
   gradient (e.g. scores rising towards the horizon) is background, not an
   object. On the residual, background = median, noise scale =
   1.4826 * MAD (std when the MAD is zero, e.g. an exactly flat background; a
   map with no variation at all has no prompts). ``z = residual / scale`` is
   then invariant to ``a * map + b`` for any ``a > 0``.
   **Local branch (multi-scale).** On real scenes the global MAD mostly measures
   class structure (road, sky and vegetation have different max-logit or
   energy levels), not noise, so an object reaches only 2-3 "sigma" and is
   rejected. A second normalisation is therefore computed on a coarse grid of
   ``local_grid`` x ``local_grid`` blocks: background = each block's median
   (bilinearly interpolated between block centres), noise scale = median over
   the blocks of each block's own 1.4826 * MAD, i.e. the within-region spread.
   Scale and background come from the same blocks, so for stationary
   (even correlated) noise the two branches agree, while class structure
   becomes background. A local background absorbs objects larger than about
   half a block (it then proposes fragments of the object's rim), so the
   global branch is kept: both z maps go through steps 2-6, a local candidate
   whose peak lies inside a global prompt's region is dropped, and the global
   prompts are listed first (step 7). Both branches are invariant to
   ``a * map + b``. Known limitation: the bilinear background does not follow
   sharp steps, so strong class edges can give weak local prompts.
   ``local_grid = 0`` is the global-only generator.
2. **Noise grain.** Anomaly maps from networks are spatially correlated, so
   noise forms blobs bigger than a pixel. The correlation area (pixels per
   independent sample) is estimated from the robust spread of neighbouring
   pixel differences: for Gaussian-correlated noise ``var(diff) = 2 var (1 -
   rho1)``; ``a_corr = max(1, 2 * scale^2 / sigma_diff^2)`` is 1 for i.i.d.
   noise and grows with the smoothness.
3. **Level sets (component tree).** Levels are geometrically spaced in z from
   ``min_level_z`` up to the map's maximum (``level_ratio`` apart, at most
   ``max_levels``). At each level the 8-connected components of ``z >= t``
   are labelled; each component is identified by its peak pixel (the highest
   pixel, ties broken in raster order), so when two peaks' components merge
   the lower peak's branch ends (elder rule, as in topological persistence).
4. **A-contrario significance (no score threshold).** A component of ``A``
   pixels at level ``t`` is *meaningful* when its number of false alarms
   under the noise model (independent N(0, 1) per correlation cell) is below
   ``nfa_epsilon``: ``NFA = (N / a_corr) * L * (c * Q(t)) ** (A / a_corr)``
   with ``N`` valid pixels, ``L`` levels, ``Q`` the Gaussian tail and
   ``c = 8`` bounding the growth of the number of 8-connected shapes of a
   given size. ``nfa_epsilon`` is the expected number of false detections
   per image on pure noise, so its value is not critical (a factor 10 moves
   the effective level by a fraction of a sigma). Components smaller than
   ``min_area_px`` are never meaningful (single-pixel spikes, however high).
5. **Stability (MSER-like).** A peak is a candidate when its own branch is
   meaningful over at least ``min_stability`` consecutive levels; the
   ``stability`` of a prompt is that run length.
6. **Region per candidate (hysteresis).** The candidate region is the
   connected set of pixels around the peak with
   ``z >= region_ratio * z_peak`` (i.e. background + ratio * (peak -
   background)), but never below the lowest level at which the branch is
   still its own (so it does not swallow a higher neighbouring peak). The box
   is that region's tight box (padded by ``box_margin``); the positive point
   is the pixel of the region's upper part (``z`` in the top half between the
   region threshold and the peak) farthest from the region's border, i.e. a
   central, high-scoring pixel rather than a noise maximum on the rim.
7. Within each branch candidates are ranked by prominence (peak z) and greedy
   box NMS removes duplicates; the global branch's prompts come first, then
   the local branch's (NMS across both), at most ``max_prompts`` in all.
"""
import math
import warnings
from dataclasses import dataclass, field
from typing import ClassVar, List, Tuple

import cv2
import numpy as np

from s2m_ros.segmentation.config_check import check_fields

# Growth constant bound for the number of 8-connected pixel shapes of a given size (a-contrario test count).
_SHAPE_GROWTH = 8.0
_LOG10_SHAPE_GROWTH = math.log10(_SHAPE_GROWTH)


@dataclass
class Prompt:
    """One prompt for the segmenter: a box, a positive point and optional negative points."""

    box: Tuple[int, int, int, int]  # x, y, w, h (pixels)
    point: Tuple[int, int]  # positive point (x, y)
    negative_points: List[Tuple[int, int]] = field(default_factory=list)
    peak: float = math.nan  # score at the peak pixel, original units
    prominence: float = 0.0  # (peak - background) / robust noise scale
    area: int = 0  # pixels in the candidate region
    stability: int = 0  # consecutive levels over which the branch was meaningful
    confidence: float = math.nan  # a detector's own confidence (detector prompts only)
    source: str = "levels"  # which generator made it ("levels", "detector", ...)


@dataclass
class PromptConfig:
    """Parameters of :func:`generate_prompts`. None of them is a threshold in score units."""

    # Lowest level, in robust noise sigmas above the background, at which components are considered.
    # Below about 1.5 sigma nothing can be significant anyway (see nfa_epsilon).
    min_level_z: float = 1.0
    # Ratio between consecutive levels (geometric spacing, so the levels adapt to each map's range).
    level_ratio: float = 1.2
    # Most levels per map; when the map's range needs more, the spacing is widened.
    max_levels: int = 48
    # Expected number of false detections per image on pure noise (a-contrario NFA bound).
    nfa_epsilon: float = 1.0
    # Smallest region (pixels) that can become a prompt; isolated spikes below it never do.
    min_area_px: int = 4
    # Consecutive levels over which a peak's own component must stay meaningful.
    min_stability: int = 3
    # Region of a candidate: pixels connected to the peak with z >= region_ratio * z_peak.
    region_ratio: float = 0.5
    # Remove a robust plane (global gradient) before normalising.
    detrend: bool = True
    # Inlier band (robust sigmas) of the iteratively trimmed plane fit.
    trim_z: float = 2.5
    # Blocks per image side of the local background / scale branch (0 = global normalisation only).
    # 6 blocks (85 x 43 px at 512 x 256) follow class regions while a block's MAD stays stable; finer
    # grids find more objects on real max-logit maps but also more weak structure (8: more prompts on
    # empty synthetic aprons; 16: the scale is biased low on correlated noise, giving false prompts).
    local_grid: int = 6
    # Estimate the noise correlation area and count significance in independent cells.
    correlated_noise: bool = True
    # Box padding, as a fraction of the box's width / height on each side (clipped to the image).
    box_margin: float = 0.0
    # Number of negative points (lowest-score pixels in strips just outside the box; 0..4).
    negative_points: int = 0
    # Box IoU above which the lower-prominence of two prompts is dropped.
    nms_iou: float = 0.5
    # At most this many prompts per map (best first).
    max_prompts: int = 10

    # field -> rule (s2m_ros.segmentation.config_check); the types come from the annotations above
    RULES: ClassVar[dict] = {
        "min_level_z": "(0, inf)", "level_ratio": "(1, inf)", "max_levels": "[2, inf)", "nfa_epsilon": "(0, inf)",
        "min_area_px": "[1, inf)", "min_stability": "[1, inf)", "region_ratio": "[0, 1]", "trim_z": "(0, inf)",
        "local_grid": "[0, inf)", "box_margin": "[0, inf)", "negative_points": "[0, 4]", "nms_iou": "[0, 1]",
        "max_prompts": "[1, inf)",
    }

    def __post_init__(self):
        check_fields(self)


def box_iou(a, b) -> float:
    """Intersection over union of two (x, y, w, h) boxes; 0 when the union is empty."""
    ax, ay, aw, ah = (float(v) for v in a)
    bx, by, bw, bh = (float(v) for v in b)
    iw = min(ax + aw, bx + bw) - max(ax, bx)
    ih = min(ay + ah, by + bh) - max(ay, by)
    inter = max(iw, 0.0) * max(ih, 0.0)
    union = max(aw, 0.0) * max(ah, 0.0) + max(bw, 0.0) * max(bh, 0.0) - inter
    return inter / union if union > 0 else 0.0


def nms(prompts, iou) -> List[Prompt]:
    """Greedy non-maximum suppression on boxes: best prominence first, drop those overlapping a kept one by > iou."""
    kept = []
    for p in sorted(prompts, key=lambda q: -q.prominence):
        if all(box_iou(p.box, k.box) <= iou for k in kept):
            kept.append(p)
    return kept


def _log10_gauss_tail(t):
    """log10 of Q(t) = P(N(0,1) >= t), accurate far into the tail."""
    q = 0.5 * math.erfc(t / math.sqrt(2.0))
    if q > 1e-300:
        return math.log10(q)
    # Mills-ratio asymptotic: Q(t) ~ exp(-t^2/2) / (t sqrt(2 pi))
    return (-0.5 * t * t - math.log(t * math.sqrt(2.0 * math.pi))) / math.log(10.0)


def _check_input(score_map):
    a = np.asarray(score_map)
    if a.ndim != 2:
        raise ValueError("score_map must be a 2-D (H x W) array, got %d-D with shape %s" % (a.ndim, a.shape))
    if a.size == 0:
        raise ValueError("score_map is empty (shape %s)" % (a.shape,))
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)
            or a.dtype == np.bool_):
        raise ValueError("score_map must be a real numeric array, got dtype %s" % a.dtype)
    return a.astype(np.float64)


def _robust_loc_scale(x, tol):
    """(median, scale): 1.4826 * MAD, falling back to the std when the MAD is (numerically) zero."""
    med = float(np.median(x))
    scale = 1.4826 * float(np.median(np.abs(x - med)))
    if scale <= tol:
        scale = float(np.std(x))
    return med, scale


def _plane_residual(s, valid, tol, trim_z):
    """s minus a robust least-squares plane fitted on a subsampled grid (iteratively trimmed)."""
    h, w = s.shape
    step = max(1, int(math.ceil(max(h, w) / 160.0)))
    ys, xs = np.mgrid[0:h:step, 0:w:step]
    sel = valid[::step, ::step]
    v = s[::step, ::step][sel]
    if v.size < 10:
        return s - float(np.median(s[valid]))
    xn = (xs[sel] - 0.5 * w) / w
    yn = (ys[sel] - 0.5 * h) / h
    design = np.stack([xn, yn, np.ones_like(xn)], axis=1)
    med, scale = _robust_loc_scale(v, tol)
    coef = np.array([0.0, 0.0, med])
    keep = np.abs(v - med) <= max(trim_z * scale, tol)
    for _ in range(5):
        if np.count_nonzero(keep) < 10:
            break
        coef = np.linalg.lstsq(design[keep], v[keep], rcond=None)[0]
        r = v - design @ coef
        med, scale = _robust_loc_scale(r, tol)
        new_keep = np.abs(r - med) <= max(trim_z * scale, tol)
        if np.array_equal(new_keep, keep):
            break
        keep = new_keep
    yy, xx = np.mgrid[0:h, 0:w]
    plane = coef[0] * (xx - 0.5 * w) / w + coef[1] * (yy - 0.5 * h) / h + coef[2]
    return s - plane


def _correlation_area(r, valid, scale, tol):
    """Pixels per independent noise sample, from the spread of neighbour differences (1 for i.i.d. noise)."""
    diffs = []
    for d, ok in ((r[:, 1:] - r[:, :-1], valid[:, 1:] & valid[:, :-1]),
                  (r[1:, :] - r[:-1, :], valid[1:, :] & valid[:-1, :])):
        diffs.append(d[ok])
    d = np.concatenate(diffs)
    if d.size == 0:
        return 1.0
    sd = 1.4826 * float(np.median(np.abs(d)))
    if sd <= tol:
        sd = float(np.sqrt(np.mean(d * d)))
    if sd <= tol:
        return 1.0
    return float(np.clip(2.0 * scale * scale / (sd * sd), 1.0, max(1.0, float(r.size))))


def _block_stats(r, valid, grid, tol):
    """Per-block robust statistics on a ``grid`` x ``grid`` partition: (scale, background map) or None.

    scale = median over blocks of 1.4826 * MAD (within-block spread); background = block medians,
    bilinearly interpolated to the map size. Blocks without valid pixels take the median of the others.
    """
    h, w = r.shape
    bh, bw = max(h // grid, 1), max(w // grid, 1)
    gh, gw = h // bh, w // bw
    x = np.where(valid, r, np.nan)[:gh * bh, :gw * bw]
    x = x.reshape(gh, bh, gw, bw).transpose(0, 2, 1, 3).reshape(gh, gw, bh * bw)
    with warnings.catch_warnings():  # all-NaN blocks (no valid pixel) are expected and handled below
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(x, axis=2)
        mad = 1.4826 * np.nanmedian(np.abs(x - med[:, :, None]), axis=2)
    ok = np.isfinite(mad) & (mad > tol)
    if not ok.any():
        return None
    med = np.where(np.isfinite(med), med, float(np.median(med[np.isfinite(med)])))
    bg = cv2.resize(med, (w, h), interpolation=cv2.INTER_LINEAR)
    return float(np.median(mad[ok])), bg


def _normalise(s, valid, config):
    """[(z map (invalid pixels = -inf), correlation area)] per branch (global, local); None without structure."""
    vals = s[valid]
    big = float(np.max(np.abs(vals)))
    if big > 1e100 or 0 < big < 1e-100:  # keep squares finite: a positive rescale changes nothing below
        s = s / big
        vals = s[valid]
    value_range = float(vals.max() - vals.min())
    if not value_range > 0 or not math.isfinite(value_range):
        return None
    tol = 1e-9 * value_range
    if config.detrend:
        r = _plane_residual(np.where(valid, s, 0.0), valid, tol, config.trim_z)
    else:
        r = s
    med, scale = _robust_loc_scale(r[valid], tol)
    if not scale > tol * 1e3:  # no variation left above numerical noise (constant map, pure plane)
        return None
    branches = [(r - med, scale)]
    local = _block_stats(r, valid, int(config.local_grid), tol) if config.local_grid > 0 else None
    if local is not None and local[0] > tol * 1e3:
        branches.append((r - local[1], local[0]))
    out = []
    for res, sc in branches:
        a_corr = _correlation_area(res, valid, sc, tol) if config.correlated_noise else 1.0
        out.append((np.where(valid, res / sc, -np.inf), a_corr))
    return out


def _levels(z_max, config):
    lo = float(config.min_level_z)
    if not z_max > lo:
        return np.zeros(0)
    ratio = max(float(config.level_ratio), 1.0 + 1e-6)
    n = int(math.floor(math.log(z_max / lo) / math.log(ratio))) + 1
    if n > config.max_levels:
        return np.geomspace(lo, z_max, max(int(config.max_levels), 2))
    return lo * ratio ** np.arange(n)


def _branches(z, levels, n_valid, a_corr, config):
    """Per peak pixel: (longest run of meaningful levels, lowest level index still owned by the branch)."""
    flat = z.ravel()
    above = np.flatnonzero(flat >= levels[0])  # ascending, so the stable sort breaks ties in raster order
    order = above[np.argsort(-flat[above], kind="stable")]
    neg_sorted = -flat[order]  # ascending
    log_tests = math.log10(max(n_valid / a_corr, 1.0) * len(levels))
    log_eps = math.log10(config.nfa_epsilon)
    rows_level, rows_peak, rows_ok = [], [], []
    oy, ox = np.divmod(order, z.shape[1])
    for k, t in enumerate(levels):
        log_p = _LOG10_SHAPE_GROWTH + _log10_gauss_tail(float(t))
        m = int(np.searchsorted(neg_sorted, -t, side="right"))
        if m == 0:
            continue
        # components of the level set inside its bounding box (the same components as in the whole map;
        # only the label numbers differ, and peaks are found per label): 20 % less time per call
        ys, xs = oy[:m], ox[:m]
        y0, x0 = int(ys.min()), int(xs.min())
        mask = (z[y0:int(ys.max()) + 1, x0:int(xs.max()) + 1] >= t).astype(np.uint8)
        _, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8, ltype=cv2.CV_32S)
        labs = labels[ys - y0, xs - x0]
        uniq, first = np.unique(labs, return_index=True)
        areas = stats[uniq, cv2.CC_STAT_AREA]
        log_nfa = log_tests + (areas / a_corr) * log_p
        ok = (areas >= config.min_area_px) & (log_nfa < log_eps)
        rows_level.append(np.full(uniq.size, k))
        rows_peak.append(order[first])
        rows_ok.append(ok)
    if not rows_level:
        return {}
    lev = np.concatenate(rows_level)
    peak = np.concatenate(rows_peak)
    ok = np.concatenate(rows_ok)
    out = {}
    for p in np.unique(peak[ok]):
        sel = peak == p
        ks = lev[sel]
        flags = np.zeros(len(levels) + 1, dtype=bool)
        flags[ks[ok[sel]]] = True
        # longest run of consecutive True levels
        best = run = 0
        for f in flags:
            run = run + 1 if f else 0
            best = max(best, run)
        out[int(p)] = (best, int(ks.min()))
    return out


def _negative_points(z, box, n):
    if n <= 0:
        return []
    h, w = z.shape
    x, y, bw, bh = box
    band = max(2, int(round(0.25 * min(bw, bh))))
    strips = [(x - band, y, band, bh), (x + bw, y, band, bh), (x, y - band, bw, band), (x, y + bh, bw, band)]
    found = []
    for sx, sy, sw, sh in strips:
        x0, y0, x1, y1 = max(sx, 0), max(sy, 0), min(sx + sw, w), min(sy + sh, h)
        if x1 <= x0 or y1 <= y0:
            continue
        patch = z[y0:y1, x0:x1]
        # invalid pixels (-inf) are the lowest score, which is what a negative point wants
        i = int(np.argmin(patch))
        py, px = divmod(i, x1 - x0)
        found.append((float(patch.flat[i]), (int(x0 + px), int(y0 + py))))
    found.sort(key=lambda item: item[0])
    return [pt for _, pt in found[:n]]


def _pad_box(box, margin, shape):
    if margin <= 0:
        return box
    h, w = shape
    x, y, bw, bh = box
    dx, dy = int(round(margin * bw)), int(round(margin * bh))
    x0, y0 = max(x - dx, 0), max(y - dy, 0)
    x1, y1 = min(x + bw + dx, w), min(y + bh + dy, h)
    return x0, y0, x1 - x0, y1 - y0


def _make_prompt(s, z, peak_idx, stability, low_level, levels, config):
    """(prompt, (x0, y0, region mask in its box)) for one candidate peak, or None when the region is too small."""
    h, w = z.shape
    py, px = divmod(peak_idx, w)
    z_peak = float(z[py, px])
    thr = max(config.region_ratio * z_peak, float(levels[low_level]))
    mask = (z >= thr).astype(np.uint8)
    _, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8, ltype=cv2.CV_32S)
    lab = labels[py, px]
    bx, by, bw, bh, area = (int(v) for v in stats[lab])
    if area < config.min_area_px:
        return None
    region = labels[by:by + bh, bx:bx + bw] == lab
    # positive point: the pixel of the region's upper half (in z) farthest from the region's border
    padded = np.pad(region, 1).astype(np.uint8)
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, 3)[1:-1, 1:-1]
    top = region & (z[by:by + bh, bx:bx + bw] >= thr + 0.5 * (z_peak - thr))
    i = int(np.argmax(np.where(top, dist, -1.0)))
    qy, qx = divmod(i, bw)
    box = _pad_box((bx, by, bw, bh), config.box_margin, z.shape)
    prompt = Prompt(box=tuple(int(v) for v in box), point=(int(bx + qx), int(by + qy)),
                    negative_points=_negative_points(z, box, config.negative_points),
                    peak=float(s[py, px]), prominence=z_peak, area=area, stability=int(stability))
    return prompt, (bx, by, region)


def generate_prompts(score_map: np.ndarray, config: PromptConfig = PromptConfig()) -> List[Prompt]:
    """Prompts (best first, by prominence) for the anomalous regions of an H x W score map.

    Higher scores are more anomalous; the scale and offset are arbitrary (the
    result is invariant to ``a * map + b``, ``a > 0``). NaN / inf pixels count
    as the lowest score. Raises ValueError for anything but a non-empty 2-D
    real array.
    """
    s = _check_input(score_map)
    valid = np.isfinite(s)
    n_valid = int(np.count_nonzero(valid))
    if n_valid < 2:
        return []
    norm = _normalise(s, valid, config)
    if norm is None:
        return []
    made = []  # (peak z, branch, peak index, prompt)
    covered = np.zeros(s.shape, dtype=bool)  # regions of the global branch's prompts
    for zi, (z, a_corr) in enumerate(norm):
        levels = _levels(float(z[valid].max()), config)
        if levels.size == 0:
            continue
        branches = _branches(z, levels, n_valid, a_corr, config)
        cands = sorted((-float(z.flat[p]), p, stab, low) for p, (stab, low) in branches.items()
                       if stab >= config.min_stability)
        kept = []
        for neg_z, p, stab, low in cands:
            if len(kept) >= config.max_prompts:
                break
            if zi > 0 and covered.flat[p]:
                continue  # a fragment of a region the global branch already proposes (e.g. a large object)
            made_p = _make_prompt(s, z, p, stab, low, levels, config)
            if made_p is None:
                continue
            prompt, (bx, by, region) = made_p
            if zi == 0:
                covered[by:by + region.shape[0], bx:bx + region.shape[1]] |= region
            if all(box_iou(prompt.box, k.box) <= config.nms_iou for k in kept):
                kept.append(prompt)
                made.append((-neg_z, zi, p, prompt))
    made.sort(key=lambda c: (c[1], -c[0], c[2]))  # the global branch's prompts first: they pass the stricter test
    out = []
    for _, _, _, prompt in made:
        if len(out) >= config.max_prompts:
            break
        if all(box_iou(prompt.box, k.box) <= config.nms_iou for k in out):
            out.append(prompt)
    return out


class LevelSetPromptGenerator:
    """The default, threshold-free prompt generator as a pluggable object: ``gen(score_map)``."""

    name = "levels"

    def __init__(self, config: PromptConfig = None):
        self.config = config or PromptConfig()

    def __call__(self, score_map: np.ndarray) -> List[Prompt]:
        return generate_prompts(score_map, self.config)


def scale_prompts(prompts, sx: float, sy: float, width: int, height: int) -> List[Prompt]:
    """Prompts mapped from a map of one resolution to an image of another (x * sx, y * sy).

    Boxes scale outwards (floor of the start, ceil of the end) so they never shrink, then are
    clipped to the (width, height) image; points map to the centre of their scaled pixel.
    """
    out = []
    for p in prompts:
        x, y, w, h = p.box
        x0, y0 = int(math.floor(x * sx)), int(math.floor(y * sy))
        x1, y1 = int(math.ceil((x + w) * sx)), int(math.ceil((y + h) * sy))
        x0, y0 = min(max(x0, 0), width), min(max(y0, 0), height)
        x1, y1 = min(max(x1, x0), width), min(max(y1, y0), height)

        def pt(q):
            return (min(int((q[0] + 0.5) * sx), width - 1), min(int((q[1] + 0.5) * sy), height - 1))

        out.append(Prompt(box=(x0, y0, x1 - x0, y1 - y0), point=pt(p.point),
                          negative_points=[pt(q) for q in p.negative_points], peak=p.peak,
                          prominence=p.prominence, area=int(round(p.area * sx * sy)),
                          stability=p.stability, confidence=p.confidence, source=p.source))
    return out
