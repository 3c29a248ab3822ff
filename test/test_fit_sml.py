"""`s2m fit-sml` on a tiny logits model whose statistics can be computed by hand."""
import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from s2m_ros.cli import fit_sml
from s2m_ros.segmentation.scores import SMLStats


def _identity_logits(path):
    """'logits' = the normalised input itself (3 classes), any input size."""
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, "H", "W"])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3, "H", "W"])
    g = helper.make_graph([helper.make_node("Identity", ["image"], ["logits"])], "id", [x], [y])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return str(path)


def _images(tmp_path):
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (6, 8, 3), dtype=np.uint8) for _ in range(2)]
    for k, im in enumerate(imgs):
        cv2.imwrite(str(tmp_path / ("%d.png" % k)), im)
    return imgs


def test_fit_sml_statistics_are_exact(tmp_path):
    model = _identity_logits(tmp_path / "m.onnx")
    imgs = _images(tmp_path)
    out = tmp_path / "sml.json"
    rc = fit_sml.main(["--model", model, "--preset", "none", "--images", str(tmp_path), "--out", str(out),
                       "--set", "input_width=0", "--set", "input_height=0"])
    assert rc == 0
    stats = SMLStats.load(out)
    # by hand: logits are BGR / 255 (scale 1/255, mean 0, std 1); class = argmax channel
    logits = np.concatenate([im.reshape(-1, 3) / 255.0 for im in imgs])
    top, cls = logits.max(axis=1), logits.argmax(axis=1)
    for c in range(3):
        sel = top[cls == c]
        assert stats.count[c] == sel.size
        assert stats.mean[c] == pytest.approx(sel.mean(), abs=1e-6)
        assert stats.std[c] == pytest.approx(max(sel.std(), 1e-3), abs=1e-6)


def test_fit_sml_errors(tmp_path, capsys):
    assert fit_sml.main(["--model", str(tmp_path / "none.onnx"), "--images", str(tmp_path),
                         "--out", str(tmp_path / "o.json")]) == 2
    assert "none.onnx" in capsys.readouterr().err
    assert fit_sml.main(["--model", "x.onnx", "--preset", "nope", "--images", ".", "--out", "o.json"]) == 2
    assert "unknown preset" in capsys.readouterr().err
