"""fusion_node: camera masks + LiDAR -> tracked 3D obstacles (thin rclpy shell).

Subscribes to OodMaskArray (s2m_node), PointCloud2 (any field layout with x, y, z), CameraInfo and,
when a fixed frame is wanted, nav_msgs/Odometry. Each mask array is matched to the nearest cloud in
time (bounded buffer, tolerance, reasons counted), then :class:`s2m_ros.obstacles.ObstaclePipeline`
fuses and tracks (ROS-free; the same code `s2m replay` runs). Publishes ObstacleArray (confirmed
tracks by default), MarkerArray for RViz and /diagnostics.

Extrinsics (camera <- LiDAR) come from parameters, or from ``/tf_static`` (tf2_msgs/TFMessage,
frames from the CameraInfo / cloud headers) when ``extrinsics.source`` is ``tf_static``.
"""
import math
import time

from s2m_ros.core.fusion import FusionConfig
from s2m_ros.core.geometry import rigid_matrix_problem
from s2m_ros.core.time_matching import NearestTimeMatcher
from s2m_ros.core.tracking import TrackerConfig
from s2m_ros.diagnostics import NodeStats, to_diagnostic_array
from s2m_ros.node_runtime import RELIABILITY_CHOICES, decode_or_report, help_text, make_qos, on_camera_info, run_node
from s2m_ros.params import ParameterError, ParamSpec, declare_all

NODE_NAME = "fusion_node"


def _quaternion_problem(q):
    if not all(math.isfinite(v) for v in q) or sum(v * v for v in q) < 1e-12:
        return "quaternion (x, y, z, w) must be finite and not zero"
    return None


def _finite(values):
    return None if all(math.isfinite(v) for v in values) else "must be finite"


# (field, description, min, max) of FusionConfig / TrackerConfig exposed as fusion.* / tracker.*.
# Defaults come from the dataclasses, so the node, `s2m replay` and the core cannot disagree.
_FUSION_FIELDS = (
    ("ransac_iterations", "ground plane: RANSAC hypotheses per cloud", 1, 10000),
    ("ransac_sample", "ground plane: points (random subset) scoring each hypothesis", 10, 1000000),
    ("ransac_threshold", "ground plane: inlier distance while fitting, m", 0.01, 2.0),
    ("max_ground_slope_deg", "ground plane: largest tilt of the plane from horizontal (apron slope + mount), deg",
     0.0, 45.0),
    ("ground_band", "points up to this height above the plane are ground and removed, m", 0.01, 2.0),
    ("min_ground_inliers", "fewer inliers: the plane fit failed (fallback plane or no ground removal)", 3, 1000000),
    ("min_depth", "points nearer than this along the camera axis are ignored, m", 0.0, 100.0),
    ("max_range", "points further than this (horizontal) are ignored, m", 1.0, 1000.0),
    ("erode_px", "masks are eroded by this many pixels before collecting points (edge bleeding)", 0, 50),
    ("cluster_gap", "a depth gap larger than this along the rays starts a new cluster, m", 0.05, 20.0),
    ("min_cluster_points", "the nearest cluster with at least this many points is the object", 1, 1000),
    ("min_points", "fewer points in the object's cluster: low_support (reported, not dropped)", 1, 100000),
    ("flat_min_points", "a mask with no point above the ground band and at least this many flat ground returns "
     "is flat (paint, shadow): reported, not tracked; 0 disables", 0, 100000),
    ("flat_max_height", "ground returns lower than this above the plane (90th percentile) count as flat, m",
     0.005, 1.0),
)
_TRACKER_FIELDS = (
    ("gate_m", "largest distance between a track's prediction and a detection to associate them, m", 0.01, 100.0),
    ("max_speed_mps", "largest plausible speed: widens new tracks' gate, clamps velocity, m/s", 0.0, 100.0),
    ("size_weight", "weight of the mean size difference in the association cost (0 = centres only)", 0.0, 100.0),
    ("half_life_s", "existence probability halves after this many seconds without a hit", 0.01, 60.0),
    ("prior_probability", "existence probability of a new track before its first hit", 0.001, 0.999),
    ("hit_log_odds", "log-odds added per hit (log P(det | real) / P(det | false positive))", 0.01, 20.0),
    ("low_support_weight", "fraction of hit_log_odds a low-support detection adds", 0.0, 1.0),
    ("confirm_probability", "a track is confirmed at this existence probability (and min_hits)", 0.01, 0.999),
    ("min_hits", "hits needed for confirmation (>= 2: one-frame artefacts are never confirmed)", 2, 1000),
    ("keep_probability", "a confirmed track stays confirmed while its probability is at least this", 0.001, 0.999),
    ("coast_s", "a track not hit for longer than this is deleted, s", 0.0, 60.0),
    ("velocity_window_s", "velocity = least-squares slope of the hits within this window, s", 0.05, 60.0),
    ("velocity_smoothing", "exponential smoothing of the velocity (1 = none)", 0.01, 1.0),
)


