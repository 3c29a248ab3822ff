"""Typed dataclasses for what flows through the system (ROS-free).

Pixels are (x, y) = (column, row); boxes are (x, y, width, height) with x, y
the top-left pixel, as in sensor_msgs/RegionOfInterest. Times are integer
nanoseconds (exact round trip to builtin_interfaces/Time). Lengths in metres.
"""
import math
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

import numpy as np

Box = Tuple[int, int, int, int]  # x, y, width, height in pixels


def box_from_mask(mask):
    """Tight (x, y, w, h) box around the True pixels of a 2-D mask; None when the mask is empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)


def clip_mask_to_image(roi, mask, width, height):
    """``(x0, y0, sub)``: the part of a mask cropped to ``roi`` (x, y, w, h) that lies inside a
    (width, height) image, and where that part starts; None when the mask lies entirely outside."""
    x, y, w, h = (int(v) for v in roi)
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, mask[y0 - y:y1 - y, x0 - x:x1 - x]


@dataclass
class InstanceMask:
    """One object mask, stored cropped to its box ``roi``."""

    id: int
    roi: Box
    mask: np.ndarray  # bool, roi height x roi width
    anomaly_score: float
    contrast: float = math.nan
    quality: float = math.nan
    prompt_box: Box = (0, 0, 0, 0)

    def __post_init__(self):
        self.roi = tuple(int(v) for v in self.roi)
        self.prompt_box = tuple(int(v) for v in self.prompt_box)
        self.mask = np.asarray(self.mask, dtype=bool)
        if self.mask.shape != (self.roi[3], self.roi[2]):
            raise ValueError("mask shape %s does not match roi %s (w, h = %d, %d)"
                             % (self.mask.shape, self.roi, self.roi[2], self.roi[3]))

    @property
    def area(self):
        return int(np.count_nonzero(self.mask))

    @classmethod
    def from_full_mask(cls, id, full_mask, anomaly_score, **kwargs):
        """Crop a full-image boolean mask to its tight box."""
        full_mask = np.asarray(full_mask, dtype=bool)
        roi = box_from_mask(full_mask)
        if roi is None:
            raise ValueError("empty mask")
        x, y, w, h = roi
        return cls(id=id, roi=roi, mask=full_mask[y:y + h, x:x + w].copy(), anomaly_score=anomaly_score, **kwargs)

    def clipped(self, width, height):
        """See :func:`clip_mask_to_image`."""
        return clip_mask_to_image(self.roi, self.mask, width, height)

    def full_mask(self, width, height):
        """The mask pasted into an empty (height, width) boolean image (clipped at the borders)."""
        out = np.zeros((height, width), dtype=bool)
        part = self.clipped(width, height)
        if part is not None:
            x0, y0, sub = part
            out[y0:y0 + sub.shape[0], x0:x0 + sub.shape[1]] = sub
        return out


@dataclass
class FrameMasks:
    """All masks found in one camera frame (what OodMaskArray carries)."""

    stamp_ns: int
    frame_id: str
    width: int
    height: int
    masks: List[InstanceMask] = field(default_factory=list)
    scorer: str = ""
    segmenter: str = ""
    stage_ms: Dict[str, float] = field(default_factory=dict)

    def instance_image(self):
        """uint8 (height, width) image: 0 = background, k = pixels of the k-th mask (later masks on top)."""
        if len(self.masks) > 255:
            raise ValueError("an instance image holds at most 255 instances, got %d" % len(self.masks))
        out = np.zeros((self.height, self.width), dtype=np.uint8)
        for k, m in enumerate(self.masks, start=1):
            part = m.clipped(self.width, self.height)
            if part is not None:  # write inside the mask's box only, not a full frame per mask
                x0, y0, sub = part
                out[y0:y0 + sub.shape[0], x0:x0 + sub.shape[1]][sub] = k
        return out


@dataclass
class Obstacle3D:
    """One tracked 3D obstacle (what Obstacle carries). Geometry in the frame's coordinates, z up."""

    id: int
    center: np.ndarray  # (3,)
    size: np.ndarray  # (3,) length, width, height of the box
    yaw: float = 0.0
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(3))
    footprint: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))  # (K, 3) ground polygon
    range: float = math.nan
    height: float = math.nan
    existence_probability: float = 0.0
    hits: int = 0
    age: float = 0.0
    confirmed: bool = False
    low_support: bool = False
    anomaly_score: float = math.nan
    num_points: int = 0
    mask_id: int = 0

    def __post_init__(self):
        self.center = np.asarray(self.center, dtype=float).reshape(3)
        self.size = np.asarray(self.size, dtype=float).reshape(3)
        self.velocity = np.asarray(self.velocity, dtype=float).reshape(3)
        self.footprint = np.asarray(self.footprint, dtype=float).reshape(-1, 3)


@dataclass
class ObstacleFrame:
    """All obstacles at one cloud time (what ObstacleArray carries)."""

    stamp_ns: int
    frame_id: str
    obstacles: List[Obstacle3D] = field(default_factory=list)

