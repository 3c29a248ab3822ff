"""ObstaclePipeline (fusion + fixed frame + tracking + time policy), ROS-free, on exact synthetic scenes."""
import math

import numpy as np
import pytest

import fusion_scene as fs
from s2m_ros.obstacles.geometry import transform_matrix
from s2m_ros.obstacles.tracking import TrackerConfig
from s2m_ros.obstacles.pipeline import OUT_OF_ORDER, ObstaclePipeline

PERIOD = 10 ** 8  # 10 Hz
T0 = 50 * 10 ** 9
BOX = ((10.0, 1.0), (0.6, 0.4, 0.5))  # a suitcase-sized box 10 m ahead, 1 m left
CONE = ((14.0, -2.0), (0.4, 0.4, 0.7))


def run(pipe, stamps, boxes=(BOX,), masks=None, **kw):
    steps = []
    for k, t in enumerate(stamps):
        ms = masks(k) if masks else [fs.mask_for(c, s, i + 1) for i, (c, s) in enumerate(boxes)]
        steps.append(pipe.process(fs.frame_masks(t, ms), fs.cloud(boxes, seed=k), fs.camera(), fs.T_CL, t, **kw))
    return steps


def test_static_object_confirmed_on_third_frame_at_its_true_position():
    steps = run(ObstaclePipeline(), [T0 + k * PERIOD for k in range(5)], boxes=(BOX, CONE))
    assert [len(s.confirmed) for s in steps] == [0, 0, 2, 2, 2]  # TrackerConfig().frames_to_confirm(0.1) == 3
    last = {t.id: t for t in steps[-1].tracks}
    assert sorted(last) == [1, 2]  # one track per object, ids stable from the first frame
    for (xy, size), track in zip((BOX, CONE), (last[1], last[2])):
        truth = np.array([xy[0], xy[1], fs.GROUND_Z + size[2] / 2])
        assert np.linalg.norm(track.center - truth) < 0.15
        assert track.size[2] == pytest.approx(size[2], abs=0.1)
        assert track.hits == 5 and track.confirmed
        assert np.linalg.norm(track.velocity) < 0.2
    assert steps[-1].frame_id == "lidar" and steps[-1].stamp_ns == T0 + 4 * PERIOD
    assert set(steps[-1].stage_ms) == {"fusion", "tracking"}


def test_one_frame_artefacts_never_confirmed_real_object_is():
    """Artefacts (masks on bare ground) at random spots, each outside every association gate of the
    earlier artefacts' tracks (gate_m + max_speed_mps * time since their hit): one-frame artefacts by
    construction. The real object is confirmed; none of the artefacts is, and each has one hit only."""
    from s2m_ros.obstacles.fusion import project_points
    from s2m_ros.obstacles.geometry import transform_points

    cfg = TrackerConfig()
    rng = np.random.default_rng(3)
    recent = []  # (k, xy) of earlier artefacts
    placed = []

    def masks(k):
        out = [fs.mask_for(*BOX, mask_id=1)]
        for _ in range(2000):
            xy = np.array([rng.uniform(5.0, 40.0), rng.uniform(-25.0, 25.0)])
            gates = [(q, cfg.gate_m + cfg.max_speed_mps * (k - j) * PERIOD * 1e-9) for j, q in recent
                     if (k - j) * PERIOD * 1e-9 <= cfg.coast_s + 1e-9]
            if any(np.linalg.norm(xy - q) <= g + 0.5 for q, g in gates) or np.linalg.norm(xy - BOX[0]) < 4:
                continue
            uv, _ = project_points(fs.camera(), transform_points(fs.T_CL, np.array([[xy[0], xy[1], fs.GROUND_Z]])))
            half = max(2, int(0.3 * fs.K[0, 0] / xy[0]))
            u, v = int(uv[0, 0]), int(uv[0, 1])
            if half <= u < fs.W - half and half <= v < fs.H:
                recent.append((k, xy))
                placed.append(k)
                out.append(fs.rect_mask(u - half, v - half, 2 * half, half, mask_id=2))
                break
        return out

    pipe = ObstaclePipeline()
    steps = run(pipe, [T0 + k * PERIOD for k in range(20)], masks=masks)
    assert len(placed) >= 12  # most frames got an artefact
    assert {t.id for s in steps for t in s.confirmed} == {1}
    assert max(t.hits for s in steps for t in s.tracks if t.id != 1) == 1
    # the ground patches had no LiDAR support: reported, never dropped silently
    statuses = [r.status for s in steps for r in s.fusion.reports[1:]]
    assert set(statuses) <= {"no_points", "low_support", "flat"} and len(statuses) == len(placed)


