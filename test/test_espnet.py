"""ESPNet / ESPNetv2 (Cityscapes) as anomaly scorers: torch models, ONNX export, ModelScorer.

Real weights and images come from ../shared/data (``shared_data`` fixture; skipped when absent).
Each ONNX model is exported once per module (cached in a tmp_path_factory folder). The
bring-your-own-ONNX tests build tiny torch models here, export them and check the scorer against
values computed independently with numpy.
"""
import dataclasses
import json
import pathlib

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from s2m_ros.segmentation.scores import score_from_logits  # noqa: E402
from s2m_ros.export import segnet  # noqa: E402
from s2m_ros.export.espnet import ESPNet, load_espnet, load_state  # noqa: E402
from s2m_ros.export.espnetv2 import ESPNetv2, adaptive_avg_pool2d, branch_dilations, load_espnetv2  # noqa: E402
from s2m_ros.inference.backend import ModelFileError  # noqa: E402
from s2m_ros.segmentation.model_scorer import (PRESETS, ModelScorer, NonFiniteOutputError, ScorerConfig,  # noqa: E402
                                      ScorerConfigError, config_for_model, prepare_input, resize_score)

WEIGHTS = {
    "espnet": "weights/espnet_p2_q8_cityscapes/decoder/espnet_p_2_q_8.pth",
    "espnetv2": "weights/espnetv2_s2.0_cityscapes/espnetv2_s_2.0_city_1024x512.pth",
}
LOADERS = {"espnet": load_espnet, "espnetv2": load_espnetv2}
# Frames where the road is plainly visible in the lower half (checked by eye on colourised output).
ROAD_FRAMES = [
    "nuscenes_mini_1sample/n015-2018-07-24-11-22-45+0800__CAM_FRONT__1532402927612460.jpg",
    "kitti_object_3frames/training/image_2/000001.png",
    "roadanomaly/frames/animals14_Dekemhare_Road.jpg",
    "roadanomaly/frames/animals18_Goose_on_the_road_Memphis.jpg",
    "roadanomaly/frames/cones05_Corner_of_Kingsley_Park.jpg",
]
ROAD, SIDEWALK, BUILDING, VEGETATION, SKY = 0, 1, 2, 8, 10
THREADS = 1  # torch and ONNX Runtime: single-threaded runs stay fast when the CI machine is busy


class _Cache:
    """Per-module cache of loaded torch models and exported ONNX files."""

    def __init__(self, folder, espnet_export):
        self.folder = folder
        self.models = {}
        self.exports = {"espnet": (pathlib.Path(espnet_export["path"]), {"stdout": espnet_export["stdout"]})}

    def model(self, arch, data):
        if arch not in self.models:
            torch.set_num_threads(THREADS)
            self.models[arch] = LOADERS[arch](data / WEIGHTS[arch])
        return self.models[arch]

    def onnx(self, arch, data):
        """The command line's export (espnet, shared by the run: conftest.espnet_export) or export_onnx
        (espnetv2); returns (path, info)."""
        if arch not in self.exports:
            out = self.folder / ("%s.onnx" % arch)
            info = segnet.export_onnx(arch, data / WEIGHTS[arch], out, model=self.model(arch, data))
            self.exports[arch] = (out, info)
        return self.exports[arch]


@pytest.fixture(scope="module")
def cache(tmp_path_factory, espnet_export):
    return _Cache(tmp_path_factory.mktemp("segnet"), espnet_export)


def _reference_input(arch, image_bgr):
    """The published preprocessing, written out literally (not through the presets)."""
    if arch == "espnet":  # ESPNet's test script: normalise, resize (cv2 bilinear), / 255
        mean = np.array([72.3923111, 82.90893555, 73.15840149], np.float32)
        std = np.array([45.3192215, 46.15289307, 44.91483307], np.float32)
        x = cv2.resize((image_bgr.astype(np.float32) - mean) / std, (1024, 512), interpolation=cv2.INTER_LINEAR)
        x = x / 255.0
    else:  # EdgeNets: RGB in [0, 1], resize, ImageNet mean / std
        x = cv2.resize(image_bgr[:, :, ::-1].astype(np.float32) / 255.0, (1024, 512), interpolation=cv2.INTER_LINEAR)
        x = (x - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)


