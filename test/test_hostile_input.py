"""Issue 19's red-team cases that live in the nodes, each a test (node processes over DDS where it matters):
a late cloud keeps the tracks (3), 4K images and a 22 MB cloud arrive on the default best-effort input
with the shipped profile (7), headers come back exactly as sent (9), bad odometry and /tf_static are
logged and malformed wire bytes counted (10), a prompt box outside the image is counted (11); and the
guard that turns any exception of a callback into a counted diagnostic.
"""
import numpy as np
import pytest

import fusion_scene as fs
from test_fusion_node import BOX, PERIOD, Feed
from test_fusion_node import _start as _fusion

T0 = 300 * 10 ** 9


def _camera(start_node, share, *extra):
    proc = start_node("s2m_node", "--ros-args", "--params-file", str(share / "config" / "s2m.yaml"),
                      "-p", "diagnostics.period_s:=0.2", *extra)
    assert proc.wait_for_output("started:", timeout=30), proc.output()
    return proc


def _header(sec, nanosec, frame_id):
    from std_msgs.msg import Header

    h = Header(frame_id=frame_id)
    h.stamp.sec, h.stamp.nanosec = sec, nanosec
    return h


# ------------------------------------------------------------------------------------------ (3) late cloud

def test_a_late_cloud_is_skipped_as_out_of_order_and_the_confirmed_tracks_survive(start_node, share, probe):
    """Red team: a cloud stamped 50 ms before the previous one reset time matching and tracking (confirmed
    tracks [5, 8, 9] -> []), counted as time_resets. The documented policy: up to
    tracker.out_of_order_tolerance_s back it is skipped_out_of_order and the tracks are kept; further back
    (a bag loop) it is a time reset."""
    from s2m_ros.ros.conversions.pointcloud import xyz_to_cloud
    from s2m_ros.ros.conversions.s2m_msgs import make_header

    proc = _fusion(start_node, share)
    feed = Feed(probe)
    feed.camera_info()
    for k in range(5):
        feed.frame(T0 + k * PERIOD, [BOX])
    assert probe.spin_until(lambda: feed.obstacles and feed.obstacles[-1].obstacles)
    ids = [o.id for o in feed.obstacles[-1].obstacles]
    last = T0 + 4 * PERIOD
    feed.cloud.publish(xyz_to_cloud(fs.cloud([BOX]), header=make_header(last - 5 * 10 ** 7, "lidar")))
    assert probe.spin_until(lambda: probe.counter("fusion_node", "skipped_out_of_order") >= 1)
    feed.frame(T0 + 5 * PERIOD, [BOX])
    assert probe.spin_until(lambda: probe.counter("fusion_node", "fused") >= 6)
    assert [o.id for o in feed.obstacles[-1].obstacles] == ids  # same confirmed tracks, not restarted
    d = probe.diag("fusion_node")
    assert d["time_resets"] == "0" and d["time_resets_tracker"] == "0"

    # a bag loop (10 s back) is still a reset: tracking restarts, and the new track is not confirmed at once
    feed.frame(T0 - 100 * PERIOD, [BOX])
    assert probe.spin_until(lambda: probe.counter("fusion_node", "time_resets") >= 1)
    assert probe.spin_until(lambda: probe.counter("fusion_node", "fused") >= 7)
    assert feed.obstacles[-1].obstacles == []
    assert proc.proc.poll() is None


def test_front_end_time_policy_without_ros():
    """The same policy on the shared front end (fusion_node and `s2m replay` both use it)."""
    from s2m_ros.ros.fusion_params import PARAMS
    from s2m_ros.ros.frontend import ObstacleFrontEnd

    params = {spec.name: spec.default for spec in PARAMS}
    params["extrinsics.translation"], params["extrinsics.rotation_xyzw"] = fs.CL_TRANSLATION, fs.CL_QUATERNION
    front = ObstacleFrontEnd(params)
    front.camera = fs.camera()
    mask = fs.mask_for(*BOX, 1)
    confirmed = []
    for k in range(4):
        t = T0 + k * PERIOD
        match, event = front.add_cloud(t, fs.cloud([BOX], seed=k))
        assert event == "" and match is None
        match, _ = front.matcher.add_item(t, fs.frame_masks(t, [mask]))
        out = front.fuse(match.item, match.cloud, match.cloud_stamp_ns, "lidar")
        confirmed = [o.id for o in out.step.confirmed]
    assert confirmed == [1]
    last = T0 + 3 * PERIOD
    assert front.add_cloud(last - 5 * 10 ** 7, fs.cloud([BOX])) == (None, "skipped_out_of_order")
    assert len(front.pipeline.tracker) == 1
    # a late cloud that is still newer than the last tracked frame is buffered in order and used
    match, event = front.add_cloud(last + 2 * PERIOD, fs.cloud([BOX]))
    assert event == "" and match is None
    match, event = front.add_cloud(last + PERIOD, fs.cloud([BOX]))
    assert event == "" and len(front.matcher) == 6
    match, _ = front.matcher.add_item(last + PERIOD, fs.frame_masks(last + PERIOD, [mask]))
    assert match.cloud_stamp_ns == last + PERIOD
    out = front.fuse(match.item, match.cloud, match.cloud_stamp_ns, "lidar")
    assert [o.id for o in out.step.confirmed] == [1]  # the same track, never restarted
    # up to the tolerance older than the last tracked frame: skipped; 1 ns more: a time reset
    tol = int(params["tracker.out_of_order_tolerance_s"] * 1e9)
    assert front.add_cloud(last + PERIOD - tol, fs.cloud([BOX])) == (None, "skipped_out_of_order")
    _, event = front.add_cloud(last + PERIOD - tol - 1, fs.cloud([BOX]))
    assert event == "time_reset" and len(front.pipeline.tracker) == 0 and len(front.matcher) == 1


