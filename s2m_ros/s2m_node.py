"""s2m_node: the camera node (thin rclpy shell).

Current state: subscribes to the camera (raw or compressed) and optional
CameraInfo, decodes and validates every frame (encoding, size, stamps) and
reports it in diagnostics. The anomaly pipeline (s2m_ros.pipeline: scorer ->
prompts -> segmenter -> selection) exists but is not wired into this node yet
(issue #5), so the mask topics are advertised but nothing is published on them:
no output is faked.
"""
import re

from s2m_ros.diagnostics import NodeStats, to_diagnostic_array
from s2m_ros.node_runtime import RELIABILITY_CHOICES, decode_or_report, help_text, make_qos, on_camera_info, run_node
from s2m_ros.params import ParamSpec, declare_all

NODE_NAME = "s2m_node"
SCORERS = ("surface", "espnet", "espnetv2", "onnx")
SEGMENTERS = ("grabcut", "mobilesam")
PROFILE_RE = re.compile(r"^(%s)\+(%s)$" % ("|".join(SCORERS), "|".join(SEGMENTERS)))


def _profile_problem(value):
    if not PROFILE_RE.match(value):
        return "expected <scorer>+<segmenter> with scorer in {%s} and segmenter in {%s}" % (
            ", ".join(SCORERS), ", ".join(SEGMENTERS))
    return None


PARAMS = (
    ParamSpec("input.transport", "raw", "subscribe to sensor_msgs/Image on `image` (raw) or "
              "sensor_msgs/CompressedImage (jpeg/png) on `image/compressed`", choices=("raw", "compressed")),
    ParamSpec("input.reliability", "best_effort", "QoS reliability of the image subscription "
              "(sensor data: best_effort)", choices=RELIABILITY_CHOICES),
    ParamSpec("input.depth", 1, "QoS history depth of the image subscription", min=1, max=100),
    ParamSpec("input.max_pixels", 16777216, "images with more pixels are rejected as bad input", min=1, max=268435456),
    ParamSpec("camera_info.enabled", False, "subscribe to sensor_msgs/CameraInfo on `camera_info`"),
    ParamSpec("profile", "surface+grabcut", "pipeline profile <scorer>+<segmenter>; `surface+grabcut` needs "
              "no model files", check=_profile_problem),
    ParamSpec("output.reliability", "reliable", "QoS reliability of the published outputs",
              choices=RELIABILITY_CHOICES),
    ParamSpec("output.depth", 5, "QoS history depth of the published outputs", min=1, max=100),
    ParamSpec("output.publish_score_map", False, "publish the float score map (32FC1) on `ood/score_map`"),
    ParamSpec("output.publish_overlay", True, "publish a bgr8 overlay for people on `ood/overlay`"),
    ParamSpec("diagnostics.period_s", 1.0, "period of diagnostic_msgs/DiagnosticArray on /diagnostics",
              min=0.05, max=60.0),
)

TOPICS = (
    # (name, direction, type, description)
    ("image", "sub", "sensor_msgs/Image", "camera image (input.transport=raw)"),
    ("image/compressed", "sub", "sensor_msgs/CompressedImage", "camera image (input.transport=compressed)"),
    ("camera_info", "sub", "sensor_msgs/CameraInfo", "camera calibration (camera_info.enabled)"),
    ("ood/masks", "pub", "s2m_ros/OodMaskArray", "object masks (pipeline wiring: issue #5, not yet)"),
    ("ood/instance_image", "pub", "sensor_msgs/Image", "mono8 instance ids (pipeline: not yet)"),
    ("ood/score_map", "pub", "sensor_msgs/Image", "32FC1 anomaly scores (pipeline: not yet)"),
    ("ood/overlay", "pub", "sensor_msgs/Image", "bgr8 overlay (pipeline: not yet)"),
    ("/diagnostics", "pub", "diagnostic_msgs/DiagnosticArray", "rates, counters, errors"),
)

