"""fusion_node over real DDS (separate process): masks + cloud + CameraInfo -> obstacles and markers,
in the sensor frame and in the odometry's fixed frame, and bad input that must not stop it."""
import numpy as np
import pytest

import fusion_scene as fs

PERIOD = 10 ** 8
T0 = 200 * 10 ** 9
BOX = ((10.0, 1.0), (0.6, 0.4, 0.5))


def _start(start_node, share, *extra):
    proc = start_node("fusion_node", "--ros-args", "--params-file", str(share / "config" / "fusion.yaml"),
                      "-p", "diagnostics.period_s:=0.2",
                      "-p", "extrinsics.translation:=%r" % fs.CL_TRANSLATION,
                      "-p", "extrinsics.rotation_xyzw:=%r" % fs.CL_QUATERNION, *extra)
    assert proc.wait_for_output("started:"), proc.output()
    return proc


class Feed:
    """Publishers of the fusion node's inputs, with the scene's messages."""

    def __init__(self, probe):
        from nav_msgs.msg import Odometry
        from sensor_msgs.msg import CameraInfo, PointCloud2
        from visualization_msgs.msg import MarkerArray

        from s2m_ros.msg import ObstacleArray, OodMaskArray

        self.probe = probe
        self.cloud = probe.publisher(PointCloud2, "/points", reliable=True)
        self.masks = probe.publisher(OodMaskArray, "/ood/masks", reliable=True)
        self.info = probe.publisher(CameraInfo, "/camera_info", reliable=True)
        self.odom = probe.publisher(Odometry, "/odom", reliable=True)
        self.obstacles = probe.collect(ObstacleArray, "/obstacles")
        self.markers = probe.collect(MarkerArray, "/obstacle_markers")
        for pub in (self.cloud, self.masks, self.info):
            assert probe.wait_for_subscriber(pub)
        assert probe.spin_until(lambda: self.probe.node.count_publishers("/obstacles") > 0)

    def camera_info(self, width=fs.W, height=fs.H):
        from sensor_msgs.msg import CameraInfo

        from s2m_ros.ros.conversions.s2m_msgs import make_header

        msg = CameraInfo(header=make_header(T0, "camera"), width=width, height=height, distortion_model="plumb_bob",
                         d=[0.0] * 5, k=[float(v) for v in fs.K.ravel()])
        assert self.probe.publish_until(self.info, msg, "fusion_node", "camera_info_received", 1)

    def frame(self, stamp_ns, boxes, masks=None, points=None, mask_size=(fs.W, fs.H)):
        from s2m_ros.ros.conversions.pointcloud import xyz_to_cloud
        from s2m_ros.ros.conversions.s2m_msgs import frame_masks_to_msg, make_header

        pts = fs.cloud(boxes, seed=stamp_ns % 997) if points is None else points
        self.cloud.publish(xyz_to_cloud(pts, header=make_header(stamp_ns, "lidar")))
        self.probe.spin_until(lambda: False, timeout=0.02)
        if masks is None:
            masks = [fs.mask_for(c, s, i + 1) for i, (c, s) in enumerate(boxes)]
        self.masks.publish(frame_masks_to_msg(fs.frame_masks(stamp_ns + 10 ** 7, masks, *mask_size)))
        self.probe.spin_until(lambda: False, timeout=0.08)

    def odometry(self, stamp_ns, x):
        from nav_msgs.msg import Odometry

        from s2m_ros.ros.conversions.s2m_msgs import make_header

        msg = Odometry(header=make_header(stamp_ns, "map"), child_frame_id="base_link")
        msg.pose.pose.position.x = float(x)
        msg.pose.pose.orientation.w = 1.0
        self.odom.publish(msg)


