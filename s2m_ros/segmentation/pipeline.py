"""One object for the whole camera-side algorithm: ``S2MPipeline(config).process(image)``.

Stages (each timed): ``score`` (anomaly scorer -> score map at the scorer's resolution),
``prompts`` (threshold-free level-set generator, or an ONNX score-map detector, run on the map
at most ``prompt_max_side`` pixels wide, then mapped to image pixels), ``upsample`` (score map
to image resolution for the segmenter and the selection), ``segment`` (GrabCut or MobileSAM: one
image embedding per frame, all prompts in one batch), ``select`` (ring contrast, quality,
surface-swallowing and overlap rules), ``compose`` (S2M composed anomaly map) and optionally
``refine`` (Objectomaly-style objectness refinement).

Profiles are ``<scorer>+<segmenter>``: scorers ``surface`` (no weights), ``espnet``,
``espnetv2``, ``onnx`` (bring your own model, described by ``scorer``); segmenters ``grabcut``
(no weights) and ``mobilesam`` (encoder + decoder ONNX from ``s2m export mobilesam``).
This module imports no torch and no ROS; the node and the CLIs wrap it.
"""
import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Dict, List, Optional

import cv2
import numpy as np

from s2m_ros.inference.backend import BACKENDS
from s2m_ros.segmentation.config_check import PipelineConfigError, check_fields, check_overrides, from_mapping, show
from s2m_ros.segmentation.grabcut import GrabCutConfig, GrabCutSegmenter
from s2m_ros.segmentation.prompts import LevelSetPromptGenerator, Prompt, PromptConfig, scale_prompts
from s2m_ros.segmentation.refinement import RefinementConfig, refine
from s2m_ros.segmentation.scores import resize_score
from s2m_ros.segmentation.selection import SelectionConfig, composed_anomaly_map, merge_bands, select_masks
from s2m_ros.segmentation.surface import SurfaceConfig, SurfaceScorer
from s2m_ros.types import FrameMasks, InstanceMask

SCORERS = ("surface", "espnet", "espnetv2", "onnx")
SEGMENTERS = ("grabcut", "mobilesam")
PROFILES = tuple("%s+%s" % (a, b) for a in SCORERS for b in SEGMENTERS)
STAGES = ("score", "prompts", "upsample", "segment", "select", "compose", "refine")
MIN_IMAGE_SIDE = 2  # smaller frames are refused by process() (and as bad input by s2m_node)

EXPORT_HINTS = {
    "espnet": "s2m export espnet --weights espnet_p_2_q_8.pth --out espnet.onnx",
    "espnetv2": "s2m export espnetv2 --weights espnetv2_s_2.0_city_1024x512.pth --out espnetv2.onnx",
    "onnx": "export your segmentation / anomaly model to ONNX and describe it under 'scorer'",
    "mobilesam": "s2m export mobilesam --checkpoint mobile_sam.pt --out-dir models/",
}


# PipelineConfigError (defined in config_check, below every stage, so that they can raise it) is part
# of this module's interface: ``from s2m_ros.segmentation.pipeline import PipelineConfigError``.
SCORE_METHODS = ("msp", "maxlogit", "entropy", "energy", "sml", "score_map", "rba")
PROMPT_GENERATORS = ("levels", "detector")
# the model files each profile part needs: (config key, what it is, the profile parts that need it)
MODEL_KEYS = (("scorer_model", "scorer", ("espnet", "espnetv2", "onnx")),
              ("mobilesam_encoder", "MobileSAM encoder", ("mobilesam",)),
              ("mobilesam_decoder", "MobileSAM decoder", ("mobilesam",)))


def parse_profile(profile: str):
    if not isinstance(profile, str):
        raise PipelineConfigError("profile must be a string <scorer>+<segmenter>, got %r" % (profile,))
    parts = profile.split("+")
    if len(parts) != 2 or parts[0] not in SCORERS or parts[1] not in SEGMENTERS:
        raise PipelineConfigError("profile must be <scorer>+<segmenter> with scorer in %s and segmenter in %s, "
                                  "got %r" % (SCORERS, SEGMENTERS, profile))
    return parts[0], parts[1]


