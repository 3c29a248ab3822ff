"""Message fuzzing of both nodes as processes over DDS: hypothesis draws random but well-typed messages
(and malformed wire bytes) for every subscription and sends them to the running nodes for a bounded time;
then every node is alive, every message is accounted for in its diagnostics (received or malformed),
none fell through to the catch-all guard (``processing_errors`` 0: each bad input met a real check), and
a good frame is still answered.

Duration per node: ``S2M_FUZZ_SECONDS`` (default 20 s); `make fuzz` runs 600 s per node.
"""
import os
import time

import numpy as np
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

import fusion_scene as fs
import fuzz_messages as fm

FUZZ_SECONDS = float(os.environ.get("S2M_FUZZ_SECONDS", "20"))
BATCH = 8
RUN_EXAMPLES = 10
SEED = int(os.environ.get("S2M_FUZZ_SEED", "0"))  # runs are seeded SEED, SEED + 1, ...
_MALFORMED_ONE_IN_TEN = (False,) * 9 + (True,)
T_GOOD = 2 * fm.FUZZ_MAX_SEC * 10 ** 9  # good frames come after every fuzzed stamp
RELIABLE = ("-p", "input.reliability:=reliable", "-p", "input.depth:=100", "-p", "diagnostics.period_s:=0.2")


def _fuzz(probe, targets, seconds, groups=None):
    """Publish random messages to ``targets`` ({name: (publisher, strategy)}) for ``seconds``: hypothesis runs
    of ``RUN_EXAMPLES`` batches each, seeded by their index (reproducible, and no two runs alike).
    ``groups`` ({name: strategy of [(target, message), ...]}) are drawn like targets and published together.
    Returns ({target name: messages sent}, {target name: malformed sent})."""
    groups = groups or {}
    sent = {name: 0 for name in targets}
    malformed = {name: 0 for name in targets}
    names = sorted(targets)

    def run(index):
        @seed(SEED + index)
        @settings(max_examples=RUN_EXAMPLES, deadline=None, phases=[Phase.generate], database=None,
                  derandomize=False, suppress_health_check=list(HealthCheck))
        @given(data=st.data())
        def batch(data):
            for _ in range(BATCH):
                name = data.draw(st.sampled_from(names + list(groups)))
                if name in groups:  # several messages that belong together (a frame fusion can fuse)
                    for target, msg in data.draw(groups[name]):
                        targets[target][0].publish(msg)
                        sent[target] += 1
                    continue
                pub, strategy = targets[name]
                msg = data.draw(strategy)
                if data.draw(st.sampled_from(_MALFORMED_ONE_IN_TEN)):
                    pub.publish(data.draw(fm.malformed_bytes(msg)))
                    malformed[name] += 1
                else:
                    pub.publish(msg)
                sent[name] += 1
            probe.spin_until(lambda: False, timeout=0.05)

        batch()

    end, index = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        run(index)
        index += 1
    return sent, malformed


def _accounted(probe, node, counters, expected):
    return sum(probe.counter(node, c) for c in counters) + probe.counter(node, "malformed_messages") == expected


def test_camera_node_survives_fuzzing_of_every_input(start_node, probe):
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image

    from s2m_ros.msg import OodMaskArray
    from s2m_ros.ros.conversions.image import numpy_to_compressed, numpy_to_image
    from s2m_ros.ros.conversions.s2m_msgs import make_header

    raw = start_node("s2m_node", "--ros-args", "-r", "__ns:=/raw", "-p", "camera_info.enabled:=true", *RELIABLE)
    comp = start_node("s2m_node", "--ros-args", "-r", "__ns:=/comp", "-p", "input.transport:=compressed", *RELIABLE)
    for proc in (raw, comp):
        assert proc.wait_for_output("started:"), proc.output()
    pubs = {"raw": probe.publisher(Image, "/raw/image", reliable=True, depth=100),
            "info": probe.publisher(CameraInfo, "/raw/camera_info", reliable=True, depth=100),
            "comp": probe.publisher(CompressedImage, "/comp/image/compressed", reliable=True, depth=100)}
    for pub in pubs.values():
        assert probe.wait_for_subscriber(pub)
    answers = {"raw": probe.collect(OodMaskArray, "/raw/ood/masks"),
               "comp": probe.collect(OodMaskArray, "/comp/ood/masks")}
    sent, malformed = _fuzz(probe, {"raw": (pubs["raw"], fm.raw_image()), "info": (pubs["info"], fm.camera_info()),
                                    "comp": (pubs["comp"], fm.compressed_image())}, FUZZ_SECONDS)

    expected = {"raw/s2m_node": (("frames_received", "camera_info_received"), sent["raw"] + sent["info"]),
                "comp/s2m_node": (("frames_received",), sent["comp"])}
    ok = probe.spin_until(lambda: all(_accounted(probe, n, c, e) for n, (c, e) in expected.items()), timeout=60)
    assert ok, (
        sent, malformed, {n: {k: v for k, v in probe.diag(n).items() if not k.startswith("latency")} for n in expected})
    for node in expected:
        d = probe.diag(node)
        assert int(d["processing_errors"]) == 0, d["last_processing_error"]
        assert int(d["bad_input"]) > 0 and int(d["malformed_messages"]) > 0
        # every decoded frame was processed, dropped while busy, or failed on its model output: none vanished
        assert probe.spin_until(lambda: int(probe.diag(node)["frames_decoded"]) == sum(
            probe.counter(node, c) for c in ("frames_processed", "dropped_frames", "model_output_nonfinite")))
    assert sum(malformed.values()) > 0

    # and a good frame is still answered, its header kept
    image = np.random.default_rng(1).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    header = make_header(T_GOOD, "camera")
    good = {"raw": numpy_to_image(image, "bgr8", header=header),
            "comp": numpy_to_compressed(image, "bgr8", "jpeg", header=header)}
    for name, msg in good.items():
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any(a.header.stamp == header.stamp for a in answers[name]):
            pubs[name].publish(msg)
            probe.spin_until(lambda: False, timeout=0.5)
        assert any(a.header.stamp == header.stamp for a in answers[name]), name
    for proc in (raw, comp):
        assert proc.proc.poll() is None
        assert "Traceback" not in proc.output()
    print("camera fuzz: sent %s (malformed %s) in %.0f s per node" % (sent, malformed, FUZZ_SECONDS))


