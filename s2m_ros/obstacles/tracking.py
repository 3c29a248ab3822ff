"""Multi-object tracking of fused 3D obstacles with an existence probability (ROS-free).

Each update takes the detections of one cloud time (``Obstacle3D`` from the fusion) and returns
every live track as an ``Obstacle3D`` with a stable ``id``, ``existence_probability``, ``hits``,
``age`` (seconds since birth), ``velocity`` and a ``confirmed`` flag.

Association
    Each track predicts its centre with constant velocity from its last hit. The cost of a
    (track, detection) pair is the Euclidean distance between predicted and detected centres
    (plus ``size_weight`` times the mean absolute size difference when that is > 0). A pair is
    admissible when the predicted distance is <= ``gate_m``; a track with a single hit has no
    velocity yet, so its gate is widened to ``gate_m + max_speed_mps * dt_since_hit`` (the
    object may move at up to ``max_speed_mps``). The optimal assignment
    (``scipy.optimize.linear_sum_assignment``) is taken over admissible
    pairs; everything else is unmatched. Unmatched detections start tentative tracks.

Existence probability (Bayesian in log-odds, with time decay)
    * decay: between updates every track's probability is multiplied by
      ``0.5 ** (dt / half_life_s)`` (evidence of existence fades with elapsed time, not frames);
    * hit: ``logit(p) += w * hit_log_odds`` where ``hit_log_odds`` is the log likelihood ratio
      of a detection given a real object vs. a false positive, and ``w`` is 1, or
      ``low_support_weight`` (< 1) for detections the fusion marked ``low_support``;
    * birth: a new track starts at ``prior_probability`` and then receives its first hit.
    A track is confirmed when ``p >= confirm_probability`` and ``hits >= min_hits``
    (``min_hits >= 2`` is enforced, so a one-frame artefact can never be confirmed). It stays
    confirmed while ``p >= keep_probability`` (hysteresis, so a short occlusion does not flicker
    the flag) and is deleted when not hit for more than ``coast_s`` seconds.

Velocity
    Least-squares slope of the hit positions within the last ``velocity_window_s`` seconds,
    then exponentially smoothed with ``velocity_smoothing`` (1 = no extra smoothing), clamped to
    ``max_speed_mps``. The slope over a window is far less noisy than frame differences.

Time
    Stamps going backwards (bag loop, clock reset) drop every track, count ``time_resets`` and set
    ``last_update_reset``; the detections of that call then start new tracks. Ids keep increasing
    (they are never reused within a Tracker's life, even across resets). A repeated stamp
    (``dt == 0``) is merged into the same time step: no decay; a detection matched to a track
    already hit at that stamp is absorbed (no second hit, so a repeated message cannot double
    the evidence); other tracks are updated normally; ``duplicate_stamps`` counts them.

Frame: the tracker works in whatever frame the detections are in. In a fixed frame (odometry /
TF available) static obstacles have zero velocity. In the sensor frame, the vehicle's own motion
appears as obstacle motion: velocities are relative to the vehicle and, when it turns or
accelerates, the constant-velocity prediction is wrong, so ``gate_m`` must cover that motion.
"""
import math
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from s2m_ros.config import check_fields
from s2m_ros.types import Obstacle3D

_BIG = 1e9  # cost of an inadmissible pair (finite: linear_sum_assignment rejects all-inf rows)
_P_MAX = 1.0 - 1e-9


def _logit(p):
    p = min(max(p, 1e-12), _P_MAX)
    return math.log(p / (1.0 - p))


