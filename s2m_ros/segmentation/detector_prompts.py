"""Prompts from an object detector that runs on score maps (the official S2M's choice).

S2M trains a box detector (Faster R-CNN) on anomaly score maps rendered as images and uses its
boxes as SAM prompts. This adapter lets any such detector, exported to ONNX, replace the
threshold-free level-set generator (:class:`s2m_ros.segmentation.prompts.LevelSetPromptGenerator`): it
renders the map as the detector expects (normalisation, channels, size), runs it, decodes the
boxes whatever their layout, maps them back to score-map pixels, filters by the detector's own
confidence, suppresses duplicates and caps the count. The positive point of each prompt is the
highest-scoring pixel inside its box.

Output layouts understood (``output_format``):
- ``boxes_scores``: two outputs, boxes (N x 4, optionally with a leading batch dim of 1) and
  scores (N) — torchvision / Detectron-style exports. Extra outputs (labels) are ignored.
- ``detections``: one output N x 5+ (or 1 x N x 5+): box (4 values), confidence, [class, ...].
Box encodings (``box_format``): ``xyxy``, ``xywh`` (top-left + size) or ``cxcywh``; absolute
detector-input pixels, or fractions of the input size when ``normalized_boxes``.
"""
import math
from dataclasses import dataclass, field
from typing import ClassVar, List, Sequence

import cv2
import numpy as np

from s2m_ros.segmentation.config_check import check_fields
from s2m_ros.segmentation.prompts import Prompt, nms
from s2m_ros.inference.backend import create_session

OUTPUT_FORMATS = ("boxes_scores", "detections")
BOX_FORMATS = ("xyxy", "xywh", "cxcywh")
NORMALIZATIONS = ("minmax", "robust", "none")


@dataclass
class DetectorConfig:
    model: str = ""
    # Detector input size; 0 = the model's fixed input size (required when the model's is dynamic
    # and these are 0: then the map is fed at its own size).
    input_width: int = 0
    input_height: int = 0
    # The map is rendered as a C-channel image (S2M's detector sees a 3-channel heat-map image).
    channels: int = 3
    # How the map is brought to a fixed range before ``scale``/``mean``/``std``:
    # minmax -> [0, 1] over the finite pixels; robust -> (x - median) / (1.4826 MAD), then clipped
    # to [-clip, clip] and mapped to [0, 1]; none -> raw values.
    normalize: str = "minmax"
    robust_clip: float = 6.0
    scale: float = 1.0
    mean: Sequence[float] = field(default_factory=lambda: [0.0])
    std: Sequence[float] = field(default_factory=lambda: [1.0])
    output_format: str = "boxes_scores"
    boxes_output: str = ""  # output name; "" = the first output
    scores_output: str = ""  # output name; "" = the second output
    box_format: str = "xyxy"
    normalized_boxes: bool = False
    # The detector's own confidence below which a box is not a prompt (a property of the detector,
    # calibrated once with it, not of the score map).
    min_confidence: float = 0.5
    nms_iou: float = 0.5
    max_prompts: int = 10

    # field -> rule (s2m_ros.segmentation.config_check); the types come from the annotations above
    RULES: ClassVar[dict] = {
        "input_width": "[0, inf)", "input_height": "[0, inf)", "channels": "[1, inf)", "normalize": NORMALIZATIONS,
        "robust_clip": "(0, inf)", "std": lambda v: "has a 0 (values must be non-zero)" if 0 in v else None,
        "output_format": OUTPUT_FORMATS, "box_format": BOX_FORMATS, "nms_iou": "[0, 1]", "max_prompts": "[1, inf)",
    }  # min_confidence: any finite number (the detector's own confidence scale)

    def __post_init__(self):
        check_fields(self)

    def validate(self):
        for name, value, allowed in (("output_format", self.output_format, OUTPUT_FORMATS),
                                     ("box_format", self.box_format, BOX_FORMATS),
                                     ("normalize", self.normalize, NORMALIZATIONS)):
            if value not in allowed:
                raise ValueError("detector %s must be one of %s, got %r" % (name, allowed, value))
        if self.channels < 1:
            raise ValueError("detector channels must be >= 1, got %d" % self.channels)


def render_map(score_map, config: DetectorConfig, size):
    """The score map as a 1 x C x H x W float32 detector input (NaN -> the map's minimum)."""
    s = np.asarray(score_map, dtype=np.float32)
    finite = np.isfinite(s)
    if not finite.any():
        x = np.zeros_like(s)
    else:
        vals = s[finite]
        if config.normalize == "minmax":
            lo, hi = float(vals.min()), float(vals.max())
            x = (s - lo) / (hi - lo) if hi > lo else np.zeros_like(s)
        elif config.normalize == "robust":
            med = float(np.median(vals))
            mad = 1.4826 * float(np.median(np.abs(vals - med)))
            c = config.robust_clip
            x = (np.clip((s - med) / (mad if mad > 0 else 1.0), -c, c) + c) / (2 * c)
        else:
            x = s.copy()
        x = np.where(finite, x, np.nanmin(np.where(finite, x, np.nan))).astype(np.float32)
    w, h = size
    if (w, h) != (s.shape[1], s.shape[0]):
        x = cv2.resize(x, (w, h), interpolation=cv2.INTER_LINEAR)
    x = x * np.float32(config.scale)
    c = config.channels
    mean = np.resize(np.asarray(config.mean, dtype=np.float32), c).reshape(c, 1, 1)
    std = np.resize(np.asarray(config.std, dtype=np.float32), c).reshape(c, 1, 1)
    return ((x[None] - mean) / std)[None].astype(np.float32)