@dataclass
class PipelineConfig:
    profile: str = "surface+grabcut"
    backend: str = "onnxruntime"  # or "tensorrt" (GPU machines)
    threads: int = 0  # intra-op threads of the model runtimes (0 = runtime default)
    # scorer model (espnet / espnetv2 / onnx) and how its output becomes a score
    scorer_model: str = ""
    score_method: str = "msp"  # msp | maxlogit | entropy | energy | sml | score_map; rba (mask classification)
    sml_stats: str = ""  # JSON from `s2m fit-sml`, for score_method sml
    smooth_sigma: float = 0.0  # Gaussian smoothing of the score map (scorer pixels)
    scorer: Dict[str, Any] = field(default_factory=dict)  # ScorerConfig overrides (profile onnx)
    surface: SurfaceConfig = field(default_factory=SurfaceConfig)
    # prompts
    prompt_generator: str = "levels"  # levels | detector
    prompt_max_side: int = 512  # the level-set generator runs on the map scaled to at most this width
    prompts: PromptConfig = field(default_factory=PromptConfig)
    detector: Dict[str, Any] = field(default_factory=dict)  # DetectorConfig fields (prompt_generator detector)
    # segmenters
    grabcut: GrabCutConfig = field(default_factory=GrabCutConfig)
    mobilesam_encoder: str = ""
    mobilesam_decoder: str = ""
    mobilesam: Dict[str, Any] = field(default_factory=dict)  # MobileSamSegmenter keyword overrides
    # selection and refinement
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    refine: bool = False
    refinement: RefinementConfig = field(default_factory=RefinementConfig)

    # field -> rule (s2m_ros.segmentation.config_check); the types come from the annotations above. The
    # stages check their own fields; ``scorer`` / ``detector`` / ``mobilesam`` are checked as overrides of
    # ScorerConfig / DetectorConfig / MobileSamOptions.
    RULES: ClassVar[dict] = {
        "profile": lambda v: _profile_problem(v), "backend": BACKENDS, "threads": "[0, 64]",
        "score_method": SCORE_METHODS, "smooth_sigma": "[0, inf)", "prompt_generator": PROMPT_GENERATORS,
        "prompt_max_side": "[0, inf)",  # 0: the generator runs on the full score map
    }

    def __post_init__(self):
        check_fields(self)
        from s2m_ros.segmentation.detector_prompts import DetectorConfig
        from s2m_ros.segmentation.mobilesam import MobileSamOptions
        from s2m_ros.segmentation.model_scorer import ScorerConfig

        self.scorer = check_overrides(ScorerConfig, self.scorer, "scorer.")
        self.detector = check_overrides(DetectorConfig, self.detector, "detector.")
        self.mobilesam = check_overrides(MobileSamOptions, self.mobilesam, "mobilesam.")

    @classmethod
    def from_dict(cls, data: Optional[Dict[str, Any]]):
        """Build from plain (YAML) data; nested stage configs are dicts. Unknown keys, wrong types and
        out-of-range values are errors (PipelineConfigError naming the dotted key)."""
        return from_mapping(cls, {} if data is None else data, "")

    @classmethod
    def from_yaml(cls, path):
        return cls.from_dict(load_pipeline_yaml(path))

    def to_dict(self):
        return dataclasses.asdict(self)


def _profile_problem(value):
    try:
        parse_profile(value)
    except PipelineConfigError:
        return "is not <scorer>+<segmenter> with scorer in %s and segmenter in %s" % (
            ", ".join(SCORERS), ", ".join(SEGMENTERS))
    return None


def load_pipeline_yaml(path, what="pipeline config"):
    """The mapping of pipeline keys in the YAML file ``path`` (under ``pipeline:`` or at the top; an empty
    file is ``{}``). A missing or unreadable file, a folder, broken YAML or anything but a mapping is a
    PipelineConfigError naming ``what`` and the path, on one line."""
    from s2m_ros.files import YamlFileError, read_yaml_file

    where = "%s %s" % (what, path)
    try:
        loaded = read_yaml_file(path)
    except YamlFileError as exc:
        raise PipelineConfigError("%s: %s" % (where, exc.reason)) from None
    if loaded is None:
        return {}
    if isinstance(loaded, dict) and "pipeline" in loaded:
        loaded = {} if loaded["pipeline"] is None else loaded["pipeline"]
    if not isinstance(loaded, dict):
        raise PipelineConfigError("%s: must hold a mapping of pipeline keys (optionally under 'pipeline:'), got %s"
                                  % (where, "a list" if isinstance(loaded, list) else show(loaded, 40)))
    return dict(loaded)


