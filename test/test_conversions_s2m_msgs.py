"""s2m_ros messages <-> core dataclasses, time helpers, and the core mask types."""
import math

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Quaternion
from hypothesis import given, settings
from hypothesis import strategies as st
from rclpy.serialization import deserialize_message, serialize_message

from s2m_ros.ros.conversions.errors import ConversionError
from s2m_ros.ros.conversions.image import numpy_to_image
from s2m_ros.ros.conversions.s2m_msgs import (
    frame_masks_to_msg,
    make_header,
    msg_to_frame_masks,
    msg_to_obstacle_frame,
    ns_to_stamp,
    obstacle_frame_to_msg,
    stamp_to_ns,
)
from s2m_ros.types import FrameMasks, InstanceMask, Obstacle3D, ObstacleFrame, box_from_mask
from s2m_ros.msg import ObstacleArray, OodMaskArray

NS = 1_000_000_000
MIN_NS = -(2**31) * NS
MAX_NS = 2**31 * NS - 1


# --------------------------------------------------------------------------- time


@pytest.mark.parametrize("ns,sec,nanosec", [
    (0, 0, 0),
    (1, 0, 1),
    (999_999_999, 0, 999_999_999),
    (1_000_000_000, 1, 0),
    (1_500_000_000, 1, 500_000_000),
    (-1, -1, 999_999_999),
    (-1_000_000_000, -1, 0),
    (-1_500_000_000, -2, 500_000_000),
    (1_700_000_000_123_456_789, 1_700_000_000, 123_456_789),
    (MAX_NS, 2**31 - 1, 999_999_999),
    (MIN_NS, -(2**31), 0),
])
def test_ns_to_stamp_examples(ns, sec, nanosec):
    stamp = ns_to_stamp(ns)
    assert isinstance(stamp, Time)
    assert (stamp.sec, stamp.nanosec) == (sec, nanosec)
    assert stamp_to_ns(stamp) == ns
    assert stamp_to_ns(Time(sec=sec, nanosec=nanosec)) == ns
    assert ns_to_stamp(np.int64(ns) if abs(ns) < 2**63 else ns) == stamp  # numpy ints accepted


@pytest.mark.parametrize("ns", [MAX_NS + 1, MIN_NS - 1, 2**63])
def test_ns_to_stamp_out_of_range(ns):
    with pytest.raises(ConversionError) as err:
        ns_to_stamp(ns)
    assert err.value.field == "stamp"
    assert err.value.value == ns


@settings(max_examples=60, deadline=None)
@given(ns=st.one_of(st.integers(MIN_NS, MAX_NS), st.integers(-10 * NS, 10 * NS)))
def test_stamp_round_trip_property(ns):
    stamp = ns_to_stamp(ns)
    assert 0 <= stamp.nanosec < NS
    assert -(2**31) <= stamp.sec < 2**31
    assert stamp_to_ns(stamp) == ns
    assert stamp_to_ns(deserialize_message(serialize_message(stamp), Time)) == ns


def test_make_header():
    header = make_header(-1_500_000_000, "base_link")
    assert (header.stamp.sec, header.stamp.nanosec, header.frame_id) == (-2, 500_000_000, "base_link")


# --------------------------------------------------------------------------- core types


def blob(height, width, cx, cy, r):
    y, x = np.mgrid[0:height, 0:width]
    return (x - cx) ** 2 + (y - cy) ** 2 <= r * r


def test_box_from_mask():
    assert box_from_mask(np.zeros((5, 7), bool)) is None
    m = np.zeros((5, 7), bool)
    m[1, 2] = m[3, 5] = True
    assert box_from_mask(m) == (2, 1, 4, 3)
    m = np.zeros((5, 7), bool)
    m[4, 6] = True
    assert box_from_mask(m) == (6, 4, 1, 1)
    assert box_from_mask(np.ones((5, 7), bool)) == (0, 0, 7, 5)


def test_instance_mask_from_full_mask_and_back():
    full = blob(40, 60, cx=20, cy=10, r=5)
    full[30, 55] = True
    m = InstanceMask.from_full_mask(3, full, anomaly_score=0.5, quality=0.25, prompt_box=(1, 2, 3, 4))
    assert m.roi == (15, 5, 41, 26)
    assert m.mask.shape == (26, 41) and m.mask.dtype == bool
    assert m.area == int(full.sum())
    assert (m.id, m.anomaly_score, m.quality, m.prompt_box) == (3, 0.5, 0.25, (1, 2, 3, 4))
    assert math.isnan(m.contrast)
    np.testing.assert_array_equal(m.full_mask(60, 40), full)
    # the crop is a copy: the caller's array is not aliased
    full[:] = False
    assert m.area > 0
    with pytest.raises(ValueError):
        InstanceMask.from_full_mask(1, np.zeros((4, 4)), 0.0)


