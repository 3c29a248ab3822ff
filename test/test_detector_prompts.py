"""The ONNX score-map detector adapter, with small detectors built from ONNX operators."""
import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from s2m_ros.segmentation.prompts import LevelSetPromptGenerator, Prompt, scale_prompts
from s2m_ros.inference.backend import ModelFileError
from s2m_ros.segmentation.detector_prompts import (DetectorConfig, OnnxDetectorPromptGenerator,
                                               decode_boxes, render_map)

BOXES = [[8, 8, 24, 24], [9, 9, 25, 25], [40, 40, 50, 60], [0, 0, 5, 5]]
CONF = [0.9, 0.8, 0.7, 0.3]


def _detector(path, fmt="boxes_scores", boxes=BOXES, channels=3, size=64):
    """Constant boxes; confidences = const * max(input), so they depend on the rendered map."""
    inp = helper.make_tensor_value_info("map", TensorProto.FLOAT, [1, channels, size, size])
    nodes = [helper.make_node("ReduceMax", ["map"], ["mx"], keepdims=0),
             helper.make_node("Mul", ["mx", "conf"], ["scores"])]
    inits = [helper.make_tensor("conf", TensorProto.FLOAT, [len(CONF)], CONF),
             helper.make_tensor("boxes_c", TensorProto.FLOAT, [len(boxes), 4], np.ravel(boxes).tolist())]
    if fmt == "boxes_scores":
        nodes.append(helper.make_node("Identity", ["boxes_c"], ["boxes"]))
        outs = [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [len(boxes), 4]),
                helper.make_tensor_value_info("scores", TensorProto.FLOAT, [len(CONF)])]
    else:
        nodes += [helper.make_node("Unsqueeze", ["scores", "ax"], ["s2"]),
                  helper.make_node("Concat", ["boxes_c", "s2"], ["det2"], axis=1),
                  helper.make_node("Unsqueeze", ["det2", "ax0"], ["det"])]
        inits += [helper.make_tensor("ax", TensorProto.INT64, [1], [1]),
                  helper.make_tensor("ax0", TensorProto.INT64, [1], [0])]
        outs = [helper.make_tensor_value_info("det", TensorProto.FLOAT, [1, len(boxes), 5])]
    graph = helper.make_graph(nodes, "det", [inp], outs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)


def _map():
    s = np.zeros((128, 128), np.float32)
    # 2x2 blocks at even offsets survive the 2x bilinear downscale to the detector's 64x64 input
    s[30:32, 20:22] = 5.0  # inside box 0 (16..48 after x2 scaling)
    s[100:102, 90:92] = 3.0  # inside box 2 (80..100, 80..120)
    return s


def test_boxes_scores_layout(tmp_path):
    gen = OnnxDetectorPromptGenerator(DetectorConfig(model=_detector(tmp_path / "d.onnx")))
    prompts = gen(_map())
    # box 1 overlaps box 0 (IoU 0.89 > 0.5) and is suppressed; box 3 is below min_confidence
    assert [p.box for p in prompts] == [(16, 16, 32, 32), (80, 80, 20, 40)]
    assert [p.point for p in prompts] == [(20, 30), (90, 100)]
    # minmax rendering -> max of the input is exactly 1, so confidences are the constants
    assert [p.confidence for p in prompts] == pytest.approx([0.9, 0.7], abs=1e-6)
    assert [p.peak for p in prompts] == [5.0, 3.0]
    assert all(p.source == "detector" for p in prompts)


def test_detections_layout_and_cap(tmp_path):
    cfg = DetectorConfig(model=_detector(tmp_path / "d.onnx", fmt="detections"), output_format="detections",
                         max_prompts=1, min_confidence=0.0)
    prompts = OnnxDetectorPromptGenerator(cfg)(_map())
    assert [p.box for p in prompts] == [(16, 16, 32, 32)]


