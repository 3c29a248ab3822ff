"""MobileSAM as the promptable segmenter, on ONNX Runtime (no torch).

Per frame: the image is encoded once (``embed``, cached), then all prompts of the frame are decoded
in ONE batched decoder call (graphs from :mod:`s2m_ros.export.mobilesam`), and each chosen low-res
mask is brought to image resolution only inside its prompt region.

Geometry, all in one place (SAM's ``ResizeLongestSide`` and ``postprocess_masks``):

* The image (H x W) is resized so its longest side is 1024: (h', w') = round(H s), round(W s) with
  s = 1024 / max(H, W), then zero-padded bottom/right to 1024 x 1024 after normalisation.
* Prompt coordinates map as x' = x w'/W, y' = y h'/H (SAM's ``apply_coords``); a box (x, y, w, h)
  gives corners (x, y) and (x + w - 1, y + h - 1) (inclusive pixel corners, as SAM's boxes).
* A 256 x 256 low-res mask covers the padded 1024 frame. SAM upsamples it bilinearly
  (align_corners=False) to 1024 x 1024, crops the top-left h' x w', and upsamples bilinearly to H x W.
  Both steps are linear and separable, so the whole chain is ``Ry @ low @ Rx^T`` with Ry (H x 256)
  and Rx (W x 256) built once per image size (:func:`lowres_to_image_operator`). For a region of
  interest only its rows of Ry / Rx are used, and each of those rows has at most 3 nonzero taps, so
  only the matching window of the low-res mask is touched: the result equals the full-frame
  upsampled mask cropped to the region, to float rounding (about 1e-5 on logits), at a cost proportional
  to the region.
* The decoder is asked only for that window of each low-res mask (``mask_windows``: the token
  window covering the region, one common size per batch, see :func:`token_windows`); the mask
  head is per-token, so the window is exact and the per-prompt upscaling cost shrinks with it.

Resizing the image: SAM resizes with PIL's bilinear filter, which antialiases when shrinking. The
default here is OpenCV INTER_AREA when shrinking (INTER_LINEAR when enlarging, where PIL's
bilinear is plain bilinear: equal up to rounding, at most 1 grey level), the closest OpenCV filter:
on the 60 RoadAnomaly frames (1280x720 -> 1024x576) it differs from PIL by 0.53 grey levels on
average (max 29 at sharp edges), INTER_LINEAR by 0.83 (max 49). Cost per 1280x720 frame on the
2-core development machine (loaded): INTER_LINEAR 0.5 ms, INTER_AREA 3.8 ms, PIL 7.2 ms. ``resize="pil"`` (needs Pillow) reproduces
SAM's preprocessing exactly; next to a ~600 ms encoder the difference is in accuracy, not time.

Region of interest: the mask is computed inside the prompt box grown by ``roi_margin`` (default
0.25) times its width/height on each side, at least ``roi_min_margin_px`` (default 8), clipped to
the image. A box prompt asks SAM for the object in the box, so its mask is expected to lie mostly
inside it; the margin is for objects whose anomaly box is too tight (the box comes from a
score-map region, which can under-cover a thin or partly-scored object) and for SAM's soft
boundary. A mask reaching beyond the region is truncated at its border (``Segment.roi`` is that
region); ``counters["truncated_masks"]`` counts masks touching a region border that is not an
image border, the signal to raise the margin (not measurable here without real weights).
"""
import math
import time
from dataclasses import dataclass
from typing import ClassVar, List, Optional, Sequence

import cv2
import numpy as np

from s2m_ros.segmentation.config_check import check_fields
from s2m_ros.segmentation.segmenter import Segment, Segmenter
from s2m_ros.inference.backend import create_session, require_file

IMG_SIZE = 1024
LOW_RES = 256
PIXEL_MEAN = np.array([123.675, 116.28, 103.53], np.float32)  # RGB
PIXEL_STD = np.array([58.395, 57.12, 57.375], np.float32)
PAD_LABEL = -2.0  # batch padding: ignored exactly by the decoder
EXPORT_HINT = "s2m export mobilesam --checkpoint mobile_sam.pt --out-dir models/"
RESIZE_MODES = ("area", "linear", "pil")


def preprocess_shape(h, w, long_side=IMG_SIZE):
    """(h', w') of the image resized to ``long_side`` on its longest side (SAM's rounding)."""
    scale = long_side * 1.0 / max(h, w)
    return int(h * scale + 0.5), int(w * scale + 0.5)