# ------------------------------------------------------------------ torch models

@pytest.mark.parametrize("arch,params", [("espnet", 364_569), ("espnetv2", 789_242)])
def test_published_weights_load_exactly(shared_data, arch, params):
    path = shared_data / WEIGHTS[arch]
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    model = ESPNet() if arch == "espnet" else ESPNetv2()
    missing = load_state(model, path)
    assert all(k.endswith("num_batches_tracked") for k in missing)
    ours = {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
    theirs = {k for k in state if not k.endswith("num_batches_tracked")}
    assert ours == theirs
    for k in theirs:
        assert tuple(model.state_dict()[k].shape) == tuple(state[k].shape), k
    n_params = sum(p.numel() for p in model.parameters())
    in_file = sum(v.numel() for k, v in state.items()
                  if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    assert n_params == in_file == params  # 0.36 M / 0.79 M as published
    assert not model.training


def test_loading_the_wrong_weights_fails(shared_data, tmp_path):
    with pytest.raises(RuntimeError, match="unexpected|missing|size"):
        load_espnet(shared_data / WEIGHTS["espnetv2"])
    state = torch.load(str(shared_data / WEIGHTS["espnet"]), map_location="cpu", weights_only=True)
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, str(tmp_path / "extra.pth"))
    with pytest.raises(RuntimeError, match="extra.weight"):
        load_espnet(tmp_path / "extra.pth")
    del state["extra.weight"]
    del state["encoder.level1.conv.weight"]
    torch.save(state, str(tmp_path / "missing.pth"))
    with pytest.raises(RuntimeError, match="encoder.level1.conv.weight"):
        load_espnet(tmp_path / "missing.pth")


def test_eesp_branch_dilations():
    # receptive fields 3, 5, 7, 9 -> d 1..4; above the limit they fall back to d=1, sorted first
    assert branch_dilations(4, 13) == [1, 2, 3, 4]
    assert branch_dilations(4, 9) == [1, 2, 3, 4]
    assert branch_dilations(4, 7) == [1, 1, 2, 3]


@pytest.mark.parametrize("out_hw", [(5, 7), (16, 32), (4, 9), (32, 64), (13, 17)])
def test_exportable_adaptive_pool_equals_torch(out_hw):
    x = torch.randn(1, 10, 32, 64, generator=torch.Generator().manual_seed(0))
    ref = torch.nn.functional.adaptive_avg_pool2d(x, out_hw)
    assert torch.allclose(adaptive_avg_pool2d(x, out_hw), ref, atol=1e-5)


@pytest.mark.parametrize("arch", ["espnet", "espnetv2"])
def test_segmentation_looks_like_cityscapes(shared_data, cache, arch):
    """The published weights segment road scenes as Cityscapes. Run through the exported model with the
    published preprocessing (ONNX Runtime: ESPNet 26 s in torch here, 5 s in ONNX Runtime);
    test_onnx_export_matches_torch checks that the export is the torch model."""
    path, _ = cache.onnx(arch, shared_data)
    session = ModelScorer(config_for_model(path), threads=THREADS).session
    for rel in ROAD_FRAMES:
        image = cv2.imread(str(shared_data / rel))
        logits = session.run({"image": _reference_input(arch, image)})["logits"][0]
        assert logits.shape == (20, 512, 1024)
        pred = logits[:19].argmax(0)
        lower = np.bincount(pred[256:].ravel(), minlength=19)
        assert lower.argmax() == ROAD, (rel, lower)
        if "CAM_FRONT" in rel:
            hist = np.bincount(pred.ravel(), minlength=19) / pred.size
            top4 = set(np.argsort(-hist)[:4].tolist())
            assert top4 <= {ROAD, SIDEWALK, BUILDING, VEGETATION, SKY}, hist
            assert ROAD in top4 and SKY in top4
            sky_rows = np.nonzero(pred == SKY)[0]
            assert np.mean(sky_rows < 256) > 0.95  # the sky is above the horizon


# ------------------------------------------------------------------ ONNX export

@pytest.mark.parametrize("arch", ["espnet", "espnetv2"])
def test_onnx_export_matches_torch(shared_data, cache, arch):
    import onnx

    path, info = cache.onnx(arch, shared_data)
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == ["image"]
    assert [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim] == [1, 3, 512, 1024]
    assert [o.name for o in graph.output] == ["logits"]
    assert [d.dim_value for d in graph.output[0].type.tensor_type.shape.dim] == [1, 20, 512, 1024]
    side = json.loads((path.parent / (path.name + ".json")).read_text())
    assert side["preset"] == arch and (side["input_width"], side["input_height"]) == (1024, 512)
    model = cache.model(arch, shared_data)
    if arch != "espnet":  # the espnet export ran the command line, which made this comparison (checked below)
        assert segnet.compare_with_torch(model, path, arch, 1024, 512, threads=THREADS) < 1e-3
    # and on a real frame, through the scorer's preprocessing
    image = cv2.imread(str(shared_data / ROAD_FRAMES[0]))
    scorer = ModelScorer(config_for_model(path), threads=THREADS)
    x = scorer.preprocess(image)
    with torch.no_grad():
        ref = model(torch.from_numpy(x))[0].numpy()
    assert np.abs(scorer.logits(image) - ref).max() < 1e-3
    if arch == "espnet":
        out = info["stdout"]
        assert "wrote %s" % path in out and "max abs diff ONNX Runtime vs torch" in out
        assert "--scorer-model %s" % path in out
        diff = float(out.split("random input:")[1].split()[0])  # compare_with_torch(seed 0, 1024x512)
        assert diff < 1e-3


def test_export_cli_errors(tmp_path, capsys):
    assert segnet.main(["espnet", "--weights", str(tmp_path / "none.pth"), "--out", str(tmp_path / "x.onnx")]) == 2
    assert "not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        segnet.main(["--weights", "w.pth", "--out", "x.onnx"])  # no architecture
    with pytest.raises(SystemExit):
        segnet.main(["espnet", "--arch", "espnetv2", "--weights", "w.pth", "--out", "x.onnx"])
    with pytest.raises(ValueError, match="multiples of 16"):
        segnet.export_onnx("espnet", None, tmp_path / "x.onnx", width=1000, model=ESPNet())


# ------------------------------------------------------------------ presets and the scorer on real models

@settings(max_examples=25, deadline=None)
@given(st.integers(8, 80), st.integers(8, 80), st.integers(0, 2 ** 31 - 1))
def test_espnet_preset_equals_published_order_of_operations(h, w, seed):
    """((bgr - m) / s) resized / 255 == resize, x / 255, (x - m / 255) / s (both resizes are linear)."""
    image = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    mean = np.array([72.3923111, 82.90893555, 73.15840149], np.float32)
    std = np.array([45.3192215, 46.15289307, 44.91483307], np.float32)
    for interp, flag in (("linear", cv2.INTER_LINEAR), ("area", cv2.INTER_AREA)):
        ref = cv2.resize((image.astype(np.float32) - mean) / std, (32, 16), interpolation=flag) / 255.0
        cfg = dataclasses.replace(PRESETS["espnet"], interpolation=interp)
        got = prepare_input(image, cfg, (32, 16))[0].transpose(1, 2, 0)
        np.testing.assert_allclose(got, ref, atol=2e-6)


@pytest.mark.parametrize("arch", ["espnet", "espnetv2"])
def test_model_scorer_presets(shared_data, cache, arch):
    path, _ = cache.onnx(arch, shared_data)
    image = cv2.imread(str(shared_data / ROAD_FRAMES[2]))  # 1280x720
    scorer = ModelScorer(config_for_model(path), threads=THREADS)
    assert scorer.name == "%s/msp" % arch
    assert scorer.preprocess(image).shape == (1, 3, 512, 1024)
    logits = scorer.logits(image)
    assert logits.shape == (20, 512, 1024) and logits.dtype == np.float32
    msp = scorer.score(image)
    assert msp.shape == (512, 1024) and msp.dtype == np.float32
    np.testing.assert_allclose(msp, score_from_logits(logits, "msp", slice(0, 19)), atol=1e-6)
    assert 0.0 <= msp.min() and msp.max() <= 1.0 - 1.0 / 19 + 1e-6
    # pixels predicted as road are more confident than the image on average
    assert msp[logits[:19].argmax(0) == ROAD].mean() < 0.75 * msp.mean()
    full = scorer.score_at(image)
    assert full.shape == image.shape[:2]
    np.testing.assert_allclose(full, resize_score(msp, image.shape[1], image.shape[0]))
    energy = ModelScorer(config_for_model(path, method="energy", smooth_sigma=2.0), threads=THREADS)
    ids = energy.id_logits(image)
    np.testing.assert_array_equal(ids, logits[:19])
    np.testing.assert_allclose(energy.score(image), score_from_logits(logits, "energy", slice(0, 19), sigma=2.0),
                               atol=1e-4)
    assert energy.name == "%s/energy" % arch
    # the preset is the published preprocessing up to the resize filter (area vs bilinear)
    ref = scorer.session.run({"image": _reference_input(arch, image)})["logits"][0]
    agree = np.mean(ref[:19].argmax(0) == logits[:19].argmax(0))
    assert agree > 0.95


# ------------------------------------------------------------------ bring your own ONNX

class _MeanScore(torch.nn.Module):
    """1x1xHxW map: -(mean over channels), so higher = darker (a 'normal is high' map negated)."""

    def forward(self, x):
        return -x.mean(dim=1, keepdim=True)


class _Stride8Logits(torch.nn.Module):
    """4 classes at 1/8 resolution: 8x8 mean of each channel, and their sum."""

    def forward(self, x):
        p = torch.nn.functional.avg_pool2d(x, 8)
        return torch.cat([p, p.sum(dim=1, keepdim=True)], 1)


class _FirstChannel(torch.nn.Module):
    def forward(self, x):
        return x[:, :1]


class _Log(torch.nn.Module):
    def forward(self, x):
        return torch.log(x)


def _export(module, path, h, w, dynamic=False, output="out"):
    kwargs = {}
    if dynamic:
        kwargs["dynamic_axes"] = {"input": {2: "h", 3: "w"}, output: {2: "h", 3: "w"}}
    with torch.no_grad():
        torch.onnx.export(module, (torch.zeros(1, 3, h, w),), str(path), input_names=["input"], output_names=[output],
                          opset_version=17, dynamo=False, **kwargs)
    return str(path)


@pytest.fixture(scope="module")
def byo(tmp_path_factory):
    d = tmp_path_factory.mktemp("byo")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "score_dynamic": _export(_MeanScore(), d / "score.onnx", 32, 48, dynamic=True, output="anomaly"),
            "stride8": _export(_Stride8Logits(), d / "stride8.onnx", 64, 96, output="logits"),
            "first": _export(_FirstChannel(), d / "first.onnx", 40, 56, output="map"),
            "log": _export(_Log(), d / "log.onnx", 16, 16, output="logits"),
        }


