"""Anomaly scorer over any ONNX segmentation / anomaly model ("bring your own ONNX"); no torch.

A :class:`ScorerConfig` says how to feed the model and read it:

* input: resize the BGR frame to ``input_width`` x ``input_height`` (``interpolation``; 0 x 0 =
  the frame's own size, only for models with a dynamic input), reorder channels
  (``channel_order``), multiply the raw 0..255 values by ``scale``, then ``(x - mean) / std``
  per channel (in the model's channel order), NCHW float32.
* output: ``output`` (name or index) is either per-class ``logits`` (1xCxhxw or Cxhxw) turned
  into a score by ``method`` (:func:`s2m_ros.segmentation.scores.score_from_logits`, over the
  ``id_channels`` in-distribution classes), or already a ``score`` map (1xhxw, 1x1xhxw or hxw)
  used as is (negated when ``invert``: for maps where higher = normal), or, for
  ``mask_classification`` models (Mask2Former / Mask2Anomaly form), the per-query class logits
  (``output``: 1xQxC or QxC, last class "no object") read together with the per-query mask logits
  (``mask_output``: 1xQxhxw or Qxhxw) by
  :func:`s2m_ros.segmentation.scores.mask_classification_score` (``method`` msp, maxlogit or rba).
  The output may have a
  lower resolution than the input (e.g. stride 8); :meth:`ModelScorer.score` returns the map at
  the model's output resolution and the caller resizes (:func:`resize_score`).

Non-finite model output is never passed on silently: :meth:`ModelScorer.score`,
:meth:`~ModelScorer.logits` and :meth:`~ModelScorer.id_logits` raise
:class:`NonFiniteOutputError` (a ``RuntimeError`` with ``count``/``total``) when the model
output (restricted to what the score uses) holds NaN or inf, so a node can count it and skip
the frame.

Presets: the published ESPNet takes BGR, ``(x - mean) / std``, resize to 1024x512, then ``/255``;
every step is linear (resizing commutes with per-channel affine maps), so it equals resize ->
``x / 255`` -> ``(x - mean/255) / std``, which is what ``PRESETS['espnet']`` encodes. ESPNetv2
takes RGB in [0, 1] normalised with the ImageNet mean/std. Both output 20 channels at the input
resolution, of which the first 19 are the Cityscapes classes. The presets resize with
``interpolation='area'`` (pixel-area averaging): the networks were trained on Cityscapes frames
halved from 2048x1024, where bilinear and area resizing coincide, and for camera frames that
are not an exact multiple (1280x720 -> 1024x512) area averaging avoids aliasing. It also
reproduces the independently measured RoadAnomaly MSP reference of ESPNet more closely than
OpenCV's bilinear resize of the original ESPNet script (AUROC 0.528 vs 0.522, both AP ~10 %).
"""
import dataclasses
import json
import os
from dataclasses import dataclass
from typing import ClassVar, Optional, Sequence, Union

import cv2
import numpy as np

from s2m_ros.segmentation.scores import (MASK_CLASSIFICATION_METHODS, SMLStats, mask_classification_score,  # noqa: F401
                                         resize_score, score_from_logits, smooth)  # (resize_score re-exported)
from s2m_ros.inference.backend import create_session
from s2m_ros.segmentation.config_check import PipelineConfigError, check_fields

METHODS = ("msp", "maxlogit", "entropy", "energy", "sml")
# every method name a config may hold (which ones fit depends on output_kind: checked by validate)
ALL_METHODS = METHODS + tuple(m for m in MASK_CLASSIFICATION_METHODS if m not in METHODS) + ("score_map",)
OUTPUT_KINDS = ("logits", "score", "mask_classification")
CHANNEL_ORDERS = ("bgr", "rgb")
INTERPOLATIONS = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST}
DEFAULT_HINT = "s2m export espnet --weights espnet_p_2_q_8.pth --out %s"


class ScorerConfigError(PipelineConfigError):
    """The configuration is invalid, or does not fit the model's inputs/outputs (a PipelineConfigError)."""


class NonFiniteOutputError(RuntimeError):
    """The model produced NaN or inf; ``count`` of ``total`` values were not finite."""

    def __init__(self, name, count, total):
        self.count = int(count)
        self.total = int(total)
        super().__init__("%s: model output has %d non-finite value(s) out of %d" % (name, self.count, self.total))


