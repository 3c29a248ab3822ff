"""fusion_node: camera masks + LiDAR -> tracked 3D obstacles (thin rclpy shell).

Subscribes to OodMaskArray (s2m_node), PointCloud2 (any field layout with x, y, z), CameraInfo and,
when a fixed frame is wanted, nav_msgs/Odometry. Each mask array is matched to the nearest cloud in
time (bounded buffer, tolerance, reasons counted), then :class:`s2m_ros.obstacles.pipeline.ObstaclePipeline`
fuses and tracks (ROS-free; the same code `s2m replay` runs). Publishes ObstacleArray (confirmed
tracks by default), MarkerArray for RViz and /diagnostics.

Extrinsics (camera <- LiDAR) come from parameters, or from ``/tf_static`` (tf2_msgs/TFMessage,
frames from the CameraInfo / cloud headers) when ``extrinsics.source`` is ``tf_static``.
"""
import time

from s2m_ros.ros.diagnostics import NodeStats, to_diagnostic_array
from s2m_ros.ros.fusion_params import PARAMS
from s2m_ros.ros.params import ParameterError, declare_all
from s2m_ros.ros.runtime import decode_or_report, help_text, make_qos, on_camera_info, run_node

NODE_NAME = "fusion_node"


TOPICS = (
    ("ood/masks", "sub", "s2m_ros/OodMaskArray", "masks from s2m_node"),
    ("points", "sub", "sensor_msgs/PointCloud2", "LiDAR cloud, any field layout with x, y, z"),
    ("camera_info", "sub", "sensor_msgs/CameraInfo", "camera calibration (and the camera frame id)"),
    ("odom", "sub", "nav_msgs/Odometry", "ego pose; only with fixed_frame.enabled"),
    ("/tf_static", "sub", "tf2_msgs/TFMessage", "static extrinsics; only with extrinsics.source=tf_static"),
    ("obstacles", "pub", "s2m_ros/ObstacleArray", "tracked 3D obstacles (confirmed; see output.*)"),
    ("obstacle_markers", "pub", "visualization_msgs/MarkerArray", "RViz: boxes, footprints, labels, velocity"),
    ("/diagnostics", "pub", "diagnostic_msgs/DiagnosticArray", "rates, counters, match/fusion/tracking stats"),
)

SUMMARY = ("s2m_ros fusion node: 3D obstacles from s2m_node masks and LiDAR, filtered over time.\n"
           "Masks are matched to the nearest cloud in time, fused with the cloud's non-ground points\n"
           "(nearest depth cluster per mask), and tracked (existence probability, confirmation, coasting).")


