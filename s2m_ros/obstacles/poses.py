"""Static transform trees and time-stamped pose buffers (ROS-free).

What tf2 does for the fusion node, reduced to what runs here (tf2_ros is not installable on these
machines; a vehicle may have it, but the tested path is this one):

- :class:`TransformTree` holds static transforms (``/tf_static``: parent -> child, 4x4) and looks up
  ``T_target_source`` between any two connected frames by walking both up to a common ancestor.
- :class:`PoseBuffer` holds a bounded, time-ordered list of poses ``T_fixed_base`` (odometry) and
  interpolates them at a stamp (linear translation, spherical-linear rotation). Past the newest pose
  it extrapolates at the last constant velocity, never further than ``max_extrapolation_ns``, and it
  refuses to bridge gaps longer than ``max_gap_ns``: a missing pose is an explicit reason, not a guess.
- :func:`transform_obstacle` moves a fused obstacle (centre, yaw, footprint, velocity) into
  another frame.
"""
import bisect
import math
from dataclasses import replace
from typing import Dict, Optional, Tuple

import numpy as np
from scipy.spatial.transform import Rotation

from s2m_ros.types import Obstacle3D

# PoseBuffer.lookup reasons
NO_POSE = "no_pose"
TOO_OLD = "too_old"  # older than the oldest buffered pose
TOO_NEW = "too_new"  # newer than the newest pose by more than max_extrapolation_ns
GAP = "gap"  # between two poses further apart than max_gap_ns


def _check_rigid(T, what):
    T = np.array(T, dtype=float)  # a copy: callers may reuse their array
    if T.shape != (4, 4) or not np.all(np.isfinite(T)):
        raise ValueError("%s must be a finite 4x4 matrix" % what)
    return T


class TransformTree:
    """Static frame tree: ``set(parent, child, T_parent_child)``, ``lookup(target, source)``."""

    def __init__(self):
        self._parent: Dict[str, Tuple[str, np.ndarray]] = {}  # child -> (parent, T_parent_child)

    def set(self, parent, child, T_parent_child):
        """Add or replace the transform of ``child`` in ``parent`` (a frame has one parent, as in tf)."""
        parent, child = str(parent).lstrip("/"), str(child).lstrip("/")
        if not parent or not child or parent == child:
            raise ValueError("a transform needs two different, non-empty frame ids (got %r -> %r)" % (parent, child))
        T = _check_rigid(T_parent_child, "transform %s -> %s" % (parent, child))
        # refuse cycles: walking up from the new parent must not reach the child
        frame = parent
        while frame in self._parent:
            frame = self._parent[frame][0]
            if frame == child:
                raise ValueError("transform %s -> %s would close a cycle" % (parent, child))
        self._parent[child] = (parent, T)

    @property
    def frames(self):
        out = set(self._parent)
        out.update(p for p, _ in self._parent.values())
        return sorted(out)

    def _chain(self, frame):
        """[(frame, T_root_frame)] from ``frame`` up to its root."""
        chain = [(frame, np.eye(4))]
        T = np.eye(4)
        while frame in self._parent:
            parent, T_pf = self._parent[frame]
            T = T_pf @ T  # T_parent_source
            frame = parent
            chain.append((frame, T))
        return chain

    def can_lookup(self, target, source):
        try:
            self.lookup(target, source)
            return True
        except LookupError:
            return False

    def lookup(self, target, source):
        """``T_target_source`` (maps points in ``source`` to ``target``); LookupError when unconnected."""
        target, source = str(target).lstrip("/"), str(source).lstrip("/")
        if target == source:
            return np.eye(4)
        up_source = {f: T for f, T in self._chain(source)}  # frame -> T_frame_source
        for frame, T_frame_target in self._chain(target):
            if frame in up_source:
                return np.linalg.inv(T_frame_target) @ up_source[frame]
        known = ", ".join(self.frames) or "none"
        raise LookupError("no static transform connects '%s' and '%s' (known frames: %s)" % (target, source, known))