def _image(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_byo_score_output_dynamic_input(byo):
    image = _image(30, 50)
    cfg = ScorerConfig(model=byo["score_dynamic"], input_width=0, input_height=0, output="anomaly",
                       output_kind="score", scale=1.0, invert=True)
    scorer = ModelScorer(cfg)
    s = scorer.score(image)  # fed at its own size; invert undoes the model's negation
    np.testing.assert_allclose(s, image.astype(np.float32).mean(axis=2), rtol=1e-5)
    assert scorer.name == "score/score"
    # a fixed size on a dynamic model resizes first
    cfg2 = dataclasses.replace(cfg, input_width=24, input_height=16)
    assert ModelScorer(cfg2).score(image).shape == (16, 24)


def test_byo_stride8_logits(byo):
    image = _image(100, 130, seed=1)
    cfg = ScorerConfig(model=byo["stride8"], input_width=96, input_height=64, interpolation="linear",
                       scale=1.0 / 255, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), output="logits",
                       id_channels=[0, 2, 3], method="maxlogit")
    scorer = ModelScorer(cfg)
    x = prepare_input(image, cfg, (96, 64))[0]
    pooled = x.reshape(3, 8, 8, 12, 8).mean(axis=(2, 4))
    expected_logits = np.concatenate([pooled, pooled.sum(0, keepdims=True)], 0)
    s = scorer.score(image)
    assert s.shape == (8, 12)  # the model's output resolution
    np.testing.assert_allclose(s, -expected_logits[[0, 2, 3]].max(0), atol=1e-5)
    np.testing.assert_allclose(scorer.logits(image), expected_logits, atol=1e-5)
    assert scorer.score_at(image).shape == (100, 130)


