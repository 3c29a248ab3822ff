"""GrabCut promptable segmenter (OpenCV), initialised from the box, the points and the anomaly score.

The weight-free segmenter of the ``surface+grabcut`` profile. For each prompt it works on a crop
around the box (the box grown by ``margin``, clipped to the image, downscaled to at most
``max_pixels`` pixels since GrabCut's cost grows with the area, upscaled to a long side of at least
``min_side`` since its colour models need a few dozen pixels) and initialises GrabCut's mask:

- outside the box grown by ``box_slack``: sure background (the prompt says the object is in the box);
- the box and its slack band: probable background;
- inside the box, where the anomaly score is high *relative to the box's own surroundings* (above the
  median of the crop's pixels outside the slack band plus ``score_k`` robust sigmas of them):
  probable foreground. No global threshold: the same rule works for any scorer's units. When no
  pixel qualifies (a weak score), the central half of the box is probable foreground, as in
  rectangle-initialised GrabCut;
- a disk of radius ``point_radius`` (fraction of the box's short side, at least one pixel) around the
  positive point (moved into the box if it lies outside): sure foreground; disks of
  ``negative_radius`` pixels around negative points: sure background (they stay background in the
  returned mask, hole filling included).

Boxes are clipped to the image; a prompt whose box has no pixel in the image (zero or negative size,
or entirely outside) is skipped, as is one whose result is empty.

``cv2.setRNGSeed(seed)`` precedes every ``cv2.grabCut`` call (its colour models start from k-means),
so the same input gives the same masks. Of GrabCut's foreground, the connected component that
contains the positive point (or, when none does, the one nearest to it) is kept and its holes are
filled (objects on an apron are solid seen from a vehicle; the white band of a cone is still cone).

``quality`` (in [0, 1]) is the anomaly evidence agreeing with the mask: ``2 * AUC - 1`` (clipped at 0),
where AUC is the probability that a mask pixel scores higher than a non-mask pixel of the crop
(Mann-Whitney). 1: every mask pixel is more anomalous than all of the crop's background; 0: the mask
is no more anomalous than its surroundings. Where the crop has too few finite scores, the same
statistic is computed on the colour distance (Lab) to the crop border's median colour instead.
"""
from dataclasses import dataclass
from typing import ClassVar, List, Sequence

import cv2
import numpy as np

from s2m_ros.segmentation.config_check import bad, check_fields
from s2m_ros.segmentation.scores import mann_whitney_auc
from s2m_ros.segmentation.segmenter import Segment, Segmenter
from s2m_ros.types import box_from_mask

# fewest pixels of each class GrabCut's 5-component colour models can start from (k-means needs >= 5)
_MIN_CLASS_PIXELS = 8


@dataclass
class GrabCutConfig:
    """Parameters of :class:`GrabCutSegmenter`. None is a threshold in score units."""

    # Crop = box grown on each side by this fraction of its size (and at least min_margin pixels).
    margin: float = 0.5
    min_margin: int = 8
    # The crop is downscaled to at most max_pixels pixels (GrabCut's cost grows with the area), and
    # upscaled so its long side is at least min_side (its colour models need a few dozen pixels).
    min_side: int = 48
    max_pixels: int = 128 * 128
    # GrabCut iterations (each re-estimates the colour models and recuts).
    iterations: int = 4
    # Seed for cv2.setRNGSeed before each cv2.grabCut call.
    seed: int = 0
    # Band outside the box (fraction of the box's size) that stays probable background: prompt boxes
    # from a score map may be a little tight.
    box_slack: float = 0.15
    # Probable foreground: score above the surroundings' median + score_k robust sigmas.
    score_k: float = 2.0
    # Sure-foreground disk at the positive point (fraction of the box's short side, >= 1 pixel).
    point_radius: float = 0.1
    # Sure-background disk (pixels, in the resampled crop) at each negative point.
    negative_radius: int = 2
    # Fill the holes of the kept component.
    fill_holes: bool = True

    # field -> rule (s2m_ros.segmentation.config_check); the types come from the annotations above
    RULES: ClassVar[dict] = {
        "margin": "[0, inf)", "min_margin": "[0, inf)", "min_side": "[16, inf)", "max_pixels": "[256, inf)",
        "iterations": "[1, inf)", "seed": "[0, 2147483647]", "box_slack": "[0, inf)", "score_k": "[0, inf)",
        "point_radius": "[0, inf)", "negative_radius": "[0, inf)",
    }

    def __post_init__(self):
        check_fields(self)
        if self.max_pixels < self.min_side ** 2:  # the rule between fields
            raise bad(self, "max_pixels", "must be >= min_side^2 (%d)" % self.min_side ** 2)