class PoseBuffer:
    """Bounded buffer of stamped rigid poses with interpolated lookup (see module docstring)."""

    def __init__(self, capacity=400, max_gap_ns=int(0.5e9), max_extrapolation_ns=int(0.1e9)):
        if capacity < 2:
            raise ValueError("capacity must be >= 2")
        self.capacity = int(capacity)
        self.max_gap_ns = int(max_gap_ns)
        self.max_extrapolation_ns = int(max_extrapolation_ns)
        self._stamps = []
        self._poses = []
        self.resets = 0

    def __len__(self):
        return len(self._stamps)

    def clear(self):
        self._stamps.clear()
        self._poses.clear()

    def add(self, stamp_ns, T):
        """Append a pose; a stamp before the newest one clears the buffer first (returns True then)."""
        T = _check_rigid(T, "pose")
        stamp_ns = int(stamp_ns)
        reset = bool(self._stamps) and stamp_ns < self._stamps[-1]
        if reset:
            self.clear()
            self.resets += 1
        if self._stamps and stamp_ns == self._stamps[-1]:
            self._poses[-1] = T  # same stamp: the newer message wins
            return reset
        self._stamps.append(stamp_ns)
        self._poses.append(T)
        if len(self._stamps) > self.capacity:
            del self._stamps[0], self._poses[0]
        return reset

    def lookup(self, stamp_ns) -> Tuple[Optional[np.ndarray], str]:
        """(T_fixed_base at ``stamp_ns``, "") or (None, reason)."""
        stamp_ns = int(stamp_ns)
        if not self._stamps:
            return None, NO_POSE
        i = bisect.bisect_left(self._stamps, stamp_ns)
        if i < len(self._stamps) and self._stamps[i] == stamp_ns:
            return self._poses[i].copy(), ""
        if i == 0:
            return None, TOO_OLD
        if i == len(self._stamps):
            if stamp_ns - self._stamps[-1] > self.max_extrapolation_ns:
                return None, TOO_NEW
            if len(self._stamps) < 2 or self._stamps[-1] - self._stamps[-2] > self.max_gap_ns:
                return self._poses[-1].copy(), ""  # no recent motion to extrapolate: hold the newest pose
            t0, t1 = self._stamps[-2], self._stamps[-1]  # constant velocity over a short extrapolation
            return interpolate_pose(self._poses[-2], self._poses[-1], (stamp_ns - t0) / float(t1 - t0)), ""
        t0, t1 = self._stamps[i - 1], self._stamps[i]
        if t1 - t0 > self.max_gap_ns:
            return None, GAP
        return interpolate_pose(self._poses[i - 1], self._poses[i], (stamp_ns - t0) / float(t1 - t0)), ""


def interpolate_pose(T0, T1, a):
    """Pose a of the way from T0 to T1: linear translation, rotation R0 exp(a log(R0^T R1)) (slerp).
    a in [0, 1] interpolates; a > 1 extrapolates at constant (angular) velocity."""
    out = np.eye(4)
    R0 = Rotation.from_matrix(T0[:3, :3])
    rel = (R0.inv() * Rotation.from_matrix(T1[:3, :3])).as_rotvec()
    out[:3, :3] = (R0 * Rotation.from_rotvec(float(a) * rel)).as_matrix()
    out[:3, 3] = (1.0 - a) * T0[:3, 3] + a * T1[:3, 3]
    return out


def yaw_of(R):
    """Heading (rotation about z) of a rotation matrix."""
    return math.atan2(R[1, 0], R[0, 0])


def transform_obstacle(obstacle: Obstacle3D, T) -> Obstacle3D:
    """The obstacle expressed in another frame: ``T`` maps its current frame to the new one.

    Centre and footprint are transformed as points, velocity as a vector, yaw gains the heading of
    T's rotation (exact for rotations about z, the case for vehicle odometry on a near-level apron).
    ``range`` stays the sensor range (it is a property of the measurement, not of the frame).
    """
    R, t = T[:3, :3], T[:3, 3]
    footprint = obstacle.footprint @ R.T + t if len(obstacle.footprint) else obstacle.footprint.copy()
    yaw = obstacle.yaw + yaw_of(R)
    yaw = math.atan2(math.sin(yaw), math.cos(yaw))
    if yaw <= -math.pi:  # (-pi, pi]
        yaw += 2 * math.pi
    return replace(obstacle, center=R @ obstacle.center + t, velocity=R @ obstacle.velocity, size=obstacle.size.copy(),
                   footprint=footprint, yaw=yaw)