def test_instance_mask_validation_and_clipping():
    with pytest.raises(ValueError):
        InstanceMask(id=1, roi=(0, 0, 3, 2), mask=np.ones((3, 2), bool), anomaly_score=0.0)
    m = InstanceMask(id=1, roi=(8, -2, 4, 4), mask=np.ones((4, 4), bool), anomaly_score=0.0)
    full = m.full_mask(10, 5)
    expected = np.zeros((5, 10), bool)
    expected[0:2, 8:10] = True
    np.testing.assert_array_equal(full, expected)
    outside = InstanceMask(id=1, roi=(20, 20, 2, 2), mask=np.ones((2, 2), bool), anomaly_score=0.0)
    assert not outside.full_mask(10, 5).any()


@settings(max_examples=60, deadline=None)
@given(height=st.integers(1, 30), width=st.integers(1, 30), density=st.floats(0.01, 0.9),
       seed=st.integers(0, 2**32 - 1))
def test_crop_then_paste_property(height, width, density, seed):
    rng = np.random.default_rng(seed)
    full = rng.random((height, width)) < density
    full[rng.integers(height), rng.integers(width)] = True  # never empty
    m = InstanceMask.from_full_mask(1, full, anomaly_score=1.0)
    x, y, w, h = m.roi
    assert m.roi == box_from_mask(full)
    # tight: every border row/column of the crop holds a True pixel
    assert m.mask[0].any() and m.mask[-1].any() and m.mask[:, 0].any() and m.mask[:, -1].any()
    assert m.area == int(full.sum())
    np.testing.assert_array_equal(m.full_mask(width, height), full)


def test_instance_image_later_masks_on_top():
    a = np.zeros((6, 8), bool)
    a[1:4, 1:5] = True
    b = np.zeros((6, 8), bool)
    b[2:6, 3:7] = True
    frame = FrameMasks(stamp_ns=0, frame_id="cam", width=8, height=6,
                       masks=[InstanceMask.from_full_mask(1, a, 0.0), InstanceMask.from_full_mask(2, b, 0.0)])
    img = frame.instance_image()
    assert img.dtype == np.uint8 and img.shape == (6, 8)
    expected = np.zeros((6, 8), np.uint8)
    expected[a] = 1
    expected[b] = 2
    np.testing.assert_array_equal(img, expected)
    assert img[1, 1] == 1 and img[2, 3] == 2 and img[0, 0] == 0
    empty = FrameMasks(stamp_ns=0, frame_id="cam", width=3, height=2)
    np.testing.assert_array_equal(empty.instance_image(), np.zeros((2, 3), np.uint8))
    too_many = FrameMasks(stamp_ns=0, frame_id="cam", width=3, height=2,
                          masks=[InstanceMask(id=i, roi=(0, 0, 1, 1), mask=[[True]], anomaly_score=0.0)
                                 for i in range(256)])
    with pytest.raises(ValueError):
        too_many.instance_image()


# --------------------------------------------------------------------------- FrameMasks <-> OodMaskArray


def sample_frame():
    width, height = 64, 48
    full1 = blob(height, width, 10, 12, 6)
    full2 = blob(height, width, 40, 30, 9) & ~blob(height, width, 40, 30, 3)  # ring with a hole
    full3 = np.zeros((height, width), bool)
    full3[47, 63] = True  # single pixel in the last corner
    masks = [
        InstanceMask.from_full_mask(1, full1, anomaly_score=0.75, contrast=0.125, quality=0.5,
                                    prompt_box=(3, 5, 15, 15)),
        InstanceMask.from_full_mask(2, full2, anomaly_score=-1.5, prompt_box=(30, 20, 21, 21)),  # NaN contrast/quality
        InstanceMask.from_full_mask(7, full3, anomaly_score=3.0, contrast=float("nan"), quality=1.0),
    ]
    return FrameMasks(stamp_ns=1_700_000_000_123_456_789, frame_id="camera_front_optical", width=width,
                      height=height, masks=masks, scorer="espnet/msp", segmenter="mobilesam",
                      stage_ms={"score": 12.5, "segment": 3.25, "publish": 0.5, "decode": 1.0})


def assert_float_same(a, b):
    assert (math.isnan(a) and math.isnan(b)) or a == b, (a, b)