# ------------------------------------------------------------------------------------------ (9) headers

@pytest.mark.parametrize("sec,nanosec", [(1, 1999999999), (2 ** 31 - 1, 2 ** 32 - 1)])
def test_every_camera_output_carries_the_image_header_exactly(start_node, share, probe, sec, nanosec):
    """Red team: nanosec=1999999999 came back as (2001, 999999999); (2^31-1, 2^32-1) was lost as a
    processing error. The header is the camera's: it is copied, never renormalised."""
    from sensor_msgs.msg import Image

    from s2m_ros.msg import OodMaskArray
    from s2m_ros.ros.conversions.image import numpy_to_image

    _camera(start_node, share, "-p", "output.publish_score_map:=true")
    pub = probe.publisher(Image, "/image", reliable=True)
    assert probe.wait_for_subscriber(pub)
    masks = probe.collect(OodMaskArray, "/ood/masks")
    images = {t: probe.collect(Image, t) for t in ("/ood/instance_image", "/ood/score_map", "/ood/overlay")}
    bgr = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    header = _header(sec, nanosec, "cam_optical")
    assert probe.publish_until(pub, numpy_to_image(bgr, "bgr8", header=header), "s2m_node", "frames_processed", 1)
    assert probe.spin_until(lambda: masks and all(images.values()))
    for msg in [masks[0]] + [v[0] for v in images.values()]:
        assert (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id) == (sec, nanosec, "cam_optical")
    assert probe.counter("s2m_node", "processing_errors") == 0


def test_obstacles_carry_the_cloud_stamp_exactly(start_node, share, probe):
    from s2m_ros.ros.conversions.pointcloud import xyz_to_cloud
    from s2m_ros.ros.conversions.s2m_msgs import frame_masks_to_msg, stamp_to_ns

    _fusion(start_node, share)
    feed = Feed(probe)
    feed.camera_info()
    header = _header(400, 1_999_999_999, "lidar")
    feed.cloud.publish(xyz_to_cloud(fs.cloud([BOX]), header=header))
    probe.spin_until(lambda: False, timeout=0.05)
    feed.masks.publish(frame_masks_to_msg(fs.frame_masks(stamp_to_ns(header.stamp), [fs.mask_for(*BOX, 1)])))
    assert probe.spin_until(lambda: feed.obstacles and feed.markers)
    for msg in (feed.obstacles[0], feed.markers[0].markers[0]):
        assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (400, 1_999_999_999)


# ------------------------------------------------------------------------------------------ (1) bombs

def test_decompression_bombs_are_bad_input_and_the_camera_node_goes_on(start_node, share, probe):
    """Red team: a 600-byte CompressedImage whose JPEG (or PNG) header claims more than 2^30 pixels killed
    s2m_node (OpenCV raised, exit 1); a 390 KB PNG of 20000x20000 zeros was decoded (+750 MB) first."""
    import image_bombs
    from sensor_msgs.msg import CompressedImage

    from s2m_ros.msg import OodMaskArray
    from s2m_ros.ros.conversions.image import numpy_to_compressed
    from s2m_ros.ros.conversions.s2m_msgs import make_header

    proc = _camera(start_node, share, "-p", "input.transport:=compressed", "-p", "input.reliability:=reliable",
                   "-p", "input.depth:=10")
    pub = probe.publisher(CompressedImage, "/image/compressed", reliable=True)
    assert probe.wait_for_subscriber(pub)
    masks = probe.collect(OodMaskArray, "/ood/masks")
    bombs = (("jpeg", image_bombs.jpeg_claiming(65000, 65000)), ("png", image_bombs.png_claiming(70000, 70000)),
             ("png", image_bombs.zeros_png()))
    for fmt, data in bombs:
        msg = CompressedImage(header=make_header(T0, "cam"), format=fmt)
        msg.data = data
        pub.publish(msg)
    assert probe.spin_until(lambda: probe.counter("s2m_node", "bad_input") >= 3)
    assert "more than the limit" in probe.diag("s2m_node")["last_error"]
    good = numpy_to_compressed(np.full((48, 64, 3), 90, np.uint8), "bgr8", "jpeg", header=make_header(T0 + 1, "cam"))
    assert probe.publish_until(pub, good, "s2m_node", "frames_processed", 1)
    assert probe.spin_until(lambda: masks)
    assert proc.proc.poll() is None and probe.counter("s2m_node", "processing_errors") == 0