def test_confidence_depends_on_rendering(tmp_path):
    # without normalisation the map max (5.0) reaches the detector: confidences scale by 5
    cfg = DetectorConfig(model=_detector(tmp_path / "d.onnx"), normalize="none", nms_iou=1.0)
    conf = sorted(p.confidence for p in OnnxDetectorPromptGenerator(cfg)(_map()))
    assert conf == pytest.approx(sorted(5 * c for c in CONF))


def test_decode_box_formats():
    cfg = DetectorConfig(box_format="xywh")
    assert decode_boxes([[1, 2, 3, 4]], cfg, (10, 10)).tolist() == [[1, 2, 4, 6]]
    cfg = DetectorConfig(box_format="cxcywh")
    assert decode_boxes([[5, 5, 2, 4]], cfg, (10, 10)).tolist() == [[4, 3, 6, 7]]
    cfg = DetectorConfig(box_format="xyxy", normalized_boxes=True)
    assert decode_boxes([[0.1, 0.5, 0.2, 1.0]], cfg, (100, 50)).tolist() == [[10, 25, 20, 50]]


def test_render_map_normalisations():
    s = np.array([[0, 1], [2, np.nan]], np.float32)
    x = render_map(s, DetectorConfig(channels=3), (2, 2))
    assert x.shape == (1, 3, 2, 2)
    assert np.allclose(x[0, 0], [[0, 0.5], [1.0, 0.0]])  # NaN -> the minimum
    assert np.array_equal(x[0, 0], x[0, 2])
    x = render_map(s, DetectorConfig(channels=1, scale=255, mean=[10], std=[2]), (4, 2))
    assert x.shape == (1, 1, 2, 4)
    assert x.max() == pytest.approx((255 - 10) / 2)
    assert np.isfinite(render_map(np.full((3, 3), np.nan), DetectorConfig(), (3, 3))).all()


def test_bad_models_and_configs(tmp_path):
    with pytest.raises(ModelFileError, match="missing.onnx"):
        OnnxDetectorPromptGenerator(DetectorConfig(model=str(tmp_path / "missing.onnx")))
    with pytest.raises(ValueError, match="channels"):
        OnnxDetectorPromptGenerator(DetectorConfig(model=_detector(tmp_path / "d.onnx", channels=1)))
    with pytest.raises(ValueError, match="box_format"):
        OnnxDetectorPromptGenerator(DetectorConfig(model=_detector(tmp_path / "e.onnx"), box_format="yxyx"))
    with pytest.raises(ValueError, match="not in the model's outputs"):
        OnnxDetectorPromptGenerator(DetectorConfig(model=_detector(tmp_path / "f.onnx"), scores_output="nope"))
    gen = OnnxDetectorPromptGenerator(DetectorConfig(model=_detector(tmp_path / "g.onnx")))
    with pytest.raises(ValueError, match="2-D"):
        gen(np.zeros((3, 4, 5), np.float32))


def test_generators_are_interchangeable(tmp_path):
    s = _map()
    for gen in (LevelSetPromptGenerator(), OnnxDetectorPromptGenerator(DetectorConfig(model=_detector(tmp_path / "d.onnx")))):
        prompts = gen(s)
        assert all(isinstance(p, Prompt) for p in prompts) and gen.name in ("levels", "detector")


def test_scale_prompts_never_shrinks_and_clips():
    p = Prompt(box=(1, 2, 3, 4), point=(2, 3), negative_points=[(0, 0)], area=12)
    (q,) = scale_prompts([p], 2.5, 2.0, 100, 100)
    assert q.box == (2, 4, 8, 8) and q.point == (6, 7) and q.negative_points == [(1, 1)] and q.area == 60
    (q,) = scale_prompts([p], 10, 10, 30, 45)  # clipped to the 30 x 45 image
    assert q.box == (10, 20, 20, 25) and q.point == (25, 35)
    assert math.isnan(q.confidence) and q.source == "levels"
