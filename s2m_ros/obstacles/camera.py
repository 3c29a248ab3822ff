"""Pinhole camera model with lens distortion (ROS-free), as described by sensor_msgs/CameraInfo."""
from dataclasses import dataclass, field
from typing import List

import numpy as np

# distortion model -> number of coefficients the projection uses (ROS camera_calibration_parsers conventions)
DISTORTION_MODELS = {"plumb_bob": 5, "rational_polynomial": 8, "equidistant": 4}
# distortion model -> lengths of D accepted on input. Drivers pad D to the lengths OpenCV knows (4, 5, 8,
# 12, 14): a shorter D is zero-padded (4 = k1 k2 p1 p2 with k3 = 0; rational_polynomial 5 = k1 k2 p1 p2 k3),
# a longer one cut to the model's count (its zero extras dropped silently, non-zero ones with a warning).
ACCEPTED_COUNTS = {"plumb_bob": (4, 5, 8, 12, 14), "rational_polynomial": (5, 8, 12, 14), "equidistant": (4,)}
# names of the K entries, for messages
_K_NAMES = (("fx", "skew", "cx"), ("K[1,0]", "fy", "cy"), ("K[2,0]", "K[2,1]", "K[2,2]"))


@dataclass
class PinholeCamera:
    """The camera of a CameraInfo, validated (ValueError names what is wrong).

    After construction ``D`` holds exactly the model's number of coefficients (``DISTORTION_MODELS``; an
    array OpenCV accepts for the model), or nothing for an undistorted camera; ``D_given`` keeps the
    coefficients as given. ``warnings`` lists what was accepted but ignored (non-zero coefficients
    beyond the model's count), one line each, for the caller to log and count.
    """

    width: int
    height: int
    K: np.ndarray  # (3, 3) intrinsics
    D: np.ndarray  # distortion coefficients (model-specific length)
    distortion_model: str = "plumb_bob"
    frame_id: str = ""
    D_given: np.ndarray = field(init=False, repr=False, compare=False)
    warnings: List[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        self.K = np.asarray(self.K, dtype=float).reshape(3, 3)
        self.D_given = np.asarray(self.D, dtype=float).reshape(-1)
        self.D = self.D_given
        self.warnings = []
        problem = self.problem()
        if problem:
            raise ValueError(problem)
        self.D, self.warnings = _normalised(self.D_given, self.distortion_model)

    def problem(self):
        """None when the model is usable, else what is wrong."""
        if self.width <= 0 or self.height <= 0:
            return "image size %dx%d has no pixels" % (self.width, self.height)
        bad = [_K_NAMES[r][c] for r, c in zip(*np.nonzero(~np.isfinite(self.K)))]
        if bad:
            return "K contains NaN or inf at %s" % ", ".join(bad)
        if self.K[0, 0] <= 0 or self.K[1, 1] <= 0:
            return "focal lengths fx=%g fy=%g must be positive" % (self.K[0, 0], self.K[1, 1])
        D = np.asarray(self.D, dtype=float).reshape(-1)
        if self.distortion_model not in DISTORTION_MODELS:
            if D.size and np.any(D != 0):
                return "distortion model %r is not supported (supported: %s)" % (
                    self.distortion_model, ", ".join(DISTORTION_MODELS))
        elif D.size and D.size not in ACCEPTED_COUNTS[self.distortion_model]:
            counts = ACCEPTED_COUNTS[self.distortion_model]
            return "%s needs %s coefficients, got %d" % (self.distortion_model, _either(counts), D.size)
        bad = np.flatnonzero(~np.isfinite(D))
        if bad.size:
            return "distortion coefficients contain NaN or inf at %s" % ", ".join("D[%d]" % i for i in bad)
        return None


def _normalised(D, model):
    """(D with exactly the model's count, or empty; warnings) for a D that passed ``problem``."""
    if D.size == 0 or model not in DISTORTION_MODELS or not np.any(D != 0):
        # no distortion: an empty D is what OpenCV and the projection take for "none"
        return (np.zeros(DISTORTION_MODELS[model]) if D.size and model in DISTORTION_MODELS else np.zeros(0)), []
    count = DISTORTION_MODELS[model]
    out = np.zeros(count)
    out[:min(count, D.size)] = D[:count]
    extra = D[count:]
    warnings = []
    if np.any(extra != 0):
        warnings.append("%s uses %d distortion coefficients; the non-zero extra coefficients D[%d:%d] = [%s] "
                        "are ignored" % (model, count, count, D.size, ", ".join("%g" % v for v in extra)))
    return out, warnings


def _either(counts):
    counts = [str(c) for c in counts]
    return counts[0] if len(counts) == 1 else "%s or %s" % (", ".join(counts[:-1]), counts[-1])