def decode_boxes(raw, config: DetectorConfig, input_size):
    """(N x 4) boxes in detector-input pixels as x0, y0, x1, y1."""
    b = np.asarray(raw, dtype=np.float64).reshape(-1, 4)
    if config.box_format == "xywh":
        b = np.stack([b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]], axis=1)
    elif config.box_format == "cxcywh":
        b = np.stack([b[:, 0] - b[:, 2] / 2, b[:, 1] - b[:, 3] / 2,
                      b[:, 0] + b[:, 2] / 2, b[:, 1] + b[:, 3] / 2], axis=1)
    if config.normalized_boxes:
        b = b * np.array([input_size[0], input_size[1], input_size[0], input_size[1]], dtype=np.float64)
    return b


class OnnxDetectorPromptGenerator:
    """``gen(score_map) -> List[Prompt]`` from a detector exported to ONNX."""

    name = "detector"

    def __init__(self, config: DetectorConfig, backend="onnxruntime", threads=0):
        config.validate()
        self.config = config
        self.session = create_session(config.model, backend=backend, threads=threads,
                                                 hint="export your score-map detector to ONNX")
        if len(self.session.input_names) != 1:
            raise ValueError("a score-map detector must have exactly one input, %s has %s"
                             % (config.model, self.session.input_names))
        self._input = self.session.input_names[0]
        shape = self.session.input_shapes[self._input]
        if len(shape) != 4:
            raise ValueError("detector input %r must be N x C x H x W, got %s" % (self._input, shape))
        if isinstance(shape[1], int) and shape[1] != config.channels:
            raise ValueError("detector input has %d channels, config says %d" % (shape[1], config.channels))
        fixed = [d if isinstance(d, int) and d > 0 else 0 for d in shape[2:]]
        self._size = (config.input_width or fixed[1], config.input_height or fixed[0])
        outs = self.session.output_names
        need = 1 if config.output_format == "detections" else 2
        if len(outs) < need:
            raise ValueError("output_format %r needs %d outputs, the model has %s"
                             % (config.output_format, need, outs))
        self._boxes = config.boxes_output or outs[0]
        self._scores = config.scores_output or (outs[1] if need == 2 else "")
        for n in (self._boxes, self._scores):
            if n and n not in outs:
                raise ValueError("detector output %r not in the model's outputs %s" % (n, outs))

    def __call__(self, score_map) -> List[Prompt]:
        s = np.asarray(score_map, dtype=np.float32)
        if s.ndim != 2 or s.size == 0:
            raise ValueError("score map must be a non-empty 2-D array, got shape %s" % (s.shape,))
        h, w = s.shape
        size = (self._size[0] or w, self._size[1] or h)
        out = self.session.run({self._input: render_map(s, self.config, size)})
        if self.config.output_format == "detections":
            det = np.asarray(out[self._boxes], dtype=np.float64)
            det = det.reshape(-1, det.shape[-1])
            if det.shape[1] < 5:
                raise ValueError("'detections' output must have >= 5 values per row, got %d" % det.shape[1])
            raw, conf = det[:, :4], det[:, 4]
        else:
            raw = out[self._boxes]
            conf = np.asarray(out[self._scores], dtype=np.float64).reshape(-1)
        boxes = decode_boxes(raw, self.config, size)
        if boxes.shape[0] != conf.shape[0]:
            raise ValueError("detector returned %d boxes but %d scores" % (boxes.shape[0], conf.shape[0]))
        sx, sy = w / float(size[0]), h / float(size[1])
        prompts = []
        ok = np.isfinite(conf) & np.isfinite(boxes).all(axis=1) & (conf >= self.config.min_confidence)
        filled = np.where(np.isfinite(s), s, -np.inf)
        for (x0, y0, x1, y1), c in zip(boxes[ok], conf[ok]):
            bx0 = int(np.clip(math.floor(x0 * sx), 0, w))
            by0 = int(np.clip(math.floor(y0 * sy), 0, h))
            bx1 = int(np.clip(math.ceil(x1 * sx), 0, w))
            by1 = int(np.clip(math.ceil(y1 * sy), 0, h))
            if bx1 <= bx0 or by1 <= by0:
                continue
            crop = filled[by0:by1, bx0:bx1]
            py, px = divmod(int(np.argmax(crop)), crop.shape[1])
            peak = float(crop[py, px])
            prompts.append(Prompt(box=(bx0, by0, bx1 - bx0, by1 - by0), point=(bx0 + px, by0 + py),
                                  peak=peak if math.isfinite(peak) else math.nan,
                                  prominence=float(c), area=(bx1 - bx0) * (by1 - by0),
                                  confidence=float(c), source="detector"))
        return nms(prompts, self.config.nms_iou)[: self.config.max_prompts]