def _config_specs(prefix, cls, fields):
    defaults = cls()
    out = []
    for name, text, lo, hi in fields:
        value = getattr(defaults, name)
        out.append(ParamSpec("%s.%s" % (prefix, name), value, text,
                             min=(int(lo) if isinstance(value, int) else float(lo)),
                             max=(int(hi) if isinstance(value, int) else float(hi))))
    return tuple(out)


PARAMS = (
    ParamSpec("time_tolerance_s", 0.05, "a mask array is matched to the nearest cloud within this time difference",
              min=0.0, max=1.0),
    ParamSpec("cloud_buffer_size", 10, "number of recent clouds kept for time matching", min=1, max=100),
    ParamSpec("extrinsics.source", "parameters", "where camera <- LiDAR comes from: the extrinsics.* parameters, "
              "or /tf_static (frames from the CameraInfo and cloud headers)", choices=("parameters", "tf_static")),
    ParamSpec("extrinsics.translation", [0.0, 0.0, 0.0],
              "camera <- LiDAR translation (x, y, z) in metres, in the camera optical frame", length=(3,),
              check=_finite),
    ParamSpec("extrinsics.rotation_xyzw", [0.0, 0.0, 0.0, 1.0],
              "camera <- LiDAR rotation as a quaternion (x, y, z, w)", length=(4,), check=_quaternion_problem),
    ParamSpec("extrinsics.matrix", [0.0], "camera <- LiDAR 4x4 row-major matrix (16 values); overrides translation "
              "and rotation when given. A single value (the default) means unused", length=(1, 16),
              check=lambda m: None if len(m) == 1 else rigid_matrix_problem(m)),
    ParamSpec("fixed_frame.enabled", False, "track in the odometry's fixed frame (nav_msgs/Odometry on `odom`); "
              "false: track in the LiDAR frame (ego motion then looks like obstacle motion)"),
    ParamSpec("fixed_frame.base_from_lidar.translation", [0.0, 0.0, 0.0],
              "odometry child frame (base_link) <- LiDAR translation, m (extrinsics.source=parameters)", length=(3,),
              check=_finite),
    ParamSpec("fixed_frame.base_from_lidar.rotation_xyzw", [0.0, 0.0, 0.0, 1.0],
              "odometry child frame (base_link) <- LiDAR rotation (x, y, z, w)", length=(4,),
              check=_quaternion_problem),
    ParamSpec("fixed_frame.max_pose_gap_s", 0.5, "odometry poses further apart than this are not interpolated",
              min=0.01, max=10.0),
    ParamSpec("fixed_frame.max_extrapolation_s", 0.1, "a cloud newer than the newest pose by more than this waits "
              "for nothing: the frame is skipped (no_pose)", min=0.0, max=5.0),
    ParamSpec("fixed_frame.odometry_buffer_size", 400, "odometry poses kept for interpolation", min=2, max=100000),
    ParamSpec("fusion.use_fallback_ground", False, "when the plane fit fails, treat z = fusion.fallback_ground_z "
              "(LiDAR frame) as the ground instead of removing no ground"),
    ParamSpec("fusion.fallback_ground_z", 0.0, "ground height in the LiDAR frame for the fallback plane, m",
              min=-100.0, max=100.0),
    ParamSpec("fusion.max_cluster_extent", 3.0, "depth extent kept from the cluster's nearest point, m "
              "(0 = keep the whole cluster)", min=0.0, max=100.0),
) + _config_specs("fusion", FusionConfig, _FUSION_FIELDS) + _config_specs("tracker", TrackerConfig, _TRACKER_FIELDS) + (
    ParamSpec("tracker.out_of_order_tolerance_s", 1.0, "a cloud stamp up to this much older than the last tracked "
              "one is skipped as out of order; older still = time reset (tracks dropped)", min=0.0, max=60.0),
    ParamSpec("output.include_tentative", False, "also publish tentative tracks on `obstacles` (flag confirmed=false); "
              "default: confirmed only, so one-frame artefacts never reach the planner"),
    ParamSpec("markers.show_tentative", True, "draw tentative tracks (yellow) besides confirmed ones (red)"),
    ParamSpec("markers.lifetime_s", 0.5, "lifetime of every marker (backup for the explicit DELETEs)",
              min=0.0, max=60.0),
    ParamSpec("input.reliability", "best_effort", "QoS reliability of the point cloud, CameraInfo and odometry "
              "subscriptions", choices=RELIABILITY_CHOICES),
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


def configs_from_params(p):
    """(FusionConfig, TrackerConfig, out_of_order_tolerance_ns) from the node's parameter dict."""
    fusion = {f[0]: p["fusion." + f[0]] for f in _FUSION_FIELDS}
    extent = p["fusion.max_cluster_extent"]
    fusion["max_cluster_extent"] = extent if extent > 0 else None
    fusion["fallback_ground_z"] = p["fusion.fallback_ground_z"] if p["fusion.use_fallback_ground"] else None
    tracker = {f[0]: p["tracker." + f[0]] for f in _TRACKER_FIELDS}
    try:
        return (FusionConfig(**fusion), TrackerConfig(**tracker),
                int(round(p["tracker.out_of_order_tolerance_s"] * 1e9)))
    except ValueError as exc:  # cross-field rules (e.g. keep_probability <= confirm_probability)
        raise ParameterError(str(exc)) from None


def _make_node_class():
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
    from rclpy.node import Node
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, PointCloud2
    from visualization_msgs.msg import MarkerArray

    from s2m_ros.conversions.markers import MarkerBuilder
    from s2m_ros.conversions.pointcloud import cloud_to_xyz
    from s2m_ros.conversions.s2m_msgs import msg_to_frame_masks, stamp_to_ns
    from s2m_ros.msg import ObstacleArray, OodMaskArray
    from s2m_ros.obstacles import ObstacleFrontEnd
    from s2m_ros.outputs import MARKERS, OBSTACLES, obstacle_messages

    class FusionNode(Node):
        def __init__(self):
            super().__init__(NODE_NAME)
            self.params = p = declare_all(self, PARAMS)
            self.front = ObstacleFrontEnd(p)
            self.stats = NodeStats()
            self.matcher = NearestTimeMatcher(int(round(p["time_tolerance_s"] * 1e9)), p["cloud_buffer_size"])
            self.markers = MarkerBuilder(p["markers.lifetime_s"], p["markers.show_tentative"])
            for name in ("clouds_received", "mask_arrays_received", "matched", "fused", "skipped_no_camera_info",
                         "skipped_no_extrinsics", "skipped_no_pose", "skipped_out_of_order", "bad_masks",
                         "bad_cloud", "fusion_errors", "time_resets", "errors_total"):
                self.stats.count(name, 0)

            in_qos = make_qos(p["input.reliability"], p["input.depth"])
            self.create_subscription(PointCloud2, "points", self._on_cloud, in_qos)
            self.create_subscription(CameraInfo, "camera_info", lambda msg: on_camera_info(self, msg),
                                     make_qos(p["input.reliability"], 1))
            self.create_subscription(OodMaskArray, "ood/masks", self._on_masks,
                                     make_qos(p["masks.reliability"], p["masks.depth"]))
            if self.front.use_fixed:
                from nav_msgs.msg import Odometry

                self.create_subscription(Odometry, "odom", self._on_odom, make_qos(p["input.reliability"], 50))
            if self.front.use_tf_static:
                try:
                    from tf2_msgs.msg import TFMessage
                except ImportError:
                    raise ParameterError("extrinsics.source=tf_static needs the tf2_msgs Python package, which is "
                                         "not installed; give extrinsics.* parameters instead") from None
                latched = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100,
                                     reliability=ReliabilityPolicy.RELIABLE,
                                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
                self.create_subscription(TFMessage, "/tf_static", self._on_tf_static, latched)
            out_qos = make_qos("reliable", 5)
            self.pub_obstacles = self.create_publisher(ObstacleArray, "obstacles", out_qos)
            self.pub_markers = self.create_publisher(MarkerArray, "obstacle_markers", out_qos)
            self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
            self.create_timer(p["diagnostics.period_s"], self._publish_diagnostics)
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
            match, reset = self.matcher.add_cloud(stamp_to_ns(msg.header.stamp), (xyz, msg.header.frame_id))
            if reset:
                self.stats.count("time_resets")
                self.front.pipeline.reset()
                self.get_logger().info("cloud stamps went backwards (bag loop?): time matching and tracks reset")
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
                return
            if reset:
                self.stats.count("odometry_time_resets")

        def _on_tf_static(self, msg):
            for error in self.front.add_tf_message(msg):
                self.stats.error("bad_tf_static", error)
            self.stats.set_info("tf_static_frames", " ".join(self.front.tf.frames))

        # ------------------------------------------------------------------ processing
        def _skip(self, counter, text):
            self.stats.error(counter, text)
            self.get_logger().warning("frame skipped: %s" % text, throttle_duration_sec=2.0)

        def _on_match(self, match):
            t_in = time.perf_counter()
            self.stats.count("matched")
            self.stats.set_info("last_match_dt_ms", "%.1f" % (match.dt_ns * 1e-6))
            xyz, lidar_frame = match.cloud
            out = self.front.fuse(match.item, xyz, match.cloud_stamp_ns, lidar_frame)
            if out.skipped:
                if out.skipped == "skipped_no_camera_info":
                    out.reason += " on '%s'" % self.resolve_topic_name("camera_info")
                return self._skip(out.skipped, out.reason)
            step = out.step
            if step.reset:
                self.get_logger().info("tracks reset (time went backwards or the tracking frame changed)")
            t_pub = time.perf_counter()
            msgs = obstacle_messages(step, self.markers, self.params["output.include_tentative"])
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