@dataclass
class ScorerConfig:
    model: str = ""
    input_width: int = 1024  # 0 (with input_height 0) = feed the frame at its own size (dynamic models)
    input_height: int = 512
    interpolation: str = "area"  # input resize: 'area', 'linear' or 'nearest'
    channel_order: str = "bgr"  # channel order the model expects
    scale: float = 1.0 / 255.0  # applied to raw 0..255 values first
    mean: Sequence[float] = (0.0, 0.0, 0.0)  # after scale, in the model's channel order
    std: Sequence[float] = (1.0, 1.0, 1.0)
    output: Union[str, int] = 0  # output name or index
    output_kind: str = "logits"  # 'logits' (per class), 'score' (one map) or 'mask_classification'
    mask_output: Union[str, int] = 1  # mask_classification: the per-query mask logits (name or index)
    # In-distribution channels of a logits output: None = all, an int N = the first N, or indices.
    id_channels: Optional[Union[int, Sequence[int]]] = None
    method: str = "msp"
    temperature: float = 1.0  # for 'energy'
    sml_stats: str = ""  # JSON written by core.scores.SMLStats.save (for 'sml')
    invert: bool = False  # negate a 'score' output whose higher values mean normal
    smooth_sigma: float = 0.0  # Gaussian smoothing of the score map, in output pixels

    # field -> rule (s2m_ros.segmentation.config_check); the types come from the annotations above.
    # Rules between fields (input size, method vs output_kind, sml_stats) are checked by validate().
    RULES: ClassVar[dict] = {
        "input_width": "[0, inf)", "input_height": "[0, inf)", "interpolation": tuple(INTERPOLATIONS),
        "channel_order": CHANNEL_ORDERS, "scale": lambda v: None if v != 0 else "is not a non-zero number",
        "mean": lambda v: _channel_values(v), "std": lambda v: _channel_values(v, nonzero=True),
        "output": lambda v: _output_ref(v), "mask_output": lambda v: _output_ref(v), "output_kind": OUTPUT_KINDS,
        "id_channels": lambda v: _id_channels_problem(v), "method": ALL_METHODS, "temperature": "(0, inf)",
        "smooth_sigma": "[0, inf)",
    }

    def __post_init__(self):
        check_fields(self, error=ScorerConfigError)

    def validate(self):
        """Return self, or raise :class:`ScorerConfigError` naming the bad parameter."""
        check_fields(self, error=ScorerConfigError)  # again: fields may have been set since construction

        def bad(name, allowed):
            raise ScorerConfigError("scorer.%s=%r is invalid: %s" % (name, getattr(self, name), allowed))

        for name in ("input_width", "input_height"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 0:
                bad(name, "expected an integer >= 0")
        if (self.input_width == 0) != (self.input_height == 0):
            raise ScorerConfigError("scorer.input_width and input_height must both be 0 (own size) or both > 0")
        if self.interpolation not in INTERPOLATIONS:
            bad("interpolation", "expected one of %s" % ", ".join(INTERPOLATIONS))
        if self.channel_order not in CHANNEL_ORDERS:
            bad("channel_order", "expected one of %s" % ", ".join(CHANNEL_ORDERS))
        if not (np.isfinite(self.scale) and self.scale != 0):
            bad("scale", "expected a finite non-zero number")
        for name in ("mean", "std"):
            v = np.asarray(getattr(self, name), dtype=np.float64)
            if v.shape not in ((1,), (3,)) or not np.isfinite(v).all():
                bad(name, "expected 1 or 3 finite numbers")
        if np.any(np.asarray(self.std, dtype=np.float64) == 0):
            bad("std", "values must be non-zero")
        if self.output_kind not in OUTPUT_KINDS:
            bad("output_kind", "expected one of %s" % ", ".join(OUTPUT_KINDS))
        if not isinstance(self.output, (str, int, np.integer)) or isinstance(self.output, bool):
            bad("output", "expected an output name or index")
        if self.output_kind == "logits" and self.method not in METHODS:
            bad("method", "expected one of %s" % ", ".join(METHODS))
        if self.output_kind == "mask_classification":
            if self.method not in MASK_CLASSIFICATION_METHODS:
                bad("method", "a mask_classification model takes one of %s" % ", ".join(MASK_CLASSIFICATION_METHODS))
            if not isinstance(self.mask_output, (str, int, np.integer)) or isinstance(self.mask_output, bool):
                bad("mask_output", "expected an output name or index")
            if self.mask_output == self.output:
                bad("mask_output", "must differ from scorer.output (the class logits)")
        if self.method == "sml" and self.output_kind == "logits" and not self.sml_stats:
            raise ScorerConfigError("scorer.method='sml' needs scorer.sml_stats (fit them with `s2m fit-sml`)")
        if not (np.isfinite(self.temperature) and self.temperature > 0):
            bad("temperature", "expected a number > 0")
        if not (np.isfinite(self.smooth_sigma) and self.smooth_sigma >= 0):
            bad("smooth_sigma", "expected a number >= 0")
        ids = self.id_channels
        if ids is not None:
            if isinstance(ids, bool):
                bad("id_channels", "expected None, a count or a list of channel indices")
            if isinstance(ids, (int, np.integer)):
                if ids < 1:
                    bad("id_channels", "a channel count must be >= 1")
            else:
                try:
                    idx = [int(i) for i in ids]
                except (TypeError, ValueError):
                    bad("id_channels", "expected None, a count or a list of channel indices")
                if not idx or min(idx) < 0 or len(set(idx)) != len(idx):
                    bad("id_channels", "indices must be distinct and >= 0")
        return self

    def channel_index(self):
        """The in-distribution channels as a slice or index list (None = all)."""
        ids = self.id_channels
        if ids is None:
            return None
        if isinstance(ids, (int, np.integer)):
            return slice(0, int(ids))
        return [int(i) for i in ids]


def _channel_values(v, nonzero=False):
    if len(v) not in (1, 3):
        return "is not 1 or 3 numbers (one per channel, or one for all)"
    if nonzero and 0 in v:
        return "has a 0 (values must be non-zero)"
    return None


def _output_ref(v):
    return "is not an output name or an index >= 0" if isinstance(v, int) and v < 0 else None


def _id_channels_problem(v):
    if isinstance(v, int) and v < 1:
        return "is not a channel count >= 1 (or a list of channel indices, or null for all)"
    if isinstance(v, tuple) and (not v or min(v) < 0 or len(set(v)) != len(v)):
        return "is not a list of distinct channel indices >= 0"
    return None


PRESETS = {
    # ESPNet: ((bgr - m) / s) resized, / 255  ==  resize, bgr / 255, (x - m / 255) / s
    "espnet": ScorerConfig(input_width=1024, input_height=512, channel_order="bgr", scale=1.0 / 255.0,
                           mean=(72.3923111 / 255.0, 82.90893555 / 255.0, 73.15840149 / 255.0),
                           std=(45.3192215, 46.15289307, 44.91483307), output="logits",
                           output_kind="logits", id_channels=19, method="msp"),
    "espnetv2": ScorerConfig(input_width=1024, input_height=512, channel_order="rgb", scale=1.0 / 255.0,
                             mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), output="logits",
                             output_kind="logits", id_channels=19, method="msp"),
}