def assert_frames_equal(out, frame):
    assert out.stamp_ns == frame.stamp_ns
    assert out.frame_id == frame.frame_id
    assert (out.width, out.height) == (frame.width, frame.height)
    assert (out.scorer, out.segmenter) == (frame.scorer, frame.segmenter)
    assert list(out.stage_ms.items()) == list(frame.stage_ms.items())  # order kept
    assert len(out.masks) == len(frame.masks)
    for got, want in zip(out.masks, frame.masks):
        assert got.id == want.id
        assert got.roi == want.roi and isinstance(got.roi[0], int)
        assert got.prompt_box == want.prompt_box
        assert got.mask.dtype == bool
        np.testing.assert_array_equal(got.mask, want.mask)
        assert_float_same(got.anomaly_score, want.anomaly_score)
        assert_float_same(got.contrast, want.contrast)
        assert_float_same(got.quality, want.quality)


def test_frame_masks_message_contents():
    frame = sample_frame()
    msg = frame_masks_to_msg(frame)
    assert msg.header.stamp.sec == 1_700_000_000 and msg.header.stamp.nanosec == 123_456_789
    assert msg.header.frame_id == "camera_front_optical"
    assert (msg.image_width, msg.image_height) == (64, 48)
    assert (msg.scorer, msg.segmenter) == ("espnet/msp", "mobilesam")
    assert list(msg.stage_names) == ["score", "segment", "publish", "decode"]
    assert list(msg.stage_latencies_ms) == [12.5, 3.25, 0.5, 1.0]
    for m, src in zip(msg.masks, frame.masks):
        x, y, w, h = src.roi
        assert (m.roi.x_offset, m.roi.y_offset, m.roi.width, m.roi.height) == (x, y, w, h)
        assert m.area == src.area
        assert m.id == src.id
        assert m.mask.encoding == "mono8"
        assert (m.mask.width, m.mask.height, m.mask.step) == (w, h, w)
        assert m.mask.header == msg.header
        pixels = np.frombuffer(bytes(m.mask.data), np.uint8).reshape(h, w)
        assert set(np.unique(pixels)) <= {0, 255}
        np.testing.assert_array_equal(pixels, src.mask.astype(np.uint8) * 255)
    assert msg.masks[2].roi.width == 1 and msg.masks[2].area == 1
    assert math.isnan(msg.masks[1].quality) and math.isnan(msg.masks[1].contrast)
    p = msg.masks[0].prompt_box
    assert (p.x_offset, p.y_offset, p.width, p.height) == (3, 5, 15, 15)


def test_frame_masks_round_trip():
    frame = sample_frame()
    assert_frames_equal(msg_to_frame_masks(frame_masks_to_msg(frame)), frame)


def test_frame_masks_round_trip_through_serialization():
    frame = sample_frame()  # all floats are float32-representable, so the wire keeps them exactly
    wire = deserialize_message(serialize_message(frame_masks_to_msg(frame)), OodMaskArray)
    out = msg_to_frame_masks(wire)
    assert_frames_equal(out, frame)
    np.testing.assert_array_equal(out.instance_image(), frame.instance_image())


def test_empty_frame_round_trip():
    frame = FrameMasks(stamp_ns=-5, frame_id="cam", width=640, height=480)
    msg = frame_masks_to_msg(frame)
    assert list(msg.masks) == [] and list(msg.stage_names) == [] and list(msg.stage_latencies_ms) == []
    out = msg_to_frame_masks(deserialize_message(serialize_message(msg), OodMaskArray))
    assert out.masks == [] and out.stage_ms == {}
    assert (out.stamp_ns, out.frame_id, out.width, out.height) == (-5, "cam", 640, 480)


def test_zero_area_roi_round_trip():
    frame = FrameMasks(stamp_ns=1, frame_id="cam", width=10, height=10,
                       masks=[InstanceMask(id=4, roi=(10, 3, 0, 2), mask=np.zeros((2, 0), bool), anomaly_score=0.0)])
    msg = frame_masks_to_msg(frame)
    assert msg.masks[0].mask.encoding == "mono8" and len(msg.masks[0].mask.data) == 0
    out = msg_to_frame_masks(msg)
    assert out.masks[0].roi == (10, 3, 0, 2) and out.masks[0].mask.shape == (2, 0)


@pytest.mark.parametrize("roi", [(60, 0, 5, 3), (0, 46, 2, 3), (0, 0, 65, 1)])
def test_frame_masks_roi_outside_image(roi):
    x, y, w, h = roi
    frame = FrameMasks(stamp_ns=0, frame_id="cam", width=64, height=48,
                       masks=[InstanceMask(id=1, roi=roi, mask=np.ones((h, w), bool), anomaly_score=0.0)])
    with pytest.raises(ConversionError) as err:
        frame_masks_to_msg(frame)
    assert err.value.field == "InstanceMask.roi"
    assert err.value.value == roi


