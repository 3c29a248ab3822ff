"""Masks + cloud -> tracked 3D obstacles: the fusion node's algorithm, ROS-free.

:class:`ObstaclePipeline` is what ``fusion_node`` and ``s2m replay`` both run for each matched
(mask array, cloud) pair:

1. :func:`s2m_ros.obstacles.fusion.fuse` in the LiDAR frame (one detection per mask, low-support ones
   flagged, never dropped). Masks the LiDAR measured as FLAT ground (many ground returns inside,
   none above the ground band: paint, shadows) are reported but not given to the tracker;
2. optionally into a fixed frame with the ego pose at the cloud's stamp (``T_fixed_lidar``);
3. :class:`s2m_ros.obstacles.tracking.Tracker` update at the cloud's stamp.

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

from s2m_ros.obstacles.fusion import FLAT, FusionConfig, FusionResult, fuse
from s2m_ros.obstacles.poses import transform_obstacle
from s2m_ros.obstacles.tracking import Tracker, TrackerConfig
from s2m_ros.types import Obstacle3D, ObstacleFrame

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

    @property
    def last_stamp_ns(self) -> Optional[int]:
        """Stamp of the last tracked frame (None before the first or after a reset)."""
        return self._last_ns

    def is_out_of_order(self, stamp_ns: int) -> bool:
        """True for a stamp this pipeline would skip as out of order (older than the last tracked one by
        at most ``out_of_order_tolerance_ns``)."""
        last = self._last_ns
        return last is not None and last - self.out_of_order_tolerance_ns <= int(stamp_ns) < last

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
        if self.is_out_of_order(stamp_ns):
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
