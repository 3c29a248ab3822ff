"""s2m_ros.obstacles.poses: static transform tree, odometry pose buffer, moving obstacles between frames."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s2m_ros.obstacles.geometry import quaternion_to_matrix, transform_matrix, transform_points
from s2m_ros.obstacles.poses import (GAP, NO_POSE, TOO_NEW, TOO_OLD, PoseBuffer, TransformTree, interpolate_pose,
                                transform_obstacle, yaw_of)
from s2m_ros.types import Obstacle3D

MS = 10**6
# optical frame (x right, y down, z forward) in a z-up, x-forward body frame
OPTICAL_XYZW = (-0.5, 0.5, -0.5, 0.5)


def rot_z(yaw, t=(0.0, 0.0, 0.0)):
    return transform_matrix(t, (0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2)))


def wrap(a):
    return math.atan2(math.sin(a), math.cos(a))


unit = st.floats(-1.0, 1.0)
quaternions = st.tuples(unit, unit, unit, unit).filter(lambda q: sum(v * v for v in q) > 0.1)
translations = st.tuples(*[st.floats(-20.0, 20.0)] * 3)
rigid = st.builds(transform_matrix, translations, quaternions)


# ---------------------------------------------------------------- TransformTree

def test_optical_quaternion_is_the_usual_optical_rotation():
    # columns: camera x -> body -y, camera y -> body -z, camera z -> body x
    np.testing.assert_allclose(quaternion_to_matrix(OPTICAL_XYZW), [[0, 0, 1], [-1, 0, 0], [0, -1, 0]], atol=1e-12)


def test_lookup_hand_example_lidar_to_camera_optical():
    tree = TransformTree()
    tree.set("base_link", "lidar", transform_matrix((1.0, 0.0, 1.8), (0, 0, 0, 1)))
    tree.set("base_link", "camera", transform_matrix((1.5, 0.0, 1.2), OPTICAL_XYZW))
    # lidar (4, 1, -0.8) -> base_link (5, 1, 1.0) -> camera: 1 m left, 0.2 m below, 3.5 m ahead
    T = tree.lookup("camera", "lidar")
    np.testing.assert_allclose(transform_points(T, [[4.0, 1.0, -0.8]]), [[-1.0, 0.2, 3.5]], atol=1e-12)
    np.testing.assert_allclose(transform_points(tree.lookup("base_link", "lidar"), [[4.0, 1.0, -0.8]]),
                               [[5.0, 1.0, 1.0]], atol=1e-12)
    # camera origin seen from the lidar: base (1.5, 0, 1.2) - (1, 0, 1.8)
    np.testing.assert_allclose(tree.lookup("lidar", "camera")[:3, 3], [0.5, 0.0, -0.6], atol=1e-12)
    assert tree.frames == ["base_link", "camera", "lidar"]
    assert tree.can_lookup("camera", "lidar") and not tree.can_lookup("camera", "map")


def test_lookup_same_frame_is_identity_and_leading_slash_is_ignored():
    tree = TransformTree()
    tree.set("/base_link", "/lidar", transform_matrix((1.0, 0.0, 1.8), (0, 0, 0, 1)))
    assert tree.frames == ["base_link", "lidar"]
    expected = transform_matrix((1.0, 0.0, 1.8), (0, 0, 0, 1))
    for target, source in (("base_link", "lidar"), ("/base_link", "lidar"), ("base_link", "/lidar")):
        np.testing.assert_allclose(tree.lookup(target, source), expected)
    np.testing.assert_array_equal(tree.lookup("lidar", "/lidar"), np.eye(4))


def test_set_replaces_the_transform_and_the_parent():
    tree = TransformTree()
    tree.set("base_link", "lidar", transform_matrix((1.0, 0.0, 0.0), (0, 0, 0, 1)))
    tree.set("base_link", "lidar", transform_matrix((2.0, 0.0, 0.0), (0, 0, 0, 1)))
    np.testing.assert_allclose(tree.lookup("base_link", "lidar")[:3, 3], [2.0, 0.0, 0.0])
    # re-parenting (a frame has one parent): lidar now hangs below a mount, base_link -> lidar goes through it
    tree.set("base_link", "mount", transform_matrix((0.0, 0.0, 1.0), (0, 0, 0, 1)))
    tree.set("mount", "lidar", transform_matrix((0.5, 0.0, 0.0), (0, 0, 0, 1)))
    np.testing.assert_allclose(tree.lookup("base_link", "lidar")[:3, 3], [0.5, 0.0, 1.0])


def test_cycles_self_links_empty_ids_and_bad_matrices_are_refused():
    tree = TransformTree()
    tree.set("a", "b", np.eye(4))
    tree.set("b", "c", np.eye(4))
    with pytest.raises(ValueError, match="cycle"):
        tree.set("c", "a", np.eye(4))
    with pytest.raises(ValueError, match="cycle"):
        tree.set("b", "a", np.eye(4))
    for parent, child in (("a", "a"), ("/a", "a"), ("", "x"), ("x", ""), ("/", "x")):
        with pytest.raises(ValueError, match="two different, non-empty"):
            tree.set(parent, child, np.eye(4))
    bad = np.eye(4)
    bad[0, 3] = math.nan
    for T in (bad, np.full((4, 4), math.inf), np.eye(3), np.eye(4)[:3]):
        with pytest.raises(ValueError, match="finite 4x4"):
            tree.set("a", "d", T)
    # nothing refused was stored
    assert tree.frames == ["a", "b", "c"]
    np.testing.assert_array_equal(tree.lookup("a", "c"), np.eye(4))


def test_unconnected_frames_raise_lookup_error_naming_both_and_the_known_frames():
    tree = TransformTree()
    with pytest.raises(LookupError, match=r"'map' and 'lidar' \(known frames: none\)"):
        tree.lookup("map", "lidar")
    tree.set("base_link", "lidar", np.eye(4))
    tree.set("odom", "gps", np.eye(4))
    with pytest.raises(LookupError) as err:
        tree.lookup("/gps", "lidar")
    assert str(err.value) == ("no static transform connects 'gps' and 'lidar' "
                              "(known frames: base_link, gps, lidar, odom)")


def _random_tree(parents, transforms):
    """Frame k's parent is frame parents[k] (< k); returns the tree and T_root_k by explicit products."""
    tree = TransformTree()
    T_root = [np.eye(4)]
    for k in range(1, len(parents)):
        tree.set("f%d" % parents[k], "f%d" % k, transforms[k])
        T_root.append(T_root[parents[k]] @ transforms[k])
    return tree, T_root