def config_for_model(path, **overrides):
    """A config for an exported model, from the ``<path>.json`` sidecar ``s2m export`` writes.

    Raises :class:`ScorerConfigError` when there is no sidecar or it names no known preset
    (then build a :class:`ScorerConfig` by hand).
    """
    side = str(path) + ".json"
    try:
        with open(side) as f:
            info = json.load(f)
    except (OSError, ValueError) as exc:
        raise ScorerConfigError("no readable preprocessing sidecar %s (%s); give a ScorerConfig" % (side, exc))
    preset = info.get("preset")
    if preset not in PRESETS:
        raise ScorerConfigError("%s names unknown preset %r (known: %s)" % (side, preset, ", ".join(PRESETS)))
    values = dict(model=str(path))
    for key in ("input_width", "input_height"):
        if isinstance(info.get(key), int):
            values[key] = info[key]
    values.update(overrides)
    return dataclasses.replace(PRESETS[preset], **values)


def prepare_input(image_bgr, config, size=None, dtype=np.float32):
    """The model input for one frame: resize to ``size`` (W, H; None = keep), channel order,
    ``x * scale``, ``(x - mean) / std`` -> 1x3xHxW ``dtype``."""
    img = np.asarray(image_bgr)
    if img.ndim != 3 or img.shape[2] != 3 or min(img.shape[:2]) < 1:
        raise ValueError("expected an HxWx3 BGR image, got shape %s" % (img.shape,))
    x = img.astype(np.float32)  # resize in float, as the reference scripts do
    if size is not None and (x.shape[1], x.shape[0]) != tuple(size):
        x = cv2.resize(x, (int(size[0]), int(size[1])), interpolation=INTERPOLATIONS[config.interpolation])
    if config.channel_order == "rgb":
        x = x[:, :, ::-1]
    mean = np.asarray(config.mean, dtype=np.float32).reshape(-1) * np.ones(3, np.float32)
    std = np.asarray(config.std, dtype=np.float32).reshape(-1) * np.ones(3, np.float32)
    # x * scale, then (x - mean) / std  ==  x * gain + offset (one pass over the image)
    x = x * (np.float32(config.scale) / std) + (-mean / std)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=dtype)


