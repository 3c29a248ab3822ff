"""Masks + cloud -> tracked 3D obstacles: the fusion node's algorithm, ROS-free.

:class:`ObstaclePipeline` is what ``fusion_node`` and ``s2m replay`` both run for each matched
(mask array, cloud) pair:

1. :func:`s2m_ros.core.fusion.fuse` in the LiDAR frame (one detection per mask, low-support ones
   flagged, never dropped). Masks the LiDAR measured as FLAT ground (many ground returns inside,
   none above the ground band: paint, shadows) are reported but not given to the tracker;
2. optionally into a fixed frame with the ego pose at the cloud's stamp (``T_fixed_lidar``);
3. :class:`s2m_ros.core.tracking.Tracker` update at the cloud's stamp.

Time policy (stamps are the clouds'): a stamp older than the last processed one by at most
``out_of_order_tolerance_ns`` is an out-of-order frame (late or reordered message): it is skipped and
counted, the tracks are kept. A larger backwards jump is a time reset (bag loop, simulator restart):
the tracks are dropped and tracking restarts (the tracker's own rule). Tracking in a fixed frame and
in the sensor frame cannot be mixed: switching frames resets the tracker too.
"""
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np

from s2m_ros.core.fusion import FLAT, FusionConfig, FusionResult, fuse
from s2m_ros.core.poses import transform_obstacle
from s2m_ros.core.tracking import Tracker, TrackerConfig
from s2m_ros.core.types import Obstacle3D, ObstacleFrame

OUT_OF_ORDER = "out_of_order"


@dataclass
class ObstacleStep:
    """Result of one :meth:`ObstaclePipeline.process` call."""

    stamp_ns: int
    frame_id: str
    tracks: List[Obstacle3D]  # every live track (tentative and confirmed), by id
    detections: List[Obstacle3D]  # this frame's fused detections, in ``frame_id``
    fusion: Optional[FusionResult] = None
    stage_ms: Dict[str, float] = field(default_factory=dict)
    skipped: str = ""  # non-empty: the frame was not tracked (reason)
    reset: bool = False  # the tracker restarted at this frame (time went backwards / frame changed)

    @property
    def confirmed(self):
        return [t for t in self.tracks if t.confirmed]

    def frame(self, confirmed_only=False):
        """The tracks as an :class:`ObstacleFrame` (what ObstacleArray carries)."""
        return ObstacleFrame(stamp_ns=self.stamp_ns, frame_id=self.frame_id,
                             obstacles=self.confirmed if confirmed_only else list(self.tracks))


class ObstaclePipeline:
    """Fusion + optional fixed-frame transform + tracking, with the time policy of the module docstring."""

    def __init__(self, fusion: Optional[FusionConfig] = None, tracker: Optional[TrackerConfig] = None,
                 out_of_order_tolerance_ns: int = int(1e9)):
        self.fusion_config = fusion or FusionConfig()
        self.tracker = Tracker(tracker or TrackerConfig())
        self.out_of_order_tolerance_ns = int(out_of_order_tolerance_ns)
        self._last_ns = None
        self._frame_id = None
        self.out_of_order = 0
        self.frame_changes = 0

    def reset(self):
        """Forget tracks and time (e.g. the cloud stream's clock went backwards)."""
        self.tracker.reset()
        self._last_ns = None

    def process(self, frame_masks, points_xyz, camera, T_cam_lidar, stamp_ns, lidar_frame="lidar",
                T_fixed_lidar=None, fixed_frame="") -> ObstacleStep:
        """Fuse one matched (masks, cloud) pair and update the tracks at the cloud's ``stamp_ns``.

        ``T_fixed_lidar`` (4x4, fixed <- LiDAR at ``stamp_ns``) puts detections and tracks in
        ``fixed_frame``; None keeps them in ``lidar_frame``. Raises ValueError for inputs fusion
        cannot use (mask size != camera size, malformed arrays): nothing is updated then.
        """
        stamp_ns = int(stamp_ns)
        frame_id = fixed_frame if T_fixed_lidar is not None else lidar_frame
        if self._last_ns is not None and self._last_ns - self.out_of_order_tolerance_ns <= stamp_ns < self._last_ns:
            self.out_of_order += 1
            return ObstacleStep(stamp_ns, frame_id, tracks=[], detections=[], skipped=OUT_OF_ORDER)
        t0 = time.perf_counter()
        result = fuse(frame_masks, points_xyz, camera, T_cam_lidar, self.fusion_config)
        t1 = time.perf_counter()
        detections = [d for d, r in zip(result.obstacles, result.reports) if r.status != FLAT]
        if T_fixed_lidar is not None:
            T = np.asarray(T_fixed_lidar, dtype=float)
            detections = [transform_obstacle(d, T) for d in detections]
        reset = False
        if self._frame_id is not None and frame_id != self._frame_id:
            self.tracker.reset()
            self.frame_changes += 1
            reset = True
        self._frame_id = frame_id
        tracks = self.tracker.update(stamp_ns, detections)
        reset = reset or self.tracker.last_update_reset
        self._last_ns = stamp_ns
        t2 = time.perf_counter()
        return ObstacleStep(stamp_ns, frame_id, tracks=tracks, detections=detections, fusion=result,
                            stage_ms={"fusion": (t1 - t0) * 1e3, "tracking": (t2 - t1) * 1e3}, reset=reset)


