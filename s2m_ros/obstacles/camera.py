"""Pinhole camera model with lens distortion (ROS-free), as described by sensor_msgs/CameraInfo."""
from dataclasses import dataclass

import numpy as np

# distortion model -> number of coefficients (ROS camera_calibration_parsers conventions)
DISTORTION_MODELS = {"plumb_bob": 5, "rational_polynomial": 8, "equidistant": 4}


@dataclass
class PinholeCamera:
    width: int
    height: int
    K: np.ndarray  # (3, 3) intrinsics
    D: np.ndarray  # distortion coefficients (model-specific length)
    distortion_model: str = "plumb_bob"
    frame_id: str = ""

    def __post_init__(self):
        self.K = np.asarray(self.K, dtype=float).reshape(3, 3)
        self.D = np.asarray(self.D, dtype=float).reshape(-1)
        problem = self.problem()
        if problem:
            raise ValueError(problem)

    def problem(self):
        """None when the model is usable, else what is wrong."""
        if self.width <= 0 or self.height <= 0:
            return "image size %dx%d has no pixels" % (self.width, self.height)
        if not np.all(np.isfinite(self.K)) or self.K[0, 0] <= 0 or self.K[1, 1] <= 0:
            return "focal lengths fx=%g fy=%g must be positive and finite" % (self.K[0, 0], self.K[1, 1])
        if self.distortion_model not in DISTORTION_MODELS:
            if self.D.size and np.any(self.D != 0):
                return "distortion model %r is not supported (supported: %s)" % (
                    self.distortion_model, ", ".join(DISTORTION_MODELS))
        elif self.D.size and self.D.size < DISTORTION_MODELS[self.distortion_model]:
            return "%s needs %d coefficients, got %d" % (
                self.distortion_model, DISTORTION_MODELS[self.distortion_model], self.D.size)
        if not np.all(np.isfinite(self.D)):
            return "distortion coefficients contain NaN or inf"
        return None
