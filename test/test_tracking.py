"""Tests of the ROS-free tracker (s2m_ros.obstacles.tracking) on synthetic sequences with known truth."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from s2m_ros.obstacles.tracking import Tracker, TrackerConfig
from s2m_ros.types import Obstacle3D

PERIOD_NS = 100_000_000  # 10 Hz
PERIOD_S = PERIOD_NS * 1e-9


def det(x, y, z=0.5, low_support=False, size=(1.0, 1.0, 1.0)):
    return Obstacle3D(id=0, center=[x, y, z], size=size, low_support=low_support)


def by_id(tracks):
    return {t.id: t for t in tracks}


# --- configuration -----------------------------------------------------------------------------

def test_default_frames_to_confirm_is_three_at_10hz():
    assert TrackerConfig().frames_to_confirm(PERIOD_S) == 3


@pytest.mark.parametrize("field, value", [
    ("gate_m", 0.0), ("max_speed_mps", -1.0), ("half_life_s", 0.0), ("prior_probability", 1.0),
    ("hit_log_odds", 0.0), ("low_support_weight", 1.5), ("confirm_probability", 1.0),
    ("min_hits", 1), ("min_hits", 2.5), ("keep_probability", 0.9), ("coast_s", -0.1),
    ("velocity_window_s", 0.0), ("velocity_smoothing", 0.0), ("size_weight", -1.0),
])
def test_config_rejects_invalid_values(field, value):
    with pytest.raises(ValueError, match=field):
        TrackerConfig(**{field: value})


def test_frames_to_confirm_none_when_decay_wins():
    cfg = TrackerConfig(half_life_s=0.01, hit_log_odds=0.5)
    assert cfg.frames_to_confirm(1.0) is None


# --- existence and confirmation ----------------------------------------------------------------

def test_static_object_confirmed_exactly_at_frames_to_confirm():
    cfg = TrackerConfig()
    n = cfg.frames_to_confirm(PERIOD_S)
    tr = Tracker(cfg)
    for k in range(1, 11):
        (t,) = tr.update(k * PERIOD_NS, [det(10.0, 2.0)])
        assert t.id == 1 and t.hits == k
        assert t.confirmed == (k >= n)
        assert t.age == pytest.approx((k - 1) * PERIOD_S)
    # existence converges below 1 (decay balances the hits), above the confirmation threshold
    assert cfg.confirm_probability < t.existence_probability < 0.99


def test_existence_probabilities_follow_the_documented_update():
    cfg = TrackerConfig()
    tr = Tracker(cfg)
    (t,) = tr.update(0, [det(0, 0)])
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    p1 = sig(logit(cfg.prior_probability) + cfg.hit_log_odds)
    assert t.existence_probability == pytest.approx(p1)
    (t,) = tr.update(PERIOD_NS, [])  # pure decay
    p2 = p1 * 0.5 ** (PERIOD_S / cfg.half_life_s)
    assert t.existence_probability == pytest.approx(p2)
    (t,) = tr.update(2 * PERIOD_NS, [det(0, 0)])
    p3 = sig(logit(p2 * 0.5 ** (PERIOD_S / cfg.half_life_s)) + cfg.hit_log_odds)
    assert t.existence_probability == pytest.approx(p3)


def test_low_support_detections_count_less_and_confirm_later():
    full, low = Tracker(), Tracker()
    confirmed_at = {}
    for k in range(1, 21):
        a = full.update(k * PERIOD_NS, [det(5, 5)])[0]
        b = low.update(k * PERIOD_NS, [det(5, 5, low_support=True)])[0]
        assert b.existence_probability < a.existence_probability
        for name, t in (("full", a), ("low", b)):
            if t.confirmed and name not in confirmed_at:
                confirmed_at[name] = k
    cfg = TrackerConfig()
    assert confirmed_at == {"full": cfg.frames_to_confirm(PERIOD_S),
                            "low": cfg.frames_to_confirm(PERIOD_S, low_support=True)}
    assert confirmed_at == {"full": 3, "low": 8}


def test_one_frame_artefact_is_never_confirmed_and_is_deleted_after_coasting():
    cfg = TrackerConfig()
    tr = Tracker(cfg)
    out = tr.update(0, [det(3, 3)])
    assert len(out) == 1 and not out[0].confirmed
    coast_frames = int(round(cfg.coast_s / PERIOD_S))
    for k in range(1, coast_frames + 1):
        out = tr.update(k * PERIOD_NS, [])
        assert len(out) == 1 and not out[0].confirmed
    assert tr.update((coast_frames + 1) * PERIOD_NS, []) == []


def test_random_flickering_false_positives_never_confirmed():
    cfg = TrackerConfig()
    rng = np.random.default_rng(0)
    tr = Tracker(cfg)
    recent = []  # (frame, xy) of false positives still within the coasting window
    coast_frames = int(math.ceil(cfg.coast_s / PERIOD_S)) + 1
    reach = cfg.gate_m + cfg.max_speed_mps * cfg.coast_s  # widest gate of a single-hit track
    n_fp = 0
    for k in range(100):
        recent = [(f, p) for f, p in recent if k - f <= coast_frames]
        dets = []
        for _ in range(rng.integers(0, 4)):
            while True:  # each appears once, at a place no live track could claim
                xy = rng.uniform(-100, 100, 2)
                if all(np.linalg.norm(xy - p) > reach for _, p in recent):
                    break
            recent.append((k, xy))
            dets.append(det(xy[0], xy[1], low_support=bool(rng.integers(0, 2))))
        n_fp += len(dets)
        out = tr.update(k * PERIOD_NS, dets)
        assert not any(t.confirmed for t in out)
        assert all(t.hits == 1 for t in out)
    assert n_fp > 100  # the sequence really had false positives
    assert tr.update(200 * PERIOD_NS, []) == []


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.floats(-100, 100), st.floats(-100, 100)), min_size=1, max_size=6),
       st.integers(1, 30))
def test_artefacts_seen_once_never_confirmed_under_any_config(points, min_hits_extra):
    """With min_hits >= 2 enforced, a single hit can never confirm, whatever the probabilities."""
    cfg = TrackerConfig(hit_log_odds=50.0, confirm_probability=0.01, keep_probability=0.01,
                        min_hits=1 + min_hits_extra)
    out = Tracker(cfg).update(0, [det(x, y) for x, y in points])
    assert len(out) == len(points) and not any(t.confirmed for t in out)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 8), st.integers(0, 2**31 - 1))
def test_k_separated_static_objects_give_ids_1_to_k(k, seed):
    cfg = TrackerConfig()
    n = cfg.frames_to_confirm(PERIOD_S)
    rng = np.random.default_rng(seed)
    # well separated: on a 10 m grid, shuffled, with 0.1 m measurement noise
    cells = rng.permutation(100)[:k]
    centres = np.stack([cells % 10 * 10.0, cells // 10 * 10.0], axis=1)
    tr = Tracker(cfg)
    for frame in range(n):
        noisy = centres + rng.normal(0, 0.1, centres.shape)
        order = rng.permutation(k)  # detection order must not matter
        out = tr.update(frame * PERIOD_NS, [det(*noisy[i]) for i in order])
    assert [t.id for t in out] == list(range(1, k + 1))
    assert all(t.confirmed and t.hits == n for t in out)
    # and each id stayed on the same object
    for t in out:
        assert np.min(np.linalg.norm(centres - t.center[:2], axis=1)) < 1.0


# --- identity ----------------------------------------------------------------------------------

def test_id_survives_two_frame_occlusion():
    tr = Tracker()
    for k in range(6):
        out = tr.update(k * PERIOD_NS, [det(20, -3)])
    assert [(t.id, t.confirmed) for t in out] == [(1, True)]
    for k in (6, 7):  # occluded
        out = tr.update(k * PERIOD_NS, [])
        assert [(t.id, t.confirmed) for t in out] == [(1, True)]
    out = tr.update(8 * PERIOD_NS, [det(20.1, -3)])
    assert [(t.id, t.confirmed, t.hits) for t in out] == [(1, True, 7)]


def test_moving_object_keeps_id_through_occlusion_by_prediction():
    tr = Tracker()
    v = np.array([5.0, 0.0, 0.0])
    for k in range(10):
        tr.update(k * PERIOD_NS, [det(*(v * k * PERIOD_S + [0, 0, 0.5]))])
    # occluded for 2 frames: the coasting output moves with the velocity
    for k in (10, 11):
        (t,) = tr.update(k * PERIOD_NS, [])
        np.testing.assert_allclose(t.center, v * k * PERIOD_S + [0, 0, 0.5], atol=1e-6)
    # re-detected 1.5 m from where it was last seen, 0 m from the prediction
    (t,) = tr.update(12 * PERIOD_NS, [det(*(v * 12 * PERIOD_S + [0, 0, 0.5]))])
    assert t.id == 1 and t.hits == 11 and t.confirmed


def test_track_deleted_after_coasting_limit_and_id_not_reused():
    cfg = TrackerConfig(coast_s=0.25)
    tr = Tracker(cfg)
    for k in range(5):
        tr.update(k * PERIOD_NS, [det(0, 0)])
    assert [t.id for t in tr.update(6 * PERIOD_NS, [])] == [1]  # 0.2 s unseen
    assert tr.update(7 * PERIOD_NS, []) == []  # 0.3 s > 0.25 s
    out = tr.update(8 * PERIOD_NS, [det(0, 0)])
    assert [t.id for t in out] == [2]


def test_two_objects_crossing_keep_their_ids():
    """Two objects on crossing diagonals pass within 0.4 m of each other; both keep their ids."""
    tr = Tracker()
    ids_a, ids_b = set(), set()
    for k in range(41):
        s = k * PERIOD_S
        a = np.array([-8.0 + 4.0 * s, -8.0 + 4.0 * s + 0.2, 0.5])  # +x+y at 5.7 m/s
        b = np.array([8.0 - 4.0 * s, -8.0 + 4.0 * s - 0.2, 0.5])  # -x+y
        dets = [det(*a), det(*b)] if k % 2 == 0 else [det(*b), det(*a)]
        out = tr.update(k * PERIOD_NS, dets)
        assert len(out) == 2
        for t in out:
            if np.linalg.norm(t.center - a) < 1e-6:
                ids_a.add(t.id)
            elif np.linalg.norm(t.center - b) < 1e-6:
                ids_b.add(t.id)
    assert ids_a == {1} and ids_b == {2}


def test_gate_rejects_far_detection_and_starts_new_track():
    cfg = TrackerConfig(gate_m=2.0, max_speed_mps=0.0)  # no widening for single-hit tracks
    tr = Tracker(cfg)
    tr.update(0, [det(0, 0)])
    out = tr.update(PERIOD_NS, [det(2.5, 0)])
    assert [(t.id, t.hits) for t in out] == [(1, 1), (2, 1)]
    out = tr.update(2 * PERIOD_NS, [det(0, 1.9)])
    assert [(t.id, t.hits) for t in by_id(out).values()] == [(1, 2), (2, 1)]


@pytest.mark.parametrize("max_speed, matched", [(15.0, True), (5.0, False)])
def test_max_speed_widens_the_gate_of_single_hit_tracks(max_speed, matched):
    """A new track's velocity is unknown: 3 m in 0.1 s is within 2 + 15 * 0.1 m, not 2 + 5 * 0.1 m."""
    tr = Tracker(TrackerConfig(gate_m=2.0, max_speed_mps=max_speed))
    tr.update(0, [det(0, 0)])
    out = tr.update(PERIOD_NS, [det(3.0, 0)])
    assert [(t.id, t.hits) for t in out] == ([(1, 2)] if matched else [(1, 1), (2, 1)])
    if matched:  # the 30 m/s slope is clamped to max_speed
        np.testing.assert_allclose(out[0].velocity, [max_speed, 0, 0])


