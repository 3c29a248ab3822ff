"""Pipeline settings are checked when the configuration is made (issue 19, "hostile input never kills a node").

Every stage configuration checks the type of each field (from its annotation) and its range (the stage's
``RULES`` table, s2m_ros.segmentation.config_check); unknown keys are refused at every level with the
known ones; each error is one PipelineConfigError line naming the dotted key, the value and the rule.
A file that is no ONNX model is a ModelFileError naming it; an empty model setting names the setting.
"""
import dataclasses
import inspect
import math
import pathlib
import subprocess
import typing

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s2m_ros.inference.backend import InvalidModelError, ModelFileError, create_session
from s2m_ros.segmentation.detector_prompts import DetectorConfig
from s2m_ros.segmentation.grabcut import GrabCutConfig
from s2m_ros.segmentation.mobilesam import MobileSamOptions, MobileSamSegmenter
from s2m_ros.segmentation.model_scorer import ScorerConfig, ScorerConfigError
from s2m_ros.segmentation.pipeline import (PipelineConfig, PipelineConfigError, S2MPipeline, check_model_files,
                                           load_pipeline_yaml)
from s2m_ros.segmentation.prompts import PromptConfig
from s2m_ros.segmentation.refinement import RefinementConfig
from s2m_ros.segmentation.selection import SelectionConfig
from s2m_ros.segmentation.surface import SurfaceConfig

REPO = pathlib.Path(__file__).resolve().parents[1]
# key in the pipeline configuration -> the dataclass its values are checked against ("" = the top level)
STAGES = {"": PipelineConfig, "surface": SurfaceConfig, "prompts": PromptConfig, "grabcut": GrabCutConfig,
          "selection": SelectionConfig, "refinement": RefinementConfig, "scorer": ScorerConfig,
          "detector": DetectorConfig, "mobilesam": MobileSamOptions}


def _data(stage, name, value):
    return {name: value} if stage == "" else {stage: {name: value}}


def _one_line(exc):
    text = str(exc)
    assert "\n" not in text and text.strip() == text, repr(text)
    return text


