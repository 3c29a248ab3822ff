"""sensor_msgs/CameraInfo -> PinholeCamera: valid models and every rejection."""
import cv2
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
    (dict(k=[-500.0, 0.0, 320.0, 0.0, 510.0, 240.0, 0.0, 0.0, 1.0]), "focal lengths fx=-500 fy=510 must be positive"),
    (dict(k=[float("nan"), 0.0, 320.0, 0.0, 510.0, 240.0, 0.0, 0.0, 1.0]), "K contains NaN or inf at fx$"),
    (dict(k=[500.0, 0.0, float("nan"), 0.0, 510.0, 240.0, 0.0, 0.0, 1.0]), "K contains NaN or inf at cx$"),
    (dict(k=[500.0, 0.0, 320.0, 0.0, 510.0, float("-inf"), 0.0, 0.0, float("nan")]),
     r"K contains NaN or inf at cy, K\[2,2\]$"),
    (dict(distortion_model="fisheye624", d=[0.1] * 12), "not supported"),
    (dict(distortion_model="rational_polynomial", d=[0.1] * 6), "rational_polynomial needs 5, 8, 12 or 14 coefficients, got 6"),
    (dict(d=[0.1, float("inf"), 0.0, 0.0, 0.0]), r"NaN or inf at D\[1\]"),
])
def test_invalid_camera_info_is_rejected(kw, needle):
    with pytest.raises(ConversionError, match=needle) as err:
        camera_info_to_camera(_info(**kw))
    assert err.value.field == "CameraInfo"


def test_nan_cx_is_not_reported_as_a_focal_length_problem():
    with pytest.raises(ConversionError) as err:
        camera_info_to_camera(_info(k=[500.0, 0.0, float("nan"), 0.0, 510.0, 240.0, 0.0, 0.0, 1.0]))
    assert err.value.reason == "K contains NaN or inf at cx"
    assert "focal" not in str(err.value)


# every D length ROS and OpenCV accept per model (drivers pad D), and what projection receives
ACCEPTED = {"plumb_bob": (4, 5, 8, 12, 14), "rational_polynomial": (5, 8, 12, 14), "equidistant": (4,)}
USED = {"plumb_bob": 5, "rational_polynomial": 8, "equidistant": 4}
COEFFS = [-0.21, 0.05, 0.0012, -0.0007, 0.011, 0.03, -0.02, 0.004]


def _points():
    rng = np.random.default_rng(3)
    return np.column_stack([rng.uniform(-2, 2, 50), rng.uniform(-1.5, 1.5, 50), rng.uniform(2, 10, 50)])


def _opencv_projection(cam, pts):
    fn = cv2.fisheye.projectPoints if cam.distortion_model == "equidistant" else cv2.projectPoints
    ref, _ = fn(pts.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), cam.K, cam.D)
    return ref.reshape(-1, 2)


@pytest.mark.parametrize("model,count", [(m, n) for m, counts in ACCEPTED.items() for n in counts])
def test_every_accepted_count_projects_like_opencv(model, count):
    from s2m_ros.obstacles.fusion import project_points

    d = (COEFFS[:4] if model == "equidistant" else COEFFS[:min(count, USED[model])]) + [0.0] * max(
        0, count - USED[model])
    cam = camera_info_to_camera(_info(distortion_model=model, d=d))
    assert cam.D.shape == (USED[model],) and cam.warnings == []
    assert np.array_equal(cam.D_given, d)
    expected = np.zeros(USED[model])
    expected[:min(count, USED[model])] = d[:USED[model]]
    assert np.array_equal(cam.D, expected)  # short D zero-padded (k3 = 0), zero padding dropped
    pts = _points()
    uv, ok = project_points(cam, pts)
    assert ok.all()
    np.testing.assert_allclose(uv, _opencv_projection(cam, pts), rtol=0, atol=1e-6)


@pytest.mark.parametrize("model,count", [("plumb_bob", 8), ("plumb_bob", 12), ("plumb_bob", 14),
                                         ("rational_polynomial", 12), ("rational_polynomial", 14)])
def test_zero_padding_projects_exactly_like_the_unpadded_d(model, count):
    from s2m_ros.obstacles.fusion import project_points

    d = COEFFS[:USED[model]]
    plain = camera_info_to_camera(_info(distortion_model=model, d=d))
    padded = camera_info_to_camera(_info(distortion_model=model, d=d + [0.0] * (count - len(d))))
    assert np.array_equal(plain.D, padded.D) and padded.warnings == []
    pts = _points()
    assert np.array_equal(project_points(plain, pts)[0], project_points(padded, pts)[0])


def test_four_coefficient_plumb_bob_is_k3_zero():
    cam = camera_info_to_camera(_info(d=[0.1, -0.05, 0.001, 0.002]))
    assert cam.D.tolist() == [0.1, -0.05, 0.001, 0.002, 0.0]
    cam = camera_info_to_camera(_info(distortion_model="rational_polynomial", d=[0.1, -0.05, 0.001, 0.002, 0.01]))
    assert cam.D.tolist() == [0.1, -0.05, 0.001, 0.002, 0.01, 0.0, 0.0, 0.0]


@pytest.mark.parametrize("model,d,ignored", [
    ("plumb_bob", COEFFS[:5] + [0.3, 0.0, 0.0], "D[5:8] = [0.3, 0, 0]"),
    ("plumb_bob", COEFFS[:5] + [0.0] * 8 + [0.001], "D[5:14]"),
    ("rational_polynomial", COEFFS + [0.0, 0.002, 0.0, 0.0], "D[8:12] = [0, 0.002, 0, 0]"),
])
def test_non_zero_extra_coefficients_give_a_warning_and_are_ignored(model, d, ignored):
    cam = camera_info_to_camera(_info(distortion_model=model, d=d))
    assert len(cam.warnings) == 1
    assert model in cam.warnings[0] and ignored in cam.warnings[0] and "ignored" in cam.warnings[0]
    assert np.array_equal(cam.D, d[:USED[model]])


@pytest.mark.parametrize("count", [1, 2, 3, 6, 7, 9, 10, 11, 13, 15])
@pytest.mark.parametrize("model", ["plumb_bob", "rational_polynomial", "equidistant"])
def test_other_counts_are_rejected_naming_model_and_count(model, count):
    with pytest.raises(ConversionError) as err:
        camera_info_to_camera(_info(distortion_model=model, d=[0.01] * count))
    counts = {"plumb_bob": "4, 5, 8, 12 or 14", "rational_polynomial": "5, 8, 12 or 14", "equidistant": "4"}[model]
    assert err.value.reason == "%s needs %s coefficients, got %d" % (model, counts, count)


@pytest.mark.parametrize("model,count", [("rational_polynomial", 4), ("equidistant", 5), ("equidistant", 8)])
def test_counts_of_other_models_are_rejected(model, count):
    with pytest.raises(ConversionError, match="%s needs .* coefficients, got %d" % (model, count)):
        camera_info_to_camera(_info(distortion_model=model, d=[0.01] * count))


def test_empty_d_is_no_distortion_for_every_model():
    from s2m_ros.obstacles.fusion import project_points

    for model in ("plumb_bob", "rational_polynomial", "equidistant", ""):
        cam = camera_info_to_camera(_info(distortion_model=model, d=[]))
        assert cam.D.size == 0 and cam.warnings == []
        uv, ok = project_points(cam, np.array([[1.0, 0.5, 2.0]]))
        assert ok.all() and np.allclose(uv, [[500 * 0.5 + 320, 510 * 0.25 + 240]])