def test_id_survives_two_missed_frames_and_vanished_track_is_deleted():
    pipe = ObstaclePipeline()
    stamps = [T0 + k * PERIOD for k in range(14)]

    def masks(k):
        return [] if k in (5, 6) or k >= 8 else [fs.mask_for(*BOX, mask_id=1)]

    steps = run(pipe, stamps, masks=masks)
    assert [[t.id for t in s.tracks] for s in steps[:8]] == [[1]] * 8
    assert steps[6].tracks[0].confirmed  # coasting through the occlusion keeps the flag (hysteresis)
    assert steps[7].tracks[0].hits == 6
    # not hit for more than coast_s (0.5 s) -> gone
    assert steps[-1].tracks == []


def test_out_of_order_frame_is_skipped_and_big_backwards_jump_resets():
    pipe = ObstaclePipeline(out_of_order_tolerance_ns=10 ** 9)
    run(pipe, [T0 + k * PERIOD for k in range(4)])
    late = run(pipe, [T0 + PERIOD // 2])[0]  # older than the last tracked cloud by 0.25 s
    assert late.skipped == OUT_OF_ORDER and late.tracks == [] and pipe.out_of_order == 1
    after = run(pipe, [T0 + 4 * PERIOD])[0]
    assert [t.id for t in after.tracks] == [1] and after.tracks[0].hits == 5  # tracks kept
    restarted = run(pipe, [T0 - 30 * 10 ** 9])[0]  # bag loop: 30 s back
    assert restarted.reset and not restarted.skipped
    assert [t.id for t in restarted.tracks] == [2] and restarted.tracks[0].hits == 1
    assert pipe.tracker.time_resets == 1


def test_reset_forgets_tracks_and_time():
    pipe = ObstaclePipeline()
    run(pipe, [T0 + k * PERIOD for k in range(3)])
    pipe.reset()
    step = run(pipe, [T0])[0]  # the same stamp again is fine after a reset
    assert not step.skipped and [t.hits for t in step.tracks] == [1]


def test_fixed_frame_makes_a_static_object_static_while_the_ego_drives():
    speed = 3.0  # m/s forward
    world_box = (20.0, 1.0)
    sensor, fixed = ObstaclePipeline(), ObstaclePipeline()
    T_world_lidar = []
    s_steps, f_steps = [], []
    for k in range(10):
        t = T0 + k * PERIOD
        ego_x = speed * k * PERIOD * 1e-9
        T = transform_matrix([ego_x, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0])
        T_world_lidar.append(T)
        box = ((world_box[0] - ego_x, world_box[1]), BOX[1])  # where the LiDAR sees it
        fm = fs.frame_masks(t, [fs.mask_for(*box, mask_id=1)])
        pts = fs.cloud([box], seed=k)
        s_steps.append(sensor.process(fm, pts, fs.camera(), fs.T_CL, t))
        f_steps.append(fixed.process(fm, pts, fs.camera(), fs.T_CL, t, T_fixed_lidar=T, fixed_frame="map"))
    s_track, f_track = s_steps[-1].tracks[0], f_steps[-1].tracks[0]
    assert f_steps[-1].frame_id == "map" and s_steps[-1].frame_id == "lidar"
    assert f_track.velocity[0] == pytest.approx(0.0, abs=0.15)
    assert s_track.velocity[0] == pytest.approx(-speed, abs=0.15)  # ego motion seen as obstacle motion
    assert f_track.center[0] == pytest.approx(world_box[0], abs=0.15)
    assert f_track.center[1] == pytest.approx(world_box[1], abs=0.15)
    assert f_track.confirmed and s_track.confirmed


def test_switching_between_fixed_and_sensor_frame_resets_tracks():
    pipe = ObstaclePipeline()
    run(pipe, [T0, T0 + PERIOD])
    step = run(pipe, [T0 + 2 * PERIOD], T_fixed_lidar=np.eye(4), fixed_frame="odom")[0]
    assert step.reset and step.frame_id == "odom" and [t.hits for t in step.tracks] == [1]
    assert pipe.frame_changes == 1


def test_mask_size_mismatch_raises_and_leaves_state_unchanged():
    pipe = ObstaclePipeline()
    run(pipe, [T0, T0 + PERIOD])
    wrong = fs.frame_masks(T0 + 2 * PERIOD, [fs.mask_for(*BOX, mask_id=1)], width=320, height=180)
    wrong.masks = []  # size is checked even without masks
    with pytest.raises(ValueError, match="320x180.*640x360"):
        pipe.process(wrong, fs.cloud([BOX]), fs.camera(), fs.T_CL, T0 + 2 * PERIOD)
    step = run(pipe, [T0 + 2 * PERIOD])[0]
    assert [t.hits for t in step.tracks] == [3]


@pytest.mark.parametrize("points", [np.zeros((0, 3), np.float32), np.full((500, 3), np.nan, np.float32)],
                         ids=["empty", "all-nan"])
def test_empty_or_all_nan_cloud_gives_low_support_never_confirmed(points):
    pipe = ObstaclePipeline()
    for k in range(6):
        t = T0 + k * PERIOD
        step = pipe.process(fs.frame_masks(t, [fs.mask_for(*BOX, mask_id=1)]), points, fs.camera(), fs.T_CL, t)
        assert [r.status for r in step.fusion.reports] == (["empty_cloud"] if len(points) == 0
                                                            else ["no_finite_points"])
        # no plane, no points: the detection has no position, so nothing can be tracked
        assert not math.isfinite(step.detections[0].center[0])
        assert step.tracks == []
    assert pipe.tracker.invalid_detections == 6


def test_low_support_only_object_confirms_later_than_a_well_supported_one():
    cfg = TrackerConfig()
    assert cfg.frames_to_confirm(0.1, low_support=True) > cfg.frames_to_confirm(0.1)
    far = ((35.0, 0.0), (0.1, 0.1, 0.1))  # a bolt at 35 m: a handful of points at most
    pipe = ObstaclePipeline()
    steps = run(pipe, [T0 + k * PERIOD for k in range(8)], boxes=(far,))
    assert all(d.low_support for s in steps for d in s.detections)
    first = next(i for i, s in enumerate(steps) if s.confirmed)
    assert first + 1 == cfg.frames_to_confirm(0.1, low_support=True)


def test_mask_on_flat_ground_is_flat_not_tracked_but_low_relief_is_not_flat():
    from s2m_ros.obstacles.fusion import FusionConfig

    patch = fs.rect_mask(250, 250, 140, 60, mask_id=7)  # bare ground 6-9 m ahead: dense ground returns
    pts = fs.cloud([])
    pipe = ObstaclePipeline()
    step = pipe.process(fs.frame_masks(T0, [patch]), pts, fs.camera(), fs.T_CL, T0)
    (report,) = step.fusion.reports
    assert report.status == "flat" and "flat surface" in report.reason
    assert step.detections == [] and step.tracks == []  # reported, not tracked
    # the test can be switched off: then it is an ordinary no-points (low-support) detection
    off = ObstaclePipeline(FusionConfig(flat_min_points=0)).process(
        fs.frame_masks(T0, [patch]), pts, fs.camera(), fs.T_CL, T0)
    assert off.fusion.reports[0].status == "no_points" and len(off.tracks) == 1
    # a 15 cm high mat under the same mask: inside the ground band, but not flat
    gx, gy = np.meshgrid(np.arange(5.0, 10.0, 0.05), np.arange(-2.0, 2.0, 0.05))
    mat = np.column_stack([gx.ravel(), gy.ravel(), np.full(gx.size, fs.GROUND_Z + 0.15)]).astype(np.float32)
    raised = ObstaclePipeline().process(fs.frame_masks(T0, [patch]), np.vstack([pts, mat]), fs.camera(), fs.T_CL, T0)
    assert raised.fusion.reports[0].status == "no_points"


def test_mask_at_the_horizon_has_no_position_instead_of_one_hundreds_of_metres_away():
    horizon = fs.rect_mask(300, 160, 40, 21, mask_id=3)  # bottom row 180 = the horizon row (cy)
    near_horizon = fs.rect_mask(300, 160, 40, 23, mask_id=4)  # bottom row 182: ~200 m away
    step = ObstaclePipeline().process(fs.frame_masks(T0, [horizon, near_horizon]), fs.cloud([]), fs.camera(),
                                      fs.T_CL, T0)
    assert all(not np.isfinite(d.center).any() for d in step.fusion.obstacles)
    assert step.tracks == []


def test_front_end_keeps_good_transforms_of_a_tf_message_with_a_degenerate_one():
    from s2m_ros.bags.storage import tf_message
    from s2m_ros.ros.fusion_node import PARAMS
    from s2m_ros.ros.frontend import ObstacleFrontEnd
    from s2m_ros.ros.params import defaults

    front = ObstacleFrontEnd(defaults(PARAMS), use_tf_static=True)
    msg = tf_message([("base_link", "lidar", np.eye(4)), ("base_link", "camera", np.linalg.inv(fs.T_CL))], T0)
    bad = msg.transforms[0].transform.rotation
    bad.x = bad.y = bad.z = bad.w = 0.0  # a zero quaternion in base_link -> lidar
    errors = front.add_tf_message(msg)
    assert len(errors) == 1 and errors[0].startswith("base_link -> lidar:") and "zero" in errors[0]
    assert front.tf.frames == ["base_link", "camera"]
    # the next message with a good transform completes the tree
    front.add_tf_message(tf_message([("base_link", "lidar", np.eye(4))], T0))
    np.testing.assert_allclose(front.tf.lookup("camera", "lidar"), fs.T_CL, atol=1e-12)