# ------------------------------------------------------------------------------------------ (7) large messages

def test_4k_images_and_a_22_mb_cloud_arrive_on_the_default_best_effort_input(start_node, share, probe):
    """Red team, with the shipped 64 MiB shared-memory profile: 3840x2160 bgr8 arrived 1 of 3, 4000x4000
    0 of 1, a 22 MB cloud 0 of 1 (silently: Fast DDS reports no lost sample when the shared-memory port
    queue is full). The profile's port queue now holds such messages (config/fastdds_localhost.xml)."""
    import time

    from sensor_msgs.msg import Image, PointCloud2

    from s2m_ros.ros.conversions.pointcloud import xyz_to_cloud
    from s2m_ros.ros.conversions.s2m_msgs import make_header

    _camera(start_node, share)
    _fusion(start_node, share)
    image_pub = probe.publisher(Image, "/image")  # best effort, the node's default input QoS
    cloud_pub = probe.publisher(PointCloud2, "/points")
    for pub in (image_pub, cloud_pub):
        assert probe.wait_for_subscriber(pub)
    probe.spin_until(lambda: False, timeout=0.5)
    frames = [(4000, 4000), (3840, 2160), (4000, 4000), (3840, 2160)]
    for k, (w, h) in enumerate(frames):
        data = np.full((h, w, 3), 40 * k, np.uint8)
        image_pub.publish(Image(header=make_header(T0 + k * PERIOD, "cam"), height=h, width=w, encoding="bgr8",
                                step=3 * w, data=data.tobytes()))
        probe.spin_until(lambda: False, timeout=1.0)
    xyz = np.random.default_rng(0).uniform(-30, 30, (1_850_000, 3)).astype(np.float32)  # 22.2 MB
    cloud = xyz_to_cloud(xyz, header=make_header(T0, "lidar"))
    assert len(cloud.data) > 22_000_000
    cloud_pub.publish(cloud)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (probe.counter("s2m_node", "frames_received") < len(frames)
                                           or probe.counter("fusion_node", "clouds_received") < 1):
        probe.spin_until(lambda: False, timeout=0.2)
    assert probe.counter("s2m_node", "frames_received") == len(frames)
    assert probe.counter("fusion_node", "clouds_received") == 1
    assert probe.diag("fusion_node")["last_cloud_points"] == str(len(xyz))


# ------------------------------------------------------------------------------------------ (10) diagnostics