# -- the red team's values, and more of each kind: one exact one-line message each ----------------------------
BAD = [
    ({"prompts": {"max_prompts": "many"}}, "prompts.max_prompts: 'many' is not an integer"),
    ({"prompts": {"local_grid": -1}}, "prompts.local_grid: -1 is not >= 0"),
    ({"prompts": {"local_grid": 2.5}}, "prompts.local_grid: 2.5 is not an integer"),
    ({"prompts": {"nms_iou": 7.5}}, "prompts.nms_iou: 7.5 is not in [0, 1]"),
    ({"prompt_max_side": -5}, "prompt_max_side: -5 is not >= 0"),
    ({"smooth_sigma": -1}, "smooth_sigma: -1 is not >= 0"),
    ({"prompts": {"max_prompts": 2.5}}, "prompts.max_prompts: 2.5 is not an integer"),
    ({"prompts": {"max_prompts": True}}, "prompts.max_prompts: True is not an integer"),
    ({"prompts": {"max_prompts": 0}}, "prompts.max_prompts: 0 is not >= 1"),
    ({"prompts": {"min_level_z": 0}}, "prompts.min_level_z: 0 is not > 0"),
    ({"prompts": {"negative_points": 5}}, "prompts.negative_points: 5 is not in [0, 4]"),
    ({"prompts": {"detrend": "yes"}}, "prompts.detrend: 'yes' is not true or false"),
    ({"refine": 1}, "refine: 1 is not true or false"),
    ({"smooth_sigma": math.nan}, "smooth_sigma: nan is not a finite number"),
    ({"smooth_sigma": math.inf}, "smooth_sigma: inf is not a finite number"),
    ({"smooth_sigma": "0.5"}, "smooth_sigma: '0.5' is not a number"),
    ({"threads": 65}, "threads: 65 is not in [0, 64]"),
    ({"backend": "openvino"}, "backend: 'openvino' is not one of: onnxruntime, tensorrt"),
    ({"profile": 7}, "profile: 7 is not a string"),
    ({"prompt_generator": "yolo"}, "prompt_generator: 'yolo' is not one of: levels, detector"),
    ({"scorer_model": ["a.onnx"]}, "scorer_model: ['a.onnx'] is not a string"),
    ({"surface": {"sample_top_x": [0.5]}}, "surface.sample_top_x: [0.5] is not a list of 2 numbers"),
    ({"surface": {"sample_top_x": [0.2, 1.5]}}, "surface.sample_top_x: [0.2, 1.5] has 1.5, which is not in [0, 1]"),
    ({"surface": {"sample_top_x": [0.8, 0.2]}},
     "surface.sample_top_x: (0.8, 0.2) must be (lo, hi) with 0 <= lo < hi <= 1"),
    ({"surface": {"seed": 2 ** 40}}, "surface.seed: 1099511627776 is not in [0, 2147483647]"),
    ({"surface": {"horizon": 1.5}}, "surface.horizon: 1.5 is not < 1"),
    ({"grabcut": {"iterations": 0}}, "grabcut.iterations: 0 is not >= 1"),
    ({"grabcut": {"max_pixels": 300}}, "grabcut.max_pixels: 300 must be >= min_side^2 (2304)"),
    ({"selection": {"min_auc": 2}}, "selection.min_auc: 2 is not in [0, 1]"),
    ({"selection": {"statistic": "mean"}}, "selection.statistic: 'mean' is not one of: auc, sigma, both"),
    ({"selection": {"ring_min_px": 10, "ring_max_px": 5}}, "selection.ring_max_px: 5 must be >= ring_min_px (10)"),
    ({"refinement": {"gaussian_ksize": 4}}, "refinement.gaussian_ksize: 4 is not odd (an odd integer >= 1)"),
    ({"refinement": {"overlap": 3}}, "refinement.overlap: 3 is not a string"),
    ({"scorer": {"mean": [1, 2]}}, "scorer.mean: [1, 2] is not 1 or 3 numbers (one per channel, or one for all)"),
    ({"scorer": {"temperature": 0}}, "scorer.temperature: 0 is not > 0"),
    ({"scorer": {"id_channels": [0, 0]}}, "scorer.id_channels: [0, 0] is not a list of distinct channel indices >= 0"),
    ({"scorer": {"output": 1.5}}, "scorer.output: 1.5 is not a string or an integer"),
    ({"scorer": {"method": "bogus"}},
     "scorer.method: 'bogus' is not one of: msp, maxlogit, entropy, energy, sml, rba, score_map"),
    ({"detector": {"nms_iou": "high"}}, "detector.nms_iou: 'high' is not a number"),
    ({"detector": {"std": [1, 0]}}, "detector.std: [1, 0] has a 0 (values must be non-zero)"),
    ({"mobilesam": {"resize": "cubic"}}, "mobilesam.resize: 'cubic' is not one of: area, linear, pil"),
    ({"mobilesam": {"max_batch": 0}}, "mobilesam.max_batch: 0 is not >= 1"),
    ({"prompts": 3}, "prompts must be a mapping, got 3"),
    ({"scorer": [1]}, "scorer: [1] is not a mapping"),
]


@pytest.mark.parametrize("data,message", BAD, ids=[m.split(":")[0] + "=" + repr(d)[-14:] for d, m in BAD])
def test_bad_setting_is_one_line_naming_key_value_and_rule(data, message):
    with pytest.raises(PipelineConfigError) as err:
        PipelineConfig.from_dict(data)
    assert isinstance(err.value, ValueError)
    assert _one_line(err.value) == message


def test_meaningful_edge_values_are_accepted_and_integral_floats_normalised():
    cfg = PipelineConfig.from_dict({"prompts": {"local_grid": 0, "max_prompts": 3.0, "negative_points": 4},
                                    "prompt_max_side": 0, "smooth_sigma": 1, "surface": {"sample_top_x": [0, 1]}})
    assert cfg.prompts.local_grid == 0  # documented: 0 = the global-only generator
    assert cfg.prompts.max_prompts == 3 and type(cfg.prompts.max_prompts) is int
    assert cfg.smooth_sigma == 1.0 and type(cfg.smooth_sigma) is float
    assert cfg.surface.sample_top_x == (0.0, 1.0) and cfg.prompt_max_side == 0


@pytest.mark.parametrize("data,key", [
    ({"profle": "x"}, "'profle' in PipelineConfig"),
    ({"prompts": {"max_promts": 3}}, "'prompts.max_promts' in PromptConfig"),
    ({"surface": {"seeed": 1}}, "'surface.seeed' in SurfaceConfig"),
    ({"refinement": {"k": 1}}, "'refinement.k' in RefinementConfig"),
    ({"scorer": {"input_widht": 3}}, "'scorer.input_widht' in ScorerConfig"),
    ({"detector": {"modle": "d.onnx"}}, "'detector.modle' in DetectorConfig"),
    ({"mobilesam": {"multi_mask": True}}, "'mobilesam.multi_mask' in MobileSamOptions"),
    ({3: 1}, "'3' in PipelineConfig"),
])
def test_unknown_keys_at_every_level_list_the_known_ones(data, key):
    stage = next(iter(data.values())) if isinstance(next(iter(data.values())), dict) else None
    with pytest.raises(PipelineConfigError) as err:
        PipelineConfig.from_dict(data)
    text = _one_line(err.value)
    assert text.startswith("unknown key %s (known: " % key), text
    cls = STAGES[next(iter(data))] if stage is not None else PipelineConfig
    assert all(f.name in text for f in dataclasses.fields(cls))


