"""S2MPipeline: configuration, profiles, model-file errors, and the weight-free profile end to end."""

from dataclasses import replace

import numpy as np
import pytest

from s2m_ros.sim.still import render_apron
from s2m_ros.inference.backend import ModelFileError
from s2m_ros.segmentation.pipeline import (PROFILES, STAGES, PipelineConfig, PipelineConfigError, S2MPipeline,
                              parse_profile)


def _iou(a, b):
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 0.0


def test_profiles_and_parsing():
    assert "surface+grabcut" in PROFILES and "espnetv2+mobilesam" in PROFILES and len(PROFILES) == 8
    assert parse_profile("espnet+grabcut") == ("espnet", "grabcut")
    for bad in ("espnet", "espnet+sam", "foo+grabcut", "a+b+c"):
        with pytest.raises(PipelineConfigError, match="profile"):
            parse_profile(bad)


def test_config_from_dict_nested_and_unknown_keys():
    cfg = PipelineConfig.from_dict({"profile": "espnet+grabcut", "selection": {"min_auc": 0.8},
                                    "prompts": {"max_prompts": 3}, "refine": True})
    assert cfg.selection.min_auc == 0.8 and cfg.prompts.max_prompts == 3 and cfg.refine
    assert cfg.selection.nms_iou == PipelineConfig().selection.nms_iou  # untouched defaults
    with pytest.raises(PipelineConfigError, match="selection.min_aux"):
        PipelineConfig.from_dict({"selection": {"min_aux": 1}})
    with pytest.raises(PipelineConfigError, match="'profle'"):
        PipelineConfig.from_dict({"profle": "x"})
    with pytest.raises(PipelineConfigError, match="prompts must be a mapping"):
        PipelineConfig.from_dict({"prompts": 3})
    assert PipelineConfig.from_dict(PipelineConfig().to_dict()) == PipelineConfig()