@st.composite
def trees(draw):
    n = draw(st.integers(3, 8))
    parents = [0] + [draw(st.integers(0, k - 1)) for k in range(1, n)]
    transforms = [np.eye(4)] + [draw(rigid) for _ in range(1, n)]
    frames = st.integers(0, n - 1)
    return parents, transforms, draw(frames), draw(frames), draw(frames)


@settings(max_examples=80, deadline=None)
@given(trees())
def test_lookup_matches_explicit_chains_inverts_and_composes(args):
    parents, transforms, a, b, c = args
    tree, T_root = _random_tree(parents, transforms)
    fa, fb, fc = "f%d" % a, "f%d" % b, "f%d" % c
    T_ab = tree.lookup(fa, fb)
    np.testing.assert_allclose(T_ab, np.linalg.inv(T_root[a]) @ T_root[b], atol=1e-9)
    np.testing.assert_allclose(T_ab @ tree.lookup(fb, fa), np.eye(4), atol=1e-9)
    np.testing.assert_allclose(tree.lookup(fa, fc), T_ab @ tree.lookup(fb, fc), atol=1e-9)
    np.testing.assert_allclose(T_ab[3], [0, 0, 0, 1], atol=1e-12)


def test_lookup_between_branches_below_a_common_ancestor_that_is_not_the_root():
    rng = np.random.default_rng(3)

    def rand_T():
        return transform_matrix(rng.uniform(-3, 3, 3), rng.normal(size=4))

    # world -> base_link -> {mount -> lidar, camera_link -> camera}; lidar/camera meet at base_link
    edges = {"base_link": ("world", rand_T()), "mount": ("base_link", rand_T()), "lidar": ("mount", rand_T()),
             "camera_link": ("base_link", rand_T()), "camera": ("camera_link", rand_T())}
    tree = TransformTree()
    for child, (parent, T) in edges.items():
        tree.set(parent, child, T)
    T_base_lidar = edges["mount"][1] @ edges["lidar"][1]
    T_base_camera = edges["camera_link"][1] @ edges["camera"][1]
    np.testing.assert_allclose(tree.lookup("camera", "lidar"), np.linalg.inv(T_base_camera) @ T_base_lidar,
                               atol=1e-9)
    np.testing.assert_allclose(tree.lookup("camera", "lidar"),
                               tree.lookup("camera", "world") @ tree.lookup("world", "lidar"), atol=1e-9)
    np.testing.assert_allclose(tree.lookup("mount", "camera_link"),
                               np.linalg.inv(edges["mount"][1]) @ edges["camera_link"][1], atol=1e-9)


