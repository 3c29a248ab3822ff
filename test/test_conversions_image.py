"""sensor_msgs/Image and CompressedImage <-> numpy (s2m_ros.ros.conversions.image)."""
import warnings
import zlib

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header
from builtin_interfaces.msg import Time

import image_bombs as bombs
from s2m_ros.ros.conversions.errors import ConversionError
from s2m_ros.ros.conversions.image import (
    ENCODINGS,
    compressed_to_bgr8,
    compressed_to_numpy,
    image_to_bgr8,
    image_to_numpy,
    numpy_to_compressed,
    numpy_to_image,
    to_bgr8,
    MAX_PIXELS_DEFAULT,
)

ALL_ENCODINGS = sorted(ENCODINGS)
FLOAT_SPECIALS = [np.inf, -np.inf, -0.0, 0.0, 1e-30, -1e30, np.nan]


def random_image(encoding, height, width, rng, specials=True):
    """A random array of the dtype/shape ``encoding`` needs, covering the whole value range."""
    dtype, channels = ENCODINGS[encoding]
    shape = (height, width) if channels == 1 else (height, width, channels)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    arr = (rng.standard_normal(shape) * 1000).astype(dtype)
    if specials:
        flat = arr.reshape(-1)
        for i, v in enumerate(FLOAT_SPECIALS[: flat.size]):
            flat[rng.integers(flat.size)] = v
    return arr


def assert_exact(out, expected):
    assert out.dtype == expected.dtype
    assert out.dtype.isnative
    assert out.shape == expected.shape
    # byte-exact comparison (NaN payloads, -0.0 included)
    assert np.ascontiguousarray(out).tobytes() == np.ascontiguousarray(expected).tobytes()


def raw_rows(msg):
    return np.frombuffer(bytes(msg.data), dtype=np.uint8).reshape(msg.height, msg.step)


# --------------------------------------------------------------------------- Image round trips


@pytest.mark.parametrize("big_endian", [False, True], ids=["le", "be"])
@pytest.mark.parametrize("padding", [0, 5], ids=["packed", "padded"])
@pytest.mark.parametrize("encoding", ALL_ENCODINGS)
def test_image_round_trip_every_encoding(encoding, padding, big_endian):
    rng = np.random.default_rng([zlib.crc32(encoding.encode()), padding, int(big_endian)])
    arr = random_image(encoding, 7, 11, rng)
    dtype, channels = ENCODINGS[encoding]
    row_bytes = 11 * channels * np.dtype(dtype).itemsize
    step = row_bytes + padding
    msg = numpy_to_image(arr, encoding, step=step if padding else None, is_bigendian=big_endian)
    assert msg.encoding == encoding
    assert (msg.height, msg.width) == (7, 11)
    assert msg.step == step
    assert len(msg.data) == step * 7
    assert msg.is_bigendian == (1 if big_endian else 0)
    # the wire bytes are the array in the requested byte order, padding zero-filled
    rows = raw_rows(msg)
    wire = arr.astype(arr.dtype.newbyteorder(">" if big_endian else "<"))
    assert rows[:, :row_bytes].tobytes() == wire.tobytes()
    assert not rows[:, row_bytes:].any()
    assert_exact(image_to_numpy(msg), arr)


@pytest.mark.parametrize("encoding", ["mono16", "32FC1", "rgb8", "64FC1"])
def test_image_round_trip_through_serialization(encoding):
    rng = np.random.default_rng(3)
    arr = random_image(encoding, 5, 6, rng)
    header = Header(stamp=Time(sec=12, nanosec=345), frame_id="cam")
    msg = numpy_to_image(arr, encoding, header=header, step=None, is_bigendian=True)
    back = deserialize_message(serialize_message(msg), Image)
    assert back.header == header
    assert_exact(image_to_numpy(back), arr)


