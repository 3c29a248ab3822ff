"""Live end to end (issue #7): the synthetic apron drive as a rosbag2 bag, played by `s2m play`, into
s2m_node (camera) and fusion_node, every one in its own process over DDS on loopback.

The scenario is short (25 frames) and played slowly (rate 0.3: a frame every 333 ms, more than the
camera node needs per 640x360 frame with the weight-free surface+grabcut profile), so nearly every
frame is processed. fusion_node takes the camera <- LiDAR extrinsics and base_link <- LiDAR from the
scenario as parameters (tf2_msgs is not installed, so /tf_static cannot be used live) and tracks in
the odometry's fixed frame ``map``, the scenario's world frame: obstacles compare with the truth
boxes directly.

What is checked: mask arrays carry the image stamps (frame id, size, scorer); fusion publishes an
ObstacleArray per fused frame, in ``map`` at the cloud stamps; confirmed tracks lie on truth objects
(several of them, and the tug, the nearest large object); no node reports bad input or a fusion
error. Confirmed tracks that match no truth object (false confirmed) are reported and bounded by
``MAX_FALSE_CONFIRMED``.
"""
import os
import statistics
import sys

import numpy as np
import pytest

from conftest import NodeProcess
from s2m_ros.cli.probe import Probe

FRAMES = 25
SEED = 0
RATE = 0.3
MATCH_M = 1.0  # horizontal distance between a confirmed track and a truth box centre to call it a match
# Observed over repeated runs: none. (Before fusion dropped the ground-ray position of masks whose ground
# contact lies beyond fusion.max_range, masks on the horizon became one confirmed track ~430 m away.)
MAX_FALSE_CONFIRMED = 0


@pytest.fixture
def probe(rclpy_context):
    p = Probe(rclpy_context, name="live_bag_probe")
    yield p
    p.close()


def _floats(values):
    """A ROS parameter override value: a list of doubles (repr keeps every digit)."""
    return "[%s]" % ", ".join(repr(float(v)) for v in np.asarray(values, dtype=float).ravel())


def _write_bag(path):
    from s2m_ros.bags.storage import write_scenario_bag
    from s2m_ros.sim.scenario import ScenarioConfig, make_scenario

    scenario = make_scenario(ScenarioConfig(seed=SEED, frames=FRAMES))
    summary = write_scenario_bag(scenario, path, storage="mcap", show_progress=False)
    assert summary.frames == FRAMES
    stamps = [scenario.stamps(k) for k in range(FRAMES)]
    return scenario, [c for c, _ in stamps], [lid for _, lid in stamps]


def _start_nodes(start_node, share, scenario):
    from s2m_ros.bags.storage import matrix_to_quaternion

    camera = start_node("s2m_node", "--ros-args", "--params-file", str(share / "config" / "s2m.yaml"),
                        "-p", "profile:=surface+grabcut", "-p", "diagnostics.period_s:=0.2",
                        "-p", "output.publish_overlay:=false",
                        "-r", "image:=/camera/image_raw", "-r", "camera_info:=/camera/camera_info")
    T_bl = scenario.T_base_lidar
    fusion = start_node("fusion_node", "--ros-args", "--params-file", str(share / "config" / "fusion.yaml"),
                        "-p", "diagnostics.period_s:=0.2",
                        "-p", "extrinsics.matrix:=%s" % _floats(scenario.T_camera_lidar),
                        "-p", "fixed_frame.enabled:=true",
                        "-p", "fixed_frame.base_from_lidar.translation:=%s" % _floats(T_bl[:3, 3]),
                        "-p", "fixed_frame.base_from_lidar.rotation_xyzw:=%s" % _floats(matrix_to_quaternion(T_bl)),
                        "-r", "points:=/lidar/points", "-r", "camera_info:=/camera/camera_info")
    for proc in (camera, fusion):
        assert proc.wait_for_output("started:", timeout=60), proc.output()
    return camera, fusion


def _tracks(obstacle_msgs):
    """{track id: [(x, y, confirmed), ...]} over every ObstacleArray, and the set of frame ids."""
    from s2m_ros.ros.conversions.s2m_msgs import msg_to_obstacle_frame

    tracks, frames = {}, set()
    for msg in obstacle_msgs:
        frame = msg_to_obstacle_frame(msg)
        frames.add(frame.frame_id)
        for o in frame.obstacles:
            tracks.setdefault(o.id, []).append((o.center[0], o.center[1], o.confirmed))
    return tracks, frames