def _make_node_class():
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
    from rclpy.node import Node
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, PointCloud2
    from visualization_msgs.msg import MarkerArray

    from s2m_ros.ros.conversions.markers import MarkerBuilder
    from s2m_ros.ros.conversions.pointcloud import cloud_to_xyz
    from s2m_ros.ros.conversions.s2m_msgs import msg_to_frame_masks, stamp_to_ns
    from s2m_ros.msg import ObstacleArray, OodMaskArray
    from s2m_ros.ros import guard
    from s2m_ros.ros.frontend import ObstacleFrontEnd
    from s2m_ros.ros.outputs import MARKERS, OBSTACLES, obstacle_messages

    class FusionNode(Node):
        def __init__(self):
            super().__init__(NODE_NAME)
            self.params = p = declare_all(self, PARAMS)
            self.front = ObstacleFrontEnd(p)
            self.stats = NodeStats()
            self.matcher = self.front.matcher
            self.markers = MarkerBuilder(p["markers.lifetime_s"], p["markers.show_tentative"])
            for name in ("clouds_received", "mask_arrays_received", "matched", "fused", "skipped_no_camera_info",
                         "skipped_no_extrinsics", "skipped_no_pose", "skipped_out_of_order", "bad_masks",
                         "bad_cloud", "fusion_errors", "time_resets", "malformed_messages", "processing_errors",
                         "errors_total"):
                self.stats.count(name, 0)

            # every callback guarded: no single message (malformed bytes, a bug of ours) can end the node
            in_qos = make_qos(p["input.reliability"], p["input.depth"])
            guard.subscribe(self, PointCloud2, "points", self._on_cloud, in_qos)
            guard.subscribe(self, CameraInfo, "camera_info", lambda msg: on_camera_info(self, msg), in_qos)
            guard.subscribe(self, OodMaskArray, "ood/masks", self._on_masks,
                            make_qos(p["masks.reliability"], p["masks.depth"]))
            if self.front.use_fixed:
                from nav_msgs.msg import Odometry

                guard.subscribe(self, Odometry, "odom", self._on_odom, make_qos(p["input.reliability"], 50))
            if self.front.use_tf_static:
                try:
                    from tf2_msgs.msg import TFMessage
                except ImportError:
                    raise ParameterError("extrinsics.source=tf_static needs the tf2_msgs Python package, which is "
                                         "not installed; give extrinsics.* parameters instead") from None
                latched = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100,
                                     reliability=ReliabilityPolicy.RELIABLE,
                                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
                guard.subscribe(self, TFMessage, "/tf_static", self._on_tf_static, latched)
            out_qos = make_qos("reliable", 5)
            self.pub_obstacles = self.create_publisher(ObstacleArray, "obstacles", out_qos)
            self.pub_markers = self.create_publisher(MarkerArray, "obstacle_markers", out_qos)
            self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
            guard.timer(self, p["diagnostics.period_s"], self._publish_diagnostics, "diagnostics")
            self._last_fused_mono = None
            self.stats.set_info("extrinsics", p["extrinsics.source"])
            self.stats.set_info("frame", "fixed (odometry)" if self.front.use_fixed else "sensor (LiDAR)")
            self.get_logger().info(
                "started: masks on '%s', cloud on '%s', tolerance %.3f s, extrinsics from %s, tracking in the %s frame"
                % (self.resolve_topic_name("ood/masks"), self.resolve_topic_name("points"), p["time_tolerance_s"],
                   p["extrinsics.source"], "odometry's fixed" if self.front.use_fixed else "LiDAR"))

        @property
        def camera(self):  # set by node_runtime.on_camera_info; the front end fuses with it
            return self.front.camera

        @camera.setter
        def camera(self, value):
            self.front.camera = value

        # ------------------------------------------------------------------ inputs
        def _on_cloud(self, msg):
            self.stats.count("clouds_received")
            self.stats.tick("cloud")
            xyz = decode_or_report(self, self.stats, "bad_cloud", "cloud", lambda: cloud_to_xyz(msg))
            if xyz is None:
                return
            if xyz.shape[0] == 0:
                self.stats.count("empty_clouds")
            self.stats.set_info("last_cloud_points", xyz.shape[0])
            # the header travels with the cloud: the obstacles of this cloud carry its stamp exactly as received
            match, event = self.front.add_cloud(stamp_to_ns(msg.header.stamp), (xyz, msg.header))
            if event == "skipped_out_of_order":
                self._skip(event, "cloud stamped %d.%09d is older than the last tracked frame (late message; "
                           "tracks kept)" % (msg.header.stamp.sec, msg.header.stamp.nanosec))
            elif event == "time_reset":
                self.stats.count("time_resets")
                self.get_logger().info("cloud stamps went backwards by more than tracker.out_of_order_tolerance_s "
                                       "(bag loop?): time matching and tracks reset")
            if match is not None:
                self._on_match(match)

        def _on_masks(self, msg):
            self.stats.count("mask_arrays_received")
            self.stats.tick("masks")
            frame = decode_or_report(self, self.stats, "bad_masks", "mask array", lambda: msg_to_frame_masks(msg))
            if frame is None:
                return
            match, _ = self.matcher.add_item(frame.stamp_ns, frame)
            if match is not None:
                self._on_match(match)

        def _on_odom(self, msg):
            self.stats.count("odometry_received")
            try:
                reset = self.front.add_odometry(msg)
            except ValueError as exc:
                self.stats.error("bad_odometry", str(exc))
                self.get_logger().warning("odometry skipped: %s" % exc, throttle_duration_sec=2.0)
                return
            if reset:
                self.stats.count("odometry_time_resets")

        def _on_tf_static(self, msg):
            self.stats.count("tf_static_received")
            for error in self.front.add_tf_message(msg):
                self.stats.error("bad_tf_static", error)
                self.get_logger().warning("/tf_static transform refused: %s" % error, throttle_duration_sec=2.0)
            self.stats.set_info("tf_static_frames", " ".join(self.front.tf.frames))

        # ------------------------------------------------------------------ processing
        def _skip(self, counter, text):
            self.stats.error(counter, text)
            self.get_logger().warning("frame skipped: %s" % text, throttle_duration_sec=2.0)

        def _on_match(self, match):
            t_in = time.perf_counter()
            self.stats.count("matched")
            self.stats.set_info("last_match_dt_ms", "%.1f" % (match.dt_ns * 1e-6))
            xyz, cloud_header = match.cloud
            out = self.front.fuse(match.item, xyz, match.cloud_stamp_ns, cloud_header.frame_id)
            if out.skipped:
                if out.skipped == "skipped_no_camera_info":
                    out.reason += " on '%s'" % self.resolve_topic_name("camera_info")
                return self._skip(out.skipped, out.reason)
            step = out.step
            if step.reset:
                self.get_logger().info("tracks reset (time went backwards or the tracking frame changed)")
            t_pub = time.perf_counter()
            msgs = obstacle_messages(step, self.markers, self.params["output.include_tentative"],
                                     stamp=cloud_header.stamp)
            self.pub_obstacles.publish(msgs[OBSTACLES])
            self.pub_markers.publish(msgs[MARKERS])
            now = time.perf_counter()
            self.stats.count("fused")
            self.stats.tick("obstacles")
            for report in step.fusion.reports:
                self.stats.count("masks_" + report.status)
            self.stats.set_info("tracks_confirmed", len(step.confirmed))
            self.stats.set_info("tracks_tentative", len(step.tracks) - len(step.confirmed))
            self.stats.set_info("ground_plane", "none" if step.fusion.plane is None else (
                "fitted" if step.fusion.plane.fitted else "fallback"))
            self.stats.latencies(dict(step.stage_ms, publish=(now - t_pub) * 1e3, in_node=(now - t_in) * 1e3))
            self._last_fused_mono = time.monotonic()

        def _publish_diagnostics(self):
            for reason, n in self.matcher.unmatched.items():
                self.stats.counters["unmatched_" + reason] = n
            self.stats.counters["time_resets_tracker"] = self.front.pipeline.tracker.time_resets
            self.stats.set_info("camera_info", "missing" if self.camera is None else "%dx%d %s frame '%s'" % (
                self.camera.width, self.camera.height, self.camera.distortion_model, self.camera.frame_id))
            level, message = DiagnosticStatus.OK, "fusing"
            recent = self._last_fused_mono is not None and \
                time.monotonic() - self._last_fused_mono < 3 * self.params["diagnostics.period_s"]
            if self.camera is None:
                level, message = DiagnosticStatus.WARN, "no CameraInfo yet"
            elif not recent:
                level, message = DiagnosticStatus.WARN, "no fused frame recently (%s)" % (
                    self.stats.last_error or "waiting for masks and clouds")
            self.pub_diag.publish(to_diagnostic_array(
                self.stats, "%s: fusion" % self.get_fully_qualified_name(), "lidar+camera", level, message,
                stamp=self.get_clock().now().to_msg()))

    return FusionNode


def main(argv=None):
    return run_node(lambda: _make_node_class()(), argv, help_text(NODE_NAME, SUMMARY, TOPICS, PARAMS))