def test_numpy_to_image_copies_header_and_accepts_hw1_for_mono():
    header = Header(stamp=Time(sec=1, nanosec=2), frame_id="camera_optical")
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4, 1)
    msg = numpy_to_image(arr, "mono8", header=header)
    assert msg.header == header
    assert (msg.height, msg.width, msg.step) == (3, 4, 4)
    np.testing.assert_array_equal(image_to_numpy(msg), arr[:, :, 0])


def test_hand_built_big_endian_mono16():
    msg = Image(height=1, width=2, encoding="mono16", is_bigendian=1, step=4, data=b"\x01\x02\xff\x00")
    out = image_to_numpy(msg)
    assert out.dtype == np.uint16 and out.dtype.isnative
    assert out.tolist() == [[0x0102, 0xFF00]]
    assert out[0, 0] == 258
    little = Image(height=1, width=2, encoding="mono16", is_bigendian=0, step=4, data=b"\x01\x02\xff\x00")
    assert image_to_numpy(little).tolist() == [[0x0201, 0x00FF]]


def test_hand_built_big_endian_float_and_signed():
    import struct

    msg = Image(height=2, width=1, encoding="32FC1", is_bigendian=1, step=4,
                data=struct.pack(">ff", 1.5, -2.25))
    assert image_to_numpy(msg).tolist() == [[1.5], [-2.25]]
    msg = Image(height=1, width=2, encoding="16SC1", is_bigendian=1, step=6,
                data=struct.pack(">hh", -2, 300) + b"\xaa\xbb")
    assert image_to_numpy(msg).tolist() == [[-2, 300]]


def test_hand_built_padded_rgb8_with_garbage_padding():
    pixels = [[(1, 2, 3), (4, 5, 6)], [(7, 8, 9), (10, 11, 12)], [(13, 14, 15), (16, 17, 18)]]
    data = b""
    for row in pixels:
        data += bytes(v for px in row for v in px) + b"\xde\xad\xbe\xef"  # 6 pixel bytes + 4 garbage
    msg = Image(height=3, width=2, encoding="rgb8", is_bigendian=0, step=10, data=data)
    out = image_to_numpy(msg)
    assert out.shape == (3, 2, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, np.array(pixels, dtype=np.uint8))