@dataclass
class FuseOutcome:
    """What became of one matched (masks, cloud) pair: a step, or the counter and reason it was skipped for."""

    step: Optional[ObstacleStep] = None
    skipped: str = ""  # diagnostics counter, e.g. "skipped_no_pose"; empty when fused
    reason: str = ""


class ObstacleFrontEnd:
    """Everything between "a mask array matched to a cloud" and :class:`ObstaclePipeline`, shared by
    ``fusion_node`` and ``s2m replay``: the camera model, camera <- LiDAR extrinsics (parameters or
    ``/tf_static``), the ego pose for the fixed frame (odometry), and the skip reasons.

    ``params``: fusion_node parameter values (``s2m_ros.fusion_node.PARAMS`` names).
    """

    def __init__(self, params, use_tf_static=None, use_fixed=None):
        from s2m_ros.core.geometry import extrinsics_from_params
        from s2m_ros.core.poses import PoseBuffer, TransformTree
        from s2m_ros.fusion_node import configs_from_params

        p = params
        fusion_cfg, tracker_cfg, ooo_ns = configs_from_params(p)
        self.pipeline = ObstaclePipeline(fusion_cfg, tracker_cfg, ooo_ns)
        self.use_tf_static = p["extrinsics.source"] == "tf_static" if use_tf_static is None else use_tf_static
        self.use_fixed = p["fixed_frame.enabled"] if use_fixed is None else use_fixed
        matrix = p["extrinsics.matrix"] if len(p["extrinsics.matrix"]) == 16 else ()
        self.T_cam_lidar = extrinsics_from_params(p["extrinsics.translation"], p["extrinsics.rotation_xyzw"], matrix)
        self.T_base_lidar = extrinsics_from_params(p["fixed_frame.base_from_lidar.translation"],
                                                   p["fixed_frame.base_from_lidar.rotation_xyzw"])
        self.tf = TransformTree()
        self.poses = PoseBuffer(p["fixed_frame.odometry_buffer_size"], int(p["fixed_frame.max_pose_gap_s"] * 1e9),
                                int(p["fixed_frame.max_extrapolation_s"] * 1e9))
        self.camera = None  # PinholeCamera from the latest valid CameraInfo
        self.fixed_frame_id = ""
        self.base_frame_id = ""

    def add_tf_message(self, msg):
        """Every transform of a tf2_msgs/TFMessage (``/tf_static``; rclpy or rosbags message), each on its
        own: one with a degenerate quaternion or a cycle is refused and reported, the others are kept.
        Returns the error texts."""
        from s2m_ros.conversions.transforms import transform_to_matrix

        errors = []
        for t in msg.transforms:
            try:
                self.tf.set(t.header.frame_id, t.child_frame_id, transform_to_matrix(t.transform))
            except ValueError as exc:
                errors.append("%s -> %s: %s" % (t.header.frame_id, t.child_frame_id, exc))
        return errors

    def add_odometry(self, msg):
        """A nav_msgs/Odometry pose (header.frame_id <- child_frame_id) at its header stamp. Returns True
        when the stamp went backwards (the pose buffer restarted); ValueError for a degenerate quaternion."""
        from s2m_ros.conversions.s2m_msgs import stamp_to_ns
        from s2m_ros.conversions.transforms import pose_to_matrix

        reset = self.poses.add(stamp_to_ns(msg.header.stamp), pose_to_matrix(msg.pose.pose))
        self.fixed_frame_id, self.base_frame_id = msg.header.frame_id, msg.child_frame_id
        return reset

    def _extrinsics(self, lidar_frame):
        if not self.use_tf_static:
            return self.T_cam_lidar, self.T_base_lidar
        try:
            return (self.tf.lookup(self.camera.frame_id, lidar_frame),
                    self.tf.lookup(self.base_frame_id, lidar_frame) if self.use_fixed else None)
        except LookupError as exc:
            return str(exc)

    def fuse(self, frame_masks, points, cloud_stamp_ns, lidar_frame) -> FuseOutcome:
        """Fuse and track one time-matched (mask array, cloud) pair at the cloud's stamp."""
        if self.camera is None:
            return FuseOutcome(skipped="skipped_no_camera_info", reason="no valid CameraInfo received yet")
        T_fixed_base = None
        if self.use_fixed:  # first: the odometry also names the base frame the extrinsics are looked up in
            T_fixed_base, why = self.poses.lookup(cloud_stamp_ns)
            if T_fixed_base is None:
                return FuseOutcome(skipped="skipped_no_pose", reason="no odometry pose at the cloud's stamp (%s)" % why)
        ext = self._extrinsics(lidar_frame)
        if isinstance(ext, str):
            return FuseOutcome(skipped="skipped_no_extrinsics", reason=ext)
        T_cam_lidar, T_base_lidar = ext
        try:
            step = self.pipeline.process(frame_masks, points, self.camera, T_cam_lidar, cloud_stamp_ns,
                                         lidar_frame=lidar_frame,
                                         T_fixed_lidar=None if T_fixed_base is None else T_fixed_base @ T_base_lidar,
                                         fixed_frame=self.fixed_frame_id)
        except ValueError as exc:
            return FuseOutcome(skipped="fusion_errors", reason=str(exc))
        if step.skipped:
            return FuseOutcome(step=step, skipped="skipped_" + step.skipped,
                               reason="cloud stamp %d is older than the last tracked one" % cloud_stamp_ns)
        return FuseOutcome(step=step)
