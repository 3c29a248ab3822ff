"""fusion_node's declared parameters and their mapping onto the ROS-free fusion / tracker configs.

One table (:data:`PARAMS`) shared by the node, ``s2m replay`` (:class:`s2m_ros.ros.frontend.ObstacleFrontEnd`)
and the generated parameter docs; defaults come from the dataclasses, so they cannot disagree.
"""
import math

from s2m_ros.obstacles.fusion import FusionConfig
from s2m_ros.obstacles.geometry import rigid_matrix_problem
from s2m_ros.obstacles.tracking import TrackerConfig
from s2m_ros.ros.params import ParameterError, ParamSpec
from s2m_ros.ros.runtime import RELIABILITY_CHOICES


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