def test_set_copies_the_matrix():
    tree = TransformTree()
    T = np.eye(4)
    tree.set("a", "b", T)
    T[0, 3] = 5.0
    np.testing.assert_array_equal(tree.lookup("a", "b"), np.eye(4))


# ---------------------------------------------------------------- PoseBuffer

def test_pose_buffer_reasons_and_exact_lookups():
    buf = PoseBuffer(capacity=10, max_gap_ns=500 * MS, max_extrapolation_ns=100 * MS)
    assert buf.lookup(0) == (None, NO_POSE)
    A, B = rot_z(0.0, (1.0, 2.0, 0.0)), rot_z(0.5, (3.0, 2.0, 0.0))
    assert buf.add(1000 * MS, A) is False
    assert buf.add(1200 * MS, B) is False
    assert len(buf) == 2
    T, reason = buf.lookup(1000 * MS)
    assert reason == "" and np.array_equal(T, A)
    T, reason = buf.lookup(1200 * MS)
    assert reason == "" and np.array_equal(T, B)
    assert buf.lookup(1000 * MS - 1) == (None, TOO_OLD)
    # past the newest pose: constant velocity (A -> B over 200 ms: +2 m in x, +0.5 rad), up to max_extrapolation_ns
    for stamp, dx, dyaw in ((1250 * MS, 0.5, 0.125), (1300 * MS, 1.0, 0.25)):
        T, reason = buf.lookup(stamp)
        assert reason == ""
        assert np.allclose(T[:3, 3], (3.0 + dx, 2.0, 0.0)) and yaw_of(T[:3, :3]) == pytest.approx(0.5 + dyaw)
    assert buf.lookup(1300 * MS + 1) == (None, TOO_NEW)
    # a single pose (or one after a long gap) is held, not extrapolated
    single = PoseBuffer(max_extrapolation_ns=100 * MS)
    single.add(0, B)
    assert np.array_equal(single.lookup(50 * MS)[0], B)
    # a returned pose is a copy
    T, _ = buf.lookup(1250 * MS)
    T[:] = 0
    assert np.array_equal(buf.lookup(1200 * MS)[0], B)


def test_pose_buffer_midpoint_interpolation():
    buf = PoseBuffer(max_gap_ns=500 * MS)
    buf.add(0, rot_z(0.2, (0.0, 0.0, 0.0)))
    buf.add(400 * MS, rot_z(1.0, (4.0, -2.0, 1.0)))
    T, reason = buf.lookup(200 * MS)
    assert reason == ""
    np.testing.assert_allclose(T[:3, 3], [2.0, -1.0, 0.5], atol=1e-12)
    assert yaw_of(T[:3, :3]) == pytest.approx(0.6, abs=1e-12)
    np.testing.assert_allclose(T[:3, :3], rot_z(0.6)[:3, :3], atol=1e-12)
    np.testing.assert_array_equal(T[3], [0, 0, 0, 1])
    T, _ = buf.lookup(100 * MS)
    np.testing.assert_allclose(T[:3, 3], [1.0, -0.5, 0.25], atol=1e-12)
    assert yaw_of(T[:3, :3]) == pytest.approx(0.4, abs=1e-12)


def test_pose_buffer_interpolates_the_short_way_across_pi():
    buf = PoseBuffer()
    buf.add(0, rot_z(3.0))
    buf.add(100 * MS, rot_z(-3.0))  # 0.283 rad apart through +-pi
    T, _ = buf.lookup(50 * MS)
    assert abs(wrap(yaw_of(T[:3, :3]) - math.pi)) < 1e-12


def test_pose_buffer_gap():
    buf = PoseBuffer(max_gap_ns=500 * MS, max_extrapolation_ns=0)
    buf.add(0, rot_z(0.0))
    buf.add(500 * MS, rot_z(0.0, (5.0, 0.0, 0.0)))  # exactly max_gap_ns apart: bridged
    buf.add(1500 * MS, rot_z(0.0, (6.0, 0.0, 0.0)))  # 1 s apart: not bridged
    T, reason = buf.lookup(250 * MS)
    assert reason == "" and T[0, 3] == pytest.approx(2.5)
    assert buf.lookup(1000 * MS) == (None, GAP)
    assert buf.lookup(500 * MS + 1) == (None, GAP)
    assert buf.lookup(1500 * MS)[0][0, 3] == 6.0  # the poses themselves stay reachable
    assert buf.lookup(1500 * MS + 1) == (None, TOO_NEW)  # max_extrapolation_ns = 0


