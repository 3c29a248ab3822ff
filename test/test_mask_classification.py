"""Mask-classification scorers (the Mask2Former / Mask2Anomaly output form): the score formula, and
ModelScorer / S2MPipeline over a small ONNX model the test builds from ONNX operators."""
import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from onnx import TensorProto, helper

from s2m_ros.segmentation.model_scorer import ModelScorer, NonFiniteOutputError, ScorerConfig, ScorerConfigError
from s2m_ros.segmentation.pipeline import PipelineConfig, S2MPipeline
from s2m_ros.segmentation.scores import mask_classification_score

H, W = 48, 64
# Three queries: each mask is a 1x1 convolution of the BGR input (scale 1/255), i.e. it fires on one colour.
MASK_W = np.array([[-40.0, -40.0, 40.0],   # query 0: red (channel 2 of BGR)
                   [-40.0, 40.0, -40.0],   # query 1: green
                   [40.0, -40.0, -40.0]],  # query 2: blue
                  np.float32)
MASK_B = np.array([-10.0, -10.0, -10.0], np.float32)
# Class logits (known classes 0, 1 and "no object" last): a constant per query plus a small input-dependent term
# (mean colour) so that the graph computes them, as a real decoder does.
CLS_B = np.array([[6.0, 0.0, 0.0],     # query 0 -> known class 0
                  [0.0, 6.0, 0.0],     # query 1 -> known class 1
                  [0.0, 0.0, 6.0]],    # query 2 -> "no object"
                 np.float32)
CLS_W = np.linspace(-0.5, 0.5, 3 * 9, dtype=np.float32).reshape(3, 9)  # mean BGR (3) -> 3 queries x 3 classes


def _model(path, queries_in_masks=3, batch=True, nan=False):
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, H, W])
    nodes = [helper.make_node("Conv", ["image", "mw", "mb"], ["masks"]),
             helper.make_node("GlobalAveragePool", ["image"], ["gap"]),
             helper.make_node("Flatten", ["gap"], ["flat"]),
             helper.make_node("Gemm", ["flat", "cw", "cb"], ["cls_flat"]),
             helper.make_node("Reshape", ["cls_flat", "shape"], ["cls_pre"])]
    inits = [helper.make_tensor("mw", TensorProto.FLOAT, [queries_in_masks, 3, 1, 1],
                                np.resize(MASK_W, (queries_in_masks, 3)).ravel().tolist()),
             helper.make_tensor("mb", TensorProto.FLOAT, [queries_in_masks], np.resize(MASK_B, queries_in_masks).tolist()),
             helper.make_tensor("cw", TensorProto.FLOAT, [3, 9], CLS_W.ravel().tolist()),
             helper.make_tensor("cb", TensorProto.FLOAT, [9], CLS_B.ravel().tolist()),
             helper.make_tensor("shape", TensorProto.INT64, [3], [1, 3, 3])]
    if nan:
        nodes.append(helper.make_node("Mul", ["cls_pre", "k"], ["pred_logits"]))
        inits.append(helper.make_tensor("k", TensorProto.FLOAT, [1], [float("nan")]))
    else:
        nodes.append(helper.make_node("Identity", ["cls_pre"], ["pred_logits"]))
    mask_shape = [1, queries_in_masks, H, W]
    if not batch:
        nodes[0] = helper.make_node("Conv", ["image", "mw", "mb"], ["masks4"])
        nodes.append(helper.make_node("Squeeze", ["masks4", "ax0"], ["masks"]))
        inits.append(helper.make_tensor("ax0", TensorProto.INT64, [1], [0]))
        mask_shape = mask_shape[1:]
    outs = [helper.make_tensor_value_info("pred_logits", TensorProto.FLOAT, [1, 3, 3]),
            helper.make_tensor_value_info("masks", TensorProto.FLOAT, mask_shape)]
    model = helper.make_model(helper.make_graph(nodes, "m2a", [x], outs, inits),
                              opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)


def _config(path, **kw):
    values = dict(model=path, input_width=W, input_height=H, channel_order="bgr", scale=1.0 / 255.0,
                  output="pred_logits", mask_output="masks", output_kind="mask_classification", method="msp")
    values.update(kw)
    return ScorerConfig(**values)


