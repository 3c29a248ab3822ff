"""Evaluation support for `s2m eval`: dataset readers (ROS-free, torch-free; numpy + OpenCV)."""
from s2m_ros.eval.datasets import (  # noqa: F401
    DEFAULTS,
    LAYOUTS,
    Dataset,
    DatasetError,
    Sample,
    detect_layout,
    open_dataset,
)
