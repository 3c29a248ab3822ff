"""The messages the two nodes publish, built in one place (the nodes and `s2m replay` share them).

Relative topic names are the nodes' (``ood/masks``, ...); a caller resolves them (the nodes publish
on their namespace, replay writes them under ``/``).
"""
import numpy as np

from s2m_ros.ros.conversions.image import numpy_to_image
from s2m_ros.ros.conversions.s2m_msgs import frame_masks_to_msg, make_header, obstacle_frame_to_msg
from s2m_ros.segmentation.overlay import draw_overlay

MASKS = "ood/masks"
INSTANCE_IMAGE = "ood/instance_image"
SCORE_MAP = "ood/score_map"
OVERLAY = "ood/overlay"
OBSTACLES = "obstacles"
MARKERS = "obstacle_markers"
DIAGNOSTICS = "/diagnostics"

OUTPUT_TYPES = {
    MASKS: "s2m_ros/msg/OodMaskArray",
    INSTANCE_IMAGE: "sensor_msgs/msg/Image",
    SCORE_MAP: "sensor_msgs/msg/Image",
    OVERLAY: "sensor_msgs/msg/Image",
    OBSTACLES: "s2m_ros/msg/ObstacleArray",
    MARKERS: "visualization_msgs/msg/MarkerArray",
    DIAGNOSTICS: "diagnostic_msgs/msg/DiagnosticArray",
}


def camera_messages(result, bgr, frame_masks, score_map=True, overlay=True, header=None):
    """{relative topic: message} for one processed camera frame.

    ``result``: the PipelineResult; ``frame_masks``: ``result.frame_masks(stamp, frame_id)`` (stage
    timings included). The score map is the refined map when refinement ran, else the scorer's map
    (32FC1, at the scorer's resolution: it is for audit, not for display). ``header``: the source
    image's std_msgs/Header, copied into every output as it is (a stamp with nanosec >= 1e9 or at the
    end of the int32 range is the camera's to fix, not ours to renormalise); None builds it from
    ``frame_masks``.
    """
    if header is None:
        header = make_header(frame_masks.stamp_ns, frame_masks.frame_id)
    out = {MASKS: frame_masks_to_msg(frame_masks, header=header),
           INSTANCE_IMAGE: numpy_to_image(frame_masks.instance_image(), "mono8", header=header)}
    if score_map:
        score = result.refined if result.refined is not None else result.score_map
        out[SCORE_MAP] = numpy_to_image(np.ascontiguousarray(score, np.float32), "32FC1", header=header)
    if overlay:
        out[OVERLAY] = numpy_to_image(draw_overlay(bgr, result.instances, result.score_map, prompts=result.prompts),
                                      "bgr8", header=header)
    return out


def obstacle_messages(step, marker_builder, include_tentative=False, stamp=None):
    """{relative topic: message} for one tracked obstacle step (ObstacleStep).

    ``obstacles`` carries the confirmed tracks only unless ``include_tentative`` (one-frame
    artefacts must never reach the planner); the markers show every track (tentative in yellow).
    ``stamp``: the source cloud's builtin_interfaces/Time, copied into the headers as it is.
    """
    return {OBSTACLES: obstacle_frame_to_msg(step.frame(confirmed_only=not include_tentative), stamp=stamp),
            MARKERS: marker_builder.build(step.frame(), stamp=stamp)}
