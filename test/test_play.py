"""`s2m play` over real rclpy: the player runs in its own process, this test subscribes over DDS.

Every message arrives, per topic in bag order, never earlier than its bag time allows (timing is
checked only from below: the player sleeps until each message is due), /clock moves forward
through the bag's time span, latched topics without an rclpy class are skipped with a warning,
and the process exits 0 at the end of the bag and on SIGINT.
"""
import os
import signal
import sys

import numpy as np
import pytest

from conftest import NodeProcess, spin_until
from s2m_ros.bags import storage as bagio
from s2m_ros.ros.conversions.image import numpy_to_image
from s2m_ros.ros.conversions.s2m_msgs import make_header, stamp_to_ns

T0 = 1_700_000_000 * 10**9
MS = 1_000_000
PERIOD_MS = 100
FRAMES = 8


def _write_bag(path, storage="mcap", frames=FRAMES):
    """Images every 100 ms, clouds 20 ms after each, /odom with the clouds, /tf_static first."""
    rng = np.random.default_rng(0)
    with bagio.BagWriter(path, storage=storage) as bag:
        bag.add_topic("/tf_static", "tf2_msgs/msg/TFMessage", latched=True)
        bag.write("/tf_static", T0, bagio.tf_message([("base_link", "lidar", np.eye(4))], T0))
        for i in range(frames):
            s = T0 + i * PERIOD_MS * MS
            img = rng.integers(0, 256, size=(24, 32, 3), dtype=np.uint8)
            bag.write("/camera/image_raw", s, numpy_to_image(img, "bgr8", header=make_header(s, "camera_optical")))
            ls = s + 20 * MS
            pts = rng.normal(size=(50, 4)).astype(np.float32)
            bag.write("/lidar/points", ls, bagio.lidar_cloud_msg(pts, np.zeros(50, np.uint16), ls, "lidar"))
            bag.write("/odom", ls, bagio.odometry_msg(ls, np.eye(4), "map", "base_link"))
    with bagio.BagReader(path) as bag:
        return [(t, s) for t, s, _ in bag.messages(["/camera/image_raw", "/lidar/points", "/odom"])]


class Collector:
    """Subscribes to the played topics and /clock; records (topic, header stamp, arrival time)."""

    def __init__(self, context):
        import time

        from nav_msgs.msg import Odometry
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from rosgraph_msgs.msg import Clock
        from sensor_msgs.msg import Image, PointCloud2

        self.node = Node("play_test_collector", context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.received, self.clock = [], []
        self.published = []  # (topic, header stamp, the writer's source timestamp ns): the player's timing
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)

        def on_message(msg, info, topic):
            self.received.append((topic, stamp_to_ns(msg.header.stamp), time.monotonic()))
            self.published.append((topic, stamp_to_ns(msg.header.stamp), int(info["source_timestamp"])))

        for topic, cls in (("/camera/image_raw", Image), ("/lidar/points", PointCloud2), ("/odom", Odometry),
                           ("/image", Image)):
            self.node.create_subscription(cls, topic, lambda m, info, t=topic: on_message(m, info, t), qos)
        self.node.create_subscription(Clock, "/clock", lambda m: self.clock.append(stamp_to_ns(m.clock)),
                                      QoSProfile(depth=1000, reliability=ReliabilityPolicy.BEST_EFFORT))
        # /tf_static is latched (transient local): tools/ros_shims builds tf2_msgs where PyPI has none
        from rclpy.qos import DurabilityPolicy
        from tf2_msgs.msg import TFMessage

        self.tf_static = []
        self.node.create_subscription(TFMessage, "/tf_static", self.tf_static.append,
                                      QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                                 durability=DurabilityPolicy.TRANSIENT_LOCAL))

    def close(self):
        self.executor.remove_node(self.node)
        self.node.destroy_node()
        self.executor.shutdown()


@pytest.fixture
def collector(rclpy_context):
    c = Collector(rclpy_context)
    yield c
    c.close()


def _play(tmp_path, bag, *args):
    return NodeProcess(sys.executable, ["-m", "s2m_ros.cli.play", str(bag)] + list(args),
                       tmp_path / "play.log", env=os.environ.copy())