def _auc(pos, neg):
    """P(pos > neg) + 0.5 P(pos == neg) (Mann-Whitney); 0.5 when either side is empty."""
    if pos.size == 0 or neg.size == 0:
        return 0.5
    return mann_whitney_auc(np.sort(pos, kind="mergesort"), np.sort(neg, kind="mergesort"))


class GrabCutSegmenter(Segmenter):
    """Box-prompted GrabCut, initialised from the anomaly score map (see the module doc)."""

    name = "grabcut"

    def __init__(self, config: GrabCutConfig = None):
        self.config = config if config is not None else GrabCutConfig()  # validated when made

    def segment(self, image: np.ndarray, score_map: np.ndarray, prompts: Sequence) -> List[Segment]:
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError("image must be H x W x 3 uint8 BGR, got %s %s" % (image.shape, image.dtype))
        score = np.asarray(score_map, dtype=np.float32)
        if score.shape != image.shape[:2]:
            raise ValueError("score_map shape %s must equal the image's %s" % (score.shape, image.shape[:2]))
        out = []
        for i, prompt in enumerate(prompts):
            seg = self._segment_one(image, score, prompt, i)
            if seg is not None:
                out.append(seg)
        return out

    # -- one prompt ------------------------------------------------------------------------------
    def _segment_one(self, image, score, prompt, index):
        cfg = self.config
        H, W = image.shape[:2]
        bx, by, bw, bh = (int(round(v)) for v in prompt.box)
        # clip the box to the image; a box without pixels inside the image is skipped
        x0, y0, x1, y1 = max(bx, 0), max(by, 0), min(bx + bw, W), min(by + bh, H)
        if bw <= 0 or bh <= 0 or x1 <= x0 or y1 <= y0:
            return None
        bw, bh = x1 - x0, y1 - y0
        mx = max(int(round(cfg.margin * bw)), int(cfg.min_margin))
        my = max(int(round(cfg.margin * bh)), int(cfg.min_margin))
        cx0, cy0, cx1, cy1 = max(x0 - mx, 0), max(y0 - my, 0), min(x1 + mx, W), min(y1 + my, H)
        cw, ch = cx1 - cx0, cy1 - cy0
        s = 1.0
        if cw * ch > cfg.max_pixels:
            s = float(np.sqrt(cfg.max_pixels / float(cw * ch)))
        elif max(cw, ch) < cfg.min_side:
            s = cfg.min_side / float(max(cw, ch))
        sw, sh = max(1, int(round(cw * s))), max(1, int(round(ch * s)))
        sx, sy = sw / float(cw), sh / float(ch)
        crop = image[cy0:cy1, cx0:cx1]
        sc = score[cy0:cy1, cx0:cx1]
        valid = np.isfinite(sc)
        if (sw, sh) != (cw, ch):
            interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
            crop = cv2.resize(crop, (sw, sh), interpolation=interp)
            fill = float(np.median(sc[valid])) if valid.any() else 0.0
            sc = cv2.resize(np.where(valid, sc, np.float32(fill)), (sw, sh), interpolation=interp)
            valid = cv2.resize(valid.astype(np.uint8), (sw, sh), interpolation=cv2.INTER_NEAREST).astype(bool)

        def to_crop(px, py):
            return (min(max(int((px - cx0 + 0.5) * sx), 0), sw - 1), min(max(int((py - cy0 + 0.5) * sy), 0), sh - 1))

        # box (and its slack band) in crop pixels
        bx0, by0 = int(np.floor((x0 - cx0) * sx)), int(np.floor((y0 - cy0) * sy))
        bx1, by1 = max(int(np.ceil((x1 - cx0) * sx)), bx0 + 1), max(int(np.ceil((y1 - cy0) * sy)), by0 + 1)
        kx, ky = int(round(cfg.box_slack * (bx1 - bx0))), int(round(cfg.box_slack * (by1 - by0)))
        in_box = np.zeros((sh, sw), bool)
        in_box[by0:by1, bx0:bx1] = True
        band = np.zeros((sh, sw), bool)
        band[max(by0 - ky, 0):by1 + ky, max(bx0 - kx, 0):bx1 + kx] = True

        mask = np.full((sh, sw), cv2.GC_BGD, np.uint8)
        mask[band] = cv2.GC_PR_BGD
        ring = valid & ~band
        inside = valid & in_box
        if np.count_nonzero(ring) >= _MIN_CLASS_PIXELS:
            ref = sc[ring]
        elif np.count_nonzero(inside) >= _MIN_CLASS_PIXELS:
            ref = sc[inside]  # no surroundings (box fills the image): the box's own median
        else:
            ref = None
        hot = np.zeros((sh, sw), bool)
        if ref is not None:
            med = float(np.median(ref))
            spread = 1.4826 * float(np.median(np.abs(ref - med)))
            if spread <= 0:
                spread = float(np.std(ref))
            hot = inside & (sc > med + cfg.score_k * spread) & (sc > med)
        if np.count_nonzero(hot) < _MIN_CLASS_PIXELS:
            qx, qy = (bx1 - bx0) // 4, (by1 - by0) // 4
            hot = np.zeros((sh, sw), bool)
            hot[by0 + qy:max(by1 - qy, by0 + qy + 1), bx0 + qx:max(bx1 - qx, bx0 + qx + 1)] = True
        mask[hot] = cv2.GC_PR_FGD

        px, py = prompt.point if prompt.point is not None else (x0 + bw // 2, y0 + bh // 2)
        px, py = min(max(int(px), x0), x1 - 1), min(max(int(py), y0), y1 - 1)  # keep the point in the box
        cpx, cpy = to_crop(px, py)
        radius = max(1, int(round(cfg.point_radius * min(bx1 - bx0, by1 - by0))))
        cv2.circle(mask, (cpx, cpy), radius, int(cv2.GC_FGD), thickness=-1)
        negatives = [(int(nx), int(ny)) for nx, ny in (getattr(prompt, "negative_points", None) or [])
                     if cx0 <= nx < cx1 and cy0 <= ny < cy1]
        for nx, ny in negatives:
            cv2.circle(mask, to_crop(nx, ny), int(cfg.negative_radius), int(cv2.GC_BGD), thickness=-1)
        sure_bg = mask == cv2.GC_BGD

        fg_init = (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)
        bg_init = (mask == cv2.GC_BGD) | (mask == cv2.GC_PR_BGD)
        if np.count_nonzero(fg_init) < _MIN_CLASS_PIXELS or np.count_nonzero(bg_init) < _MIN_CLASS_PIXELS:
            return None
        bgd = np.zeros((1, 65), np.float64)
        fgd = np.zeros((1, 65), np.float64)
        cv2.setRNGSeed(int(cfg.seed))
        cv2.grabCut(np.ascontiguousarray(crop), mask, None, bgd, fgd, int(cfg.iterations), cv2.GC_INIT_WITH_MASK)
        fg = (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)  # GrabCut never relabels sure pixels
        fg = _keep_component(fg, cpx, cpy)
        if fg is None:
            return None
        if cfg.fill_holes:
            fg = _fill_holes(fg) & ~sure_bg  # a negative point inside the object stays a hole
        quality = _quality(fg, sc, valid, crop)
        if (sw, sh) != (cw, ch):
            back = cv2.INTER_AREA if s > 1 else cv2.INTER_LINEAR
            fg = cv2.resize(fg.astype(np.float32), (cw, ch), interpolation=back) >= 0.5
            fg[py - cy0, px - cx0] = True  # the positive point is sure foreground at any scale
            for nx, ny in negatives:  # and negative points sure background
                fg[ny - cy0, nx - cx0] = False
        roi = box_from_mask(fg)
        if roi is None:
            return None
        rx, ry, rw, rh = roi
        return Segment(prompt_index=index, roi=(cx0 + rx, cy0 + ry, rw, rh), mask=fg[ry:ry + rh, rx:rx + rw],
                       quality=quality)


def _keep_component(fg, px, py):
    """The 8-connected component of ``fg`` containing (px, py), else the nearest one; None if fg is empty."""
    n, labels = cv2.connectedComponents(fg.astype(np.uint8), connectivity=8)
    if n <= 1:
        return None
    lab = labels[py, px]
    if lab == 0:
        ys, xs = np.nonzero(labels)
        k = int(np.argmin((xs - px) ** 2 + (ys - py) ** 2))
        lab = labels[ys[k], xs[k]]
    return labels == lab


def _fill_holes(fg):
    """``fg`` with the background regions that do not touch the border filled."""
    h, w = fg.shape
    inv = np.pad(~fg, 1, constant_values=True).astype(np.uint8)
    n, labels = cv2.connectedComponents(inv, connectivity=4)
    outside = labels[0, 0]
    return fg | ((labels[1:h + 1, 1:w + 1] != outside) & (labels[1:h + 1, 1:w + 1] > 0))


def _quality(fg, sc, valid, crop):
    """2 * AUC - 1 of the score (or, lacking scores, the colour distance to the border) in vs out of fg."""
    pos_m, neg_m = fg & valid, ~fg & valid
    if np.count_nonzero(pos_m) >= _MIN_CLASS_PIXELS and np.count_nonzero(neg_m) >= _MIN_CLASS_PIXELS:
        pos, neg = sc[pos_m], sc[neg_m]
    else:
        lab = cv2.cvtColor(crop, cv2.COLOR_BGR2LAB).astype(np.float32)
        border = np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]])
        dist = np.linalg.norm(lab - np.median(border, axis=0), axis=2)
        pos, neg = dist[fg], dist[~fg]
    return float(np.clip(2.0 * _auc(pos, neg) - 1.0, 0.0, 1.0))