def test_from_yaml(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text("pipeline:\n  profile: surface+grabcut\n  prompts:\n    max_prompts: 4\n")
    assert PipelineConfig.from_yaml(p).prompts.max_prompts == 4


@pytest.mark.parametrize("profile,needle", [("espnet+grabcut", "s2m export espnet"),
                                            ("espnetv2+grabcut", "s2m export espnetv2"),
                                            ("surface+mobilesam", "s2m export mobilesam")])
def test_missing_model_files_fail_at_construction_with_the_command(tmp_path, profile, needle):
    cfg = PipelineConfig(profile=profile, scorer_model=str(tmp_path / "none.onnx"),
                         mobilesam_encoder=str(tmp_path / "e.onnx"), mobilesam_decoder=str(tmp_path / "d.onnx"))
    with pytest.raises(ModelFileError) as e:
        S2MPipeline(cfg)
    assert needle in str(e.value) and str(tmp_path) in str(e.value)


def test_bad_images_are_rejected():
    pipe = S2MPipeline()
    for bad in (np.zeros((10, 10), np.uint8), np.zeros((10, 10, 3), np.float32), np.zeros((1, 10, 3), np.uint8)):
        with pytest.raises(ValueError, match="HxWx3 uint8"):
            pipe.process(bad)


@pytest.fixture(scope="module")
def weight_free():
    return S2MPipeline(PipelineConfig(profile="surface+grabcut", refine=True))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_weight_free_profile_finds_planted_objects(weight_free, seed):
    image, truth = render_apron(960, 540, seed=seed, objects=["cone", "suitcase", "chock"], object_z=(6.0, 14.0))
    res = weight_free.process(image)
    assert set(res.stage_ms) == set(STAGES)
    assert res.composed.shape == (540, 960) and res.refined.shape == (540, 960)
    masks = [m.full_mask(960, 540) for m in res.instances]
    found = [max((_iou(m, o.mask) for m in masks), default=0.0) for o in truth.objects]
    # every planted object is covered by one instance, and most instances are objects. Measured (seeds 1-8,
    # 2026-12-08): suitcase and chock IoU 0.69-1.0; the cone 0.65-0.97 (0.47-0.66 before the band merge:
    # its white collar is concrete-coloured, so the orange parts above and below it were two instances)
    cone, others = found[0], found[1:]
    assert min(others) >= 0.6 and cone >= 0.6, found
    union = truth.object_union()
    on_objects = [np.count_nonzero(m & union) / np.count_nonzero(m) for m in masks]
    assert sum(f >= 0.5 for f in on_objects) >= len(truth.objects)
    assert [m.id for m in res.instances] == list(range(1, len(res.instances) + 1))
    fm = res.frame_masks(stamp_ns=5, frame_id="cam")
    assert fm.width == 960 and fm.scorer == "surface" and fm.segmenter == "grabcut" and fm.stamp_ns == 5


def test_weight_free_profile_on_an_empty_apron_finds_little(weight_free):
    # A broken selection or scorer gives up to the prompt cap (10) per frame. Measured (2026-12-07):
    # with the camera's horizon configured (a vehicle knows its mounting) 1, 1, 2 false instances (small
    # stains and joint crossings); with the horizon estimated 5, 2, 2: grey buildings standing on the
    # horizon connect to the apron (docs/limitations.md).
    images = [render_apron(960, 540, seed=s)[0] for s in (4, 5, 6)]
    cfg = PipelineConfig(profile="surface+grabcut", refine=True)
    known = S2MPipeline(replace(cfg, surface=replace(cfg.surface, horizon=0.3)))
    found = [len(known.process(image).instances) for image in images]
    assert sum(found) <= 6, found
    estimated = [len(weight_free.process(image).instances) for image in images]
    assert sum(estimated) <= 12, estimated


def test_same_image_same_result(weight_free):
    image, _ = render_apron(640, 360, seed=9, objects=["cone", "hose"], object_z=(5.0, 10.0))
    a, b = weight_free.process(image), weight_free.process(image.copy())
    assert [m.roi for m in a.instances] == [m.roi for m in b.instances]
    assert all(np.array_equal(x.mask, y.mask) for x, y in zip(a.instances, b.instances))
    assert np.array_equal(a.composed, b.composed)


def test_shipped_pipeline_yaml_is_the_code_default():
    import pathlib

    import yaml

    path = pathlib.Path(__file__).resolve().parents[1] / "config" / "pipeline.yaml"
    assert PipelineConfig.from_yaml(path) == PipelineConfig(), "config/pipeline.yaml is stale"

    def keys(d, prefix=""):
        out = set()
        for k, v in d.items():
            out |= keys(v, prefix + k + ".") if isinstance(v, dict) and v else {prefix + k}
        return out

    data = yaml.safe_load(path.read_text())
    assert keys(data.get("pipeline", data)) == keys(PipelineConfig().to_dict()), "config/pipeline.yaml misses keys"


def test_scorer_config_prefers_the_export_sidecar(tmp_path):
    import json

    from s2m_ros.segmentation.pipeline import scorer_config

    model = tmp_path / "espnet_small.onnx"
    assert scorer_config("espnet", str(model)).input_width == 1024  # no sidecar: the preset
    (tmp_path / "espnet_small.onnx.json").write_text(json.dumps({"preset": "espnet", "input_width": 512,
                                                                  "input_height": 256}))
    cfg = scorer_config("espnet", str(model), {"method": "energy"})
    assert (cfg.input_width, cfg.input_height, cfg.method, cfg.model) == (512, 256, "energy", str(model))
    assert scorer_config("onnx", "m.onnx").channel_order == "bgr"  # plain defaults
    with pytest.raises(PipelineConfigError, match="unknown scorer key"):
        scorer_config("espnet", str(model), {"input_widht": 3})


def test_bad_stage_settings_fail_when_the_config_is_loaded():
    # validated in the stage configs themselves, so a YAML mistake is reported at load, naming the field
    for data, field in (({"grabcut": {"iterations": 0}}, "iterations"), ({"surface": {"max_side": 2}}, "max_side"),
                        ({"selection": {"min_auc": 2}}, "min_auc")):
        with pytest.raises(PipelineConfigError, match=field):
            PipelineConfig.from_dict(data)