def test_masks_and_cloud_become_a_confirmed_obstacle_with_markers_then_vanish(start_node, share, probe):
    from visualization_msgs.msg import Marker

    from s2m_ros.ros.conversions.s2m_msgs import msg_to_obstacle_frame

    proc = _start(start_node, share)
    feed = Feed(probe)
    feed.camera_info()
    for k in range(6):
        feed.frame(T0 + k * PERIOD, [BOX])
    assert probe.spin_until(lambda: any(m.obstacles for m in feed.obstacles))
    first = next(i for i, m in enumerate(feed.obstacles) if m.obstacles)
    assert first == 2  # confirmed on the 3rd frame; tentative tracks are not published by default
    assert [len(m.obstacles) for m in feed.obstacles[:2]] == [0, 0]  # "fused, nothing there"
    frame = msg_to_obstacle_frame(feed.obstacles[-1])
    assert frame.frame_id == "lidar" and frame.stamp_ns == T0 + 5 * PERIOD  # the cloud's stamp
    (o,) = frame.obstacles
    assert o.id == 1 and o.confirmed and o.hits == 6 and o.mask_id == 1
    assert np.linalg.norm(o.center - [10.0, 1.0, fs.GROUND_Z + 0.25]) < 0.15
    assert o.num_points > 50 and len(o.footprint) >= 3 and o.anomaly_score == pytest.approx(0.9)
    boxes = [m for arr in feed.markers for m in arr.markers if m.ns == "boxes" and m.action == Marker.ADD]
    assert boxes and boxes[0].id == 1 and boxes[0].type == Marker.CUBE and boxes[0].header.frame_id == "lidar"
    assert boxes[0].lifetime.nanosec == 5 * 10 ** 8
    # tentative tracks are drawn (yellow) before confirmation
    assert feed.markers[0].markers[0].color.g > 0.8

    # the object disappears: the track coasts, then is deleted, and its markers get explicit DELETEs
    for k in range(6, 14):
        feed.frame(T0 + k * PERIOD, [], masks=[])
    assert probe.spin_until(lambda: len(feed.obstacles) >= 14 and not feed.obstacles[-1].obstacles)
    deletes = {(m.ns, m.id) for arr in feed.markers for m in arr.markers if m.action == Marker.DELETE}
    assert {("boxes", 1), ("labels", 1), ("footprints", 1)} <= deletes
    assert probe.spin_until(lambda: probe.counter("fusion_node", "fused") >= 14)  # diagnostics lag by <= 0.2 s
    d = probe.diag("fusion_node")
    assert int(d["fused"]) == 14 and d["masks_ok"] == "6" and d["errors_total"] == "0"
    assert float(d["latency_fusion_median_ms"]) > 0 and "latency_tracking_max_ms" in d
    assert proc.proc.poll() is None