@settings(max_examples=60, deadline=None)
@given(encoding=st.sampled_from(ALL_ENCODINGS), height=st.integers(1, 40), width=st.integers(1, 40),
       padding=st.integers(0, 16), big_endian=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_image_round_trip_property(encoding, height, width, padding, big_endian, seed):
    arr = random_image(encoding, height, width, np.random.default_rng(seed))
    dtype, channels = ENCODINGS[encoding]
    step = width * channels * np.dtype(dtype).itemsize + padding
    msg = numpy_to_image(arr, encoding, step=step, is_bigendian=big_endian)
    assert msg.step == step and len(msg.data) == step * height
    assert msg.is_bigendian == int(big_endian)
    out = image_to_numpy(msg)
    assert_exact(out, arr)
    np.testing.assert_array_equal(out, arr)  # NaN == NaN here


# --------------------------------------------------------------------------- to_bgr8


def test_to_bgr8_colour_encodings():
    rgb = np.array([[[10, 20, 30], [200, 100, 0]]], dtype=np.uint8)
    np.testing.assert_array_equal(to_bgr8(rgb, "rgb8"), [[[30, 20, 10], [0, 100, 200]]])
    np.testing.assert_array_equal(to_bgr8(rgb, "bgr8"), rgb)
    np.testing.assert_array_equal(to_bgr8(rgb, "8UC3"), rgb)
    rgba = np.array([[[10, 20, 30, 40], [1, 2, 3, 0]]], dtype=np.uint8)
    np.testing.assert_array_equal(to_bgr8(rgba, "rgba8"), [[[30, 20, 10], [3, 2, 1]]])
    np.testing.assert_array_equal(to_bgr8(rgba, "bgra8"), [[[10, 20, 30], [1, 2, 3]]])
    np.testing.assert_array_equal(to_bgr8(rgba, "8UC4"), [[[10, 20, 30], [1, 2, 3]]])


def test_to_bgr8_mono_encodings():
    mono = np.array([[0, 7, 255]], dtype=np.uint8)
    for enc in ("mono8", "8UC1"):
        out = to_bgr8(mono, enc)
        assert out.shape == (1, 3, 3) and out.dtype == np.uint8
        np.testing.assert_array_equal(out, np.repeat(mono[:, :, None], 3, axis=2))
    mono16 = np.array([[0x0000, 0x12FF, 0xFFFF, 0x00FF]], dtype=np.uint16)
    out = to_bgr8(mono16, "mono16")
    assert out.dtype == np.uint8 and out.shape == (1, 4, 3)
    np.testing.assert_array_equal(out[:, :, 0], [[0x00, 0x12, 0xFF, 0x00]])
    np.testing.assert_array_equal(out[:, :, 0], out[:, :, 1])
    np.testing.assert_array_equal(out[:, :, 0], out[:, :, 2])


@pytest.mark.parametrize("encoding", ["32FC1", "16UC1", "64FC1", "16SC1", "yuv422"])
def test_to_bgr8_rejects_depth_and_unknown(encoding):
    dtype = ENCODINGS.get(encoding, (np.uint8, 1))[0]
    with pytest.raises(ConversionError) as err:
        to_bgr8(np.zeros((2, 2), dtype=dtype), encoding)
    assert err.value.field == "Image.encoding"
    assert err.value.value == encoding


def test_image_to_bgr8_from_padded_big_endian_message():
    rgb = np.array([[[1, 2, 3], [4, 5, 6]]], dtype=np.uint8)
    msg = numpy_to_image(rgb, "rgb8", step=9, is_bigendian=True)
    np.testing.assert_array_equal(image_to_bgr8(msg), rgb[:, :, ::-1])
    depth = numpy_to_image(np.ones((2, 2), np.float32), "32FC1")
    with pytest.raises(ConversionError) as err:
        image_to_bgr8(depth)
    assert err.value.field == "Image.encoding"


# --------------------------------------------------------------------------- compressed


def gradient(height=48, width=64, channels=3):
    y, x = np.mgrid[0:height, 0:width]
    planes = [(x * 4) % 256, (y * 5) % 256, ((x + y) * 2) % 256, np.full_like(x, 128)]
    return np.stack(planes[:channels], axis=2).astype(np.uint8)


def test_png_round_trip_bgr8_exact():
    arr = np.random.default_rng(0).integers(0, 256, (30, 41, 3), dtype=np.uint8)
    msg = numpy_to_compressed(arr, "bgr8", fmt="png")
    assert msg.format == "bgr8; png compressed bgr8"
    out, enc = compressed_to_numpy(msg)
    assert enc == "bgr8"
    assert_exact(out, arr)
    assert_exact(compressed_to_bgr8(msg), arr)


def test_png_round_trip_rgb8_is_returned_as_bgr():
    arr = np.random.default_rng(1).integers(0, 256, (17, 23, 3), dtype=np.uint8)
    msg = numpy_to_compressed(arr, "rgb8", fmt="png")
    assert msg.format == "rgb8; png compressed bgr8"
    out, enc = compressed_to_numpy(msg)
    assert enc == "bgr8"
    np.testing.assert_array_equal(out, arr[:, :, ::-1])
    np.testing.assert_array_equal(compressed_to_bgr8(msg), arr[:, :, ::-1])


@pytest.mark.parametrize("encoding,decoded", [("mono8", "mono8"), ("8UC1", "mono8"),
                                              ("mono16", "mono16"), ("16UC1", "mono16")])
def test_png_round_trip_mono_exact(encoding, decoded):
    arr = random_image(encoding, 19, 13, np.random.default_rng(2))
    msg = numpy_to_compressed(arr, encoding, fmt="png")
    assert msg.format == "%s; png compressed %s" % (encoding, encoding)
    out, enc = compressed_to_numpy(msg)
    assert enc == decoded
    assert_exact(out, arr)


def test_png_round_trip_alpha():
    rgba = gradient(channels=4)
    out, enc = compressed_to_numpy(numpy_to_compressed(rgba, "rgba8", fmt="png"))
    assert enc == "bgra8"
    np.testing.assert_array_equal(out, rgba[:, :, [2, 1, 0, 3]])
    out, enc = compressed_to_numpy(numpy_to_compressed(rgba, "bgra8", fmt="png"))
    assert enc == "bgra8"
    np.testing.assert_array_equal(out, rgba)
    np.testing.assert_array_equal(compressed_to_bgr8(numpy_to_compressed(rgba, "bgra8", fmt="png")), rgba[:, :, :3])


@pytest.mark.parametrize("encoding", ["bgr8", "rgb8"])
def test_jpeg_round_trip_close(encoding):
    arr = gradient()
    header = Header(stamp=Time(sec=5, nanosec=6), frame_id="cam")
    msg = numpy_to_compressed(arr, encoding, fmt="jpeg", header=header, quality=95)
    assert msg.format == "%s; jpeg compressed bgr8" % encoding
    assert msg.header == header
    assert bytes(msg.data[:2]) == b"\xff\xd8"  # JPEG SOI marker
    out, enc = compressed_to_numpy(msg)
    assert enc == "bgr8" and out.shape == arr.shape and out.dtype == np.uint8
    bgr = arr if encoding == "bgr8" else arr[:, :, ::-1]
    assert np.abs(out.astype(int) - bgr.astype(int)).mean() < 3.0
    # lower quality -> smaller payload
    assert len(numpy_to_compressed(arr, encoding, fmt="jpeg", quality=20).data) < len(msg.data)


def test_jpeg_mono8_round_trip_close():
    arr = gradient()[:, :, 0].copy()
    out, enc = compressed_to_numpy(numpy_to_compressed(arr, "mono8", fmt="jpeg", quality=95))
    assert enc == "mono8" and out.shape == arr.shape
    assert np.abs(out.astype(int) - arr.astype(int)).mean() < 3.0


def test_jpeg_of_alpha_image_drops_alpha_and_says_so():
    rgba = gradient(channels=4)
    msg = numpy_to_compressed(rgba, "rgba8", fmt="jpeg", quality=95)
    assert msg.format == "rgba8; jpeg compressed bgr8"
    out, enc = compressed_to_numpy(msg)
    assert enc == "bgr8"
    assert np.abs(out.astype(int) - rgba[:, :, [2, 1, 0]].astype(int)).mean() < 3.0


@pytest.mark.parametrize("fmt", ["rgb8; jpeg compressed bgr8", "jpeg", "JPEG", "jpg", "bgr8; jpg compressed bgr8",
                                 "png", "bgr8; png compressed bgr8", "PNG"])
def test_decode_accepts_image_transport_format_strings(fmt):
    arr = gradient(12, 10)
    payload = numpy_to_compressed(arr, "bgr8", fmt="png").data
    out, enc = compressed_to_numpy(CompressedImage(format=fmt, data=payload))
    assert enc == "bgr8"
    np.testing.assert_array_equal(out, arr)  # the decoder sniffs the payload; the string only gates


def test_compressed_round_trip_through_serialization():
    arr = gradient(9, 7)
    msg = numpy_to_compressed(arr, "bgr8", fmt="png")
    back = deserialize_message(serialize_message(msg), CompressedImage)
    assert back.format == msg.format
    np.testing.assert_array_equal(compressed_to_numpy(back)[0], arr)


@pytest.mark.parametrize("fmt", ["yuv", "compressedDepth png", "16UC1; compressedDepth png", "", "bmp"])
def test_compressed_bad_format(fmt):
    payload = numpy_to_compressed(gradient(4, 4), "bgr8", fmt="png").data
    with pytest.raises(ConversionError) as err:
        compressed_to_numpy(CompressedImage(format=fmt, data=payload))
    assert err.value.field == "CompressedImage.format"
    assert err.value.value == fmt


def test_compressed_empty_data():
    with pytest.raises(ConversionError) as err:
        compressed_to_numpy(CompressedImage(format="jpeg", data=b""))
    assert err.value.field == "CompressedImage.data"
    assert "empty" in err.value.reason


@pytest.mark.parametrize("cut", [2, 10, 100, 0.5, -2])
def test_compressed_truncated_jpeg(cut):
    payload = bytes(numpy_to_compressed(gradient(), "bgr8", fmt="jpeg").data)
    n = int(len(payload) * cut) if isinstance(cut, float) else cut
    with pytest.raises(ConversionError) as err:
        compressed_to_numpy(CompressedImage(format="jpeg", data=payload[:n]))
    assert err.value.field == "CompressedImage.data"


def test_compressed_corrupt_bytes():
    garbage = b"\xff\xd8\xff\xe0" + bytes(np.random.default_rng(4).integers(0, 256, 500, dtype=np.uint8))
    for fmt in ("jpeg", "png"):
        with pytest.raises(ConversionError) as err:
            compressed_to_bgr8(CompressedImage(format=fmt, data=garbage))
        assert err.value.field == "CompressedImage.data"
    payload = bytearray(numpy_to_compressed(gradient(), "bgr8", fmt="png").data)
    with pytest.raises(ConversionError) as err:
        compressed_to_numpy(CompressedImage(format="png", data=bytes(payload[: len(payload) // 2])))
    assert err.value.field == "CompressedImage.data"


def test_compressed_max_pixels():
    msg = numpy_to_compressed(gradient(10, 10), "bgr8", fmt="png")
    assert compressed_to_numpy(msg, max_pixels=100)[0].shape == (10, 10, 3)
    with pytest.raises(ConversionError) as err:
        compressed_to_bgr8(msg, max_pixels=99)
    assert err.value.field == "CompressedImage.data"


@pytest.mark.parametrize("encoding,fmt", [("mono16", "jpeg"), ("16UC1", "jpeg"), ("32FC1", "png"),
                                          ("32FC1", "jpeg"), ("64FC1", "png"), ("16SC1", "png")])
def test_numpy_to_compressed_refuses_depths_the_codec_cannot_hold(encoding, fmt):
    # OpenCV would silently saturate these to 8 bits (mono16 1000 -> 255)
    arr = random_image(encoding, 4, 5, np.random.default_rng(5), specials=False)
    with pytest.raises(ConversionError) as err:
        numpy_to_compressed(arr, encoding, fmt=fmt)
    assert err.value.field == "encoding"


@pytest.mark.parametrize("shape,encoding", [((4, 5), "bgr8"), ((4, 5), "rgb8"), ((4, 5, 3), "mono8"),
                                            ((4, 5, 2), "mono8"), ((4, 5, 3), "rgba8"), ((0, 5), "mono8"),
                                            ((5,), "mono8")])
def test_numpy_to_compressed_bad_shape(shape, encoding):
    with pytest.raises(ConversionError) as err:
        numpy_to_compressed(np.zeros(shape, np.uint8), encoding, fmt="png")
    assert err.value.field == "array.shape"


def test_numpy_to_compressed_bad_arguments():
    with pytest.raises(ConversionError) as err:
        numpy_to_compressed(gradient(4, 4), "bgr8", fmt="bmp")
    assert err.value.field == "fmt"
    with pytest.raises(ConversionError) as err:
        numpy_to_compressed(gradient(4, 4).astype(np.float32), "bgr8", fmt="png")
    assert err.value.field == "array.dtype"
    with pytest.raises(ConversionError) as err:
        numpy_to_compressed(gradient(4, 4), "yuv422", fmt="png")
    assert err.value.field == "encoding"


# --------------------------------------------------------------------------- bad Image input


def good_msg(**overrides):
    msg = numpy_to_image(np.zeros((4, 6, 3), np.uint8), "rgb8")
    for key, value in overrides.items():
        setattr(msg, key, value)
    return msg


def test_unsupported_encoding():
    with pytest.raises(ConversionError) as err:
        image_to_numpy(good_msg(encoding="yuv422"))
    assert err.value.field == "Image.encoding"
    assert err.value.value == "yuv422"
    assert "yuv422" in str(err.value)
    assert str(err.value).startswith("Image.encoding='yuv422': unsupported encoding")
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize("height,width", [(0, 6), (4, 0), (0, 0)])
def test_zero_size_image(height, width):
    with pytest.raises(ConversionError) as err:
        image_to_numpy(good_msg(height=height, width=width, step=18, data=b""))
    assert err.value.field == "Image.height/width"


def test_step_smaller_than_row():
    with pytest.raises(ConversionError) as err:
        image_to_numpy(good_msg(step=17, data=bytes(17 * 4)))
    assert err.value.field == "Image.step"
    assert err.value.value == 17
    # mono16: 6 px * 2 bytes = 12 > 6
    with pytest.raises(ConversionError) as err:
        image_to_numpy(Image(height=4, width=6, encoding="mono16", step=6, data=bytes(24)))
    assert err.value.field == "Image.step"


@pytest.mark.parametrize("delta", [-1, -18, 1, 18])
def test_data_length_mismatch(delta):
    with pytest.raises(ConversionError) as err:
        image_to_numpy(good_msg(data=bytes(4 * 18 + delta)))
    assert err.value.field == "Image.data"
    assert err.value.value == "%d bytes" % (4 * 18 + delta)


def test_max_pixels():
    msg = numpy_to_image(np.zeros((10, 10), np.uint8), "mono8")
    assert image_to_numpy(msg, max_pixels=100).shape == (10, 10)
    with pytest.raises(ConversionError) as err:
        image_to_numpy(msg, max_pixels=99)
    assert err.value.field == "Image.height/width"
    with pytest.raises(ConversionError) as err:
        image_to_bgr8(msg, max_pixels=99)
    assert err.value.field == "Image.height/width"


@pytest.mark.parametrize("dtype,encoding", [(np.float64, "32FC1"), (np.int16, "mono16"), (np.uint16, "mono8"),
                                            (np.int8, "8UC1"), (np.float32, "rgb8"), (np.uint16, "16SC1")])
def test_numpy_to_image_wrong_dtype(dtype, encoding):
    channels = ENCODINGS[encoding][1]
    shape = (3, 4) if channels == 1 else (3, 4, channels)
    with pytest.raises(ConversionError) as err:
        numpy_to_image(np.zeros(shape, dtype), encoding)
    assert err.value.field == "array.dtype"


@pytest.mark.parametrize("shape,encoding", [((3, 4, 4), "rgb8"), ((3, 4), "rgb8"), ((3, 4, 3), "mono8"),
                                            ((3, 4, 3), "bgra8"), ((12,), "mono8"), ((2, 3, 4, 3), "bgr8")])
def test_numpy_to_image_wrong_channel_count(shape, encoding):
    with pytest.raises(ConversionError) as err:
        numpy_to_image(np.zeros(shape, np.uint8), encoding)
    assert err.value.field == "array.shape"
    assert err.value.value == shape


def test_numpy_to_image_bad_step_and_encoding():
    with pytest.raises(ConversionError) as err:
        numpy_to_image(np.zeros((3, 4, 3), np.uint8), "rgb8", step=11)
    assert err.value.field == "step"
    assert err.value.value == 11
    with pytest.raises(ConversionError) as err:
        numpy_to_image(np.zeros((3, 4), np.uint8), "yuv422")
    assert err.value.field == "encoding"


def test_decoded_view_of_the_message_buffer_is_read_only():
    msg = numpy_to_image(np.zeros((4, 5, 3), np.uint8), "bgr8")
    arr = image_to_numpy(msg)
    assert not arr.flags.writeable
    with pytest.raises(ValueError):
        arr[0, 0, 0] = 1
    padded = image_to_numpy(numpy_to_image(np.zeros((4, 5, 3), np.uint8), "bgr8", step=16))
    assert padded.flags.writeable  # a copy: safe to write


# --------------------------------------------------------------------------- hostile CompressedImage (issue 19)


@pytest.fixture
def no_decoding(monkeypatch):
    """Fail the test if OpenCV is asked to decode anything."""
    def imdecode(*args, **kwargs):
        raise AssertionError("cv2.imdecode called: the payload should have been refused from its header")

    monkeypatch.setattr(cv2, "imdecode", imdecode)


def refused(data, fmt, **kw):
    with pytest.raises(ConversionError) as err:
        compressed_to_numpy(CompressedImage(format=fmt, data=data), **kw)
    assert err.value.field == "CompressedImage.data"
    return err.value


@pytest.mark.parametrize("fmt,data,claim", [
    ("jpeg", bombs.jpeg_claiming(65000, 65000), "65000x65000 JPEG"),
    ("png", bombs.png_claiming(70000, 70000), "70000x70000 PNG"),
    ("bgr8; jpeg compressed bgr8", bombs.jpeg_claiming(65535, 40000), "65535x40000 JPEG"),
])
def test_header_claiming_billions_of_pixels_is_refused_before_decoding(fmt, data, claim, no_decoding):
    # OpenCV raises cv2.error above 2^30 pixels: this used to kill the node
    assert len(data) < 4000
    err = refused(data, fmt)
    assert err.value == claim
    assert "more than the limit of %d pixels" % MAX_PIXELS_DEFAULT in err.reason


def test_zeros_png_bomb_is_refused_without_being_decoded(no_decoding):
    data = bombs.zeros_png()  # 20000x20000: 400 MB once decoded
    assert len(data) < 500_000
    err = refused(data, "png")
    assert err.value == "20000x20000 PNG"
    assert "claims 400000000 pixels" in err.reason and str(MAX_PIXELS_DEFAULT) in err.reason


def test_png_chunk_longer_than_the_payload_is_refused_before_decoding(no_decoding):
    # OpenCV would allocate the 2.6 GB this 3 KB payload's IDAT claims
    err = refused(bombs.png_with_idat_claiming(2_634_027_781), "png")
    assert "PNG chunk 'IDAT'" in err.reason and "2634027781 bytes" in err.reason


def test_corrupt_exif_is_not_an_uncaught_warning():
    data = bombs.jpeg_with_corrupt_exif()
    with pytest.warns(UserWarning):  # Pillow warns (by default printed once per place) and the frame decodes
        out, enc = compressed_to_numpy(CompressedImage(format="jpeg", data=data))
    assert enc == "bgr8" and out.shape == (8, 8, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # where warnings are errors, a refusal: never an uncaught warning
        refused(data, "jpeg")


def test_limit_is_checked_from_the_header():
    for data, fmt in ((bombs.small_jpeg(10, 10), "jpeg"), (bombs.small_png(10, 10), "png")):
        assert compressed_to_numpy(CompressedImage(format=fmt, data=data), max_pixels=100)[0].shape == (10, 10, 3)
    for data, fmt in ((bombs.small_jpeg(10, 10), "jpeg"), (bombs.small_png(10, 10), "png")):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(cv2, "imdecode", lambda *a: pytest.fail("decoded"))
            err = refused(data, fmt, max_pixels=99)
        assert err.value == "10x10 %s" % fmt.upper() and "limit of 99 pixels" in err.reason


def test_opencv_errors_become_conversion_errors():
    # a caller limit above OpenCV's own (2^30 pixels): the header passes, OpenCV raises
    err = refused(bombs.jpeg_claiming(65000, 65000), "jpeg", max_pixels=2 ** 40)
    assert "OpenCV cannot decode" in err.reason


@pytest.mark.parametrize("maker", [lambda: bombs.bmp_claiming(4, 4), lambda: bombs.bmp_claiming(30000, 30000)],
                         ids=["bmp", "bmp-claiming-30000x30000"])
def test_payload_must_be_jpeg_or_png_by_content(maker, no_decoding):
    # OpenCV would decode any format it knows (BMP, TIFF, ...) whatever the format string says
    err = refused(maker(), "jpeg")
    assert "not JPEG or PNG data" in err.reason


def test_sixteen_bit_colour_png_is_still_refused_after_decoding():
    err = refused(bombs.small_png(6, 5, dtype=np.uint16), "png")
    assert "unsupported pixel type" in err.reason and "uint16" in err.value
    out, enc = compressed_to_numpy(CompressedImage(format="png", data=bombs.small_png(6, 5, dtype=np.uint16,
                                                                                        channels=1)))
    assert enc == "mono16" and out.dtype == np.uint16 and out.shape == (6, 5)


@pytest.mark.parametrize("cut", ["after-sof", "before-sof", "half-scan"])
def test_truncated_jpeg_is_a_conversion_error(cut):
    data = bombs.small_jpeg()
    n = {"after-sof": data.find(b"\xff\xc0") + 19, "before-sof": data.find(b"\xff\xc0") + 4,
         "half-scan": data.find(b"\xff\xda") + 40}[cut]
    refused(data[:n], "jpeg")


@pytest.mark.parametrize("kind", ["jpeg", "png", "mono-jpeg", "alpha-png"])
def test_valid_payloads_decode_as_before(kind):
    data = {"jpeg": bombs.small_jpeg(), "png": bombs.small_png(), "mono-jpeg": bombs.small_jpeg(channels=1),
            "alpha-png": bombs.small_png(channels=4)}[kind]
    out, enc = compressed_to_numpy(CompressedImage(format=kind.split("-")[-1], data=data))
    expected = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert_exact(out, expected)
    assert enc == {"jpeg": "bgr8", "png": "bgr8", "mono-jpeg": "mono8", "alpha-png": "bgra8"}[kind]


VALID = {"jpeg": bombs.small_jpeg(), "png": bombs.small_png()}


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(sorted(VALID)), fmt=st.sampled_from(["jpeg", "png"]), cut=st.integers(0, 10 ** 6),
       patches=st.lists(st.tuples(st.integers(0, 10 ** 6), st.integers(0, 255)), max_size=6),
       tail=st.binary(max_size=64))
def test_property_damaged_payloads_raise_only_conversion_errors(kind, fmt, cut, patches, tail):
    data = bytearray(VALID[kind])
    for pos, value in patches:
        data[pos % len(data)] = value
    data = bytes(data[:cut % (len(data) + 1)]) + tail
    try:
        compressed_to_numpy(CompressedImage(format=fmt, data=data), max_pixels=64 * 48 * 4)
    except ConversionError as exc:
        assert exc.field == "CompressedImage.data"


@settings(max_examples=200, deadline=None)
@given(prefix=st.sampled_from([b"", b"\xff\xd8\xff", bombs.PNG_MAGIC, bombs.PNG_MAGIC + bytes([0, 0, 0, 13]) + b"IHDR"]),
       body=st.binary(max_size=300))
def test_property_random_bytes_raise_only_conversion_errors(prefix, body):
    try:
        compressed_to_numpy(CompressedImage(format="jpeg", data=prefix + body), max_pixels=64 * 48 * 4)
    except ConversionError as exc:
        assert exc.field == "CompressedImage.data"
