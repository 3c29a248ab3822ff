"""sensor_msgs/CameraInfo -> core PinholeCamera."""
from s2m_ros.ros.conversions.errors import ConversionError
from s2m_ros.obstacles.camera import PinholeCamera


def camera_info_to_camera(msg):
    """Validate a CameraInfo and return its PinholeCamera; ConversionError names what is wrong.

    D may have any length ROS and OpenCV accept for the model (drivers pad it); the camera's ``D`` is
    normalised to the model's count, and ``camera.warnings`` lists the non-zero padding that was ignored
    (the caller logs and counts it: the frame is still usable).
    """
    if len(msg.k) != 9:
        raise ConversionError("CameraInfo.k", list(msg.k), "needs 9 values")
    try:
        return PinholeCamera(width=int(msg.width), height=int(msg.height), K=list(msg.k), D=list(msg.d),
                             distortion_model=str(msg.distortion_model), frame_id=str(msg.header.frame_id))
    except ValueError as exc:
        raise ConversionError("CameraInfo", "%dx%d %s, %d coefficients" % (
            msg.width, msg.height, msg.distortion_model, len(msg.d)), str(exc)) from None
