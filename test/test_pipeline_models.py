"""The pipeline with real model files: ESPNet on real frames, MobileSAM (random weights), an ONNX
score-map detector as prompt generator; and the `s2m segment` / `s2m bench` CLIs end to end."""
import json

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s2m_ros.bench import fusion_workload as fusion_bench
from s2m_ros.cli import bench as bench_cli
from s2m_ros.cli import segment as segment_cli
from s2m_ros.sim.still import render_apron
from s2m_ros.segmentation.pipeline import PipelineConfig, S2MPipeline

@pytest.fixture(scope="module")
def espnet_onnx(espnet_export):
    return espnet_export["path"]


@pytest.fixture(scope="module")
def mobilesam_onnx(mobilesam_export):
    return mobilesam_export["enc"], mobilesam_export["dec"]


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
    assert not any(k.startswith("fusion/") for k in data["stages"])  # fusion only when asked for (or 'all')


# ---------------------------------------------------------------- `s2m bench` fusion stage (issue #6)

@pytest.fixture(scope="module")
def fusion_workload():
    return fusion_bench.fusion_workload(seed=0)


def test_bench_fusion_stage_json(tmp_path, capsys):
    out = tmp_path / "f.json"
    assert bench_cli.main(["--profiles", "fusion", "--models", str(tmp_path / "none"), "--frames", "3",
                           "--warmup", "1", "--json", str(out)]) == 0  # no model file needed
    data = json.loads(out.read_text())
    assert set(data["stages"]) == {"fusion/cpu/%s" % s for s in ("fuse", "fusion", "tracking", "total")}
    for s in data["stages"].values():
        assert s["n"] == 3 and 0 < s["median_ms"] <= s["p90_ms"] <= s["max_ms"] < float("inf")
    st = data["stages"]
    assert data["comparisons"]["fusion_vs_lidar_period"] == round(st["fusion/cpu/fusion"]["median_ms"] / 100.0, 4)
    assert data["comparisons"]["fusion_tracking_vs_lidar_period"] == round(
        st["fusion/cpu/total"]["median_ms"] / 100.0, 4)
    fw = data["fusion_workload"]
    assert (fw["points"], fw["nan_points"], fw["masks"], fw["image"]) == (120000, 6000, 8, [1280, 720])
    # 4 frames (1 warm-up + 3) at 10 Hz: the 6 planted objects are fused and their tracks confirmed
    assert fw["detections_ok"] == 6 and fw["confirmed_tracks"] == 6
    assert data["skipped"] == {}
    printed = capsys.readouterr().out
    assert "fusion/cpu/tracking" in printed and "fusion workload: 120000 points (6000 NaN), 8 masks" in printed


def test_bench_fusion_rejects_no_frames(capsys):
    with pytest.raises(SystemExit):
        bench_cli.main(["--profiles", "fusion", "--frames", "0"])
    assert "--frames" in capsys.readouterr().err


def test_fusion_workload_inputs(fusion_workload):
    w = fusion_workload
    assert w.camera.distortion_model == "plumb_bob" and np.any(w.camera.D != 0)
    assert (w.camera.width, w.camera.height) == (1280, 720)
    R = w.T_cam_lidar[:3, :3]
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1.0) and np.all(w.T_cam_lidar[3] == [0, 0, 0, 1])
    assert len(w.clouds) >= 2
    for cloud in w.clouds:
        assert cloud.shape == (120000, 3) and cloud.dtype == np.float32
        nan_rows = np.isnan(cloud).any(axis=1)
        assert np.count_nonzero(nan_rows) == 6000 and np.isnan(cloud[nan_rows]).all()  # 5 %, whole rows
        assert np.isfinite(cloud[~nan_rows]).all()
    assert not np.array_equal(w.clouds[0], w.clouds[1], equal_nan=True)  # independent noise per variant
    # most returns lie on the sloped apron (within 10 cm); buildings rise above every planted object
    pts = w.clouds[0][~np.isnan(w.clouds[0][:, 0])].astype(np.float64)
    a, b, c = w.ground
    above = pts[:, 2] - (a * pts[:, 0] + b * pts[:, 1] + c)
    assert 0.5 < np.mean(np.abs(above) < 0.1) < 0.95 and above.max() > 3.0
    assert a > 0 and b > 0  # not a flat ground
    # 8 masks at 1280x720: 6 objects + 2 bare-ground patches, inside the image, pairwise disjoint
    assert len(w.masks) == 8 and len(w.objects) == 6 and len(w.ground_patches) == 2
    assert [m.id for m in w.masks] == list(range(1, 9))
    full = np.stack([m.full_mask(1280, 720) for m in w.masks])
    assert all(m.area == f.sum() > 0 for m, f in zip(w.masks, full))  # nothing clipped away
    assert full.sum(axis=0).max() == 1
    stamps = [w.frame(i)[2] for i in range(5)]
    assert np.all(np.diff(stamps) == 100_000_000)
    fm, cloud, _ = w.frame(5)
    assert (fm.width, fm.height, len(fm.masks)) == (1280, 720, 8) and cloud is w.clouds[5 % len(w.clouds)]