def _sigmoid(x):
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@dataclass
class TrackerConfig:
    """Parameters of :class:`Tracker`. Defaults suit a 10 Hz LiDAR.

    With the defaults at 10 Hz a static object detected every frame is confirmed on its 3rd frame
    (p = 0.33, 0.65, 0.85; see :meth:`frames_to_confirm`).
    """

    # Largest distance (m) between a track's predicted centre and a detection to associate them.
    gate_m: float = 2.0
    # Largest plausible speed (m/s): widens the gate of single-hit tracks and clamps the velocity.
    max_speed_mps: float = 15.0
    # Weight of the mean absolute size difference (m) in the cost (0 = centre distance only).
    size_weight: float = 0.0
    # Existence probability halves every half_life_s seconds without hits.
    half_life_s: float = 0.5
    # Probability of a new track before its first hit.
    prior_probability: float = 0.1
    # Log-odds added per hit: log(P(detection | real) / P(detection | false positive)).
    hit_log_odds: float = 1.5
    # Fraction of hit_log_odds that a low-support detection (few LiDAR points) contributes.
    low_support_weight: float = 0.5
    # Confirmation needs p >= confirm_probability and hits >= min_hits.
    confirm_probability: float = 0.8
    min_hits: int = 3
    # A confirmed track stays confirmed while p >= keep_probability.
    keep_probability: float = 0.4
    # A track not hit for more than coast_s seconds is deleted.
    coast_s: float = 0.5
    # Velocity: least-squares slope of the hits within this window (s) ...
    velocity_window_s: float = 1.0
    # ... then v = v + velocity_smoothing * (slope - v) (1 = use the slope as is).
    velocity_smoothing: float = 1.0

    def __post_init__(self):
        check_fields(self, [
            ("gate_m", self.gate_m > 0, "> 0"),
            ("max_speed_mps", self.max_speed_mps >= 0, ">= 0"),
            ("size_weight", self.size_weight >= 0, ">= 0"),
            ("half_life_s", self.half_life_s > 0, "> 0"),
            ("prior_probability", 0 < self.prior_probability < 1, "in (0, 1)"),
            ("hit_log_odds", self.hit_log_odds > 0, "> 0"),
            ("low_support_weight", 0 <= self.low_support_weight <= 1, "in [0, 1]"),
            ("confirm_probability", 0 < self.confirm_probability < 1, "in (0, 1)"),
            ("min_hits", int(self.min_hits) == self.min_hits and self.min_hits >= 2,
             "an integer >= 2 (one-frame artefacts must never be confirmed)"),
            ("keep_probability", 0 < self.keep_probability <= self.confirm_probability,
             "in (0, confirm_probability]"),
            ("coast_s", self.coast_s >= 0, ">= 0"),
            ("velocity_window_s", self.velocity_window_s > 0, "> 0"),
            ("velocity_smoothing", 0 < self.velocity_smoothing <= 1, "in (0, 1]"),
        ])
        self.min_hits = int(self.min_hits)

    def frames_to_confirm(self, period_s, low_support=False):
        """Frames after which an object detected every ``period_s`` seconds is confirmed (all
        detections low-support or none); None when it never is (the decay outweighs the hits)."""
        decay = 0.5 ** (period_s / self.half_life_s)
        gain = self.hit_log_odds * (self.low_support_weight if low_support else 1.0)
        p = _sigmoid(_logit(self.prior_probability) + gain)
        for n in range(1, 1001):
            if n > 1:
                p = _sigmoid(_logit(p * decay) + gain)
            if n >= self.min_hits and p >= self.confirm_probability:
                return n
        return None


@dataclass
class _Track:
    id: int
    det: Obstacle3D  # last matched detection (geometry, scores)
    birth_ns: int
    last_hit_ns: int
    p: float
    hits: int = 1
    confirmed: bool = False
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(3))
    history: list = field(default_factory=list)  # [(stamp_ns, centre)] of hits within the window

    def predict(self, stamp_ns):
        return self.det.center + self.velocity * ((stamp_ns - self.last_hit_ns) * 1e-9)