def test_fixed_frame_from_odometry_keeps_a_static_obstacle_still(start_node, share, probe):
    from s2m_ros.ros.conversions.s2m_msgs import msg_to_obstacle_frame

    _start(start_node, share, "-p", "fixed_frame.enabled:=true")
    feed = Feed(probe)
    assert probe.wait_for_subscriber(feed.odom)
    feed.camera_info()
    speed, world_x = 3.0, 20.0
    # no odometry yet: the frame is skipped with a reason, not fused in the wrong frame
    feed.frame(T0 - PERIOD, [((world_x, 1.0), BOX[1])])
    assert probe.spin_until(lambda: probe.counter("fusion_node", "skipped_no_pose") >= 1)
    for k in range(8):
        t = T0 + k * PERIOD
        ego = speed * k * PERIOD * 1e-9
        feed.odometry(t, ego)
        feed.odometry(t + PERIOD // 2, ego + speed * PERIOD * 0.5e-9)
        feed.frame(t, [((world_x - ego, 1.0), BOX[1])])
    assert probe.spin_until(lambda: len(feed.obstacles) >= 8 and feed.obstacles[-1].obstacles)
    frame = msg_to_obstacle_frame(feed.obstacles[-1])
    (o,) = frame.obstacles
    assert frame.frame_id == "map"
    assert o.center[0] == pytest.approx(world_x, abs=0.15) and o.center[1] == pytest.approx(1.0, abs=0.15)
    assert np.linalg.norm(o.velocity[:2]) < 0.3  # static in the fixed frame although the ego drives at 3 m/s


def test_bad_input_is_reported_and_the_node_keeps_fusing(start_node, share, probe):
    proc = _start(start_node, share)
    feed = Feed(probe)
    feed.camera_info()
    good = 0
    for k in range(3):
        feed.frame(T0 + k * PERIOD, [BOX])
        good += 1
    assert probe.spin_until(lambda: probe.counter("fusion_node", "fused") >= good)

    # empty cloud and all-NaN cloud: fused (low support, no position), nothing confirmed from them
    feed.frame(T0 + 3 * PERIOD, [BOX], points=np.zeros((0, 3), np.float32))
    feed.frame(T0 + 4 * PERIOD, [BOX], points=np.full((100, 3), np.nan, np.float32))
    assert probe.spin_until(lambda: probe.counter("fusion_node", "masks_empty_cloud") >= 1
                            and probe.counter("fusion_node", "empty_clouds") >= 1)
    # all-NaN points are dropped while decoding: the node sees an empty cloud
    assert probe.spin_until(lambda: probe.counter("fusion_node", "masks_empty_cloud") >= 2)

    # masks made for another image size than the camera's
    feed.frame(T0 + 5 * PERIOD, [BOX], masks=[fs.rect_mask(10, 10, 20, 20, 1)], mask_size=(320, 180))
    assert probe.spin_until(lambda: probe.counter("fusion_node", "fusion_errors") >= 1)
    assert "320x180" in probe.diag("fusion_node")["last_error"]

    # masks stamped before the last fused cloud (reordered): skipped, tracks kept
    feed.frame(T0 + 6 * PERIOD, [BOX])
    assert probe.spin_until(lambda: probe.counter("fusion_node", "fused") >= 6)
    from s2m_ros.ros.conversions.s2m_msgs import frame_masks_to_msg

    feed.masks.publish(frame_masks_to_msg(fs.frame_masks(T0 + 5 * PERIOD + 10 ** 7, [fs.mask_for(*BOX, 1)])))
    assert probe.spin_until(lambda: probe.counter("fusion_node", "skipped_out_of_order") >= 1)

    # and it still fuses: the track kept its id through all of it
    feed.frame(T0 + 7 * PERIOD, [BOX])
    assert probe.spin_until(lambda: probe.counter("fusion_node", "fused") >= 7)
    assert feed.obstacles[-1].obstacles[0].id == 1
    assert proc.proc.poll() is None


def test_extrinsics_from_tf_static(start_node, share, probe):
    """extrinsics.source=tf_static: camera <- LiDAR composed from latched /tf_static transforms (base_link ->
    lidar, base_link -> camera), frames named by the cloud and CameraInfo headers; skipped with a reason
    until the transforms arrive."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from tf2_msgs.msg import TFMessage

    from s2m_ros.bags.storage import tf_message
    from s2m_ros.ros.conversions.s2m_msgs import msg_to_obstacle_frame
    from s2m_ros.obstacles.geometry import transform_matrix

    proc = start_node("fusion_node", "--ros-args", "--params-file", str(share / "config" / "fusion.yaml"),
                      "-p", "diagnostics.period_s:=0.2", "-p", "extrinsics.source:=tf_static")
    assert proc.wait_for_output("started:"), proc.output()
    feed = Feed(probe)
    feed.camera_info()
    feed.frame(T0 - PERIOD, [BOX])  # no /tf_static yet: skipped, with the frames it looked for
    assert probe.spin_until(lambda: probe.counter("fusion_node", "skipped_no_extrinsics") >= 1)
    assert "'camera' and 'lidar'" in probe.diag("fusion_node")["last_error"]

    T_base_lidar = transform_matrix([1.2, 0.0, 1.9], [0.0, 0.0, 0.0, 1.0])
    T_base_camera = T_base_lidar @ np.linalg.inv(fs.T_CL)  # so that camera <- lidar = fs.T_CL
    latched = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    tf_pub = probe.node.create_publisher(TFMessage, "/tf_static", latched)
    broken = tf_message([("base_link", "radar", T_base_lidar)], T0)
    broken.transforms[0].transform.rotation.w = 0.0  # zero quaternion: refused and counted, node keeps running
    tf_pub.publish(broken)
    assert probe.spin_until(lambda: probe.counter("fusion_node", "bad_tf_static") >= 1)
    msg = tf_message([("base_link", "lidar", T_base_lidar), ("base_link", "camera", T_base_camera)], T0)
    assert isinstance(msg, TFMessage)
    tf_pub.publish(msg)
    assert probe.spin_until(lambda: "lidar" in probe.diag("fusion_node").get("tf_static_frames", ""))
    for k in range(5):
        feed.frame(T0 + k * PERIOD, [BOX])
    assert probe.spin_until(lambda: any(m.obstacles for m in feed.obstacles))
    (o,) = msg_to_obstacle_frame(feed.obstacles[-1]).obstacles
    assert np.linalg.norm(o.center - [10.0, 1.0, fs.GROUND_Z + 0.25]) < 0.15
    assert proc.proc.poll() is None