def _check_fused_at_planted(w, result):
    """Every object mask -> an obstacle whose centre lies inside the planted box's footprint, height close;
    the bare-ground masks find no non-ground point, and are FLAT (the ground returns in them are)."""
    import math

    from s2m_ros.obstacles.fusion import FLAT

    assert len(result.obstacles) == 8
    for k, (name, centre, size, yaw) in enumerate(w.objects):
        o, rep = result.obstacles[k], result.reports[k]
        assert rep.status == "ok" and not o.low_support and o.num_points >= 20, name
        dx, dy = o.center[0] - centre[0], o.center[1] - centre[1]
        along = math.cos(yaw) * dx + math.sin(yaw) * dy
        across = -math.sin(yaw) * dx + math.cos(yaw) * dy
        assert abs(along) <= size[0] / 2 and abs(across) <= size[1] / 2, (name, along, across)
        assert 0.75 * size[2] <= o.size[2] <= size[2] + 0.1, name
    for o, rep in zip(result.obstacles[6:], result.reports[6:]):
        assert rep.status == FLAT and o.low_support and rep.in_mask == 0


def test_fusion_workload_obstacles_are_the_planted_objects(fusion_workload):
    from s2m_ros.obstacles.fusion import fuse

    w = fusion_workload
    fm, cloud, _ = w.frame(0)
    result = fuse(fm, cloud, w.camera, w.T_cam_lidar)
    assert result.num_points == 120000 and result.num_finite <= 114000
    assert result.plane is not None and result.plane.fitted
    np.testing.assert_allclose(result.plane.normal, np.array([-w.ground[0], -w.ground[1], 1.0])
                               / np.linalg.norm([w.ground[0], w.ground[1], 1.0]), atol=5e-3)
    _check_fused_at_planted(w, result)


@settings(max_examples=4, deadline=None)
@given(seed=st.integers(1, 2 ** 31))
def test_fusion_workload_any_seed(seed):
    from s2m_ros.obstacles.fusion import fuse

    w = fusion_bench.fusion_workload(seed=seed, variants=1)
    fm, cloud, _ = w.frame(0)
    assert cloud.shape == (120000, 3) and len(fm.masks) == 8
    assert np.stack([m.full_mask(1280, 720) for m in w.masks]).sum(axis=0).max() == 1
    _check_fused_at_planted(w, fuse(fm, cloud, w.camera, w.T_cam_lidar))


def test_time_fusion_tracks_for_real(fusion_workload):
    samples, step = fusion_bench.time_fusion(fusion_workload, frames=2, warmup=2)
    assert {k: len(v) for k, v in samples.items()} == {"fusion": 2, "tracking": 2, "total": 2, "fuse": 2}
    assert step.stamp_ns == fusion_workload.frame(3)[2] and not step.skipped and not step.reset
    # 4 consecutive frames: each planted object has one confirmed track with 4 hits, at the object;
    # the FLAT ground masks are not tracked
    by_mask = {t.mask_id: t for t in step.tracks}
    assert sorted(by_mask) == [1, 2, 3, 4, 5, 6] and len(step.tracks) == 6
    for k, (name, centre, size, yaw) in enumerate(fusion_workload.objects):
        t = by_mask[k + 1]
        assert t.confirmed and t.hits == 4, name
        assert np.hypot(*(t.center[:2] - centre[:2])) < 0.5 * np.hypot(size[0], size[1]), name