def check_model_files(config, names=None):
    """Raise PipelineConfigError when ``config``'s profile needs a model file whose setting is empty.

    ``names``: config key -> how the user gave it (e.g. ``{"scorer_model": "scorer_model (node parameter
    models.scorer)"}``); the message names it, what the profile needs and the command that makes the file.
    """
    names = dict(names or {})
    scorer, segmenter = parse_profile(config.profile)
    for key, what, parts in MODEL_KEYS:
        part = scorer if scorer in parts else segmenter if segmenter in parts else None
        if part is None or getattr(config, key):
            continue
        if key == "scorer_model" and config.scorer.get("model"):
            continue  # the model named in the scorer overrides (profile onnx)
        raise PipelineConfigError("%s is empty: profile %s needs a %s ONNX file; make one with `%s`"
                                  % (names.get(key, key), config.profile, what, EXPORT_HINTS[part]))
    if config.prompt_generator == "detector" and not config.detector.get("model"):
        raise PipelineConfigError("%s is empty: prompt_generator detector needs a score-map detector ONNX file "
                                  "(export your detector to ONNX)" % names.get("detector.model", "detector.model"))


@dataclass
class PipelineResult:
    """Everything one frame produced. Maps: ``score_map`` at the scorer's resolution; ``composed``
    and ``refined`` at image resolution (``refined`` is None unless refinement is on)."""

    instances: List[InstanceMask]
    score_map: np.ndarray
    composed: np.ndarray
    refined: Optional[np.ndarray]
    prompts: List[Prompt]
    rejected: List[Any]
    stage_ms: Dict[str, float]
    width: int
    height: int
    scorer: str
    segmenter: str
    segments: List[Any] = field(default_factory=list)  # every Segment, kept or not (``rejected`` says which)

    def frame_masks(self, stamp_ns=0, frame_id=""):
        return FrameMasks(stamp_ns=stamp_ns, frame_id=frame_id, width=self.width, height=self.height,
                          masks=list(self.instances), scorer=self.scorer, segmenter=self.segmenter,
                          stage_ms=dict(self.stage_ms))


def scorer_config(kind, model, overrides=None):
    """The ScorerConfig of a model scorer (``kind``: espnet, espnetv2 or onnx): the export sidecar
    ``<model>.json`` when there is one (it carries the preset and the exported input size), else the
    preset (plain defaults for ``onnx``), then ``overrides`` (ScorerConfig field -> value)."""
    import os

    from s2m_ros.segmentation.model_scorer import PRESETS, ScorerConfig, config_for_model

    if kind == "onnx":
        base = ScorerConfig()
    elif model and os.path.isfile(str(model) + ".json"):
        base = config_for_model(model)
    else:
        base = PRESETS[kind]
    overrides = dict(overrides or {})
    overrides["model"] = model or overrides.get("model", "")
    known = {f.name for f in dataclasses.fields(ScorerConfig)}
    bad = sorted(set(overrides) - known)
    if bad:
        raise PipelineConfigError("unknown scorer key(s) %s (known: %s)" % (bad, ", ".join(sorted(known))))
    return dataclasses.replace(base, **overrides)


def _build_scorer(config, kind):
    if kind == "surface":
        return SurfaceScorer(config.surface)
    from s2m_ros.segmentation.model_scorer import ModelScorer

    overrides = dict(config.scorer)
    overrides.setdefault("method", config.score_method)
    if config.sml_stats:
        overrides.setdefault("sml_stats", config.sml_stats)
    if config.smooth_sigma:
        overrides.setdefault("smooth_sigma", config.smooth_sigma)
    return ModelScorer(scorer_config(kind, config.scorer_model, overrides), backend=config.backend,
                       threads=config.threads, hint=EXPORT_HINTS[kind])