def test_gate_of_tracks_with_velocity_is_not_widened():
    tr = Tracker(TrackerConfig(gate_m=2.0, max_speed_mps=15.0))
    for k in range(3):
        tr.update(k * PERIOD_NS, [det(0, 0)])
    out = tr.update(3 * PERIOD_NS, [det(2.5, 0)])  # 2.5 m from a static track with 3 hits
    assert [(t.id, t.hits) for t in out] == [(1, 3), (2, 1)]


def test_size_aware_cost_prefers_matching_size():
    big, small = (4.0, 2.0, 2.0), (0.5, 0.5, 0.5)
    tr = Tracker(TrackerConfig(size_weight=1.0))
    tr.update(0, [det(0, 0, size=big), det(0, 1.5, size=small)])
    # distance alone would swap the ids (0.45 m vs 1.05 m), the size difference keeps them
    out = tr.update(PERIOD_NS, [det(0, 0.75 + 0.3, size=big), det(0, 0.75 - 0.3, size=small)])
    sizes = {t.id: tuple(t.size) for t in out}
    assert sizes == {1: big, 2: small}


# --- velocity ----------------------------------------------------------------------------------

def test_velocity_converges_for_noisy_moving_object():
    rng = np.random.default_rng(1)
    v = np.array([3.0, -1.5, 0.0])
    tr = Tracker()
    errors = []
    for k in range(40):
        truth = np.array([5.0, 5.0, 0.5]) + v * k * PERIOD_S
        (t,) = tr.update(k * PERIOD_NS, [det(*(truth + rng.normal(0, 0.05, 3)))])
        errors.append(np.linalg.norm(t.velocity - v))
    assert t.id == 1
    assert max(errors[15:]) < 0.2