def match_tracks(tracks, truth_xy, radius=MATCH_M):
    """{track id: index of the truth object nearest (horizontally) to the track's median confirmed
    position, or None when none is within ``radius`` or the track has a non-finite position}."""
    out = {}
    for tid, obs in tracks.items():
        xy = np.array([(x, y) for x, y, confirmed in obs if confirmed])
        if not len(xy) or not np.all(np.isfinite(xy)):
            out[tid] = None
            continue
        med = np.median(xy, axis=0)
        d = np.hypot(*(truth_xy - med).T)
        out[tid] = int(np.argmin(d)) if d.min() <= radius else None
    return out


def test_match_tracks_uses_the_median_and_the_radius():
    truth = np.array([[10.0, 0.0], [20.0, 5.0]])
    tracks = {1: [(10.5, 0.2, True), (10.4, 0.1, True), (99.0, 99.0, True)],  # one outlier: median wins
              2: [(21.2, 5.0, True)],  # 1.2 m from truth 1
              3: [(20.0, 5.0, False)],  # never confirmed
              4: [(np.nan, np.nan, True)]}
    assert match_tracks(tracks, truth) == {1: 0, 2: None, 3: None, 4: None}
    assert match_tracks(tracks, truth, radius=1.5)[2] == 1


def _all_fused(probe, masks, obstacles):
    """Every mask array reached fusion_node and every one that can be fused was: its cloud arrived
    (the cloud subscription is best effort, as deployed, so a cloud may be lost under load)."""
    d = probe.diag("fusion_node")
    if "clouds_received" not in d or int(d.get("mask_arrays_received", "0")) < len(masks):
        return False
    return len(obstacles) >= len(masks) - (FRAMES - int(d["clouds_received"]))


