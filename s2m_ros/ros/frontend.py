"""The fusion front end shared by ``fusion_node`` and ``s2m replay``: parameters, calibration, extrinsics
(parameters or ``/tf_static``) and odometry poses in front of the ROS-free
:class:`s2m_ros.obstacles.pipeline.ObstaclePipeline`, with the reasons a frame is skipped.
"""
from dataclasses import dataclass
from typing import Optional

from s2m_ros.obstacles.geometry import extrinsics_from_params
from s2m_ros.obstacles.time_matching import NearestTimeMatcher
from s2m_ros.obstacles.pipeline import ObstaclePipeline, ObstacleStep
from s2m_ros.obstacles.poses import PoseBuffer, TransformTree
from s2m_ros.ros.conversions.s2m_msgs import stamp_to_ns
from s2m_ros.ros.conversions.transforms import pose_to_matrix, transform_to_matrix
from s2m_ros.ros.fusion_params import configs_from_params


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

    ``params``: fusion_node parameter values (``s2m_ros.ros.fusion_node.PARAMS`` names).
    """

    def __init__(self, params, use_tf_static=None, use_fixed=None):
        p = params
        fusion_cfg, tracker_cfg, ooo_ns = configs_from_params(p)
        self.pipeline = ObstaclePipeline(fusion_cfg, tracker_cfg, ooo_ns)
        # a cloud up to the out-of-order tolerance older than the newest one is late, not a bag loop: the
        # buffer keeps it (sorted) and only a larger step back clears it (see add_cloud)
        self.matcher = NearestTimeMatcher(int(round(p["time_tolerance_s"] * 1e9)), p["cloud_buffer_size"],
                                          backwards_reset_ns=ooo_ns)
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

    def add_cloud(self, stamp_ns, payload):
        """Offer one decoded cloud to time matching under the pipeline's time policy (the one documented
        for ``tracker.out_of_order_tolerance_s``). Returns ``(match or None, event)``; ``event`` is

        - ``""``: buffered (a late cloud newer than the last tracked frame is buffered too, in order);
        - ``"skipped_out_of_order"``: older than the last tracked frame by at most the tolerance: it could
          never be tracked, so it is not buffered; the tracks are kept;
        - ``"time_reset"``: older than the newest buffered cloud by more than the tolerance (a bag loop,
          a clock reset): the buffer and the tracks were dropped and time restarts with this cloud.
        """
        stamp_ns = int(stamp_ns)
        if self.pipeline.is_out_of_order(stamp_ns):
            return None, "skipped_out_of_order"
        match, reset = self.matcher.add_cloud(stamp_ns, payload)
        if reset:
            self.pipeline.reset()
            return match, "time_reset"
        return match, ""

    def add_tf_message(self, msg):
        """Every transform of a tf2_msgs/TFMessage (``/tf_static``; rclpy or rosbags message), each on its
        own: one with a degenerate quaternion or a cycle is refused and reported, the others are kept.
        Returns the error texts."""
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