def test_velocity_exact_for_noise_free_motion_and_zero_when_static():
    tr = Tracker()
    for k in range(5):
        (t,) = tr.update(k * PERIOD_NS, [det(1.0 + 2.0 * k * PERIOD_S, 0.0)])
    np.testing.assert_allclose(t.velocity, [2.0, 0.0, 0.0], atol=1e-9)
    tr = Tracker()
    for k in range(5):
        (t,) = tr.update(k * PERIOD_NS, [det(1.0, 0.0)])
    np.testing.assert_allclose(t.velocity, 0.0, atol=1e-12)


# --- time --------------------------------------------------------------------------------------

def test_time_backwards_resets_cleanly():
    tr = Tracker()
    for k in range(5):
        tr.update(10 * PERIOD_NS + k * PERIOD_NS, [det(0, 0), det(10, 0)])
    assert tr.time_resets == 0 and not tr.last_update_reset
    out = tr.update(0, [det(5, 5)])
    assert tr.time_resets == 1 and tr.last_update_reset
    assert [(t.id, t.hits, t.confirmed, t.age) for t in out] == [(3, 1, False, 0.0)]
    out = tr.update(PERIOD_NS, [det(5, 5)])
    assert not tr.last_update_reset and [(t.id, t.hits) for t in out] == [(3, 2)]