class Tracker:
    """Gated optimal-assignment tracker with existence probabilities (see module docstring)."""

    def __init__(self, config: Optional[TrackerConfig] = None):
        self.config = config if config is not None else TrackerConfig()
        self._next_id = 1
        self._tracks: List[_Track] = []
        self._last_ns: Optional[int] = None
        self.time_resets = 0
        self.duplicate_stamps = 0
        self.invalid_detections = 0
        self.last_update_reset = False

    def reset(self):
        """Drop all tracks and forget the time; ids keep increasing (never reused)."""
        self._tracks = []
        self._last_ns = None

    def __len__(self):
        return len(self._tracks)

    def update(self, stamp_ns: int, detections: Sequence[Obstacle3D]) -> List[Obstacle3D]:
        """Advance to ``stamp_ns`` (int ns) with this time's detections; all live tracks by id."""
        cfg = self.config
        stamp_ns = int(stamp_ns)
        self.last_update_reset = False
        if self._last_ns is not None and stamp_ns < self._last_ns:
            self.reset()
            self.time_resets += 1
            self.last_update_reset = True
        duplicate = self._last_ns is not None and stamp_ns == self._last_ns
        if duplicate:
            self.duplicate_stamps += 1
        elif self._last_ns is not None:
            decay = 0.5 ** ((stamp_ns - self._last_ns) * 1e-9 / cfg.half_life_s)
            for t in self._tracks:
                t.p *= decay
        self._last_ns = stamp_ns

        dets = []
        for d in detections:
            if np.all(np.isfinite(d.center)):
                dets.append(d)
            else:
                self.invalid_detections += 1

        # tracks unseen for longer than the coasting limit are gone before they can be matched
        coast_ns = cfg.coast_s * 1e9
        self._tracks = [t for t in self._tracks if stamp_ns - t.last_hit_ns <= coast_ns]
        rows, cols = self._associate(stamp_ns, dets)
        matched = set()
        for r, c in zip(rows, cols):
            matched.add(c)
            t = self._tracks[r]
            if t.last_hit_ns == stamp_ns:
                continue  # duplicate stamp: absorbed, no second hit
            self._hit(t, stamp_ns, dets[c])
        for c, d in enumerate(dets):
            if c not in matched:
                self._tracks.append(self._birth(stamp_ns, d))

        for t in self._tracks:
            if t.confirmed:
                t.confirmed = t.p >= cfg.keep_probability
            else:
                t.confirmed = t.p >= cfg.confirm_probability and t.hits >= cfg.min_hits
        return [self._output(t, stamp_ns) for t in sorted(self._tracks, key=lambda t: t.id)]

    def _associate(self, stamp_ns, dets):
        cfg = self.config
        if not self._tracks or not dets:
            return [], []
        pred = np.stack([t.predict(stamp_ns) for t in self._tracks])  # (N, 3)
        # a single-hit track has no velocity: its gate covers any motion up to max_speed_mps
        gate = np.array([cfg.gate_m + (cfg.max_speed_mps * (stamp_ns - t.last_hit_ns) * 1e-9
                                       if t.hits < 2 else 0.0) for t in self._tracks])
        centres = np.stack([d.center for d in dets])  # (M, 3)
        dist = np.linalg.norm(pred[:, None, :] - centres[None, :, :], axis=2)
        ok = dist <= gate[:, None]
        cost = dist.copy()
        if cfg.size_weight > 0:
            sizes_t = np.stack([t.det.size for t in self._tracks])
            sizes_d = np.stack([d.size for d in dets])
            dsize = np.abs(sizes_t[:, None, :] - sizes_d[None, :, :]).mean(axis=2)
            cost = cost + cfg.size_weight * np.nan_to_num(dsize, nan=0.0)
        cost[~ok] = _BIG
        rows, cols = linear_sum_assignment(cost)
        keep = ok[rows, cols]
        return rows[keep].tolist(), cols[keep].tolist()

    def _weight(self, det):
        return self.config.low_support_weight if det.low_support else 1.0

    def _birth(self, stamp_ns, det):
        cfg = self.config
        p = _sigmoid(_logit(cfg.prior_probability) + self._weight(det) * cfg.hit_log_odds)
        t = _Track(id=self._next_id, det=det, birth_ns=stamp_ns, last_hit_ns=stamp_ns, p=p,
                   history=[(stamp_ns, det.center.copy())])
        self._next_id += 1
        return t

    def _hit(self, t, stamp_ns, det):
        cfg = self.config
        t.p = min(_sigmoid(_logit(t.p) + self._weight(det) * cfg.hit_log_odds), _P_MAX)
        t.hits += 1
        t.det = det
        t.last_hit_ns = stamp_ns
        t.history.append((stamp_ns, det.center.copy()))
        window_ns = cfg.velocity_window_s * 1e9
        t.history = [(s, c) for s, c in t.history if stamp_ns - s <= window_ns]
        if len(t.history) >= 2:
            ts = np.array([(s - stamp_ns) * 1e-9 for s, _ in t.history])
            xs = np.stack([c for _, c in t.history])
            tc = ts - ts.mean()
            denom = float(tc @ tc)
            if denom > 0:
                slope = tc @ (xs - xs.mean(axis=0)) / denom
                v = t.velocity + cfg.velocity_smoothing * (slope - t.velocity)
                speed = float(np.linalg.norm(v))
                if speed > cfg.max_speed_mps:
                    v = v * (cfg.max_speed_mps / speed)
                t.velocity = v

    def _output(self, t, stamp_ns):
        d = t.det
        shift = t.predict(stamp_ns) - d.center
        return Obstacle3D(
            id=t.id, center=d.center + shift, size=d.size.copy(), yaw=d.yaw,
            velocity=t.velocity.copy(),
            footprint=d.footprint + shift if len(d.footprint) else d.footprint.copy(),
            range=d.range, height=d.height, existence_probability=float(t.p), hits=t.hits,
            age=(stamp_ns - t.birth_ns) * 1e-9, confirmed=bool(t.confirmed), low_support=d.low_support,
            anomaly_score=d.anomaly_score, num_points=d.num_points, mask_id=d.mask_id)
