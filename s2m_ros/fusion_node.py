"""fusion_node: fuses camera masks with LiDAR into 3D obstacles (thin rclpy shell).

Current state: subscribes to OodMaskArray, PointCloud2 (any field layout) and
CameraInfo; decodes and validates them, and matches each mask array to the
nearest cloud in time (buffer + tolerance, drop reasons counted). The 3D
fusion and the tracker are not implemented yet (issue #6), so the obstacle
topics are advertised but nothing is published on them: no output is faked.
"""
from s2m_ros.core.geometry import extrinsics_from_params, rigid_matrix_problem
from s2m_ros.core.time_matching import NearestTimeMatcher
from s2m_ros.diagnostics import NodeStats, to_diagnostic_array
from s2m_ros.node_runtime import RELIABILITY_CHOICES, decode_or_report, help_text, make_qos, on_camera_info, run_node
from s2m_ros.params import ParamSpec, declare_all

NODE_NAME = "fusion_node"


def _quaternion_problem(q):
    if sum(v * v for v in q) < 1e-12:
        return "quaternion (x, y, z, w) must not be zero"
    return None


PARAMS = (
    ParamSpec("time_tolerance_s", 0.05, "a mask array is matched to the nearest cloud within this time difference",
              min=0.0, max=1.0),
    ParamSpec("cloud_buffer_size", 10, "number of recent clouds kept for time matching", min=1, max=100),
    ParamSpec("target_frame", "", "frame of the published obstacles; empty = the cloud's frame"),
    ParamSpec("extrinsics.translation", [0.0, 0.0, 0.0],
              "camera <- LiDAR translation (x, y, z) in metres, in the camera optical frame", length=(3,)),
    ParamSpec("extrinsics.rotation_xyzw", [0.0, 0.0, 0.0, 1.0],
              "camera <- LiDAR rotation as a quaternion (x, y, z, w)", length=(4,), check=_quaternion_problem),
    ParamSpec("extrinsics.matrix", [0.0], "camera <- LiDAR 4x4 row-major matrix (16 values); overrides translation "
              "and rotation when given. A single value (the default) means unused", length=(1, 16),
              check=lambda m: None if len(m) == 1 else rigid_matrix_problem(m)),
    ParamSpec("input.reliability", "best_effort", "QoS reliability of the point cloud and CameraInfo subscriptions",
              choices=RELIABILITY_CHOICES),
    ParamSpec("input.depth", 2, "QoS history depth of the point cloud subscription", min=1, max=100),
    ParamSpec("masks.reliability", "reliable", "QoS reliability of the OodMaskArray subscription",
              choices=RELIABILITY_CHOICES),
    ParamSpec("masks.depth", 5, "QoS history depth of the OodMaskArray subscription", min=1, max=100),
    ParamSpec("diagnostics.period_s", 1.0, "period of diagnostic_msgs/DiagnosticArray on /diagnostics",
              min=0.05, max=60.0),
)

TOPICS = (
    ("ood/masks", "sub", "s2m_ros/OodMaskArray", "masks from s2m_node"),
    ("points", "sub", "sensor_msgs/PointCloud2", "LiDAR cloud, any field layout with x, y, z"),
    ("camera_info", "sub", "sensor_msgs/CameraInfo", "camera calibration"),
    ("obstacles", "pub", "s2m_ros/ObstacleArray", "3D obstacles (fusion: issue #6, not yet)"),
    ("obstacle_markers", "pub", "visualization_msgs/MarkerArray", "RViz markers (not yet)"),
    ("/diagnostics", "pub", "diagnostic_msgs/DiagnosticArray", "rates, counters, match statistics"),
)

SUMMARY = ("s2m_ros fusion node: 3D obstacles from s2m_node masks and LiDAR, filtered over time.\n"
           "NOT IMPLEMENTED YET: 3D fusion and tracking (issue #6). The node decodes and validates masks,\n"
           "clouds and CameraInfo and time-matches masks to clouds; it publishes no obstacles yet.")


