"""sensor_msgs/CameraInfo -> core PinholeCamera."""
from s2m_ros.ros.conversions.errors import ConversionError
from s2m_ros.obstacles.camera import PinholeCamera


def camera_info_to_camera(msg):
    """Validate a CameraInfo and return its PinholeCamera; ConversionError names what is wrong."""
    if len(msg.k) != 9:
        raise ConversionError("CameraInfo.k", list(msg.k), "needs 9 values")
    try:
        return PinholeCamera(width=int(msg.width), height=int(msg.height), K=list(msg.k), D=list(msg.d),
                             distortion_model=str(msg.distortion_model), frame_id=str(msg.header.frame_id))
    except ValueError as exc:
        raise ConversionError("CameraInfo", "%dx%d %s" % (msg.width, msg.height, msg.distortion_model),
                              str(exc)) from None