def test_byo_rgb_channel_order(byo):
    image = _image(40, 56, seed=2)
    cfg = ScorerConfig(model=byo["first"], input_width=56, input_height=40, channel_order="rgb", scale=1.0,
                       output=0, output_kind="score")
    np.testing.assert_array_equal(ModelScorer(cfg).score(image), image[:, :, 2].astype(np.float32))
    bgr = dataclasses.replace(cfg, channel_order="bgr")
    np.testing.assert_array_equal(ModelScorer(bgr).score(image), image[:, :, 0].astype(np.float32))


def test_byo_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="s2m export espnet --weights .* --out") as err:
        ModelScorer(ScorerConfig(model=str(tmp_path / "nope.onnx")))
    assert str(tmp_path / "nope.onnx") in str(err.value)


@pytest.mark.parametrize("overrides,match", [
    (dict(input_width=1024, input_height=512), "fixed input of 96x64"),
    (dict(id_channels=5), "id_channels=5"),
    (dict(id_channels=[0, 4]), "indexes past"),
    (dict(output="scores"), "no output 'scores'"),
    (dict(output=3), "out of range"),
    (dict(output_kind="score"), "'score' output must be"),
    (dict(id_channels=1, method="msp"), "at least 2"),
])
def test_byo_shape_mismatch(byo, overrides, match):
    base = dict(model=byo["stride8"], input_width=96, input_height=64, output="logits")
    base.update(overrides)
    with pytest.raises(ScorerConfigError, match=match):
        ModelScorer(ScorerConfig(**base))