def test_pose_buffer_backwards_stamp_resets_and_same_stamp_replaces():
    buf = PoseBuffer()
    buf.add(100 * MS, rot_z(0.0, (1.0, 0.0, 0.0)))
    buf.add(200 * MS, rot_z(0.0, (2.0, 0.0, 0.0)))
    assert buf.add(200 * MS, rot_z(0.0, (9.0, 0.0, 0.0))) is False  # same stamp: newer message wins
    assert len(buf) == 2 and buf.resets == 0
    assert buf.lookup(200 * MS)[0][0, 3] == 9.0
    assert buf.lookup(150 * MS)[0][0, 3] == pytest.approx(5.0)
    assert buf.add(150 * MS, rot_z(0.0, (7.0, 0.0, 0.0))) is True  # time went backwards (bag loop)
    assert len(buf) == 1 and buf.resets == 1
    assert buf.lookup(100 * MS) == (None, TOO_OLD)
    assert buf.lookup(150 * MS)[0][0, 3] == 7.0
    assert buf.add(50 * MS, np.eye(4)) is True and buf.resets == 2 and len(buf) == 1
    buf.clear()
    assert len(buf) == 0 and buf.lookup(50 * MS) == (None, NO_POSE) and buf.resets == 2


def test_pose_buffer_capacity_drops_the_oldest():
    buf = PoseBuffer(capacity=3)
    for k in range(5):
        buf.add(k * 10 * MS, rot_z(0.0, (float(k), 0.0, 0.0)))
    assert len(buf) == 3
    assert buf.lookup(0) == (None, TOO_OLD)
    assert buf.lookup(15 * MS) == (None, TOO_OLD)
    assert buf.lookup(20 * MS)[0][0, 3] == 2.0
    assert buf.lookup(35 * MS)[0][0, 3] == pytest.approx(3.5)


def test_pose_buffer_refuses_bad_input():
    with pytest.raises(ValueError, match="capacity"):
        PoseBuffer(capacity=1)
    buf = PoseBuffer()
    bad = np.eye(4)
    bad[2, 2] = math.nan
    for T in (bad, np.eye(3)):
        with pytest.raises(ValueError, match="finite 4x4"):
            buf.add(0, T)
    assert len(buf) == 0


def test_pose_buffer_add_copies_the_pose():
    buf = PoseBuffer()
    T = np.eye(4)
    buf.add(0, T)
    T[0, 3] = 3.0  # e.g. a node re-using one matrix per odometry message
    assert buf.lookup(0)[0][0, 3] == 0.0


@settings(max_examples=100, deadline=None)
@given(st.floats(-math.pi, math.pi), st.floats(-math.pi + 0.01, math.pi - 0.01), st.integers(0, 100),
       translations, translations)
def test_interpolation_is_linear_in_yaw_and_translation(yaw0, dyaw, k, t0, t1):
    buf = PoseBuffer(max_gap_ns=100 * MS)
    buf.add(0, rot_z(yaw0, t0))
    buf.add(100 * MS, rot_z(yaw0 + dyaw, t1))
    T, reason = buf.lookup(k * MS)
    a = k / 100.0
    assert reason == ""
    assert abs(wrap(yaw_of(T[:3, :3]) - (yaw0 + a * dyaw))) < 1e-9
    np.testing.assert_allclose(T[:3, 3], (1 - a) * np.array(t0) + a * np.array(t1), atol=1e-9)
    np.testing.assert_allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-9)
    np.testing.assert_allclose(T[2, :3], [0, 0, 1], atol=1e-9)  # still a rotation about z only


@settings(max_examples=60, deadline=None)
@given(rigid, rigid)
def test_interpolate_pose_endpoints(T0, T1):
    np.testing.assert_allclose(interpolate_pose(T0, T1, 0.0), T0, atol=1e-9)
    np.testing.assert_allclose(interpolate_pose(T0, T1, 1.0), T1, atol=1e-9)


def test_yaw_of():
    assert yaw_of(rot_z(0.7)[:3, :3]) == pytest.approx(0.7, abs=1e-15)
    assert yaw_of(rot_z(-2.5)[:3, :3]) == pytest.approx(-2.5, abs=1e-15)
    assert yaw_of(np.eye(3)) == 0.0


# ---------------------------------------------------------------- transform_obstacle

