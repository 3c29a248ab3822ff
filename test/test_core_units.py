"""ROS-free units: time matching, rigid transforms, diagnostics bookkeeping."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s2m_ros.obstacles.geometry import (extrinsics_from_params, quaternion_to_matrix, rigid_matrix_problem,
                                   transform_matrix, transform_points)
from s2m_ros.obstacles.time_matching import NO_CLOUD_YET, PENDING, TOO_OLD, GAP, MATCHED, NearestTimeMatcher
from s2m_ros.ros.diagnostics import NodeStats, RateMeter

MS = 10**6


def test_matcher_picks_nearest_cloud_within_tolerance():
    m = NearestTimeMatcher(tolerance_ns=50 * MS, capacity=5)
    assert m.add_item(0, "early") == (None, PENDING)  # waits for the first cloud
    for t in (100, 200, 300):
        assert m.add_cloud(t * MS, "cloud%d" % t) == (None, False)  # 100 ms away: "early" is too old
    match, reason = m.add_item(240 * MS, "a")
    assert reason == MATCHED and match.cloud == "cloud200" and match.dt_ns == 40 * MS
    match, reason = m.add_item(260 * MS, "b")
    assert match.cloud == "cloud300" and match.dt_ns == -40 * MS
    assert m.add_item(20 * MS, "old") == (None, TOO_OLD)
    m2 = NearestTimeMatcher(tolerance_ns=10 * MS)
    m2.add_cloud(100 * MS, "c1")
    m2.add_cloud(200 * MS, "c2")
    assert m2.add_item(150 * MS, "gap") == (None, GAP)
    assert m.unmatched == {"no_cloud_yet": 0, "too_old": 2, "too_new": 0, "gap": 0}
    assert m.matched == 2


def test_matcher_item_before_the_first_cloud_waits_for_it():
    m = NearestTimeMatcher(tolerance_ns=50 * MS)
    assert m.add_item(0, "a") == (None, PENDING)
    assert m.add_item(5 * MS, "b") == (None, PENDING)  # replaces "a" while no cloud has come
    assert m.unmatched[NO_CLOUD_YET] == 1
    match, reset = m.add_cloud(20 * MS, "c20")
    assert match.item == "b" and match.cloud == "c20" and match.dt_ns == -15 * MS and not reset


def test_matcher_pending_item_waits_for_its_cloud_latest_only():
    m = NearestTimeMatcher(tolerance_ns=50 * MS)
    m.add_cloud(100 * MS, "c100")
    assert m.add_item(180 * MS, "x") == (None, PENDING)
    assert m.add_item(190 * MS, "y") == (None, PENDING)  # replaces x
    assert m.unmatched["too_new"] == 1
    match, reset = m.add_cloud(200 * MS, "c200")
    assert not reset and match.item == "y" and match.cloud == "c200"
    assert not m.pending


def test_matcher_pending_item_survives_a_cloud_that_is_still_too_old():
    m = NearestTimeMatcher(tolerance_ns=10 * MS)
    m.add_cloud(100 * MS, "c100")
    m.add_item(300 * MS, "late")
    match, _ = m.add_cloud(200 * MS, "c200")
    assert match is None and m.pending
    match, _ = m.add_cloud(305 * MS, "c305")
    assert match.item == "late"


def test_matcher_buffer_is_bounded_and_resets_on_backwards_time():
    m = NearestTimeMatcher(tolerance_ns=5 * MS, capacity=3)
    for t in range(10):
        m.add_cloud(t * 100 * MS, t)
    assert len(m) == 3 and m.oldest_stamp() == 700 * MS
    match, reset = m.add_cloud(50 * MS, "looped")
    assert reset and len(m) == 1 and m.resets == 1
    assert m.add_item(52 * MS, "i")[0].cloud == "looped"


@settings(max_examples=80, deadline=None)
@given(clouds=st.lists(st.integers(0, 10**6), min_size=1, max_size=12, unique=True),
       item=st.integers(0, 10**6), tol=st.integers(0, 10**5))
def test_matcher_property_nearest_within_tolerance(clouds, item, tol):
    m = NearestTimeMatcher(tolerance_ns=tol, capacity=len(clouds))
    for t in sorted(clouds):
        m.add_cloud(t, t)
    match, reason = m.add_item(item, "i")
    best = min(clouds, key=lambda t: abs(t - item))
    if abs(best - item) <= tol:
        assert reason == MATCHED and abs(match.cloud - item) == abs(best - item)
    else:
        assert match is None and reason != MATCHED


@settings(max_examples=100, deadline=None)
@given(q=st.tuples(*[st.floats(-1, 1, allow_nan=False)] * 4).filter(lambda q: sum(v * v for v in q) > 1e-3))
def test_quaternion_gives_rotation(q):
    r = quaternion_to_matrix(q)
    assert np.allclose(r @ r.T, np.eye(3), atol=1e-9)
    assert math.isclose(np.linalg.det(r), 1.0, abs_tol=1e-9)
    assert rigid_matrix_problem(transform_matrix([1, 2, 3], q).reshape(-1)) is None


def test_transform_known_values():
    # 90 degrees about z: x -> y
    t = transform_matrix([1.0, 0.0, 0.0], [0.0, 0.0, math.sin(math.pi / 4), math.cos(math.pi / 4)])
    assert np.allclose(transform_points(t, [[1.0, 0.0, 0.0]]), [[1.0, 1.0, 0.0]])
    m = np.eye(4)
    m[:3, 3] = [0.5, -1, 2]
    assert np.allclose(extrinsics_from_params([9, 9, 9], [0, 0, 0, 1], m.reshape(-1)), m)
    with pytest.raises(ValueError, match="zero"):
        quaternion_to_matrix([0, 0, 0, 0])
    assert "last row" in rigid_matrix_problem([1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 1, 1])


def test_rate_meter_and_stats_with_fake_clock():
    now = [0.0]
    meter = RateMeter(window_s=2.0, clock=lambda: now[0])
    for _ in range(11):
        meter.tick()
        now[0] += 0.1
    now[0] -= 0.1
    assert meter.rate() == pytest.approx(10.0)
    now[0] += 5.0
    assert meter.rate() == 0.0
    stats = NodeStats(clock=lambda: now[0])
    stats.count("frames")
    stats.count("frames", 2)
    stats.error("bad_input", "Image.encoding='x': unsupported")
    stats.latency_ms["scorer"] = 12.345
    v = stats.values()
    assert v["frames"] == "3" and v["bad_input"] == "1" and v["errors_total"] == "1"
    assert v["latency_scorer_ms"] == "12.35"
    assert v["last_error"] == "bad_input: Image.encoding='x': unsupported"