def apply_coords(coords, original_size, long_side=IMG_SIZE):
    """Image pixel coordinates (..., 2) as (x, y) -> coordinates in the resized (1024) frame."""
    h, w = original_size
    nh, nw = preprocess_shape(h, w, long_side)
    out = np.array(coords, dtype=np.float64, copy=True)
    out[..., 0] *= nw / float(w)
    out[..., 1] *= nh / float(h)
    return out


def resize_longest(image, mode="area", long_side=IMG_SIZE):
    """Resize an HxWxC uint8 image so its longest side is ``long_side`` (see module doc for ``mode``).

    Every mode filters each channel independently, so BGR and RGB give the same channels.
    """
    h, w = image.shape[:2]
    nh, nw = preprocess_shape(h, w, long_side)
    image = np.ascontiguousarray(image)
    if (nh, nw) == (h, w):
        return image
    if mode == "pil":
        from PIL import Image

        return np.asarray(Image.fromarray(image).resize((nw, nh), Image.BILINEAR))
    shrink = nh < h or nw < w
    interp = cv2.INTER_AREA if (mode == "area" and shrink) else cv2.INTER_LINEAR
    return cv2.resize(image, (nw, nh), interpolation=interp)


def preprocess(image_bgr, mode="area"):
    """BGR uint8 HxWx3 -> (1x3x1024x1024 float32 RGB normalised and zero-padded, (h', w'))."""
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.dtype != np.uint8:
        raise ValueError("expected an HxWx3 uint8 BGR image, got %s %s" % (image_bgr.shape, image_bgr.dtype))
    resized = resize_longest(image_bgr, mode)
    nh, nw = resized.shape[:2]
    out = np.zeros((1, 3, IMG_SIZE, IMG_SIZE), np.float32)
    for c in range(3):  # RGB channel c is BGR channel 2 - c; (x - mean) / std as SAM, in float32
        dst = out[0, c, :nh, :nw]
        np.subtract(resized[:, :, 2 - c], PIXEL_MEAN[c], out=dst, dtype=np.float32, casting="unsafe")
        np.divide(dst, PIXEL_STD[c], out=dst, dtype=np.float32)
    return out, (nh, nw)


