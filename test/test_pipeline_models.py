"""The pipeline with real model files: ESPNet on real frames, MobileSAM (random weights), an ONNX
score-map detector as prompt generator; and the `s2m segment` / `s2m bench` CLIs end to end."""
import json

import cv2
import numpy as np
import pytest

from s2m_ros.cli import bench as bench_cli
from s2m_ros.cli import segment as segment_cli
from s2m_ros.core.synthetic import render_apron
from s2m_ros.pipeline import PipelineConfig, S2MPipeline

ESPNET_PTH = "weights/espnet_p2_q8_cityscapes/decoder/espnet_p_2_q_8.pth"


@pytest.fixture(scope="module")
def espnet_onnx(tmp_path_factory):
    from conftest import SHARED_DATA as shared_data
    from s2m_ros.export.segnet import export_onnx

    if not shared_data.is_dir():
        pytest.skip("../shared/data is absent (real-data tests need it beside the repository)")

    out = tmp_path_factory.mktemp("espnet") / "espnet.onnx"
    export_onnx("espnet", str(shared_data / ESPNET_PTH), str(out))
    return str(out)


@pytest.fixture(scope="module")
def mobilesam_onnx(tmp_path_factory):
    import torch

    from s2m_ros.export.mobilesam import export_mobilesam

    torch.manual_seed(0)
    return export_mobilesam(None, str(tmp_path_factory.mktemp("msam")))


def _check_result(res, w, h):
    assert res.composed.shape == (h, w) and res.composed.dtype == np.float32
    for k, m in enumerate(res.instances, start=1):
        x, y, bw, bh = m.roi
        assert m.id == k and 0 <= x and 0 <= y and x + bw <= w and y + bh <= h and m.area > 0
        assert np.isfinite(m.anomaly_score)
        # the composed map carries each mask's score on its pixels (or a higher overlapping one)
        assert np.all(res.composed[m.full_mask(w, h)] >= np.float32(m.anomaly_score) - 1e-6)
    assert all(d.reason for d in res.rejected)


def test_espnet_grabcut_on_real_frames_is_deterministic(espnet_onnx, shared_data):
    pipe = S2MPipeline(PipelineConfig(profile="espnet+grabcut", scorer_model=espnet_onnx, threads=2))
    assert pipe.scorer_name == "espnet/msp" and pipe.segmenter_name == "grabcut"
    frames = sorted((shared_data / "roadanomaly" / "frames").glob("*.jpg"))[:2]
    for f in frames:
        img = cv2.imread(str(f))
        a, b = pipe.process(img), pipe.process(img)
        assert a.score_map.shape == (512, 1024)  # the scorer's resolution
        _check_result(a, img.shape[1], img.shape[0])
        assert len(a.prompts) >= 1  # real frames with an obstacle give MSP prompts
        assert [m.roi for m in a.instances] == [m.roi for m in b.instances]
        assert np.array_equal(a.composed, b.composed)


def test_mobilesam_profile_end_to_end(mobilesam_onnx):
    enc, dec = mobilesam_onnx
    pipe = S2MPipeline(PipelineConfig(profile="surface+mobilesam", mobilesam_encoder=enc, mobilesam_decoder=dec,
                                      threads=2))
    image, _ = render_apron(640, 360, seed=3, objects=["suitcase", "cone"], object_z=(5.0, 9.0))
    res = pipe.process(image)
    assert res.prompts and res.segmenter == "mobilesam"
    _check_result(res, 640, 360)
    # one encoder run for the frame, one batched decoder call for all its prompts
    assert pipe.segmenter.counters["encoder_runs"] == 1
    assert pipe.segmenter.counters["decoder_runs"] == 1
    n = len(res.rejected)  # one decision per segment the decoder returned
    assert 1 <= n <= len(res.prompts)


def test_detector_prompt_generator_in_the_pipeline(tmp_path):
    from test_detector_prompts import _detector

    cfg = PipelineConfig.from_dict({"prompt_generator": "detector",
                                    "detector": {"model": _detector(tmp_path / "d.onnx"), "min_confidence": 0.6}})
    pipe = S2MPipeline(cfg)
    image, _ = render_apron(320, 180, seed=1, objects=["suitcase"], object_z=(5.0, 6.0))
    res = pipe.process(image)
    # the constant detector's boxes (64x64 input) mapped to image pixels, via the score map's size
    assert [p.source for p in res.prompts] == ["detector", "detector"]
    assert all(0 <= p.box[0] and p.box[0] + p.box[2] <= 320 for p in res.prompts)


def test_segment_cli_writes_overlays_instances_and_json(tmp_path, capsys):
    d = tmp_path / "in"
    d.mkdir()
    for seed in (1, 2):
        img, _ = render_apron(480, 270, seed=seed, objects=["suitcase"], object_z=(5.0, 7.0))
        cv2.imwrite(str(d / ("f%d.jpg" % seed)), img)
    out = tmp_path / "out"
    assert segment_cli.main([str(d), "--out", str(out), "--set", "prompts.max_prompts=3"]) == 0
    data = json.loads((out / "results.json").read_text())
    assert data["n_images"] == 2 and data["config"]["prompts"]["max_prompts"] == 3
    assert set(data["median_stage_ms"]) >= {"score", "prompts", "segment", "select"}
    for seed in (1, 2):
        inst = cv2.imread(str(out / ("f%d.instances.png" % seed)), cv2.IMREAD_UNCHANGED)
        entry = [r for r in data["images"] if r["image"].endswith("f%d.jpg" % seed)][0]
        assert inst.shape == (270, 480) and inst.max() == len(entry["instances"])
        assert (out / ("f%d.overlay.jpg" % seed)).is_file()
    assert segment_cli.main([str(d), "--out", str(out), "--profile", "nope+grabcut"]) == 2
    assert "profile" in capsys.readouterr().err


def test_bench_cli_json(tmp_path):
    out = tmp_path / "b.json"
    assert bench_cli.main(["--profiles", "surface+grabcut,espnet+grabcut", "--models", str(tmp_path),
                           "--frames", "2", "--warmup", "1", "--width", "320", "--height", "180",
                           "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    for stage in ("decode", "score", "prompts", "segment", "select", "total"):
        s = data["stages"]["surface+grabcut/onnxruntime/%s" % stage]
        assert s["n"] == 2 and s["median_ms"] <= s["p90_ms"] <= s["max_ms"]
    assert "espnet.onnx" in data["skipped"]["espnet+grabcut/onnxruntime"]  # no model file: skipped, said why
    assert data["peak_rss_mb"] > 0 and data["machine"]["cpu_count"] >= 1