def test_frame_masks_negative_roi():
    frame = FrameMasks(stamp_ns=0, frame_id="cam", width=64, height=48,
                       masks=[InstanceMask(id=1, roi=(-1, 0, 2, 2), mask=np.ones((2, 2), bool), anomaly_score=0.0)])
    with pytest.raises(ConversionError):
        frame_masks_to_msg(frame)


def bad_message():
    return frame_masks_to_msg(sample_frame())


def test_message_mask_of_wrong_size():
    msg = bad_message()
    m = msg.masks[1]
    m.mask = numpy_to_image(np.zeros((m.roi.height, m.roi.width + 1), np.uint8), "mono8")
    with pytest.raises(ConversionError) as err:
        msg_to_frame_masks(msg)
    assert err.value.field == "OodMaskArray.masks[1].mask"
    # transposed: same number of pixels, wrong shape
    frame = FrameMasks(stamp_ns=0, frame_id="cam", width=20, height=10,
                       masks=[InstanceMask(id=1, roi=(2, 3, 5, 3), mask=np.ones((3, 5), bool), anomaly_score=0.0)])
    msg = frame_masks_to_msg(frame)
    msg.masks[0].mask = numpy_to_image(np.full((5, 3), 255, np.uint8), "mono8")
    with pytest.raises(ConversionError) as err:
        msg_to_frame_masks(msg)
    assert err.value.field == "OodMaskArray.masks[0].mask"
    assert err.value.value == "3x5"


@pytest.mark.parametrize("encoding,dtype,channels", [("rgb8", np.uint8, 3), ("mono16", np.uint16, 1),
                                                     ("32FC1", np.float32, 1)])
def test_message_mask_of_wrong_encoding(encoding, dtype, channels):
    msg = bad_message()
    m = msg.masks[2]
    shape = (m.roi.height, m.roi.width) + ((channels,) if channels > 1 else ())
    m.mask = numpy_to_image(np.ones(shape, dtype), encoding)
    with pytest.raises(ConversionError) as err:
        msg_to_frame_masks(msg)
    assert err.value.field == "OodMaskArray.masks[2].mask.encoding"
    assert err.value.value == encoding


def test_message_mask_8uc1_any_nonzero_is_object():
    msg = bad_message()
    m = msg.masks[2]  # 1x1
    m.mask = numpy_to_image(np.array([[1]], np.uint8), "8UC1")
    assert msg_to_frame_masks(msg).masks[2].mask.tolist() == [[True]]


def test_message_mask_with_broken_data():
    msg = bad_message()
    msg.masks[0].mask.data = bytes(len(msg.masks[0].mask.data) - 1)
    with pytest.raises(ConversionError) as err:
        msg_to_frame_masks(msg)
    assert err.value.field == "OodMaskArray.masks[0].mask"  # which mask, and the inner reason:
    assert "Image.data" in str(err.value)


def test_message_roi_outside_image():
    msg = bad_message()
    msg.image_width = 63  # mask 3 ends at column 64
    with pytest.raises(ConversionError) as err:
        msg_to_frame_masks(msg)
    assert err.value.field == "OodMaskArray.masks[2].roi"
    assert err.value.value == (63, 47, 1, 1)


@pytest.mark.parametrize("names,latencies", [(["a", "b"], [1.0]), (["a"], [1.0, 2.0]), ([], [3.0])])
def test_message_stage_length_mismatch(names, latencies):
    msg = bad_message()
    msg.stage_names = names
    msg.stage_latencies_ms = latencies
    with pytest.raises(ConversionError) as err:
        msg_to_frame_masks(msg)
    assert err.value.field == "OodMaskArray.stage_latencies_ms"
    assert err.value.value == len(latencies)


# --------------------------------------------------------------------------- ObstacleFrame <-> ObstacleArray


YAWS = [0.0, 0.25, -0.25, 1.5, -1.5, math.pi / 2, -math.pi / 2, 3.0, -3.0, math.pi - 1e-9, -math.pi + 1e-9,
        math.pi]


