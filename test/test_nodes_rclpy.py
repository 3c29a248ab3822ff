"""Real rclpy tests: the installed executables run as separate processes, talking over DDS on loopback."""
import signal
import subprocess
import sys

import pytest

from s2m_ros.cli.probe import mask_array, synthetic_image, velodyne_like_cloud

EXES = ("s2m_node", "fusion_node")
PARAMS_FILE = {"s2m_node": "s2m.yaml", "fusion_node": "fusion.yaml"}


def _start_with_yaml(start_node, share, exe, *extra):
    proc = start_node(exe, "--ros-args", "--params-file", str(share / "config" / PARAMS_FILE[exe]), *extra)
    assert proc.wait_for_output("started:"), proc.output()
    return proc


@pytest.mark.parametrize("exe", EXES)
def test_help_documents_every_parameter_and_topic(start_node, exe):
    import importlib

    module = importlib.import_module("s2m_ros.ros." + exe)
    proc = start_node(exe, "--help")
    assert proc.proc.wait(30) == 0
    out = proc.output()
    for spec in module.PARAMS:
        assert "`%s`" % spec.name in out
    for topic in module.TOPICS:
        assert topic[0] in out


def test_unknown_command_line_argument_is_an_error(start_node):
    proc = start_node("s2m_node", "--frobnicate")
    assert proc.proc.wait(30) == 2
    assert "unknown argument" in proc.output()


@pytest.mark.parametrize("exe", EXES)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_starts_with_yaml_and_shuts_down_cleanly(start_node, share, exe, sig):
    proc = _start_with_yaml(start_node, share, exe)
    assert proc.stop(sig) == 0
    out = proc.output()
    assert "shutting down" in out
    assert "Traceback" not in out