def test_malformed_wire_bytes_bad_odometry_and_tf_static_are_counted_and_logged(start_node, share, probe):
    from nav_msgs.msg import Odometry
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import PointCloud2
    from tf2_msgs.msg import TFMessage

    from s2m_ros.bags.storage import tf_message
    from s2m_ros.msg import OodMaskArray
    from s2m_ros.ros.conversions.pointcloud import xyz_to_cloud
    from s2m_ros.ros.conversions.s2m_msgs import make_header

    proc = _fusion(start_node, share, "-p", "fixed_frame.enabled:=true", "-p", "extrinsics.source:=tf_static",
                   "-p", "input.reliability:=reliable")
    cloud_pub = probe.publisher(PointCloud2, "/points", reliable=True)
    masks_pub = probe.publisher(OodMaskArray, "/ood/masks", reliable=True)
    odom_pub = probe.publisher(Odometry, "/odom", reliable=True)
    latched = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    tf_pub = probe.node.create_publisher(TFMessage, "/tf_static", latched)
    for pub in (cloud_pub, masks_pub, odom_pub, tf_pub):
        assert probe.wait_for_subscriber(pub)
    wire = serialize_message(xyz_to_cloud(fs.cloud([BOX]), header=make_header(T0, "lidar")))
    cloud_pub.publish(wire[: len(wire) // 3])  # truncated CDR
    masks_pub.publish(b"\x00\x01\x00\x00\xff\xff\xff\x7f")  # CDR header + a string length of 2^31 - 1
    odom = Odometry(header=make_header(T0, "map"), child_frame_id="base_link")
    odom.pose.pose.orientation.w = 0.0  # zero quaternion
    odom_pub.publish(odom)
    broken = tf_message([("base_link", "lidar", np.eye(4))], T0)
    broken.transforms[0].transform.rotation.w = float("nan")
    tf_pub.publish(broken)
    assert probe.spin_until(lambda: probe.counter("fusion_node", "malformed_messages") >= 2
                            and probe.counter("fusion_node", "bad_odometry") >= 1
                            and probe.counter("fusion_node", "bad_tf_static") >= 1), str(probe.diag("fusion_node"))
    assert probe.spin_until(lambda: "odometry skipped" in proc.output() and "/tf_static transform refused" in
                            proc.output() and "malformed message on '/points'" in proc.output(), timeout=5)
    d = probe.diag("fusion_node")
    assert d["processing_errors"] == "0" and d["clouds_received"] == "0"
    assert proc.proc.poll() is None


# ------------------------------------------------------------------------------------------ (11) prompt box

def test_a_prompt_box_outside_the_image_is_refused_and_counted(start_node, share, probe):
    from s2m_ros.ros.conversions import ConversionError
    from s2m_ros.ros.conversions.s2m_msgs import frame_masks_to_msg, msg_to_frame_masks

    msg = frame_masks_to_msg(fs.frame_masks(T0, [fs.mask_for(*BOX, 1)]))
    msg.masks[0].prompt_box.x_offset = fs.W - 5
    msg.masks[0].prompt_box.width = 20
    with pytest.raises(ConversionError, match=r"masks\[0\]\.prompt_box.*outside the 640x360 image"):
        msg_to_frame_masks(msg)

    proc = _fusion(start_node, share)
    feed = Feed(probe)
    feed.camera_info()
    feed.masks.publish(msg)
    assert probe.spin_until(lambda: probe.counter("fusion_node", "bad_masks") >= 1)
    assert "prompt_box" in probe.diag("fusion_node")["last_error"]
    assert proc.proc.poll() is None


# ------------------------------------------------------------------------------------------ the guard

class _FakeNode:
    """What guard needs of a node: stats, a logger, create_subscription / create_timer (captured)."""

    def __init__(self):
        from s2m_ros.ros.diagnostics import NodeStats

        self.stats = NodeStats()
        self.callbacks = {}
        self.logged = []

    def get_logger(self):
        node = self

        class Logger:
            def warning(self, text, **_):
                node.logged.append(text)

        return Logger()

    def create_subscription(self, msg_type, topic, callback, qos, raw=False, event_callbacks=None):
        assert raw, "guarded subscriptions take the wire bytes"
        self.callbacks[topic] = callback

    def create_timer(self, period, callback):
        self.callbacks["timer"] = callback


def test_the_guard_counts_malformed_bytes_and_any_exception_of_a_callback():
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import Image

    from s2m_ros.ros import guard

    node, seen = _FakeNode(), []

    def callback(msg):
        if msg.width == 13:
            raise ZeroDivisionError("a defect of ours")
        seen.append(msg.width)

    guard.subscribe(node, Image, "image", callback, 1)
    guard.timer(node, 1.0, lambda: 1 / 0, "diagnostics")
    on_bytes = node.callbacks["image"]
    on_bytes(serialize_message(Image(width=5)))
    on_bytes(serialize_message(Image(width=13)))
    on_bytes(serialize_message(Image(width=7))[:9])
    on_bytes(serialize_message(Image(width=6)))
    node.callbacks["timer"]()
    assert seen == [5, 6]
    c = node.stats.counters
    assert c["processing_errors"] == 2 and c["malformed_messages"] == 1 and c["errors_total"] == 3
    assert "ZeroDivisionError: a defect of ours" in node.stats.info["last_processing_error"] or \
        "diagnostics" in node.stats.info["last_processing_error"]
    assert any("a valid sensor_msgs/Image" in text for text in node.logged)


def test_camera_info_with_non_zero_padding_is_used_and_warned_about():
    from sensor_msgs.msg import CameraInfo

    from s2m_ros.ros.runtime import on_camera_info

    node = _FakeNode()
    node.camera = None
    on_camera_info(node, CameraInfo(width=fs.W, height=fs.H, distortion_model="plumb_bob",
                                    d=[0.01, 0.0, 0.0, 0.0, 0.0, 0.3, 0.0, 0.0], k=[float(v) for v in fs.K.ravel()]))
    assert node.camera is not None and len(node.camera.D) == 5
    assert node.stats.counters["camera_info_warnings"] == 1 and "ignored" in node.logged[0]
