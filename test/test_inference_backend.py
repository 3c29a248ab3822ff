"""The runtime interface: ONNX Runtime sessions, missing files, and the TensorRT cache logic (CPU-testable parts)."""
import importlib.util

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from s2m_ros.inference.backend import ModelFileError, create_session
from s2m_ros.inference.tensorrt import (TensorRTError, default_profiles, engine_cache_key, engine_path)


def _affine(path, batch="N"):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 3])
    g = helper.make_graph([helper.make_node("Mul", ["x", "k"], ["m"]), helper.make_node("Add", ["m", "b"], ["y"])],
                          "affine", [x], [y],
                          [helper.make_tensor("k", TensorProto.FLOAT, [3], [1, 2, 3]),
                           helper.make_tensor("b", TensorProto.FLOAT, [3], [0.5, 0, -1])])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return str(path)


def test_onnxruntime_session_runs_and_describes_itself(tmp_path):
    s = create_session(_affine(tmp_path / "a.onnx"), threads=1)
    assert s.backend == "onnxruntime" and s.name == "a.onnx"
    assert s.input_names == ["x"] and s.output_names == ["y"] and s.input_shapes["x"] == ["N", 3]
    assert "CPUExecutionProvider" in s.providers
    out = s.run({"x": np.array([[1, 1, 1], [2, 0, 1]], np.float32)})
    assert out["y"].tolist() == [[1.5, 2, 2], [2.5, 0, 2]]


def test_missing_model_names_path_and_hint(tmp_path):
    with pytest.raises(ModelFileError) as e:
        create_session(str(tmp_path / "nope.onnx"), hint="s2m export espnet --out nope.onnx")
    assert "nope.onnx" in str(e.value) and "s2m export espnet" in str(e.value)
    with pytest.raises(ValueError, match="unknown backend"):
        create_session(_affine(tmp_path / "a.onnx"), backend="openvino")


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="tensorrt is installed here")
def test_tensorrt_backend_missing_is_a_clear_error(tmp_path):
    with pytest.raises(TensorRTError, match="onnxruntime"):
        create_session(_affine(tmp_path / "a.onnx"), backend="tensorrt")


def test_engine_cache_key_changes_with_everything_it_depends_on():
    base = dict(onnx_bytes=b"model", trt_version="10.3.0", gpu_name="Orin", precision="fp16")
    k = engine_cache_key(**base)
    assert k == engine_cache_key(**base) and len(k) == 20
    for field, other in (("onnx_bytes", b"model2"), ("trt_version", "10.4.0"), ("gpu_name", "H100"),
                         ("precision", "fp32")):
        assert engine_cache_key(**dict(base, **{field: other})) != k
    assert engine_cache_key(**base, profiles={"x": ([1, 3], [8, 3], [16, 3])}) != k
    with pytest.raises(ValueError, match="precision"):
        engine_cache_key(**dict(base, precision="int8"))
    assert engine_path("/c", "/m/decoder.onnx", k) == "/c/decoder.%s.engine" % k


def test_default_profiles():
    assert default_profiles({"img": [1, 3, 64, 64]}) == {}
    assert default_profiles({"boxes": ["N", 4]}, max_batch=8) == {"boxes": ([1, 4], [4, 4], [8, 4])}
    with pytest.raises(TensorRTError, match="dynamic dim 2"):
        default_profiles({"img": [1, 3, "H", 64]})