def _image():
    img = np.zeros((H, W, 3), np.uint8)
    img[:, :20] = (0, 0, 255)   # red: query 0, known class 0
    img[:, 20:40] = (0, 255, 0)  # green: query 1, known class 1
    img[:, 40:] = (255, 0, 0)    # blue: query 2, "no object" -> nothing known claims it
    return img


def _reference(img, method):
    """The model and the score written out in numpy, independently of the code under test."""
    x = img.astype(np.float64) / 255.0  # H x W x 3, BGR
    masks = np.einsum("hwc,qc->qhw", x, MASK_W.astype(np.float64)) + MASK_B[:, None, None]
    cls = (x.mean(axis=(0, 1)) @ CLS_W.astype(np.float64) + CLS_B.ravel()).reshape(3, 3)
    sig = 1.0 / (1.0 + np.exp(-masks))
    if method == "msp":
        p = np.exp(cls) / np.exp(cls).sum(axis=1, keepdims=True)
        return 1.0 - np.einsum("qc,qhw->chw", p[:, :2], sig).max(axis=0)
    per_class = np.einsum("qc,qhw->chw", cls[:, :2], sig)
    return -per_class.max(axis=0) if method == "maxlogit" else -np.tanh(per_class).sum(axis=0)


def test_hand_computed_pixel():
    # two queries, classes (a, b, no-object); one pixel: query 0 mask logit 0 (sigmoid 0.5), query 1 +inf-ish
    cls = np.array([[np.log(3.0), 0.0, 0.0], [0.0, 0.0, np.log(2.0)]])  # softmax: (.6 .2 .2), (.25 .25 .5)
    masks = np.array([[[0.0]], [[40.0]]], np.float32)
    # P_a = .6 * .5 + .25 * 1 = .55, P_b = .2 * .5 + .25 = .35
    assert mask_classification_score(cls, masks, "msp")[0, 0] == pytest.approx(0.45, abs=1e-6)
    # L_a = log3 * .5 + 0, L_b = 0
    assert mask_classification_score(cls, masks, "maxlogit")[0, 0] == pytest.approx(-0.5 * np.log(3.0), abs=1e-6)
    assert mask_classification_score(cls, masks, "rba")[0, 0] == pytest.approx(-np.tanh(0.5 * np.log(3.0)), abs=1e-6)
    # only class b known: P_b = .35
    assert mask_classification_score(cls, masks, "msp", id_channels=[1])[0, 0] == pytest.approx(0.65, abs=1e-6)
    # a pixel no query covers is fully anomalous for msp
    assert mask_classification_score(cls, np.full((2, 1, 1), -60.0, np.float32), "msp")[0, 0] == pytest.approx(1.0)


def test_formula_errors():
    with pytest.raises(ValueError, match="unknown mask-classification method 'energy'"):
        mask_classification_score(np.zeros((2, 3)), np.zeros((2, 4, 4)), "energy")
    with pytest.raises(ValueError, match=r"class logits must be \(Q, C\)"):
        mask_classification_score(np.zeros((2, 1)), np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match="Q = 2 queries"):
        mask_classification_score(np.zeros((2, 3)), np.zeros((3, 4, 4)))


@settings(max_examples=60, deadline=None)
@given(cls=arrays(np.float64, (4, 5), elements=st.floats(-20, 20)),
       masks=arrays(np.float32, (4, 3, 3), elements=st.floats(-30, 30, width=32)),
       perm=st.permutations(range(4)))
def test_properties(cls, masks, perm):
    s = mask_classification_score(cls, masks, "msp")
    assert s.dtype == np.float32 and s.shape == (3, 3)
    # 1 - max_c P_c with P_c <= sum_q m_q: bounded above by 1 and below by 1 - (number of queries)
    assert np.all(s <= 1.0 + 1e-6) and np.all(s >= 1.0 - 4 - 1e-5)
    for method in ("msp", "maxlogit", "rba"):  # queries are an unordered set
        a = mask_classification_score(cls, masks, method)
        b = mask_classification_score(cls[list(perm)], masks[list(perm)], method)
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)
    # a query that is certainly "no object" changes nothing under msp
    extra_cls = np.vstack([cls, [[-50.0] * 4 + [50.0]]])
    extra_masks = np.concatenate([masks, np.full((1, 3, 3), 30.0, np.float32)])
    np.testing.assert_allclose(mask_classification_score(extra_cls, extra_masks, "msp"), s, atol=1e-5)