def test_fusion_node_survives_fuzzing_of_every_input(start_node, share, probe):
    from nav_msgs.msg import Odometry
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, PointCloud2
    from tf2_msgs.msg import TFMessage

    from s2m_ros.bags.storage import tf_message
    from s2m_ros.msg import ObstacleArray, OodMaskArray
    from s2m_ros.obstacles.geometry import transform_matrix
    from s2m_ros.ros.conversions.pointcloud import xyz_to_cloud
    from s2m_ros.ros.conversions.s2m_msgs import frame_masks_to_msg, make_header

    proc = start_node("fusion_node", "--ros-args", "--params-file", str(share / "config" / "fusion.yaml"),
                      "-p", "extrinsics.source:=tf_static", "-p", "fixed_frame.enabled:=true",
                      "-p", "masks.reliability:=reliable", "-p", "masks.depth:=100", *RELIABLE)
    assert proc.wait_for_output("started:"), proc.output()
    latched = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    pubs = {"points": probe.publisher(PointCloud2, "/points", reliable=True, depth=100),
            "masks": probe.publisher(OodMaskArray, "/ood/masks", reliable=True, depth=100),
            "info": probe.publisher(CameraInfo, "/camera_info", reliable=True, depth=100),
            "odom": probe.publisher(Odometry, "/odom", reliable=True, depth=100),
            "tf": probe.node.create_publisher(TFMessage, "/tf_static", latched)}
    for pub in pubs.values():
        assert probe.wait_for_subscriber(pub)
    obstacles = probe.collect(ObstacleArray, "/obstacles")
    strategies = {"points": fm.point_cloud(), "masks": fm.ood_mask_array(), "info": fm.camera_info(),
                  "odom": fm.odometry(), "tf": fm.tf_message()}
    sent, malformed = _fuzz(probe, {k: (pubs[k], strategies[k]) for k in pubs}, FUZZ_SECONDS,
                            groups={"frame": fm.coherent_frame()})

    counters = ("clouds_received", "mask_arrays_received", "camera_info_received", "odometry_received",
                "tf_static_received")
    total = sum(sent.values())
    assert probe.spin_until(lambda: _accounted(probe, "fusion_node", counters, total), timeout=60), (
        sent, malformed, probe.diag("fusion_node"))
    d = probe.diag("fusion_node")
    assert int(d["processing_errors"]) == 0, d["last_processing_error"]
    for counter in ("bad_cloud", "bad_masks", "bad_camera_info", "bad_odometry", "bad_tf_static",
                    "malformed_messages", "fused"):
        assert int(d.get(counter, "0")) > 0, (counter, d)
    fused_before = int(d["fused"])

    # a good frame is still fused: calibration, extrinsics and poses in frames the fuzzer never names
    T_base_lidar = transform_matrix([1.2, 0.0, 1.9], [0.0, 0.0, 0.0, 1.0])
    pubs["tf"].publish(tf_message([("base_good", "lidar_good", T_base_lidar),
                                   ("base_good", "cam_good", T_base_lidar @ np.linalg.inv(fs.T_CL))], T_GOOD))
    pubs["info"].publish(CameraInfo(header=make_header(T_GOOD, "cam_good"), width=fs.W, height=fs.H,
                                    distortion_model="plumb_bob", d=[0.0] * 5, k=[float(v) for v in fs.K.ravel()]))
    for dt in (-10 ** 8, 10 ** 8):
        odom = Odometry(header=make_header(T_GOOD + dt, "map"), child_frame_id="base_good")
        odom.pose.pose.orientation.w = 1.0
        pubs["odom"].publish(odom)
    probe.spin_until(lambda: False, timeout=0.3)
    box = ((10.0, 1.0), (0.6, 0.4, 0.5))
    pubs["points"].publish(xyz_to_cloud(fs.cloud([box]), header=make_header(T_GOOD, "lidar_good")))
    pubs["masks"].publish(frame_masks_to_msg(fs.frame_masks(T_GOOD, [fs.mask_for(*box, 1)], fs.W, fs.H)))
    stamp = make_header(T_GOOD, "").stamp
    assert probe.spin_until(lambda: any(o.header.stamp == stamp for o in obstacles), timeout=20), \
        probe.diag("fusion_node")
    assert proc.proc.poll() is None
    assert "Traceback" not in proc.output()
    print("fusion fuzz: sent %s (malformed %s) in %.0f s, %d frames fused" % (sent, malformed, FUZZ_SECONDS,
                                                                             fused_before))