SUMMARY = ("s2m_ros camera node: anomaly masks of unknown objects from camera images (S2M).\n"
           "NOT WIRED YET: the anomaly pipeline runs in `s2m segment`, not in this node (issue #5).\n"
           "The node decodes and validates"
           " incoming frames and reports them in diagnostics; it publishes no masks yet.")


def _make_node_class():
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
    from rclpy.node import Node
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image

    from s2m_ros.conversions.image import compressed_to_bgr8, image_to_bgr8
    from s2m_ros.conversions.s2m_msgs import stamp_to_ns
    from s2m_ros.msg import OodMaskArray

    class S2MNode(Node):
        def __init__(self):
            super().__init__(NODE_NAME)
            self.params = p = declare_all(self, PARAMS)
            self.stats = NodeStats()
            self._last_stamp_ns = None
            self.camera = None
            in_qos = make_qos(p["input.reliability"], p["input.depth"])
            out_qos = make_qos(p["output.reliability"], p["output.depth"])
            if p["input.transport"] == "raw":
                self.create_subscription(Image, "image", self._on_image, in_qos)
            else:
                self.create_subscription(CompressedImage, "image/compressed", self._on_compressed, in_qos)
            if p["camera_info.enabled"]:
                self.create_subscription(CameraInfo, "camera_info", lambda msg: on_camera_info(self, msg), in_qos)
            # Advertised so downstream nodes and RViz can connect; filled by the pipeline (issue #5).
            self.pub_masks = self.create_publisher(OodMaskArray, "ood/masks", out_qos)
            self.pub_instances = self.create_publisher(Image, "ood/instance_image", out_qos)
            self.pub_score = self.create_publisher(Image, "ood/score_map", out_qos) \
                if p["output.publish_score_map"] else None
            self.pub_overlay = self.create_publisher(Image, "ood/overlay", out_qos) \
                if p["output.publish_overlay"] else None
            self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
            self.create_timer(p["diagnostics.period_s"], self._publish_diagnostics)
            self.stats.info["profile"] = p["profile"]
            self.stats.info["pipeline"] = "not wired into the node yet (issue #5)"
            self.get_logger().info(
                "started: %s input on '%s', profile %s. The anomaly pipeline is not wired into this node yet (#5): frames are "
                "decoded and validated only, no masks are published." % (
                    p["input.transport"], self.resolve_topic_name(
                        "image" if p["input.transport"] == "raw" else "image/compressed"), p["profile"]))

        # -- input ---------------------------------------------------------
        def _on_image(self, msg):
            self._handle(msg, lambda: image_to_bgr8(msg, max_pixels=self.params["input.max_pixels"]))

        def _on_compressed(self, msg):
            self._handle(msg, lambda: compressed_to_bgr8(msg, max_pixels=self.params["input.max_pixels"]))

        def _handle(self, msg, decode):
            self.stats.count("frames_received")
            self.stats.tick("input")
            stamp_ns = stamp_to_ns(msg.header.stamp)
            if self._last_stamp_ns is not None and stamp_ns < self._last_stamp_ns:
                self.stats.count("time_resets")
                self.get_logger().info("image stamps went backwards by %.3f s (bag loop?): state reset" % (
                    (self._last_stamp_ns - stamp_ns) * 1e-9))
            self._last_stamp_ns = stamp_ns
            bgr = decode_or_report(self, self.stats, "bad_input", "frame", decode)
            if bgr is None:
                return
            self.stats.count("frames_decoded")
            self.stats.info["last_frame"] = "%dx%d %s" % (bgr.shape[1], bgr.shape[0], msg.header.frame_id)

        # -- diagnostics ---------------------------------------------------
        def _publish_diagnostics(self):
            level = DiagnosticStatus.WARN
            message = "anomaly pipeline not wired into the node yet (issue #5): frames decoded only"
            self.pub_diag.publish(to_diagnostic_array(
                self.stats, "%s: pipeline" % self.get_fully_qualified_name(), "camera", level, message,
                stamp=self.get_clock().now().to_msg()))

    return S2MNode


def main(argv=None):
    return run_node(lambda: _make_node_class()(), argv, help_text(NODE_NAME, SUMMARY, TOPICS, PARAMS))