@pytest.mark.parametrize("storage,rate", [("mcap", 1.0), ("sqlite3", 2.0)])
def test_play_publishes_everything_in_order_with_the_bag_timing_and_a_clock(tmp_path, collector, storage, rate):
    expected = _write_bag(tmp_path / "bag", storage)
    proc = _play(tmp_path, tmp_path / "bag", "--clock", "200", "--rate", str(rate), "--wait-subscribers", "15")
    done = spin_until(collector.node, lambda: proc.proc.poll() is not None and len(collector.received) >= len(expected),
                      timeout=40, executor=collector.executor)
    out = proc.output()
    assert done and proc.proc.wait(10) == 0, out
    assert "skipping" not in out
    assert "done: published %d messages" % (len(expected) + 1) in out  # + /tf_static, latched
    assert [(t.header.frame_id, t.child_frame_id) for m in collector.tf_static for t in m.transforms] == [
        ("base_link", "lidar")]
    got = collector.received
    assert len(got) == len(expected), out
    for topic in ("/camera/image_raw", "/lidar/points", "/odom"):  # per topic: every stamp, in bag order
        assert [s for t, s, _ in got if t == topic] == [s for t, s in expected if t == topic]
    # timing: the player's own playback time is at least the bag's span / rate (it sleeps until each
    # message is due), and it published them spread like the stamps, not dumped at once: the writer's
    # source timestamps (DDS), not the arrival times here, which bunch when this process is not scheduled
    # for a while on a busy machine (seen once: 8 images "arrived" within 15 ms)
    played_s = float(out.split("done: published %d messages in " % (len(expected) + 1))[1].split(" s")[0])
    span_s = (expected[-1][1] - T0) / 1e9 / rate
    assert played_s >= span_s - 0.005, out
    sent = [src for t, _, src in collector.published if t == "/camera/image_raw"]
    assert len(sent) == FRAMES and sent == sorted(sent)
    assert (sent[-1] - sent[0]) / 1e9 >= 0.75 * (FRAMES - 1) * PERIOD_MS / 1000 / rate
    # across topics DDS orders nothing: messages 3 frames (>= 150 ms of playback) apart arrive in order
    frame_of = {s: (s - T0) // (PERIOD_MS * MS) for _, s in expected}
    for _, s_a, a_a in got:
        assert all(a_a < a_b for _, s_b, a_b in got if frame_of[s_b] >= frame_of[s_a] + 3)
    # /clock: bag time, moving forward, within the bag's span (and past its middle)
    clock = collector.clock
    assert len(clock) >= 3, out
    assert clock == sorted(clock)
    assert T0 <= clock[0] and clock[-1] <= expected[-1][1] + 100 * MS
    assert clock[-1] >= T0 + (FRAMES // 2) * PERIOD_MS * MS


def test_start_offset_topic_selection_and_ros_remapping(tmp_path, collector):
    expected = _write_bag(tmp_path / "bag")
    offset_s = 0.25  # frames 0, 1 and the clouds at 20 and 120 ms are skipped; frame 2 (200 ms) is not
    proc = _play(tmp_path, tmp_path / "bag", "--start-offset", str(offset_s), "--topics", "/camera/image_raw",
                 "/lidar/points", "--wait-subscribers", "15", "--qos-reliability", "reliable",
                 "--ros-args", "-r", "/camera/image_raw:=/image")
    want = [(t.replace("/camera/image_raw", "/image"), s) for t, s in expected
            if t != "/odom" and s >= T0 + offset_s * 1e9]
    done = spin_until(collector.node, lambda: proc.proc.poll() is not None and len(collector.received) >= len(want),
                      timeout=40, executor=collector.executor)
    assert done and proc.proc.wait(10) == 0, proc.output()
    assert sorted((t, s) for t, s, _ in collector.received) == sorted(want)
    assert not collector.clock  # no --clock


def test_sigint_during_a_looping_playback_exits_cleanly(tmp_path, collector):
    _write_bag(tmp_path / "bag", frames=3)
    proc = _play(tmp_path, tmp_path / "bag", "--loop", "--wait-subscribers", "15")
    # a looping player publishes the 3 images again and again
    assert spin_until(collector.node, lambda: sum(t == "/camera/image_raw" for t, _, _ in collector.received) >= 5,
                      timeout=40, executor=collector.executor), proc.output()
    assert proc.stop(signal.SIGINT) == 0
    out = proc.output()
    assert "interrupted: published" in out and "Traceback" not in out


def test_importing_the_cli_modules_is_light():
    import subprocess

    code = ("import sys, s2m_ros.cli.play, s2m_ros.cli.scenario\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('rclpy', 'rosbags', 'cv2', 'torch'))\n"
            "assert not heavy, heavy\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_usage_errors_exit_2_without_starting_ros(tmp_path, capsys):
    from s2m_ros.cli import play

    assert play.main([str(tmp_path / "missing")]) == 2
    assert "no such bag" in capsys.readouterr().err
    _write_bag(tmp_path / "bag", frames=1)
    assert play.main([str(tmp_path / "bag"), "--topics", "/nope"]) == 2
    err = capsys.readouterr().err
    assert "/nope" in err and "/camera/image_raw (sensor_msgs/msg/Image)" in err
    if bagio.rclpy_class("tf2_msgs/msg/TFMessage") is None:  # tf2_msgs is not on PyPI
        assert play.main([str(tmp_path / "bag"), "--topics", "/tf_static"]) == 2
        err = capsys.readouterr().err
        assert "skipping /tf_static" in err and "nothing to play" in err
    with pytest.raises(SystemExit) as exc:
        play.main([str(tmp_path / "bag"), "--rate", "0"])
    assert exc.value.code == 2