def _make_node_class():
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
    from rclpy.node import Node
    from sensor_msgs.msg import CameraInfo, PointCloud2
    from visualization_msgs.msg import MarkerArray

    from s2m_ros.conversions.pointcloud import cloud_to_xyz
    from s2m_ros.conversions.s2m_msgs import msg_to_frame_masks, stamp_to_ns
    from s2m_ros.msg import ObstacleArray, OodMaskArray

    class FusionNode(Node):
        def __init__(self):
            super().__init__(NODE_NAME)
            self.params = p = declare_all(self, PARAMS)
            matrix = p["extrinsics.matrix"] if len(p["extrinsics.matrix"]) == 16 else ()
            self.camera_from_lidar = extrinsics_from_params(
                p["extrinsics.translation"], p["extrinsics.rotation_xyzw"], matrix)
            self.stats = NodeStats()
            self.matcher = NearestTimeMatcher(int(round(p["time_tolerance_s"] * 1e9)), p["cloud_buffer_size"])
            self.camera = None
            in_qos = make_qos(p["input.reliability"], p["input.depth"])
            self.create_subscription(PointCloud2, "points", self._on_cloud, in_qos)
            self.create_subscription(CameraInfo, "camera_info", lambda msg: on_camera_info(self, msg),
                                     make_qos(p["input.reliability"], 1))
            self.create_subscription(OodMaskArray, "ood/masks", self._on_masks,
                                     make_qos(p["masks.reliability"], p["masks.depth"]))
            out_qos = make_qos("reliable", 5)
            # Advertised for the planner and RViz; filled by the fusion (issue #6).
            self.pub_obstacles = self.create_publisher(ObstacleArray, "obstacles", out_qos)
            self.pub_markers = self.create_publisher(MarkerArray, "obstacle_markers", out_qos)
            self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
            self.create_timer(p["diagnostics.period_s"], self._publish_diagnostics)
            self.stats.info["fusion"] = "not implemented (issue #6)"
            self.get_logger().info("started: masks on '%s', cloud on '%s', tolerance %.3f s. 3D fusion is not "
                                   "implemented yet: inputs are decoded and time-matched only." % (
                                       self.resolve_topic_name("ood/masks"), self.resolve_topic_name("points"),
                                       p["time_tolerance_s"]))

        def _on_cloud(self, msg):
            self.stats.count("clouds_received")
            self.stats.tick("cloud")
            xyz = decode_or_report(self, self.stats, "bad_cloud", "cloud", lambda: cloud_to_xyz(msg))
            if xyz is None:
                return
            if xyz.shape[0] == 0:
                self.stats.count("empty_clouds")
            self.stats.info["last_cloud_points"] = xyz.shape[0]
            match, reset = self.matcher.add_cloud(stamp_to_ns(msg.header.stamp), xyz)
            if reset:
                self.stats.count("time_resets")
                self.get_logger().info("cloud stamps went backwards (bag loop?): time matching reset")
            if match is not None:
                self._on_match(match)

        def _on_masks(self, msg):
            self.stats.count("mask_arrays_received")
            self.stats.tick("masks")
            frame = decode_or_report(self, self.stats, "bad_masks", "mask array", lambda: msg_to_frame_masks(msg))
            if frame is None:
                return
            match, reason = self.matcher.add_item(frame.stamp_ns, frame)
            if match is not None:
                self._on_match(match)

        def _on_match(self, match):
            self.stats.count("matched")
            self.stats.info["last_match_masks"] = len(match.item.masks)
            self.stats.info["last_match_cloud_points"] = match.cloud.shape[0]
            self.stats.info["last_match_dt_ms"] = "%.1f" % (match.dt_ns * 1e-6)

        def _publish_diagnostics(self):
            for reason, n in self.matcher.unmatched.items():
                self.stats.counters["unmatched_" + reason] = n
            self.stats.info["camera_info"] = "missing" if self.camera is None else "%dx%d %s" % (
                self.camera.width, self.camera.height, self.camera.distortion_model)
            self.pub_diag.publish(to_diagnostic_array(
                self.stats, "%s: fusion" % self.get_fully_qualified_name(), "lidar+camera", DiagnosticStatus.WARN,
                "3D fusion not implemented yet (issue #6): inputs decoded and time-matched only",
                stamp=self.get_clock().now().to_msg()))

    return FusionNode


def main(argv=None):
    return run_node(lambda: _make_node_class()(), argv, help_text(NODE_NAME, SUMMARY, TOPICS, PARAMS))