def test_duplicate_stamp_does_not_double_count():
    tr = Tracker()
    for k in range(2):
        tr.update(k * PERIOD_NS, [det(0, 0)])
    out1 = tr.update(2 * PERIOD_NS, [det(0, 0)])
    out2 = tr.update(2 * PERIOD_NS, [det(0.05, 0), det(30, 0)])  # repeated + one new object
    assert tr.duplicate_stamps == 1
    a = by_id(out2)
    assert a[1].hits == out1[0].hits == 3
    assert a[1].existence_probability == pytest.approx(out1[0].existence_probability)
    assert a[2].hits == 1


def test_reset_keeps_ids_increasing():
    tr = Tracker()
    tr.update(0, [det(0, 0), det(5, 0)])
    tr.reset()
    assert len(tr) == 0
    assert [t.id for t in tr.update(0, [det(0, 0)])] == [3]


def test_non_finite_detections_are_counted_and_ignored():
    tr = Tracker()
    out = tr.update(0, [det(float("nan"), 0), det(1, 1)])
    assert len(out) == 1 and tr.invalid_detections == 1


def test_output_copies_detection_fields():
    tr = Tracker()
    d = Obstacle3D(id=0, center=[1, 2, 0.5], size=[2, 1, 1], yaw=0.3, range=2.3, height=1.0,
                   anomaly_score=0.7, num_points=42, mask_id=5,
                   footprint=[[0, 1, 0], [2, 1, 0], [2, 3, 0]])
    (t,) = tr.update(0, [d])
    assert (t.yaw, t.range, t.height, t.anomaly_score, t.num_points, t.mask_id) == (0.3, 2.3, 1.0, 0.7, 42, 5)
    np.testing.assert_array_equal(t.footprint, d.footprint)
    t.center[0] = 99.0  # outputs are copies: mutating them does not touch the tracker
    (t,) = tr.update(PERIOD_NS, [])
    assert t.center[0] == 1.0


def test_track_past_coasting_limit_cannot_be_matched_by_its_widened_gate():
    """Regression: a single-hit track's gate grows with time; it must be deleted, not matched."""
    cfg = TrackerConfig(gate_m=2.0, max_speed_mps=15.0, coast_s=0.5)
    tr = Tracker(cfg)
    tr.update(0, [det(0, 0)])
    out = tr.update(6 * PERIOD_NS, [det(10.0, 0)])  # within 2 + 15 * 0.6 m, but unseen 0.6 s
    assert [(t.id, t.hits) for t in out] == [(2, 1)]