_EARLY_SIGNAL = """
import os, signal, sys
from rclpy.node import Node
from s2m_ros.ros.runtime import run_node

def factory():
    node = Node("early_signal")
    print("started:", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.%s)  # before the spin, as a launch that stops at once would
    return node

sys.exit(run_node(factory, ["early_signal"], "help"))
"""


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_signal_between_start_up_and_spin_is_a_clean_shutdown(sig):
    """The window that made fusion_node exit 1 (RCLError from rclpy.spin's executor) in a test run."""
    proc = subprocess.run([sys.executable, "-c", _EARLY_SIGNAL % sig], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "[early_signal] shutting down" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("exe,override,needle", [
    ("s2m_node", "input.depth:=0", "input.depth"),
    ("s2m_node", "input.transport:=h264", "input.transport"),
    ("s2m_node", "profile:=sam+grabcut", "profile"),
    ("s2m_node", "diagnostics.period_s:=100.0", "diagnostics.period_s"),
    ("fusion_node", "time_tolerance_s:=2.0", "time_tolerance_s"),
    ("fusion_node", "cloud_buffer_size:=0", "cloud_buffer_size"),
    ("fusion_node", "extrinsics.translation:=[1.0,2.0]", "extrinsics.translation"),
    ("fusion_node", "extrinsics.rotation_xyzw:=[0.0,0.0,0.0,0.0]", "extrinsics.rotation_xyzw"),
    ("fusion_node", "extrinsics.matrix:=[2.0,0.0,0.0,0.0,0.0,1.0,0.0,0.0,0.0,0.0,1.0,0.0,0.0,0.0,0.0,1.0]",
     "extrinsics.matrix"),
])
def test_invalid_parameter_is_rejected_with_a_message(start_node, share, exe, override, needle):
    proc = start_node(exe, "--ros-args", "--params-file", str(share / "config" / PARAMS_FILE[exe]), "-p", override)
    assert proc.proc.wait(30) == 2
    out = proc.output()
    assert "invalid configuration" in out and needle in out, out


def test_wrong_type_parameter_is_rejected(start_node):
    # Without a params file: rcl silently keeps a params-file value over a `-p` of another type.
    proc = start_node("s2m_node", "--ros-args", "-p", "input.depth:=1.5")
    assert proc.proc.wait(30) == 2
    assert "input.depth" in proc.output() and "wrong type" in proc.output()


def test_out_of_range_value_in_a_params_file_is_rejected(start_node, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("/**:\n  ros__parameters:\n    time_tolerance_s: 3.0\n")
    proc = start_node("fusion_node", "--ros-args", "--params-file", str(bad))
    assert proc.proc.wait(30) == 2
    assert "time_tolerance_s" in proc.output() and "[0.0, 1.0]" in proc.output()


def test_unknown_parameter_in_params_file_is_reported(start_node, tmp_path):
    typo = tmp_path / "typo.yaml"
    typo.write_text("/**:\n  ros__parameters:\n    time_tolerence_s: 0.1\n")
    proc = start_node("fusion_node", "--ros-args", "--params-file", str(typo))
    assert proc.wait_for_output("started:")
    assert "time_tolerence_s" in proc.output() and "unknown parameter" in proc.output()


def test_topics_types_and_qos(start_node, share, probe):
    from rclpy.qos import ReliabilityPolicy

    _start_with_yaml(start_node, share, "s2m_node")
    _start_with_yaml(start_node, share, "fusion_node")
    node = probe.node

    def graph_ready():
        # Exactly one of each: a node of an earlier test that ended uncleanly stays in the DDS graph
        # until its participant lease expires (Fast DDS default 20 s), so wait for the graph to settle.
        return (len(node.get_subscriptions_info_by_topic("/image")) == 1
                and len(node.get_publishers_info_by_topic("/ood/masks")) == 1
                and len(node.get_subscriptions_info_by_topic("/points")) == 1
                and len(node.get_publishers_info_by_topic("/obstacles")) == 1
                and [s.node_name for s in node.get_subscriptions_info_by_topic("/ood/masks")] == ["fusion_node"])

    assert probe.spin_until(graph_ready, timeout=40.0)
    image_sub = node.get_subscriptions_info_by_topic("/image")[0]
    assert image_sub.topic_type == "sensor_msgs/msg/Image"
    assert image_sub.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
    masks_pubs = node.get_publishers_info_by_topic("/ood/masks")
    assert [p.topic_type for p in masks_pubs] == ["s2m_ros/msg/OodMaskArray"]
    assert masks_pubs[0].qos_profile.reliability == ReliabilityPolicy.RELIABLE
    masks_subs = node.get_subscriptions_info_by_topic("/ood/masks")
    assert [s.node_name for s in masks_subs] == ["fusion_node"]
    cloud_sub = node.get_subscriptions_info_by_topic("/points")[0]
    assert cloud_sub.topic_type == "sensor_msgs/msg/PointCloud2"
    assert cloud_sub.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
    assert [p.topic_type for p in node.get_publishers_info_by_topic("/obstacles")] == ["s2m_ros/msg/ObstacleArray"]
    assert [p.topic_type for p in node.get_publishers_info_by_topic("/obstacle_markers")] == [
        "visualization_msgs/msg/MarkerArray"]


def test_camera_node_decodes_frames_and_counts_bad_input(start_node, share, probe):
    from sensor_msgs.msg import Image

    from s2m_ros.ros.conversions.image import numpy_to_image
    from s2m_ros.ros.conversions.s2m_msgs import make_header

    proc = _start_with_yaml(start_node, share, "s2m_node", "-p", "diagnostics.period_s:=0.2")
    pub = probe.publisher(Image, "/image")
    assert probe.wait_for_subscriber(pub)
    good = numpy_to_image(synthetic_image(64, 48), "rgb8", header=make_header(10**9, "cam"))
    assert probe.publish_until(pub, good, "s2m_node", "frames_decoded", 1)
    assert probe.diag("s2m_node")["last_frame"] == "64x48 cam"

    bad_encoding = numpy_to_image(synthetic_image(64, 48), "rgb8", header=make_header(2 * 10**9, "cam"))
    bad_encoding.encoding = "yuv422"
    assert probe.publish_until(pub, bad_encoding, "s2m_node", "bad_input", 1)
    assert "yuv422" in probe.diag("s2m_node")["last_error"]

    bad_step = numpy_to_image(synthetic_image(64, 48), "rgb8", header=make_header(3 * 10**9, "cam"))
    bad_step.step = 100  # smaller than 64 * 3
    assert probe.publish_until(pub, bad_step, "s2m_node", "bad_input", 2)

    empty = Image(encoding="rgb8")
    assert probe.publish_until(pub, empty, "s2m_node", "bad_input", 3)
    # still alive and still processing good frames after the bad ones
    decoded = probe.counter("s2m_node", "frames_decoded")
    good.header.stamp.sec = 4
    assert probe.publish_until(pub, good, "s2m_node", "frames_decoded", decoded + 1)
    assert proc.proc.poll() is None
    assert "frame skipped" in proc.output()


def test_camera_node_compressed_input(start_node, share, probe):
    from sensor_msgs.msg import CompressedImage

    from s2m_ros.ros.conversions.image import numpy_to_compressed
    from s2m_ros.ros.conversions.s2m_msgs import make_header

    _start_with_yaml(start_node, share, "s2m_node", "-p", "input.transport:=compressed",
                     "-p", "diagnostics.period_s:=0.2")
    pub = probe.publisher(CompressedImage, "/image/compressed")
    assert probe.wait_for_subscriber(pub)
    jpeg = numpy_to_compressed(synthetic_image(80, 60), "bgr8", "jpeg", header=make_header(10**9, "cam"))
    assert probe.publish_until(pub, jpeg, "s2m_node", "frames_decoded", 1)
    assert probe.diag("s2m_node")["last_frame"] == "80x60 cam"
    corrupt = CompressedImage(format="jpeg", data=bytes(jpeg.data[:40]))
    assert probe.publish_until(pub, corrupt, "s2m_node", "bad_input", 1)
    assert "CompressedImage.data" in probe.diag("s2m_node")["last_error"]


def test_fusion_node_exchanges_masks_and_clouds(start_node, share, probe):
    from sensor_msgs.msg import PointCloud2, PointField

    from s2m_ros.msg import OodMaskArray

    proc = _start_with_yaml(start_node, share, "fusion_node", "-p", "diagnostics.period_s:=0.2")
    cloud_pub = probe.publisher(PointCloud2, "/points")
    mask_pub = probe.publisher(OodMaskArray, "/ood/masks", reliable=True)
    assert probe.wait_for_subscriber(cloud_pub) and probe.wait_for_subscriber(mask_pub)

    t0 = 100 * 10**9
    assert probe.publish_until(cloud_pub, velodyne_like_cloud(500, t0, n_nan=20), "fusion_node", "clouds_received", 1)
    assert probe.diag("fusion_node")["last_cloud_points"] == "480"  # NaN points dropped
    mask_pub.publish(mask_array(t0 + 20 * 10**6, 2))  # 20 ms after the cloud: within 50 ms
    assert probe.spin_until(lambda: probe.counter("fusion_node", "matched") >= 1)
    assert probe.spin_until(lambda: probe.counter("fusion_node", "skipped_no_camera_info") >= 1)
    d = probe.diag("fusion_node")
    assert d["last_match_dt_ms"] == "20.0" and d["fused"] == "0"
    assert "no valid CameraInfo" in d["last_error"]

    mask_pub.publish(mask_array(t0 - 10**9, 1))  # a second older than any cloud
    assert probe.spin_until(lambda: probe.counter("fusion_node", "unmatched_too_old") >= 1)

    no_z = PointCloud2(height=1, width=1, point_step=8, row_step=8, data=bytes(8),
                       fields=[PointField(name="x", offset=0, datatype=7, count=1),
                               PointField(name="y", offset=4, datatype=7, count=1)])
    assert probe.publish_until(cloud_pub, no_z, "fusion_node", "bad_cloud", 1)
    assert "missing coordinate field" in probe.diag("fusion_node")["last_error"]

    from sensor_msgs.msg import CameraInfo

    info_pub = probe.publisher(CameraInfo, "/camera_info")
    assert probe.wait_for_subscriber(info_pub)
    no_focal = CameraInfo(width=64, height=48, distortion_model="plumb_bob", k=[0.0] * 9, d=[0.0] * 5)
    assert probe.publish_until(info_pub, no_focal, "fusion_node", "bad_camera_info", 1)
    assert probe.diag("fusion_node")["camera_info"] == "missing"
    good = CameraInfo(width=64, height=48, distortion_model="plumb_bob", d=[0.0] * 5,
                      k=[50.0, 0.0, 32.0, 0.0, 50.0, 24.0, 0.0, 0.0, 1.0])
    info_pub.publish(good)
    assert probe.spin_until(lambda: probe.diag("fusion_node").get("camera_info") == "64x48 plumb_bob frame ''")

    bad_masks = mask_array(t0, 1)
    bad_masks.masks[0].mask.width = 3  # mask image no longer matches its roi
    mask_pub.publish(bad_masks)
    assert probe.spin_until(lambda: probe.counter("fusion_node", "bad_masks") >= 1)

    # a cloud from the past: bag loop -> reset, then matching works again
    assert probe.publish_until(cloud_pub, velodyne_like_cloud(100, t0 - 50 * 10**9, seed=1),
                               "fusion_node", "time_resets", 1)
    mask_pub.publish(mask_array(t0 - 50 * 10**9, 3))
    assert probe.spin_until(lambda: probe.counter("fusion_node", "fused") >= 1)
    assert probe.counter("fusion_node", "matched") == 2
    assert probe.counter("fusion_node", "masks_no_points") + probe.counter("fusion_node", "masks_low_support") \
        + probe.counter("fusion_node", "masks_ok") == 3
    assert proc.proc.poll() is None


def test_full_size_image_and_cloud_arrive_best_effort(start_node, share, probe):
    """Regression: with Fast DDS defaults, 2.7 MB images and 3.8 MB clouds were lost (fragmented UDP)."""
    from sensor_msgs.msg import Image, PointCloud2

    from s2m_ros.ros.conversions.image import numpy_to_image
    from s2m_ros.ros.conversions.s2m_msgs import make_header

    _start_with_yaml(start_node, share, "s2m_node", "-p", "diagnostics.period_s:=0.2")
    _start_with_yaml(start_node, share, "fusion_node", "-p", "diagnostics.period_s:=0.2")
    image_pub = probe.publisher(Image, "/image")
    cloud_pub = probe.publisher(PointCloud2, "/points")
    assert probe.wait_for_subscriber(image_pub) and probe.wait_for_subscriber(cloud_pub)
    image = numpy_to_image(synthetic_image(1280, 720), "rgb8", header=make_header(10**9, "cam"))
    assert probe.publish_until(image_pub, image, "s2m_node", "frames_decoded", 1)
    assert probe.diag("s2m_node")["last_frame"] == "1280x720 cam"
    assert probe.publish_until(cloud_pub, velodyne_like_cloud(120000, 10**9), "fusion_node", "clouds_received", 1)
    assert probe.diag("fusion_node")["last_cloud_points"] == "120000"