def _build_segmenter(config, kind):
    if kind == "grabcut":
        return GrabCutSegmenter(config.grabcut)
    from s2m_ros.segmentation.mobilesam import MobileSamSegmenter

    return MobileSamSegmenter(config.mobilesam_encoder, config.mobilesam_decoder, backend=config.backend,
                              threads=config.threads, **config.mobilesam)


def _build_prompt_generator(config):
    if config.prompt_generator == "levels":
        return LevelSetPromptGenerator(config.prompts)
    if config.prompt_generator == "detector":
        from s2m_ros.segmentation.detector_prompts import DetectorConfig, OnnxDetectorPromptGenerator

        return OnnxDetectorPromptGenerator(from_mapping(DetectorConfig, config.detector, "detector."),
                                           backend=config.backend, threads=config.threads)
    raise PipelineConfigError("prompt_generator must be 'levels' or 'detector', got %r" % config.prompt_generator)


class S2MPipeline:
    """Scorer -> prompts -> segmenter -> selection (-> refinement), built once from a config.

    Model files are opened at construction, so a missing file fails here (ModelFileError with the
    path and the command that produces it), not on the first frame.
    """

    def __init__(self, config: PipelineConfig = None):
        self.config = config = config or PipelineConfig()
        scorer_kind, segmenter_kind = parse_profile(config.profile)
        check_model_files(config)  # an empty model setting: named, with the command that makes the file
        self.scorer = _build_scorer(config, scorer_kind)
        self.prompt_generator = _build_prompt_generator(config)
        self.segmenter = _build_segmenter(config, segmenter_kind)
        self.scorer_name = getattr(self.scorer, "name", scorer_kind)
        self.segmenter_name = getattr(self.segmenter, "name", segmenter_kind)

    def score(self, image):
        return self.scorer.score(image)

    def process(self, image: np.ndarray) -> PipelineResult:
        """Run every stage on one HxWx3 uint8 BGR frame."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or min(image.shape[:2]) < MIN_IMAGE_SIDE:
            raise ValueError("expected an HxWx3 uint8 BGR image, got %s %s" % (image.dtype, image.shape))
        h, w = image.shape[:2]
        ms = {}
        t = time.perf_counter()

        def lap(name):
            nonlocal t
            now = time.perf_counter()
            ms[name] = (now - t) * 1e3
            t = now

        score = np.asarray(self.score(image), dtype=np.float32)
        lap("score")
        prompts = self._prompts(score, w, h)
        lap("prompts")
        full = resize_score(score, w, h)
        lap("upsample")
        segments = self.segmenter.segment(image, full, prompts) if prompts else []
        lap("segment")
        instances, report = select_masks(segments, full, self.config.selection, prompts=prompts)
        instances = merge_bands(instances, self.config.selection)
        lap("select")
        # S2M composes on a zero background; our scores may be signed (max-logit, energy), so the
        # background is the frame's lowest score: every mask still ranks above it.
        finite = full[np.isfinite(full)]
        composed = composed_anomaly_map(instances, full, mode="s2m",
                                        background=float(finite.min()) if finite.size else 0.0)
        lap("compose")
        refined = None
        if self.config.refine:
            refined = refine(full, image_bgr=image, segments=segments or None, config=self.config.refinement)
            lap("refine")
        return PipelineResult(instances=instances, score_map=score, composed=composed, refined=refined,
                              prompts=prompts, rejected=report, stage_ms=ms, width=w, height=h,
                              scorer=self.scorer_name, segmenter=self.segmenter_name, segments=segments)

    def _prompts(self, score, width, height):
        sh, sw = score.shape
        f = min(1.0, float(self.config.prompt_max_side) / sw) if self.config.prompt_max_side > 0 else 1.0
        small = score
        if f < 1.0:
            small = cv2.resize(score, (max(2, int(round(sw * f))), max(2, int(round(sh * f)))),
                               interpolation=cv2.INTER_AREA)
        prompts = self.prompt_generator(small)
        return scale_prompts(prompts, width / float(small.shape[1]), height / float(small.shape[0]), width, height)