def bilinear_matrix(out_size, in_size):
    """(out_size x in_size) matrix of 1-D bilinear resampling, align_corners=False (torch/OpenCV rule)."""
    scale = in_size / float(out_size)
    src = np.maximum((np.arange(out_size, dtype=np.float64) + 0.5) * scale - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    frac = src - i0
    m = np.zeros((out_size, in_size), np.float64)
    rows = np.arange(out_size)
    np.add.at(m, (rows, i0), 1.0 - frac)
    np.add.at(m, (rows, i1), frac)
    return m


def lowres_to_image_operator(size, resized, low_res=LOW_RES, padded=IMG_SIZE):
    """SAM's mask upsampling along one axis as a (size x low_res) matrix.

    low_res -> padded (bilinear), keep the first ``resized`` samples (the unpadded image), then
    resized -> size (bilinear). Every row has at most 3 nonzero entries.
    """
    up = bilinear_matrix(padded, low_res)[:resized]
    return bilinear_matrix(size, resized) @ up


def _taps(op):
    """Banded form of an operator: (indices n x K int64, weights n x K float32), K = most nonzeros per row."""
    nz = op != 0
    k = int(nz.sum(axis=1).max())
    idx = np.argsort(~nz, axis=1, kind="stable")[:, :k]  # nonzero columns first, in column order
    wts = np.take_along_axis(op, idx, 1)
    idx = np.where(wts != 0, idx, idx[:, :1])  # unused taps: weight 0 on the first column
    return idx.astype(np.int64), wts.astype(np.float32)


def roi_for_box(box, image_size, margin=0.25, min_margin_px=8):
    """Region (x, y, w, h) around a prompt box: grown by ``margin`` x its size per side, clipped."""
    h_img, w_img = image_size
    x, y, w, h = (float(v) for v in box)
    mx = max(margin * max(w, 1.0), float(min_margin_px))
    my = max(margin * max(h, 1.0), float(min_margin_px))
    x0 = int(max(0, math.floor(x - mx)))
    y0 = int(max(0, math.floor(y - my)))
    x1 = int(min(w_img, math.ceil(x + w + mx)))
    y1 = int(min(h_img, math.ceil(y + h + my)))
    x0, y0 = min(x0, w_img - 1), min(y0, h_img - 1)
    return x0, y0, max(1, x1 - x0), max(1, y1 - y0)


class MaskUpsampler:
    """SAM's low-res -> image mask upsampling, restricted to regions (taps cached per image size).

    The separable operators are applied in banded form (at most 3 taps per output row/column):
    elementwise numpy on the region only, no BLAS call (whose thread pool makes small products
    erratic on a loaded 2-core machine).
    """

    def __init__(self):
        self._key = None
        self._taps = None

    def taps(self, image_size):
        h, w = (int(v) for v in image_size)
        if self._key != (h, w):
            nh, nw = preprocess_shape(h, w)
            self._taps = (_taps(lowres_to_image_operator(h, nh)), _taps(lowres_to_image_operator(w, nw)))
            self._key = (h, w)
        return self._taps

    def lowres_span(self, image_size, roi):
        """Low-res rows [a0, a1) and columns [b0, b1) that the region ``roi`` (x, y, w, h) depends on."""
        (iy, _), (ix, _) = self.taps(image_size)
        x, y, w, h = (int(v) for v in roi)
        return (int(iy[y:y + h].min()), int(iy[y:y + h].max()) + 1,
                int(ix[x:x + w].min()), int(ix[x:x + w].max()) + 1)

    def roi_logits(self, low_res_mask, image_size, roi, offset=(0, 0)):
        """Mask logits inside ``roi`` (x, y, w, h) at image resolution.

        ``low_res_mask`` is the 256x256 low-res mask or a window of it whose top-left element is
        at ``offset`` (row, col) of the 256x256 frame; it must cover :meth:`lowres_span`.
        """
        (iy, wy), (ix, wx) = self.taps(image_size)
        x, y, w, h = (int(v) for v in roi)
        iy, wy = iy[y:y + h] - int(offset[0]), wy[y:y + h]
        ix, wx = ix[x:x + w] - int(offset[1]), wx[x:x + w]
        if iy.min() < 0 or ix.min() < 0 or iy.max() >= low_res_mask.shape[0] or ix.max() >= low_res_mask.shape[1]:
            raise ValueError("low-res window at %s %s does not cover roi %s" % (offset, low_res_mask.shape, roi))
        b0 = int(ix.min())
        crop = low_res_mask[:, b0:int(ix.max()) + 1]  # only the low-res columns the region needs
        ix = ix - b0
        rows = wy[:, 0, None] * crop[iy[:, 0]]
        for k in range(1, iy.shape[1]):
            rows += wy[:, k, None] * crop[iy[:, k]]
        out = rows[:, ix[:, 0]] * wx[:, 0]
        for k in range(1, ix.shape[1]):
            out += rows[:, ix[:, k]] * wx[:, k]
        return out

    def full_logits(self, low_res_mask, image_size):
        """The whole frame (for comparison and tests)."""
        return self.roi_logits(low_res_mask, image_size, (0, 0, image_size[1], image_size[0]))


def token_windows(spans, grid=LOW_RES // 4):
    """Decoder ``mask_windows`` (N x 4: token row, col, rows, cols) covering low-res spans (a0, a1, b0, b1).

    The decoder computes masks on a common window size (the largest needed), placed per prompt so
    it covers the prompt's span and stays inside the 64x64 token grid (a token = 4x4 low-res pixels).
    """
    spans = np.asarray(spans, np.int64).reshape(-1, 4)
    t0 = spans[:, [0, 2]] // 4
    t1 = (spans[:, [1, 3]] + 3) // 4
    size = np.max(t1 - t0, axis=0)
    start = np.minimum(t0, grid - size)
    return np.concatenate([start, np.broadcast_to(size, start.shape)], axis=1).astype(np.int64)


def full_windows(n, grid=LOW_RES // 4):
    """``mask_windows`` for whole 256x256 low-res masks."""
    return np.tile(np.array([[0, 0, grid, grid]], np.int64), (int(n), 1))


def prompt_points(prompts, image_size, use_point=True, use_negative_points=True):
    """Decoder inputs for a list of prompts: (coords N x P x 2 in the 1024 frame, labels N x P).

    Per prompt: the positive point (label 1), the negative points (0), the box corners (2, 3);
    shorter point sets are padded with label -2 (ignored by the decoder, so each prompt's result
    does not depend on the others in the batch).
    """
    rows = []
    for p in prompts:
        pts, lbl = [], []
        if use_point and p.point is not None:
            pts.append(p.point)
            lbl.append(1.0)
        if use_negative_points:
            for q in p.negative_points or ():
                pts.append(q)
                lbl.append(0.0)
        x, y, w, h = p.box
        pts += [(x, y), (x + max(w, 1) - 1, y + max(h, 1) - 1)]
        lbl += [2.0, 3.0]
        rows.append((pts, lbl))
    n_pts = max(len(r[1]) for r in rows)
    coords = np.zeros((len(rows), n_pts, 2), np.float64)
    labels = np.full((len(rows), n_pts), PAD_LABEL, np.float32)
    for i, (pts, lbl) in enumerate(rows):
        coords[i, :len(pts)] = pts
        labels[i, :len(lbl)] = lbl
    return apply_coords(coords, image_size).astype(np.float32), labels


@dataclass
class MobileSamOptions:
    """The keyword options of :class:`MobileSamSegmenter` (the pipeline's ``mobilesam:`` mapping), with
    the same defaults; checked when the pipeline configuration is made."""

    multimask: bool = True
    mask_threshold: float = 0.0
    roi_margin: float = 0.25
    roi_min_margin_px: int = 8
    resize: str = "area"
    use_point: bool = True
    use_negative_points: bool = True
    providers: Optional[Sequence[str]] = None
    max_batch: int = 16

    # field -> rule (s2m_ros.segmentation.config_check); the types come from the annotations above
    RULES: ClassVar[dict] = {"roi_margin": "[0, inf)", "roi_min_margin_px": "[0, inf)", "resize": RESIZE_MODES,
                             "max_batch": "[1, inf)"}

    def __post_init__(self):
        check_fields(self)


class MobileSamSegmenter(Segmenter):
    """Segmenter on MobileSAM encoder + batched decoder ONNX graphs (see module doc).

    ``threads``: intra-op threads per session (0 = runtime default). ``multimask``: pick the best
    of SAM's three multimask outputs by predicted IoU (else the single-mask output).
    ``mask_threshold``: on the mask logits (SAM: 0). ``roi_margin``/``roi_min_margin_px``: region
    around each prompt box in which the mask is produced. ``resize``: "area" (default), "linear"
    or "pil" (exact SAM, needs Pillow). ``use_point``/``use_negative_points``: which prompt points
    go to the decoder besides the box. ``max_batch``: most prompts per decoder call (the decoder
    needs about 20 MB of working memory per prompt).
    """

    name = "mobilesam"

    def __init__(self, encoder_path, decoder_path, backend="onnxruntime", threads=0, multimask=True,
                 mask_threshold=0.0, roi_margin=0.25, roi_min_margin_px=8, resize="area",
                 use_point=True, use_negative_points=True, providers=None, max_batch=16):
        if resize not in RESIZE_MODES:
            raise ValueError("resize must be one of %s, got %r" % (", ".join(RESIZE_MODES), resize))
        if roi_margin < 0 or roi_min_margin_px < 0:
            raise ValueError("roi_margin and roi_min_margin_px must be >= 0")
        if int(max_batch) < 1:
            raise ValueError("max_batch must be >= 1")
        self.max_batch = int(max_batch)
        require_file(encoder_path, EXPORT_HINT)
        require_file(decoder_path, EXPORT_HINT)
        self.encoder = create_session(encoder_path, backend=backend, providers=providers, threads=threads,
                                      hint=EXPORT_HINT)
        self.decoder = create_session(decoder_path, backend=backend, providers=providers, threads=threads,
                                      hint=EXPORT_HINT)
        self._check_graphs()
        self.multimask = bool(multimask)
        self.mask_threshold = float(mask_threshold)
        self.roi_margin = float(roi_margin)
        self.roi_min_margin_px = int(roi_min_margin_px)
        self.resize = resize
        self.use_point = bool(use_point)
        self.use_negative_points = bool(use_negative_points)
        self.upsampler = MaskUpsampler()
        self._cache = None  # (frame_id, image copy or None, embedding, image shape)
        self.counters = {"encoder_runs": 0, "decoder_runs": 0, "embedding_cache_hits": 0, "truncated_masks": 0}
        self.timings = {}  # seconds spent in the last call: preprocess, encoder (0 when cached), decoder, postprocess

    def _check_graphs(self):
        want_enc, want_dec = {"image"}, {"image_embeddings", "point_coords", "point_labels", "mask_windows"}
        if not want_enc <= set(self.encoder.input_names):
            raise ValueError("%s is not a MobileSAM encoder graph (inputs %s)" % (self.encoder.name,
                                                                                 self.encoder.input_names))
        if not want_dec <= set(self.decoder.input_names):
            raise ValueError("%s is not a batched MobileSAM decoder graph (inputs %s); re-export with: %s"
                             % (self.decoder.name, self.decoder.input_names, EXPORT_HINT))

    def embed(self, image, frame_id=None):
        """1x256x64x64 image embedding of a BGR uint8 frame, computed once per frame.

        Reused while the same ``frame_id`` (if given) or, without one, an image with equal content
        is passed again.
        """
        image = np.asarray(image)
        c = self._cache
        if c is not None and c[3] == image.shape:
            if (frame_id is not None and c[0] == frame_id) or \
                    (frame_id is None and c[1] is not None and np.array_equal(c[1], image)):
                self.counters["embedding_cache_hits"] += 1
                self.timings.update(preprocess=0.0, encoder=0.0)
                return c[2]
        t0 = time.perf_counter()
        x, _ = preprocess(image, self.resize)
        t1 = time.perf_counter()
        emb = self.encoder.run({"image": x})["image_embeddings"]
        t2 = time.perf_counter()
        self.counters["encoder_runs"] += 1
        self.timings.update(preprocess=t1 - t0, encoder=t2 - t1)
        self._cache = (frame_id, None if frame_id is not None else image.copy(), emb, image.shape)
        return emb

    def decode(self, embedding, prompts, image_size, windows=None):
        """One batched decoder call: (low-res masks N x 4 x h x w, IoU predictions N x 4).

        ``windows`` (N x 4 token windows, see :func:`token_windows`) restrict the masks to a window
        of the 256x256 low-res frame; None gives whole 256x256 masks.
        """
        coords, labels = prompt_points(prompts, image_size, self.use_point, self.use_negative_points)
        if windows is None:
            windows = full_windows(len(prompts))
        out = self.decoder.run({"image_embeddings": embedding, "point_coords": coords, "point_labels": labels,
                                "mask_windows": np.asarray(windows, np.int64)})
        self.counters["decoder_runs"] += 1
        return out["low_res_masks"], out["iou_predictions"]

    def select(self, iou):
        """Index of the mask per prompt: best predicted IoU among the multimask outputs, or 0."""
        if self.multimask:
            return 1 + np.argmax(iou[:, 1:], axis=1)
        return np.zeros(iou.shape[0], np.int64)

    def regions(self, prompts, image_size):
        """Per prompt: the region of interest (image pixels) and the decoder token windows covering them."""
        rois = [roi_for_box(p.box, image_size, self.roi_margin, self.roi_min_margin_px) for p in prompts]
        windows = token_windows([self.upsampler.lowres_span(image_size, r) for r in rois])
        return rois, windows

    def segment(self, image, score_map=None, prompts: Sequence = (), frame_id=None) -> List[Segment]:
        """One Segment per prompt with a non-empty mask (``score_map`` is not used by SAM)."""
        prompts = list(prompts)
        if not prompts:
            return []
        size = image.shape[:2]
        emb = self.embed(image, frame_id)
        t0 = time.perf_counter()
        t_post = 0.0
        segments = []
        for start in range(0, len(prompts), self.max_batch):  # one decoder call unless > max_batch prompts
            chunk = prompts[start:start + self.max_batch]
            rois, windows = self.regions(chunk, size)
            low, iou = self.decode(emb, chunk, size, windows)
            t1 = time.perf_counter()
            for s in self.postprocess(low, iou, size, rois, windows):
                s.prompt_index += start
                segments.append(s)
            t_post += time.perf_counter() - t1
        self.timings.update(decoder=time.perf_counter() - t0 - t_post, postprocess=t_post)
        return segments

    def postprocess(self, low_res_masks, iou, image_size, rois, windows):
        """Pick a mask per prompt, upsample it inside its region, threshold."""
        pick = self.select(iou)
        segments = []
        for i, roi in enumerate(rois):
            offset = (4 * int(windows[i, 0]), 4 * int(windows[i, 1]))
            logits = self.upsampler.roi_logits(low_res_masks[i, pick[i]], image_size, roi, offset)
            mask = logits > self.mask_threshold
            if mask.any():
                if _touches_inner_border(mask, roi, image_size):
                    self.counters["truncated_masks"] += 1
                segments.append(Segment(i, roi, mask, float(iou[i, pick[i]])))
        return segments


def _touches_inner_border(mask, roi, image_size):
    """True if the mask reaches a side of its region that is not a side of the image."""
    x, y, w, h = roi
    return bool((x > 0 and mask[:, 0].any()) or (y > 0 and mask[0].any())
                or (x + w < image_size[1] and mask[:, -1].any()) or (y + h < image_size[0] and mask[-1].any()))