def test_bag_player_and_both_nodes_produce_obstacles_on_the_truth(tmp_path, start_node, share, probe):
    from s2m_ros.ros.conversions.s2m_msgs import stamp_to_ns
    from s2m_ros.msg import ObstacleArray, OodMaskArray

    scenario, cam_stamps, lidar_stamps = _write_bag(tmp_path / "bag")
    truth = scenario.objects
    truth_xy = np.array([o.center[:2] for o in truth])  # world frame = map, the frame fusion tracks in
    masks = probe.collect(OodMaskArray, "/ood/masks", depth=100)
    obstacles = probe.collect(ObstacleArray, "/obstacles", depth=100)
    camera, fusion = _start_nodes(start_node, share, scenario)
    assert probe.spin_until(lambda: probe.node.count_publishers("/ood/masks") > 0
                            and probe.node.count_publishers("/obstacles") > 0)
    topics = ["/camera/image_raw", "/camera/camera_info", "/lidar/points", "/odom"]
    player = NodeProcess(sys.executable, ["-m", "s2m_ros.cli.main", "play", str(tmp_path / "bag"),
                                          "--rate", str(RATE), "--wait-subscribers", "30", "--delay", "0.5",
                                          "--topics"] + topics, tmp_path / "play.log", env=os.environ.copy())
    # played in FRAMES / 10 Hz / RATE = 8.3 s; then the last frame is segmented and fused
    assert probe.spin_until(lambda: player.proc.poll() is not None, timeout=90), player.output()
    assert player.proc.wait() == 0 and "done: published %d messages" % (4 * FRAMES) in player.output(), \
        player.output()
    # latest-only drops an older waiting frame for a newer one, never the last frame
    assert probe.spin_until(lambda: masks and stamp_to_ns(masks[-1].header.stamp) == cam_stamps[-1]
                            and _all_fused(probe, masks, obstacles), timeout=30), \
        "%d mask arrays, %d obstacle arrays\nfusion: %s\ncamera: %s\n%s" % (
            len(masks), len(obstacles), probe.diag("fusion_node"), probe.diag("s2m_node"), fusion.output()[-3000:])
    probe.spin_until(lambda: False, timeout=0.6)  # the nodes' final diagnostics
    cam_d, fus_d = probe.diag("s2m_node"), probe.diag("fusion_node")

    # camera node: one mask array per processed frame, with the image's header and size
    mask_stamps = [stamp_to_ns(m.header.stamp) for m in masks]
    assert set(mask_stamps) <= set(cam_stamps) and mask_stamps == sorted(set(mask_stamps))
    assert len(masks) >= 0.8 * FRAMES, (len(masks), cam_d)  # latest-only, but the bag is played slowly
    assert {m.header.frame_id for m in masks} == {"camera_optical"}
    assert {(m.image_width, m.image_height, m.scorer, m.segmenter) for m in masks} == {
        (640, 360, "surface", "grabcut")}
    assert sum(len(m.masks) for m in masks) >= len(masks)  # objects are found, not only empty arrays

    # fusion: each mask array matched to its own cloud (20 ms later) and fused in the fixed frame; one is
    # missing only where its cloud was lost on the way (best effort)
    lost_clouds = FRAMES - int(fus_d["clouds_received"])
    obstacle_stamps = [stamp_to_ns(m.header.stamp) for m in obstacles]
    lidar_of = dict(zip(cam_stamps, lidar_stamps))
    fused_cams = [s for s in mask_stamps if lidar_of[s] in set(obstacle_stamps)]
    assert obstacle_stamps == [lidar_of[s] for s in fused_cams]  # in order, nothing else
    assert len(obstacles) >= len(masks) - lost_clouds >= 0.8 * FRAMES - 1, fus_d
    tracks, frames = _tracks(obstacles)
    assert frames == {"map"}
    confirmed = {tid: obs for tid, obs in tracks.items() if any(c for _, _, c in obs)}
    assert tracks == confirmed  # only confirmed tracks are published by default
    matches = match_tracks(confirmed, truth_xy)
    detected = sorted({k for k in matches.values() if k is not None})
    false = sorted(tid for tid, k in matches.items() if k is None)
    error = {truth[k].kind + str(truth[k].id): round(float(np.hypot(*(np.median(
        [(x, y) for x, y, _ in confirmed[t]], axis=0) - truth_xy[k]))), 2) for t, k in matches.items() if k is not None}
    false_xy = [np.round(np.median([(x, y) for x, y, _ in confirmed[t]], axis=0), 1).tolist() for t in false]
    print("\nlive bag: %s/%d frames decoded, %d segmented (median %g masks), %d clouds lost, %d obstacle arrays, "
          "%d confirmed tracks; truth objects with a confirmed track %d/%d, horizontal error m %s; "
          "false confirmed %d at %s" % (cam_d.get("frames_decoded"), FRAMES, len(masks),
                                        statistics.median(len(m.masks) for m in masks), lost_clouds, len(obstacles),
                                        len(confirmed), len(detected), len(truth), error, len(false), false_xy))
    # the bolt (a few pixels) is never segmented, the hose rarely; both (3 and 6 cm high) are lower than
    # fusion's ground band (0.25 m), so the LiDAR cannot support them anyway
    assert len(detected) >= 5, (error, false_xy)
    assert "tug" in {truth[k].kind for k in detected}, error  # the nearest large object, 26 m ahead
    assert len(false) <= MAX_FALSE_CONFIRMED, false_xy

    # diagnostics: no bad input, nothing that fusion could not use (error counters appear at the first error)
    assert int(cam_d["frames_processed"]) == len(masks), cam_d
    assert int(cam_d["frames_processed"]) + int(cam_d["dropped_frames"]) == int(cam_d["frames_decoded"]), cam_d
    assert int(cam_d["processing_errors"]) == 0 and int(cam_d["model_output_nonfinite"]) == 0, cam_d
    for d in (cam_d, fus_d):
        assert int(d.get("bad_input", "0")) == 0 and int(d.get("errors_total", "0")) == 0, d
    for key in ("bad_masks", "bad_cloud", "fusion_errors", "skipped_no_camera_info", "skipped_no_extrinsics",
                "skipped_no_pose", "skipped_out_of_order", "time_resets"):
        assert int(fus_d[key]) == 0, (key, fus_d)
    assert int(fus_d["fused"]) == len(obstacles) and int(fus_d["mask_arrays_received"]) == len(masks), fus_d
    assert camera.proc.poll() is None and fusion.proc.poll() is None