def _obstacle(**kw):
    args = dict(id=42, center=(1.0, 2.0, 0.3), size=(4.0, 2.0, 1.5), yaw=3.0, velocity=(1.0, 0.0, 0.0),
                footprint=[(0.0, 0.0, 0.0), (2.0, 0.0, 0.0), (2.0, 1.0, 0.0)], range=12.5, height=1.5,
                existence_probability=0.8, hits=7, age=1.25, confirmed=True, low_support=False,
                anomaly_score=0.9, num_points=321, mask_id=5)
    args.update(kw)
    return Obstacle3D(**args)


def test_transform_obstacle_hand_example():
    o = _obstacle()
    T = rot_z(math.pi / 2, (10.0, -2.0, 0.5))
    n = transform_obstacle(o, T)
    np.testing.assert_allclose(n.center, [8.0, -1.0, 0.8], atol=1e-12)
    np.testing.assert_allclose(n.footprint, [[10.0, -2.0, 0.5], [10.0, 0.0, 0.5], [9.0, 0.0, 0.5]], atol=1e-12)
    np.testing.assert_allclose(n.velocity, [0.0, 1.0, 0.0], atol=1e-12)
    assert n.yaw == pytest.approx(3.0 + math.pi / 2 - 2 * math.pi, abs=1e-12)  # wrapped into (-pi, pi]
    assert n.range == 12.5
    np.testing.assert_array_equal(n.size, [4.0, 2.0, 1.5])
    for name in ("id", "height", "existence_probability", "hits", "age", "confirmed", "low_support",
                 "anomaly_score", "num_points", "mask_id"):
        assert getattr(n, name) == getattr(o, name), name
    # the input is untouched
    np.testing.assert_array_equal(o.center, [1.0, 2.0, 0.3])
    np.testing.assert_array_equal(o.velocity, [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(o.footprint, [[0, 0, 0], [2, 0, 0], [2, 1, 0]])
    assert o.yaw == 3.0 and o.range == 12.5


def test_transform_obstacle_without_footprint_and_with_nan_fields():
    o = _obstacle(footprint=np.zeros((0, 3)), yaw=math.nan, range=math.nan, velocity=(math.nan,) * 3)
    n = transform_obstacle(o, rot_z(1.0, (1.0, 1.0, 1.0)))
    assert n.footprint.shape == (0, 3) and n.footprint is not o.footprint
    assert math.isnan(n.yaw) and math.isnan(n.range) and np.all(np.isnan(n.velocity))
    np.testing.assert_allclose(n.center, transform_points(rot_z(1.0, (1.0, 1.0, 1.0)), [o.center])[0])


def test_transform_obstacle_yaw_stays_in_half_open_interval():
    n = transform_obstacle(_obstacle(yaw=-math.pi / 2), rot_z(-math.pi / 2))
    assert -math.pi < n.yaw <= math.pi


def test_transform_obstacle_result_does_not_alias_the_input():
    o = _obstacle()
    n = transform_obstacle(o, rot_z(0.3))
    n.size[0] = 99.0
    assert o.size[0] == 4.0


@settings(max_examples=80, deadline=None)
@given(rigid, st.floats(-math.pi, math.pi), st.floats(-math.pi, math.pi), translations)
def test_transform_then_inverse_gives_the_obstacle_back(T, yaw_z, yaw0, tz):
    o = _obstacle(yaw=yaw0, center=(3.0, -1.0, 0.5), velocity=(0.5, -2.0, 0.1),
                  footprint=[(2.0, -2.0, 0.0), (4.0, -2.0, 0.0), (4.0, 0.0, 0.0), (2.0, 0.0, 0.0)])
    back = transform_obstacle(transform_obstacle(o, T), np.linalg.inv(T))  # any rigid T: points and vectors
    np.testing.assert_allclose(back.center, o.center, atol=1e-8)
    np.testing.assert_allclose(back.velocity, o.velocity, atol=1e-8)
    np.testing.assert_allclose(back.footprint, o.footprint, atol=1e-8)
    Tz = rot_z(yaw_z, tz)  # rotations about z: the yaw comes back too
    moved = transform_obstacle(o, Tz)
    assert -math.pi <= moved.yaw <= math.pi
    assert abs(wrap(moved.yaw - (yaw0 + yaw_z))) < 1e-9
    back = transform_obstacle(moved, np.linalg.inv(Tz))
    assert abs(wrap(back.yaw - yaw0)) < 1e-9
    np.testing.assert_allclose(back.center, o.center, atol=1e-8)
    np.testing.assert_allclose(np.linalg.norm(moved.velocity[:2]), np.linalg.norm(o.velocity[:2]), atol=1e-9)