# -- every field of every stage: random wrong-typed values are PipelineConfigError, never anything else ----------
def _wrong_values(hint):
    """A strategy of values that are not of type ``hint`` (whatever their range)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    text, none, bools = st.text(max_size=8), st.none(), st.booleans()
    lists = st.lists(st.one_of(st.text(max_size=3), st.none()), min_size=1, max_size=3)
    maps = st.dictionaries(st.text(max_size=3), st.integers(), min_size=1, max_size=2)
    fractional = st.floats(allow_nan=True, allow_infinity=True).filter(lambda x: not float(x).is_integer())
    if dataclasses.is_dataclass(hint) or hint is dict or origin is dict:
        return st.one_of(text, none, bools, st.integers(), st.floats(), st.lists(st.integers(), max_size=2))
    if hint is bool:
        return st.one_of(text, none, st.integers(), st.floats(), lists, maps)
    if hint is int:
        return st.one_of(text, none, bools, fractional, lists, maps)
    if hint is float:
        return st.one_of(text, none, bools, st.just(math.nan), lists, maps)
    if hint is str:
        return st.one_of(none, bools, st.integers(), st.floats(), lists, maps)
    if origin is tuple and args and args[-1] is not Ellipsis:  # Tuple[float, float]
        n = len(args)
        wrong_length = st.one_of(st.lists(st.floats(0, 1), max_size=n - 1),
                                 st.lists(st.floats(0, 1), min_size=n + 1, max_size=n + 3))
        return st.one_of(text, none, bools, st.floats(), maps, wrong_length, lists)
    if origin is typing.Union and str in args:  # Union[str, int]: an output name or index
        return st.one_of(none, bools, fractional, lists, maps)
    if origin is typing.Union and type(None) in args and str not in args:
        inner = [a for a in args if a is not type(None)]
        if inner == [int, typing.Sequence[int]] or int in inner:  # Optional[Union[int, Sequence[int]]]
            return st.one_of(text, bools, fractional, maps, st.lists(st.text(max_size=2), min_size=1, max_size=3))
        # Optional[Sequence[str]] (MobileSAM providers)
        return st.one_of(text, bools, st.integers(), st.floats(), maps,
                         st.lists(st.integers(), min_size=1, max_size=3))
    if origin in (list, tuple, typing.get_origin(typing.Sequence[float])):  # Sequence[float]
        return st.one_of(text, none, bools, st.floats(), maps, lists)
    raise AssertionError("no wrong values for %r: extend the test" % (hint,))


FIELDS = [(stage, f.name, typing.get_type_hints(cls)[f.name])
          for stage, cls in STAGES.items() for f in dataclasses.fields(cls)]


def test_every_field_of_every_stage_has_wrong_values():
    for _, _, hint in FIELDS:
        _wrong_values(hint)  # raises for a type the property below would not cover


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_wrong_typed_values_for_every_field_raise_pipeline_config_error(data):
    stage, name, hint = data.draw(st.sampled_from(FIELDS), label="field")
    value = data.draw(_wrong_values(hint), label="value")
    key = name if stage == "" else "%s.%s" % (stage, name)
    with pytest.raises(PipelineConfigError) as err:  # not TypeError, AttributeError, ...
        PipelineConfig.from_dict(_data(stage, name, value))
    assert _one_line(err.value).startswith(key), (key, str(err.value))
    with pytest.raises(PipelineConfigError):  # the stage's own dataclass, made directly
        STAGES[stage](**{name: value})


def test_shipped_pipeline_yaml_passes_and_is_the_default():
    path = REPO / "config" / "pipeline.yaml"
    assert PipelineConfig.from_yaml(path) == PipelineConfig()
    assert PipelineConfig.from_dict(load_pipeline_yaml(path)) == PipelineConfig()


def test_scorer_config_errors_are_pipeline_config_errors():
    assert issubclass(ScorerConfigError, PipelineConfigError) and issubclass(PipelineConfigError, ValueError)
    with pytest.raises(ScorerConfigError, match="ScorerConfig.temperature: 0 is not > 0"):
        ScorerConfig(temperature=0)
    # the CLIs recognise user errors by this module-qualified name (s2m_ros.cli.common.USER_ERRORS)
    assert "%s.%s" % (PipelineConfigError.__module__, PipelineConfigError.__qualname__) == \
        "s2m_ros.segmentation.pipeline.PipelineConfigError"


def test_mobilesam_options_have_the_segmenters_defaults():
    sig = inspect.signature(MobileSamSegmenter.__init__).parameters
    for f in dataclasses.fields(MobileSamOptions):
        assert sig[f.name].default == f.default, f.name


# -- pipeline YAML files ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind,needle", [("broken", "not valid YAML at line 3"), ("folder", "is a folder"),
                                         ("list", "must hold a mapping"), ("missing", "cannot be read"),
                                         ("binary", "not valid YAML"), ("scalar", "must hold a mapping")])
def test_bad_pipeline_yaml_files_name_the_path(tmp_path, kind, needle):
    path = tmp_path / ("p-%s.yaml" % kind)
    if kind == "broken":
        path.write_text("pipeline:\n  prompts: {max_prompts: [1,\n")
    elif kind == "folder":
        path.mkdir()
    elif kind == "list":
        path.write_text("- profile: surface+grabcut\n")
    elif kind == "binary":
        path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    elif kind == "scalar":
        path.write_text("pipeline: 3\n")
    with pytest.raises(PipelineConfigError) as err:
        PipelineConfig.from_yaml(path)
    text = _one_line(err.value)
    assert str(path) in text and needle in text, text


def test_empty_pipeline_yaml_is_the_default(tmp_path):
    (tmp_path / "a.yaml").write_text("")
    (tmp_path / "b.yaml").write_text("pipeline:\n")
    assert PipelineConfig.from_yaml(tmp_path / "a.yaml") == PipelineConfig()
    assert PipelineConfig.from_yaml(tmp_path / "b.yaml") == PipelineConfig()


# -- model files ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("content", [b"", b"\x08\x07garbage that is no protobuf \xff\xff\xff", b"pipeline: {}\n"],
                         ids=["empty", "random", "yaml"])
def test_a_file_that_is_no_onnx_model_is_a_model_file_error(tmp_path, content):
    path = tmp_path / "m.onnx"
    path.write_bytes(content)
    with pytest.raises(InvalidModelError) as err:
        create_session(str(path), hint="s2m export espnet --out m.onnx")
    text = _one_line(err.value)
    assert isinstance(err.value, ModelFileError) and str(path) in text and "not a valid ONNX model" in text
    assert "s2m export espnet" in text
    with pytest.raises(ModelFileError, match="not a valid ONNX model.*s2m export espnet"):  # through the pipeline
        S2MPipeline(PipelineConfig(profile="espnet+grabcut", scorer_model=str(path)))


@pytest.mark.parametrize("profile,key,hint", [("espnetv2+grabcut", "scorer_model", "s2m export espnetv2"),
                                              ("onnx+grabcut", "scorer_model", "ONNX"),
                                              ("surface+mobilesam", "mobilesam_encoder", "s2m export mobilesam")])
def test_an_empty_model_setting_names_the_setting_and_the_command(profile, key, hint):
    with pytest.raises(PipelineConfigError) as err:
        S2MPipeline(PipelineConfig(profile=profile))
    text = _one_line(err.value)
    assert text.startswith("%s is empty: profile %s needs" % (key, profile)) and hint in text, text
    with pytest.raises(PipelineConfigError, match=r"^scorer_model \(node parameter models.scorer\) is empty"):
        check_model_files(PipelineConfig(profile="espnet+grabcut"),
                          {"scorer_model": "scorer_model (node parameter models.scorer)"})
    check_model_files(PipelineConfig(profile="onnx+grabcut", scorer={"model": "m.onnx"}))  # named in the overrides
    check_model_files(PipelineConfig())  # surface+grabcut needs no file


def test_cli_set_with_a_bad_value_is_exit_2_naming_the_key(tmp_path):
    import cv2

    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((32, 32, 3), np.uint8))
    proc = subprocess.run(["s2m", "segment", str(tmp_path / "a.png"), "--out", str(tmp_path / "out"),
                           "--set", "prompts.max_prompts=many"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "prompts.max_prompts: 'many' is not an integer" in proc.stderr and "Traceback" not in proc.stderr