def _dim(d):
    return int(d) if isinstance(d, (int, np.integer)) and int(d) > 0 else None


def _unbatched(dims, rank):
    """``dims`` without a leading batch dimension of 1 (or unknown) when it has ``rank + 1`` entries;
    None when the result does not have ``rank`` entries."""
    if len(dims) == rank + 1 and dims[0] in (None, 1):
        dims = dims[1:]
    return list(dims) if len(dims) == rank else None


class ModelScorer:
    """Runs an ONNX model on BGR frames and turns its output into an anomaly score map.

    The model is opened and its input/output shapes are checked against the config at
    construction: a missing file raises ``ModelFileError`` (with the export command), a model
    that does not fit raises :class:`ScorerConfigError`.
    """

    def __init__(self, config: ScorerConfig, backend: str = "onnxruntime", threads: int = 0,
                 providers=None, hint: str = ""):
        self.config = config = dataclasses.replace(config)
        config.validate()
        self.sml = SMLStats.load(config.sml_stats) if (config.method == "sml" and config.output_kind == "logits") \
            else None
        self.session = create_session(config.model, backend=backend, providers=providers, threads=threads,
                                      hint=hint or DEFAULT_HINT % (config.model or "model.onnx"))
        self._check_input()
        self._check_output()
        self._channels = config.channel_index()
        stem = os.path.splitext(os.path.basename(str(config.model)))[0]
        self.name = "%s/%s" % (stem, "score" if config.output_kind == "score" else config.method)

    # ------------------------------------------------------------------ start-up checks
    def _check_input(self):
        s = self.session
        if len(s.input_names) != 1:
            raise ScorerConfigError("%s has %d inputs %s; the scorer feeds one image input" % (
                self.config.model, len(s.input_names), s.input_names))
        self.input_name = s.input_names[0]
        shape = list(s.input_shapes[self.input_name])
        if len(shape) != 4:
            raise ScorerConfigError("%s input %r has shape %s; expected N x 3 x H x W" % (
                self.config.model, self.input_name, shape))
        n, c, h, w = (_dim(d) for d in shape)
        if n not in (None, 1) or c not in (None, 3):
            raise ScorerConfigError("%s input %r has shape %s; expected 1 x 3 x H x W" % (
                self.config.model, self.input_name, shape))
        cw, ch = self.config.input_width, self.config.input_height
        if h is not None and w is not None:
            if (cw, ch) == (0, 0):
                cw, ch = w, h
            elif (w, h) != (cw, ch):
                raise ScorerConfigError(
                    "%s has a fixed input of %dx%d (WxH) but scorer.input_width x input_height is %dx%d" % (
                        self.config.model, w, h, cw, ch))
        elif h is not None or w is not None:
            fixed_ok = (h is None or h == ch) and (w is None or w == cw)
            if not fixed_ok or (cw, ch) == (0, 0):
                raise ScorerConfigError("%s input %r has shape %s, which does not fit %dx%d (WxH)" % (
                    self.config.model, self.input_name, shape, cw, ch))
        self.input_size = (cw, ch) if cw else None  # None = the frame's own size
        itype = getattr(s, "input_types", {}).get(self.input_name, "tensor(float)")
        if itype not in ("tensor(float)", "tensor(float16)"):
            raise ScorerConfigError("%s input %r is %s; expected float32 or float16" % (
                self.config.model, self.input_name, itype))
        self._input_dtype = np.float16 if itype == "tensor(float16)" else np.float32

    def _resolve_output(self, out, key="output"):
        s, cfg = self.session, self.config
        if isinstance(out, str):
            if out not in s.output_names:
                if out == "logits" and len(s.output_names) == 1:
                    return s.output_names[0]  # a single-output model, whatever its output is called
                raise ScorerConfigError("%s has no output %r (scorer.%s; outputs: %s)" % (
                    cfg.model, out, key, s.output_names))
            return out
        if not 0 <= int(out) < len(s.output_names):
            raise ScorerConfigError("%s has %d output(s); scorer.%s=%d is out of range" % (
                cfg.model, len(s.output_names), key, int(out)))
        return s.output_names[int(out)]

    def _check_output(self):
        s, cfg = self.session, self.config
        out = self.output_name = self._resolve_output(cfg.output)
        shape = getattr(s, "output_shapes", {}).get(out)
        self.output_shape = shape
        if cfg.output_kind == "mask_classification":
            self.mask_output_name = self._resolve_output(cfg.mask_output, "mask_output")
            if self.mask_output_name == out:
                raise ScorerConfigError("scorer.output and scorer.mask_output both name %r" % out)
            self._check_mask_classification_outputs(shape, getattr(s, "output_shapes", {}).get(self.mask_output_name))
            return
        if shape is None:
            return  # backend cannot tell; checked on the first frame
        dims = [_dim(d) for d in shape]
        if cfg.output_kind == "score":
            ok = (len(dims) == 2 or (len(dims) == 3 and dims[0] in (None, 1))
                  or (len(dims) == 4 and dims[0] in (None, 1) and dims[1] in (None, 1)))
            if not ok:
                raise ScorerConfigError("%s output %r has shape %s; a 'score' output must be HxW, 1xHxW or 1x1xHxW"
                                        % (cfg.model, out, shape))
            return
        dims = _unbatched(dims, 3)
        if dims is None:
            raise ScorerConfigError("%s output %r has shape %s; 'logits' must be 1xCxHxW or CxHxW" % (
                cfg.model, out, shape))
        if dims[0] is not None:
            self._check_channels(dims[0])

    def _check_mask_classification_outputs(self, cls_shape, mask_shape):
        """Class logits 1xQxC / QxC and mask logits 1xQxhxw / Qxhxw with the same Q (a shape None or
        unknown dims pass: checked at start-up with the declared shapes, then with every frame's)."""
        cfg = self.config
        cls = masks = None
        if cls_shape is not None:
            cls = _unbatched([_dim(d) for d in cls_shape], 2)
            if cls is None:
                raise ScorerConfigError("%s output %r has shape %s; class logits must be 1xQxC or QxC" % (
                    cfg.model, self.output_name, list(cls_shape)))
        if mask_shape is not None:
            masks = _unbatched([_dim(d) for d in mask_shape], 3)
            if masks is None:
                raise ScorerConfigError("%s output %r has shape %s; mask logits must be 1xQxhxw or Qxhxw" % (
                    cfg.model, self.mask_output_name, list(mask_shape)))
        if cls is not None and masks is not None and None not in (cls[0], masks[0]) and cls[0] != masks[0]:
            raise ScorerConfigError("%s: %d queries of class logits (%r) but %d of mask logits (%r)" % (
                cfg.model, cls[0], self.output_name, masks[0], self.mask_output_name))
        if cls is not None and cls[1] is not None:
            channels = cls[1]
            if channels < 2:
                raise ScorerConfigError("%s output %r has %d classes; expected the known classes + 'no object'" % (
                    cfg.model, self.output_name, channels))
            ids = cfg.id_channels
            if isinstance(ids, (int, np.integer)) and ids > channels - 1:
                raise ScorerConfigError("scorer.id_channels=%d but %s has %d known classes (+ 'no object')" % (
                    ids, cfg.model, channels - 1))
            if ids is not None and not isinstance(ids, (int, np.integer)) and max(int(i) for i in ids) >= channels:
                raise ScorerConfigError("scorer.id_channels=%s indexes past the %d classes of %s" % (
                    list(ids), channels, cfg.model))

    def mask_classification_outputs(self, image_bgr):
        """(class logits Q x C, mask logits Q x h x w) float32 for one frame (mask_classification models)."""
        if self.config.output_kind != "mask_classification":
            raise ScorerConfigError("%s is not configured as a 'mask_classification' model" % self.name)
        outs = self.session.run({self.input_name: self.preprocess(image_bgr)})
        cls = np.asarray(outs[self.output_name], dtype=np.float32)
        masks = np.asarray(outs[self.mask_output_name], dtype=np.float32)
        self._check_mask_classification_outputs(cls.shape, masks.shape)
        cls = cls[0] if cls.ndim == 3 else cls
        masks = masks[0] if masks.ndim == 4 else masks
        self._require_finite(cls)
        self._require_finite(masks)
        return cls, masks

    def _check_channels(self, channels):
        cfg = self.config
        ids = cfg.id_channels
        if ids is None:
            n_id = channels
        elif isinstance(ids, (int, np.integer)):
            if ids > channels:
                raise ScorerConfigError("scorer.id_channels=%d but %s outputs %d channels" % (ids, cfg.model, channels))
            n_id = int(ids)
        else:
            if max(int(i) for i in ids) >= channels:
                raise ScorerConfigError("scorer.id_channels=%s indexes past the %d channels of %s" % (
                    list(ids), channels, cfg.model))
            n_id = len(ids)
        if cfg.method in ("msp", "entropy", "sml") and n_id < 2:
            raise ScorerConfigError("scorer.method=%r needs at least 2 in-distribution channels, got %d" % (
                cfg.method, n_id))
        if self.sml is not None and self.sml.mean.size != n_id:
            raise ScorerConfigError("SML statistics %s are for %d classes, the model gives %d" % (
                cfg.sml_stats, self.sml.mean.size, n_id))

    # ------------------------------------------------------------------ running
    def preprocess(self, image_bgr):
        """HxWx3 BGR (uint8, or float in 0..255) -> 1x3xH'xW' model input."""
        return prepare_input(image_bgr, self.config, self.input_size, self._input_dtype)

    def raw_output(self, image_bgr):
        """The selected model output for one frame, batch dimension removed (float32); the class
        logits (Q x C) of a mask_classification model."""
        if self.config.output_kind == "mask_classification":
            return self.mask_classification_outputs(image_bgr)[0]
        out = self.session.run({self.input_name: self.preprocess(image_bgr)})[self.output_name]
        out = np.asarray(out, dtype=np.float32)
        if self.config.output_kind == "logits":
            if out.ndim == 4 and out.shape[0] == 1:
                out = out[0]
            if out.ndim != 3:
                raise ScorerConfigError("%s output %r gave shape %s; 'logits' must be 1xCxHxW or CxHxW" % (
                    self.config.model, self.output_name, out.shape))
            if self.output_shape is None or _dim(self.output_shape[-3]) is None:
                self._check_channels(out.shape[0])
            return out
        while out.ndim > 2 and out.shape[0] == 1:
            out = out[0]
        if out.ndim != 2:
            raise ScorerConfigError("%s output %r gave shape %s; a 'score' output must be HxW, 1xHxW or 1x1xHxW" % (
                self.config.model, self.output_name, out.shape))
        return out

    def _require_finite(self, array):
        finite = np.isfinite(array)
        if not finite.all():
            raise NonFiniteOutputError(self.name, finite.size - np.count_nonzero(finite), finite.size)

    def logits(self, image_bgr):
        """All output channels, C x h x w float32 (logits models only)."""
        if self.config.output_kind != "logits":
            raise ScorerConfigError("%s is configured as a 'score' model; it has no logits" % self.name)
        out = self.raw_output(image_bgr)
        self._require_finite(out)
        return out

    def id_logits(self, image_bgr):
        """The in-distribution channels (``id_channels``) of :meth:`logits`."""
        if self.config.output_kind != "logits":
            raise ScorerConfigError("%s is configured as a 'score' model; it has no logits" % self.name)
        out = self.raw_output(image_bgr)
        if self._channels is not None:
            out = out[self._channels]
        self._require_finite(out)
        return np.ascontiguousarray(out)

    def score(self, image_bgr):
        """h x w float32 anomaly map at the model's output resolution, higher = more anomalous.

        Raises :class:`NonFiniteOutputError` when the model output used holds NaN/inf.
        """
        cfg = self.config
        if cfg.output_kind == "mask_classification":
            cls, masks = self.mask_classification_outputs(image_bgr)
            s = mask_classification_score(cls, masks, cfg.method, self._channels)
        elif cfg.output_kind == "score":
            out = self.raw_output(image_bgr)
            self._require_finite(out)
            s = score_from_logits(out, "score_map", invert=cfg.invert)
        else:
            s = score_from_logits(self.id_logits(image_bgr), cfg.method, temperature=cfg.temperature,
                                  sml_stats=self.sml)
            self._require_finite(s)  # e.g. overflow in energy with a tiny temperature
        return smooth(s, cfg.smooth_sigma) if cfg.smooth_sigma > 0 else np.asarray(s, dtype=np.float32)

    def score_at(self, image_bgr, width=None, height=None):
        """:meth:`score` resized bilinearly to ``width`` x ``height`` (default: the frame's size)."""
        img = np.asarray(image_bgr)
        w = img.shape[1] if width is None else int(width)
        h = img.shape[0] if height is None else int(height)
        return resize_score(self.score(img), w, h)

    def __call__(self, image_bgr):
        return self.score(image_bgr)