@pytest.mark.parametrize("method", ["msp", "maxlogit", "rba"])
@pytest.mark.parametrize("batch", [True, False])
def test_model_scorer_equals_the_reference(tmp_path, method, batch):
    scorer = ModelScorer(_config(_model(tmp_path / "m.onnx", batch=batch), method=method))
    assert scorer.name == "m/%s" % method
    img = _image()
    got = scorer.score(img)
    assert got.shape == (H, W)
    np.testing.assert_allclose(got, _reference(img, method), rtol=1e-4, atol=1e-4)
    # the blue region (claimed only by the "no object" query) scores above both known regions
    assert got[:, 44:].min() > max(got[:, :16].max(), got[:, 24:36].max())
    cls, masks = scorer.mask_classification_outputs(img)
    assert cls.shape == (3, 3) and masks.shape == (3, H, W)
    np.testing.assert_array_equal(scorer.raw_output(img), cls)


def test_outputs_by_index_and_known_classes(tmp_path):
    path = _model(tmp_path / "m.onnx")
    img = _image()
    by_name = ModelScorer(_config(path)).score(img)
    np.testing.assert_array_equal(ModelScorer(_config(path, output=0, mask_output=1)).score(img), by_name)
    # id_channels 1 = only class 0 known: the green region becomes anomalous too
    only_first = ModelScorer(_config(path, id_channels=1)).score(img)
    assert only_first[:, 24:36].min() > 0.9 > only_first[:, :16].max()


def test_configuration_errors(tmp_path):
    path = _model(tmp_path / "m.onnx")
    with pytest.raises(ScorerConfigError, match="mask_classification model takes one of msp, maxlogit, rba"):
        ModelScorer(_config(path, method="energy"))
    with pytest.raises(ScorerConfigError, match="must differ"):
        ModelScorer(_config(path, mask_output="pred_logits"))
    with pytest.raises(ScorerConfigError, match="both name 'pred_logits'"):
        ModelScorer(_config(path, output=0, mask_output="pred_logits"))
    with pytest.raises(ScorerConfigError, match=r"no output 'mask_logits' \(scorer.mask_output"):
        ModelScorer(_config(path, mask_output="mask_logits"))
    with pytest.raises(ScorerConfigError, match="scorer.mask_output=5 is out of range"):
        ModelScorer(_config(path, mask_output=5))
    with pytest.raises(ScorerConfigError, match="id_channels=3 but .* has 2 known classes"):
        ModelScorer(_config(path, id_channels=3))
    with pytest.raises(ScorerConfigError, match="class logits must be 1xQxC"):
        ModelScorer(_config(path, output="masks", mask_output="pred_logits"))
    with pytest.raises(ScorerConfigError, match="3 queries of class logits .* but 4 of mask logits"):
        ModelScorer(_config(_model(tmp_path / "q4.onnx", queries_in_masks=4)))
    scorer = ModelScorer(_config(path))
    with pytest.raises(ScorerConfigError, match="no logits"):
        scorer.logits(_image())


def test_non_finite_output_is_reported(tmp_path):
    scorer = ModelScorer(_config(_model(tmp_path / "nan.onnx", nan=True)))
    with pytest.raises(NonFiniteOutputError) as info:
        scorer.score(_image())
    assert info.value.count == 9 and info.value.total == 9


def test_pipeline_segments_what_no_known_class_claims(tmp_path):
    """profile onnx+grabcut with a mask-classification model: one instance, on the unclaimed object."""
    path = _model(tmp_path / "m.onnx")
    img = np.zeros((H, W, 3), np.uint8)
    img[:] = (0, 0, 255)                  # a red scene: known class 0 everywhere
    img[14:34, 24:44] = (255, 0, 0)        # a blue object that only "no object" claims
    cfg = PipelineConfig(profile="onnx+grabcut", scorer_model=path, scorer=dict(
        input_width=W, input_height=H, channel_order="bgr", scale=1.0 / 255.0, output="pred_logits",
        mask_output="masks", output_kind="mask_classification"))
    result = S2MPipeline(cfg).process(img)
    assert len(result.instances) == 1
    mask = result.instances[0].full_mask(W, H)
    truth = np.zeros((H, W), bool)
    truth[14:34, 24:44] = True
    assert (mask & truth).sum() / (mask | truth).sum() >= 0.9
