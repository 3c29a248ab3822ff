"""s2m_ros.ros.conversions.markers: ObstacleFrame -> visualization_msgs/MarkerArray for RViz."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("visualization_msgs.msg", reason="ROS 2 message packages are not importable")
from visualization_msgs.msg import Marker  # noqa: E402

from s2m_ros.ros.conversions.markers import (CONFIRMED_RGBA, LOW_SUPPORT_RGBA, MIN_ARROW_SPEED, MIN_BOX,  # noqa: E402
                                         NAMESPACES, TENTATIVE_RGBA, TEXT_RGBA, MarkerBuilder, label_text,
                                         marker_id)
from s2m_ros.types import Obstacle3D, ObstacleFrame  # noqa: E402

STAMP = 1_700_000_000_123_456_789


def _confirmed():
    return Obstacle3D(id=1, center=(10.0, 0.0, 1.0), size=(4.0, 2.0, 2.0), yaw=0.5, velocity=(1.0, 0.5, 0.0),
                      footprint=[(8, -1, 0), (12, -1, 0), (12, 1, 0), (8, 1, 0)], range=10.05,
                      existence_probability=0.9, confirmed=True, anomaly_score=0.8)


def _tentative():
    # slow (0.141 m/s): no arrow; two footprint points: a closed strip of three
    return Obstacle3D(id=2, center=(5.0, 5.0, 0.5), size=(1.0, 1.0, 1.0), velocity=(0.1, 0.1, 0.0),
                      footprint=[(4.5, 5.0, 0.0), (5.5, 5.0, 0.0)], range=7.1, existence_probability=0.4)


def _low_support():
    # no size, one footprint point (no strip), exactly MIN_ARROW_SPEED (arrow)
    return Obstacle3D(id=3, center=(20.0, -3.0, 0.2), size=(math.nan,) * 3, velocity=(0.0, MIN_ARROW_SPEED, 0.0),
                      footprint=[(20.0, -3.0, 0.0)], range=20.2, existence_probability=0.7, confirmed=True,
                      low_support=True)


def _frame(*obstacles, stamp=STAMP, frame_id="map"):
    return ObstacleFrame(stamp_ns=stamp, frame_id=frame_id, obstacles=list(obstacles))


def _keys(array):
    return {(m.ns, m.id, m.type, m.action) for m in array.markers}


def _by(array, ns, mid, action=Marker.ADD):
    found = [m for m in array.markers if m.ns == ns and m.id == mid and m.action == action]
    assert len(found) == 1, (ns, mid, action, found)
    return found[0]


def _rgba(m):
    return (m.color.r, m.color.g, m.color.b, m.color.a)


def _xyz(p):
    return (p.x, p.y, p.z)


def test_constants():
    assert NAMESPACES == ("boxes", "footprints", "labels", "velocity")
    assert MIN_BOX == 0.3 and MIN_ARROW_SPEED == 0.2


def test_three_obstacles_give_exactly_these_markers():
    array = MarkerBuilder(lifetime_s=0.5).build(_frame(_confirmed(), _tentative(), _low_support()))
    A = Marker.ADD
    assert _keys(array) == {
        ("boxes", 1, Marker.CUBE, A), ("boxes", 2, Marker.CUBE, A), ("boxes", 3, Marker.CUBE, A),
        ("footprints", 1, Marker.LINE_STRIP, A), ("footprints", 2, Marker.LINE_STRIP, A),
        ("labels", 1, Marker.TEXT_VIEW_FACING, A), ("labels", 2, Marker.TEXT_VIEW_FACING, A),
        ("labels", 3, Marker.TEXT_VIEW_FACING, A),
        ("velocity", 1, Marker.ARROW, A), ("velocity", 3, Marker.ARROW, A),
    }
    assert len(array.markers) == 10
    for m in array.markers:
        assert m.header.frame_id == "map"
        assert (m.header.stamp.sec, m.header.stamp.nanosec) == (1_700_000_000, 123_456_789)
        assert (m.lifetime.sec, m.lifetime.nanosec) == (0, 500_000_000)
    approx = pytest.approx

    # colours by state (ColorRGBA is float32)
    assert _rgba(_by(array, "boxes", 1)) == approx(CONFIRMED_RGBA, abs=1e-6)
    assert _rgba(_by(array, "boxes", 2)) == approx(TENTATIVE_RGBA, abs=1e-6)
    assert _rgba(_by(array, "boxes", 3)) == approx((0.6, 0.6, 0.6, CONFIRMED_RGBA[3]), abs=1e-6)
    assert _rgba(_by(array, "footprints", 1)) == approx(CONFIRMED_RGBA[:3] + (1.0,), abs=1e-6)
    assert _rgba(_by(array, "footprints", 2)) == approx(TENTATIVE_RGBA[:3] + (1.0,), abs=1e-6)
    assert _rgba(_by(array, "velocity", 1)) == approx(CONFIRMED_RGBA[:3] + (1.0,), abs=1e-6)
    assert _rgba(_by(array, "velocity", 3)) == approx(LOW_SUPPORT_RGBA[:3] + (1.0,), abs=1e-6)
    for mid in (1, 2, 3):
        assert _rgba(_by(array, "labels", mid)) == approx(TEXT_RGBA, abs=1e-6)

    # confirmed box: pose, yaw quaternion, size
    box = _by(array, "boxes", 1)
    assert _xyz(box.pose.position) == (10.0, 0.0, 1.0)
    q = box.pose.orientation
    assert (q.x, q.y, q.z, q.w) == approx((0.0, 0.0, math.sin(0.25), math.cos(0.25)), abs=1e-15)
    assert _xyz(box.scale) == (4.0, 2.0, 2.0)
    # low-support box: drawn at MIN_BOX, label above it
    box = _by(array, "boxes", 3)
    assert _xyz(box.scale) == (MIN_BOX, MIN_BOX, MIN_BOX)
    assert (box.pose.orientation.z, box.pose.orientation.w) == (0.0, 1.0)
    assert _xyz(_by(array, "labels", 3).pose.position) == approx((20.0, -3.0, 0.2 + 0.15 + 0.4))
    assert _xyz(_by(array, "labels", 1).pose.position) == approx((10.0, 0.0, 1.0 + 1.0 + 0.4))
    assert _by(array, "labels", 1).text == "#1  10.1 m  p=0.90  s=0.80"
    assert _by(array, "labels", 2).text == "#2  7.1 m  p=0.40 (tentative)"
    assert _by(array, "labels", 3).text == "#3  20.2 m  p=0.70 low-support"

    # footprints: closed strips (first point repeated)
    strip = _by(array, "footprints", 1)
    assert [_xyz(p) for p in strip.points] == [(8, -1, 0), (12, -1, 0), (12, 1, 0), (8, 1, 0), (8, -1, 0)]
    strip = _by(array, "footprints", 2)
    assert [_xyz(p) for p in strip.points] == [(4.5, 5.0, 0.0), (5.5, 5.0, 0.0), (4.5, 5.0, 0.0)]
    # velocity arrows from the centre along the velocity
    assert [_xyz(p) for p in _by(array, "velocity", 1).points] == [(10.0, 0.0, 1.0), (11.0, 0.5, 1.0)]
    assert [_xyz(p) for p in _by(array, "velocity", 3).points] == [(20.0, -3.0, 0.2), (20.0, -2.8, 0.2)]


def test_arrow_threshold_uses_the_horizontal_speed():
    def arrows(velocity):
        o = Obstacle3D(id=4, center=(0.0, 0.0, 0.0), size=(1.0, 1.0, 1.0), velocity=velocity, confirmed=True)
        return {m.id for m in MarkerBuilder().build(_frame(o)).markers if m.ns == "velocity"}

    assert arrows((0.12, 0.16, 0.0)) == {4}  # hypot = 0.2
    assert arrows((0.0, 0.1999, 0.0)) == set()
    assert arrows((0.0, 0.0, 5.0)) == set()  # vertical only
    assert arrows((math.nan, 1.0, 0.0)) == set()
    assert arrows((-3.0, 0.0, 0.0)) == {4}


def test_lifetime_seconds_and_nanoseconds():
    array = MarkerBuilder(lifetime_s=1.25).build(_frame(_confirmed()))
    assert {(m.lifetime.sec, m.lifetime.nanosec) for m in array.markers} == {(1, 250_000_000)}
    array = MarkerBuilder(lifetime_s=3).build(_frame(_confirmed()))
    assert {(m.lifetime.sec, m.lifetime.nanosec) for m in array.markers} == {(3, 0)}


def test_lifetime_nanoseconds_stay_below_one_second():
    array = MarkerBuilder(lifetime_s=2.0 - 1e-10).build(_frame(_confirmed()))
    assert {(m.lifetime.sec, m.lifetime.nanosec) for m in array.markers} == {(2, 0)}


def test_vanished_obstacle_is_deleted_once_in_each_namespace_it_had():
    builder = MarkerBuilder()
    builder.build(_frame(_confirmed(), _tentative(), _low_support()))
    second = builder.build(_frame(_tentative(), _low_support(), stamp=STAMP + 100))
    deletes = {(m.ns, m.id) for m in second.markers if m.action == Marker.DELETE}
    assert deletes == {("boxes", 1), ("footprints", 1), ("labels", 1), ("velocity", 1)}
    for m in second.markers:
        if m.action == Marker.DELETE:
            assert m.header.frame_id == "map" and m.header.stamp.nanosec == 123_456_889
    assert {(m.ns, m.id) for m in second.markers if m.action == Marker.ADD} == {
        ("boxes", 2), ("footprints", 2), ("labels", 2), ("boxes", 3), ("labels", 3), ("velocity", 3)}
    third = builder.build(_frame(_tentative(), _low_support()))
    assert all(m.action == Marker.ADD for m in third.markers) and len(third.markers) == 6

    # a track that only slows down loses its arrow, nothing else
    slow = _low_support()
    slow.velocity = np.zeros(3)
    fourth = builder.build(_frame(_tentative(), slow))
    assert {(m.ns, m.id) for m in fourth.markers if m.action == Marker.DELETE} == {("velocity", 3)}
    # everything gone: all remaining markers deleted, then an empty array
    fifth = builder.build(_frame())
    assert _keys(fifth) == {("boxes", 2, 0, Marker.DELETE), ("footprints", 2, 0, Marker.DELETE),
                            ("labels", 2, 0, Marker.DELETE), ("boxes", 3, 0, Marker.DELETE),
                            ("labels", 3, 0, Marker.DELETE)}
    assert builder.build(_frame()).markers == []


def test_show_tentative_false_hides_and_deletes_tentative_tracks():
    builder = MarkerBuilder(show_tentative=False)
    array = builder.build(_frame(_confirmed(), _tentative()))
    assert {m.id for m in array.markers} == {1}
    builder = MarkerBuilder(show_tentative=True)
    builder.build(_frame(_confirmed(), _tentative()))
    builder.show_tentative = False  # e.g. toggled between frames
    array = builder.build(_frame(_confirmed(), _tentative()))
    assert {(m.ns, m.id) for m in array.markers if m.action == Marker.DELETE} == {
        ("boxes", 2), ("footprints", 2), ("labels", 2)}
    assert {m.id for m in array.markers if m.action == Marker.ADD} == {1}


def test_nan_centre_is_skipped_and_deleted_if_it_was_shown():
    builder = MarkerBuilder()
    builder.build(_frame(_confirmed()))
    lost = _confirmed()
    lost.center = np.array([math.nan, 0.0, 1.0])
    array = builder.build(_frame(lost, _tentative()))
    assert {(m.ns, m.id) for m in array.markers if m.action == Marker.DELETE} == {
        ("boxes", 1), ("footprints", 1), ("labels", 1), ("velocity", 1)}
    assert {m.id for m in array.markers if m.action == Marker.ADD} == {2}
    assert MarkerBuilder().build(_frame(lost)).markers == []


def test_nan_yaw_draws_an_unrotated_box():
    o = _confirmed()
    o.yaw = math.nan
    q = _by(MarkerBuilder().build(_frame(o)), "boxes", 1).pose.orientation
    assert (q.x, q.y, q.z, q.w) == (0.0, 0.0, 0.0, 1.0)


def test_large_track_ids_wrap_into_int32():
    assert marker_id(2**31 + 5) == 5 and marker_id(2**31 - 1) == 2**31 - 1 and marker_id(7) == 7
    o = _confirmed()
    o.id = 2**31 + 5
    array = MarkerBuilder().build(_frame(o))
    assert {m.id for m in array.markers} == {5}
    assert _by(array, "labels", 5).text.startswith("#2147483653  ")


def test_label_text():
    o = Obstacle3D(id=7, center=(0, 0, 0), size=(1, 1, 1), range=12.34, existence_probability=0.876,
                   anomaly_score=0.5, confirmed=True)
    assert label_text(o) == "#7  12.3 m  p=0.88  s=0.50"
    o = Obstacle3D(id=3, center=(0, 0, 0), size=(1, 1, 1), existence_probability=0.25, low_support=True)
    assert label_text(o) == "#3  ? m  p=0.25 (tentative) low-support"  # NaN range and score
    o = Obstacle3D(id=12, center=(0, 0, 0), size=(1, 1, 1), range=4.0, existence_probability=1.0,
                   anomaly_score=math.inf, confirmed=True, low_support=True)
    assert label_text(o) == "#12  4.0 m  p=1.00 low-support"


obstacle_specs = st.dictionaries(
    st.integers(0, 7),
    st.tuples(st.booleans(), st.integers(0, 4), st.sampled_from([0.0, 0.1, 0.2, 1.0]), st.booleans()),
    max_size=8)


@settings(max_examples=60, deadline=None)
@given(st.lists(obstacle_specs, min_size=1, max_size=6), st.booleans())
def test_adds_and_deletes_follow_what_was_published(frames, show_tentative):
    builder = MarkerBuilder(show_tentative=show_tentative)
    published = {ns: set() for ns in NAMESPACES}
    for spec in frames:
        obstacles, expected = [], {ns: set() for ns in NAMESPACES}
        for tid, (confirmed, n_fp, speed, nan_centre) in sorted(spec.items()):
            centre = (math.nan, 0.0, 0.0) if nan_centre else (float(tid), 1.0, 0.0)
            obstacles.append(Obstacle3D(id=tid, center=centre, size=(1, 1, 1), velocity=(0.0, speed, 0.0),
                                        footprint=[(tid, k, 0) for k in range(n_fp)], confirmed=confirmed))
            if nan_centre or not (confirmed or show_tentative):
                continue
            expected["boxes"].add(tid)
            expected["labels"].add(tid)
            if n_fp >= 2:
                expected["footprints"].add(tid)
            if speed >= MIN_ARROW_SPEED:
                expected["velocity"].add(tid)
        array = builder.build(_frame(*obstacles))
        pairs = [(m.ns, m.id) for m in array.markers]
        assert len(pairs) == len(set(pairs))  # one marker per (ns, id) per array
        for ns in NAMESPACES:
            assert {m.id for m in array.markers if m.ns == ns and m.action == Marker.ADD} == expected[ns]
            assert ({m.id for m in array.markers if m.ns == ns and m.action == Marker.DELETE}
                    == published[ns] - expected[ns])
        published = expected
