"""Anomaly score functions: hand-computed values, invariances, SML statistics, smoothing."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from s2m_ros.segmentation import scores
from s2m_ros.segmentation.scores import SMLAccumulator, SMLStats

# one pixel, hand computed: logits (2, 0, ln 2) -> exp: e^2, 1, 2
L = np.array([2.0, 0.0, math.log(2.0)]).reshape(3, 1, 1)
Z = math.exp(2) + 1 + 2


def test_hand_computed_single_pixel():
    p = np.array([math.exp(2), 1.0, 2.0]) / Z
    assert scores.msp(L)[0, 0] == pytest.approx(1 - p.max(), abs=1e-12)
    assert scores.max_logit(L)[0, 0] == -2.0
    h = -(p * np.log(p)).sum()
    assert scores.entropy(L)[0, 0] == pytest.approx(h, abs=1e-12)
    assert scores.entropy(L, normalize=True)[0, 0] == pytest.approx(h / math.log(3), abs=1e-12)
    assert scores.energy(L)[0, 0] == pytest.approx(-math.log(Z), abs=1e-12)
    t = 2.0
    assert scores.energy(L, t)[0, 0] == pytest.approx(-t * math.log(np.exp(L[:, 0, 0] / t).sum()), abs=1e-12)


def test_uniform_and_confident_extremes():
    c = 19
    uniform = np.zeros((c, 2, 2), np.float32)
    assert np.allclose(scores.msp(uniform), 1 - 1 / c)
    assert np.allclose(scores.entropy(uniform, normalize=True), 1.0, atol=1e-6)
    confident = np.full((c, 2, 2), -50.0, np.float32)
    confident[3] = 50.0
    assert np.allclose(scores.msp(confident), 0.0, atol=1e-6)
    assert np.allclose(scores.entropy(confident), 0.0, atol=1e-6)
    # the anomalous (uniform) pixel scores higher than the confident one with every method
    for fn in (scores.msp, scores.entropy, scores.max_logit, scores.energy):
        assert (fn(uniform) > fn(confident)).all()


def test_large_logits_do_not_overflow():
    big = np.array([1000.0, 999.0, -1000.0], np.float32).reshape(3, 1, 1)
    for fn in (scores.msp, scores.entropy, scores.energy):
        assert np.isfinite(fn(big)).all()
    assert scores.energy(big)[0, 0] == pytest.approx(-(1000 + math.log(1 + math.exp(-1))), rel=1e-6)


@settings(max_examples=60, deadline=None)
@given(logits=arrays(np.float64, (5, 3, 4), elements=st.floats(-30, 30)), shift=st.floats(-100, 100))
def test_invariances_to_a_per_pixel_logit_shift(logits, shift):
    shifted = logits + shift
    assert np.allclose(scores.msp(shifted), scores.msp(logits), atol=1e-9)
    assert np.allclose(scores.entropy(shifted), scores.entropy(logits), atol=1e-9)
    assert np.allclose(scores.max_logit(shifted), scores.max_logit(logits) - shift, atol=1e-9)
    assert np.allclose(scores.energy(shifted), scores.energy(logits) - shift, atol=1e-9)
    m = scores.msp(logits)
    assert (m >= -1e-12).all() and (m <= 1 - 1 / 5 + 1e-12).all()
    # energy is a smooth max: -max - log C <= energy <= -max
    top = logits.max(axis=0)
    e = scores.energy(logits)
    assert (e <= -top + 1e-9).all() and (e >= -top - math.log(5) - 1e-9).all()


def test_nan_logits_give_nan_at_that_pixel_only():
    logits = np.zeros((3, 2, 2), np.float32)
    logits[1, 0, 1] = np.nan
    for fn in (scores.msp, scores.entropy, scores.energy):
        out = fn(logits)
        assert np.isnan(out[0, 1]) and np.isfinite(np.delete(out.reshape(-1), 1)).all()


def test_sml_statistics_and_score_exact():
    acc = SMLAccumulator(2)
    img1 = np.array([[[5.0, 1.0]], [[0.0, 3.0]]])  # pixel0 class0 max 5, pixel1 class1 max 3
    img2 = np.array([[[7.0, 0.0]], [[0.0, 5.0]]])  # class0 max 7, class1 max 5
    acc.add(img1)
    acc.add(img2)
    stats = acc.result()
    assert stats.mean.tolist() == [6.0, 4.0] and stats.std.tolist() == [1.0, 1.0]
    assert stats.count.tolist() == [2, 2]
    test = np.array([[[4.0]], [[0.0]]])  # class 0, max 4 -> -(4 - 6) / 1 = 2
    assert scores.standardized_max_logit(test, stats)[0, 0] == 2.0
    with pytest.raises(ValueError, match="for 2 classes, logits have 3"):
        scores.standardized_max_logit(np.zeros((3, 1, 1)), stats)


def test_sml_unseen_class_gets_pooled_statistics_and_save_load(tmp_path):
    acc = SMLAccumulator(3)
    acc.add(np.array([[[2.0, 4.0]], [[0.0, 0.0]], [[-1.0, -1.0]]]))  # both pixels class 0: 2, 4
    stats = acc.result()
    assert stats.mean.tolist() == [3.0, 3.0, 3.0] and stats.std[0] == 1.0 and stats.count.tolist() == [2, 0, 0]
    path = tmp_path / "sml.json"
    stats.save(path)
    loaded = SMLStats.load(path)
    assert np.array_equal(loaded.mean, stats.mean) and np.array_equal(loaded.std, stats.std)
    (tmp_path / "other.json").write_text('{"mean": []}')
    with pytest.raises(ValueError, match="not an s2m_ros SML"):
        SMLStats.load(tmp_path / "other.json")


def test_smoothing_keeps_mean_and_ignores_nan():
    rng = np.random.default_rng(0)
    score = rng.normal(size=(60, 80)).astype(np.float32)
    out = scores.smooth(score, 2.0)
    assert out.shape == score.shape and out.dtype == np.float32
    assert out.std() < 0.5 * score.std()
    assert np.array_equal(scores.smooth(score, 0), score)
    const = np.full((30, 30), 3.0, np.float32)
    const[10:12, 10:12] = np.nan
    sm = scores.smooth(const, 1.5)
    assert np.allclose(sm, 3.0)  # NaN holes are filled from their neighbours, not spread
    assert np.isnan(scores.smooth(np.full((5, 5), np.nan, np.float32), 1.0)).all()


def test_score_from_logits_dispatch_channels_and_errors():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(20, 6, 7)).astype(np.float32)
    out = scores.score_from_logits(logits, "msp", id_channels=slice(0, 19))
    assert np.allclose(out, scores.msp(logits[:19]))
    assert np.allclose(scores.score_from_logits(logits, "energy", id_channels=range(19), temperature=2.0),
                       scores.energy(logits[:19], 2.0))
    assert np.allclose(scores.score_from_logits(logits, "entropy"), scores.entropy(logits, normalize=True))
    score_map = rng.random((6, 7)).astype(np.float32)
    assert np.array_equal(scores.score_from_logits(score_map[None], "score_map"), score_map)
    assert np.array_equal(scores.score_from_logits(score_map, "score_map", invert=True), -score_map)
    with pytest.raises(ValueError, match="unknown score method"):
        scores.score_from_logits(logits, "odin")
    with pytest.raises(ValueError, match="needs statistics"):
        scores.score_from_logits(logits, "sml")
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        scores.msp(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="at least 2 channels"):
        scores.msp(np.zeros((1, 4, 4)))
    with pytest.raises(ValueError, match="temperature"):
        scores.energy(logits, 0.0)