@pytest.mark.parametrize("overrides,name", [
    (dict(channel_order="rgbx"), "channel_order"), (dict(method="bogus"), "method"),
    (dict(output_kind="probs"), "output_kind"), (dict(std=(1.0, 0.0, 1.0)), "std"),
    (dict(mean=(1.0, 2.0)), "mean"), (dict(input_width=0), "input_width"),
    (dict(temperature=0.0), "temperature"), (dict(id_channels=0), "id_channels"),
    (dict(method="sml"), "sml_stats"), (dict(interpolation="cubic"), "interpolation"),
    (dict(smooth_sigma=-1.0), "smooth_sigma"),
])
def test_config_validation(overrides, name):
    with pytest.raises(ScorerConfigError, match=name):
        ScorerConfig(**overrides).validate()


def test_byo_nan_output_is_reported(byo):
    # log of a normalised image that is negative almost everywhere -> NaN
    cfg = ScorerConfig(model=byo["log"], input_width=16, input_height=16, output="logits", mean=(0.5,) * 3)
    scorer = ModelScorer(cfg)
    image = _image(16, 16, seed=3)
    with pytest.raises(NonFiniteOutputError) as err:
        scorer.score(image)
    assert 0 < err.value.count <= err.value.total == 3 * 16 * 16
    with pytest.raises(NonFiniteOutputError):
        scorer.logits(image)
    # all-positive input: log is finite, the score works
    ok = dataclasses.replace(cfg, mean=(-1.0,) * 3)
    assert np.isfinite(ModelScorer(ok).score(image)).all()


def test_config_for_model_needs_a_sidecar(tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"")
    with pytest.raises(ScorerConfigError, match="sidecar"):
        config_for_model(tmp_path / "m.onnx")
    (tmp_path / "m.onnx.json").write_text(json.dumps({"preset": "espnetv2", "input_width": 2048, "input_height": 1024}))
    cfg = config_for_model(tmp_path / "m.onnx", method="energy")
    assert (cfg.channel_order, cfg.input_width, cfg.input_height, cfg.method) == ("rgb", 2048, 1024, "energy")
    assert cfg.model == str(tmp_path / "m.onnx")