def sample_obstacles():
    obstacles = []
    for i, yaw in enumerate(YAWS):
        obstacles.append(Obstacle3D(
            id=2**40 + i, center=(1.5 + i, -2.25, 0.5), size=(4.0, 1.75, 1.5), yaw=yaw,
            velocity=(0.5, -0.25, 0.0),
            footprint=[(0.0, 0.0, 0.0), (1.0, 0.0, 0.0), (1.0, 2.5, 0.0), (0.0, 2.5, -0.125)][: i % 5],
            range=12.5 + i, height=1.25, existence_probability=0.75, hits=i * 3, age=0.5 * i,
            confirmed=bool(i % 2), low_support=bool(i % 3 == 0), anomaly_score=float("nan") if i == 2 else 2.5,
            num_points=100 + i, mask_id=i))
    return ObstacleFrame(stamp_ns=1_700_000_001_000_000_001, frame_id="odom", obstacles=obstacles)


def assert_obstacles_equal(out, frame):
    assert out.stamp_ns == frame.stamp_ns and out.frame_id == frame.frame_id
    assert len(out.obstacles) == len(frame.obstacles)
    for got, want in zip(out.obstacles, frame.obstacles):
        assert got.id == want.id
        np.testing.assert_array_equal(got.center, want.center)
        np.testing.assert_array_equal(got.size, want.size)
        np.testing.assert_array_equal(got.velocity, want.velocity)
        assert got.footprint.shape == want.footprint.shape
        np.testing.assert_array_equal(got.footprint, want.footprint)
        assert -math.pi < got.yaw <= math.pi
        assert got.yaw == pytest.approx(want.yaw, abs=1e-12)
        for name in ("range", "height", "existence_probability", "age", "anomaly_score"):
            assert_float_same(getattr(got, name), getattr(want, name))
        for name in ("hits", "confirmed", "low_support", "num_points", "mask_id"):
            assert getattr(got, name) == getattr(want, name) and type(getattr(got, name)) is type(getattr(want, name))


def test_obstacle_frame_round_trip():
    frame = sample_obstacles()
    msg = obstacle_frame_to_msg(frame)
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id) == (1_700_000_001, 1, "odom")
    q = msg.obstacles[1].pose.orientation
    assert (q.x, q.y) == (0.0, 0.0)
    assert q.z == pytest.approx(math.sin(0.125)) and q.w == pytest.approx(math.cos(0.125))
    assert len(msg.obstacles[3].footprint) == 3 and msg.obstacles[3].footprint[2].y == 2.5
    assert_obstacles_equal(msg_to_obstacle_frame(msg), frame)


def test_obstacle_frame_round_trip_through_serialization():
    frame = sample_obstacles()  # float32-representable values
    wire = deserialize_message(serialize_message(obstacle_frame_to_msg(frame)), ObstacleArray)
    assert_obstacles_equal(msg_to_obstacle_frame(wire), frame)


def test_empty_obstacle_frame():
    frame = ObstacleFrame(stamp_ns=42, frame_id="base_link")
    msg = obstacle_frame_to_msg(frame)
    assert list(msg.obstacles) == []
    out = msg_to_obstacle_frame(msg)
    assert out.obstacles == [] and (out.stamp_ns, out.frame_id) == (42, "base_link")


@pytest.mark.parametrize("yaw,expected", [(3 * math.pi / 2, -math.pi / 2), (-3 * math.pi / 2, math.pi / 2),
                                          (2 * math.pi, 0.0), (7.0, 7.0 - 2 * math.pi), (-math.pi, math.pi)])
def test_yaw_is_wrapped_into_minus_pi_pi(yaw, expected):
    frame = ObstacleFrame(stamp_ns=0, frame_id="f", obstacles=[Obstacle3D(id=1, center=(0, 0, 0), size=(1, 1, 1),
                                                                          yaw=yaw)])
    got = msg_to_obstacle_frame(obstacle_frame_to_msg(frame)).obstacles[0].yaw
    assert -math.pi < got <= math.pi
    assert got == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("z,w,expected", [(1.0, 0.0, math.pi), (-1.0, 0.0, math.pi), (-1.0, -0.0, math.pi),
                                          (0.0, -1.0, 0.0), (-math.sqrt(0.5), math.sqrt(0.5), -math.pi / 2)])
def test_yaw_from_foreign_quaternions(z, w, expected):
    msg = obstacle_frame_to_msg(ObstacleFrame(stamp_ns=0, frame_id="f",
                                              obstacles=[Obstacle3D(id=1, center=(0, 0, 0), size=(1, 1, 1))]))
    msg.obstacles[0].pose.orientation = Quaternion(x=0.0, y=0.0, z=z, w=w)
    got = msg_to_obstacle_frame(msg).obstacles[0].yaw
    assert -math.pi < got <= math.pi
    assert got == pytest.approx(expected, abs=1e-12)
