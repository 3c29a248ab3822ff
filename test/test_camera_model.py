"""The ROS-free camera model (s2m_ros.obstacles.camera): every D length drivers publish is normalised to one
the projection and OpenCV accept, so fusing a frame never fails on a padded D (issue 19)."""
import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fusion_scene as fs
from s2m_ros.obstacles import fusion
from s2m_ros.obstacles.camera import ACCEPTED_COUNTS, DISTORTION_MODELS, PinholeCamera
from s2m_ros.obstacles.fusion import fuse, project_points
from s2m_ros.obstacles.geometry import transform_points
from s2m_ros.types import InstanceMask

BOX = ((8.0, 0.5), (1.5, 1.2, 1.0))  # centre x, y and size of one box in front of the camera
COEFFS = {"plumb_bob": [-0.05, 0.01, 0.0004, -0.0003, 0.002],
          "rational_polynomial": [-0.05, 0.01, 0.0004, -0.0003, 0.002, 0.01, -0.004, 0.001],
          "equidistant": [0.02, -0.004, 0.001, -0.0002]}


def padded(model, count, extra=0.0):
    used = DISTORTION_MODELS[model]
    return COEFFS[model][:count] + [extra] * max(0, count - used)


def fuse_box(camera):
    """Fuse the box's exact mask (its projection through ``camera``) with a small ground + box cloud."""
    uv, ok = project_points(camera, transform_points(fs.T_CL, fs.box_points(*BOX)))
    img = np.zeros((fs.H, fs.W), np.uint8)
    cv2.fillConvexPoly(img, cv2.convexHull(np.round(uv[ok]).astype(np.int32)), 1)
    masks = [InstanceMask.from_full_mask(1, img.astype(bool), anomaly_score=0.9)]
    return fuse(fs.frame_masks(0, masks), fs.cloud([BOX]), camera, fs.T_CL)


@pytest.mark.parametrize("model,count", [(m, n) for m, counts in ACCEPTED_COUNTS.items() for n in counts])
def test_fusing_with_every_accepted_count_works(model, count):
    cam = PinholeCamera(fs.W, fs.H, fs.K, padded(model, count), model, "camera")
    assert cam.D.size == DISTORTION_MODELS[model]
    res = fuse_box(cam)
    assert res.reports[0].status == fusion.OK
    assert np.linalg.norm(res.obstacles[0].center[:2] - BOX[0]) < 0.2


@pytest.mark.parametrize("model,count", [("plumb_bob", 8), ("plumb_bob", 14), ("rational_polynomial", 12),
                                         ("rational_polynomial", 14)])
def test_non_zero_padding_is_a_warning_and_fusion_works(model, count):
    cam = PinholeCamera(fs.W, fs.H, fs.K, padded(model, count, extra=0.05), model, "camera")
    assert len(cam.warnings) == 1 and "ignored" in cam.warnings[0]
    assert np.array_equal(cam.D, COEFFS[model]) and cam.D_given.size == count
    assert fuse_box(cam).reports[0].status == fusion.OK


@pytest.mark.parametrize("model,count", [("plumb_bob", 6), ("plumb_bob", 9), ("rational_polynomial", 9),
                                         ("rational_polynomial", 7), ("equidistant", 5)])
def test_counts_opencv_would_assert_on_are_refused_at_construction(model, count):
    # these used to construct, then the next fused frame died in cv2.undistortPoints
    with pytest.raises(ValueError, match="%s needs .* coefficients, got %d" % (model, count)):
        PinholeCamera(fs.W, fs.H, fs.K, [0.01] * count, model, "camera")


def test_normalised_camera_is_stable_and_keeps_what_was_given():
    cam = PinholeCamera(fs.W, fs.H, fs.K, [0.1, -0.02, 0.001, 0.0], "plumb_bob")
    assert cam.D.tolist() == [0.1, -0.02, 0.001, 0.0, 0.0] and cam.D_given.tolist() == [0.1, -0.02, 0.001, 0.0]
    again = PinholeCamera(cam.width, cam.height, cam.K, cam.D, cam.distortion_model)
    assert np.array_equal(again.D, cam.D) and again.problem() is None
    zeros = PinholeCamera(fs.W, fs.H, fs.K, np.zeros(14), "plumb_bob")
    assert zeros.D.tolist() == [0.0] * 5 and zeros.warnings == []
    unknown = PinholeCamera(fs.W, fs.H, fs.K, np.zeros(12), "fisheye624")  # unknown model, no distortion
    assert unknown.D.size == 0


@settings(max_examples=60, deadline=None)
@given(model=st.sampled_from(sorted(ACCEPTED_COUNTS)), data=st.data())
def test_property_any_valid_d_projects_and_undistorts(model, data):
    count = data.draw(st.sampled_from(ACCEPTED_COUNTS[model]))
    D = data.draw(st.lists(st.floats(-0.3, 0.3), min_size=count, max_size=count))
    cam = PinholeCamera(fs.W, fs.H, fs.K, D, model, "camera")
    pts = np.array([[0.0, 0.0, 5.0], [1.0, -0.5, 4.0], [-2.0, 1.0, 8.0]])
    uv, ok = project_points(cam, pts)
    assert uv.shape == (3, 2) and ok.dtype == bool
    assert fusion._undistort_pixels(cam, np.array([[0.0, 0.0], [320.0, 180.0]])).shape == (2, 2)
