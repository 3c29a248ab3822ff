"""sensor_msgs/CameraInfo -> PinholeCamera: valid models and every rejection."""
import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo

from s2m_ros.ros.conversions import ConversionError
from s2m_ros.ros.conversions.camera_info import camera_info_to_camera


def _info(**kw):
    msg = CameraInfo(width=640, height=480, distortion_model="plumb_bob")
    msg.header.frame_id = "cam_optical"
    msg.k = [500.0, 0.0, 320.0, 0.0, 510.0, 240.0, 0.0, 0.0, 1.0]
    msg.d = [0.1, -0.05, 0.001, 0.002, 0.0]
    for key, value in kw.items():
        setattr(msg, key, value)
    return msg


def test_plumb_bob_and_rational_polynomial():
    cam = camera_info_to_camera(_info())
    assert (cam.width, cam.height, cam.frame_id, cam.distortion_model) == (640, 480, "cam_optical", "plumb_bob")
    assert cam.K[0, 0] == 500.0 and cam.K[1, 1] == 510.0 and cam.K[0, 2] == 320.0
    assert np.allclose(cam.D, [0.1, -0.05, 0.001, 0.002, 0.0])
    cam = camera_info_to_camera(_info(distortion_model="rational_polynomial", d=[0.1] * 8))
    assert cam.D.size == 8
    # no distortion given at all is a valid ideal pinhole
    assert camera_info_to_camera(_info(distortion_model="", d=[])).D.size == 0


@pytest.mark.parametrize("kw,needle", [
    (dict(width=0), "no pixels"),
    (dict(k=[0.0, 0.0, 320.0, 0.0, 510.0, 240.0, 0.0, 0.0, 1.0]), "focal"),
    (dict(k=[float("nan"), 0.0, 320.0, 0.0, 510.0, 240.0, 0.0, 0.0, 1.0]), "focal"),
    (dict(distortion_model="fisheye624", d=[0.1] * 12), "not supported"),
    (dict(distortion_model="rational_polynomial", d=[0.1] * 5), "needs 8"),
    (dict(d=[0.1, float("inf"), 0.0, 0.0, 0.0]), "NaN or inf"),
])
def test_invalid_camera_info_is_rejected(kw, needle):
    with pytest.raises(ConversionError, match=needle) as err:
        camera_info_to_camera(_info(**kw))
    assert err.value.field == "CameraInfo"
