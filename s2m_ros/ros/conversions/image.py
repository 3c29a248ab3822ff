"""sensor_msgs/Image and sensor_msgs/CompressedImage <-> numpy.

Arrays are (height, width) for one channel and (height, width, channels)
otherwise, in the channel order of the encoding (rgb8 stays RGB). Row padding
(``step`` larger than the packed row) and big-endian data are handled on input
and can be produced on output.
"""
import cv2
import numpy as np

from s2m_ros.files import MAX_IMAGE_PIXELS, ImageDataError, decode_image
from s2m_ros.ros.conversions._buffer import as_uint8, to_byte_array
from s2m_ros.ros.conversions.errors import ConversionError

# encoding -> (numpy dtype, channels)
ENCODINGS = {
    "rgb8": (np.uint8, 3),
    "bgr8": (np.uint8, 3),
    "rgba8": (np.uint8, 4),
    "bgra8": (np.uint8, 4),
    "mono8": (np.uint8, 1),
    "mono16": (np.uint16, 1),
    "8UC1": (np.uint8, 1),
    "8UC3": (np.uint8, 3),
    "8UC4": (np.uint8, 4),
    "16UC1": (np.uint16, 1),
    "16SC1": (np.int16, 1),
    "32FC1": (np.float32, 1),
    "64FC1": (np.float64, 1),
}

# Upper bound on the pixels of an image we agree to decode (a 16k x 16k frame
# is not a camera image, and decoding it would stall a real-time node); the
# same default as the file readers of s2m_ros.files.
MAX_PIXELS_DEFAULT = MAX_IMAGE_PIXELS


def _encoding_info(encoding, field="Image.encoding"):
    try:
        return ENCODINGS[encoding]
    except (KeyError, TypeError):
        raise ConversionError(field, encoding, "unsupported encoding (supported: %s)" % ", ".join(ENCODINGS)) from None


def image_to_numpy(msg, max_pixels=MAX_PIXELS_DEFAULT):
    """Decode a ``sensor_msgs/Image`` into a numpy array (native byte order).

    The result is a read-only view of the message buffer when no copy is
    needed (no row padding, native byte order): copy it before writing to it.
    """
    dtype, channels = _encoding_info(msg.encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ConversionError("Image.height/width", "%dx%d" % (width, height), "image has no pixels")
    if height * width > max_pixels:
        raise ConversionError("Image.height/width", "%dx%d" % (width, height),
                              "image larger than the limit of %d pixels" % max_pixels)
    itemsize = np.dtype(dtype).itemsize
    row_bytes = width * channels * itemsize
    if step < row_bytes:
        raise ConversionError("Image.step", step, "smaller than width*channels*bytes_per_channel = %d" % row_bytes)
    data = as_uint8(msg.data)
    if data.size != step * height:
        raise ConversionError("Image.data", "%d bytes" % data.size,
                              "expected step*height = %d*%d = %d bytes" % (step, height, step * height))
    rows = data.reshape(height, step)
    if step != row_bytes:
        rows = np.ascontiguousarray(rows[:, :row_bytes])
    wire = np.dtype(dtype).newbyteorder(">" if msg.is_bigendian else "<")
    arr = rows.view(wire).reshape((height, width) if channels == 1 else (height, width, channels))
    if itemsize > 1 and not wire.isnative:
        arr = arr.astype(wire.newbyteorder("="))
    elif np.shares_memory(arr, data):
        arr.flags.writeable = False  # a view of the message buffer: writing would change the message
    return arr


def _check_array(arr, encoding):
    """``arr`` as an array whose dtype and shape match ``encoding`` ((H, W, 1) is squeezed to (H, W))."""
    dtype, channels = _encoding_info(encoding, field="encoding")
    arr = np.asarray(arr)
    if arr.dtype != np.dtype(dtype):
        raise ConversionError("array.dtype", str(arr.dtype), "encoding %s needs %s" % (encoding, np.dtype(dtype).name))
    if channels == 1 and arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    expected_ndim = 2 if channels == 1 else 3
    if arr.ndim != expected_ndim or (channels > 1 and arr.shape[2] != channels):
        raise ConversionError("array.shape", arr.shape, "encoding %s needs %s" % (
            encoding, "(H, W)" if channels == 1 else "(H, W, %d)" % channels))
    return arr, dtype, channels


def numpy_to_image(arr, encoding, header=None, step=None, is_bigendian=False):
    """Build a ``sensor_msgs/Image`` from an array whose dtype and shape match ``encoding``.

    ``step`` may exceed the packed row size to produce padded rows (zero bytes).
    """
    from sensor_msgs.msg import Image

    arr, dtype, channels = _check_array(arr, encoding)
    height, width = arr.shape[:2]
    row_bytes = width * channels * arr.dtype.itemsize
    step = row_bytes if step is None else int(step)
    if step < row_bytes:
        raise ConversionError("step", step, "smaller than the packed row size %d" % row_bytes)
    wire = arr.astype(arr.dtype.newbyteorder(">" if is_bigendian else "<"), copy=False)
    raw = np.ascontiguousarray(wire).view(np.uint8).reshape(height, row_bytes)
    if step != row_bytes:
        padded = np.zeros((height, step), dtype=np.uint8)
        padded[:, :row_bytes] = raw
        raw = padded
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(height), int(width)
    msg.encoding = encoding
    msg.is_bigendian = 1 if is_bigendian else 0
    msg.step = step
    msg.data = to_byte_array(raw)
    return msg


def to_bgr8(arr, encoding):
    """Convert a decoded colour or mono image to the BGR uint8 image the pipeline works on."""
    if encoding in ("bgr8", "8UC3"):
        return arr
    if encoding == "rgb8":
        return cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    if encoding in ("bgra8", "8UC4"):
        return cv2.cvtColor(arr, cv2.COLOR_BGRA2BGR)
    if encoding == "rgba8":
        return cv2.cvtColor(arr, cv2.COLOR_RGBA2BGR)
    if encoding in ("mono8", "8UC1"):
        return cv2.cvtColor(arr, cv2.COLOR_GRAY2BGR)
    if encoding == "mono16":
        return cv2.cvtColor((arr >> 8).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    raise ConversionError("Image.encoding", encoding, "not a camera image encoding (depth/float images cannot be segmented)")


def image_to_bgr8(msg, max_pixels=MAX_PIXELS_DEFAULT):
    """Decode a ``sensor_msgs/Image`` directly into a BGR uint8 array."""
    return to_bgr8(image_to_numpy(msg, max_pixels=max_pixels), msg.encoding)


def compressed_to_numpy(msg, max_pixels=MAX_PIXELS_DEFAULT):
    """Decode a jpeg/png ``sensor_msgs/CompressedImage``.

    Returns ``(array, encoding)``: encoding is ``bgr8``, ``bgra8``, ``mono8`` or
    ``mono16`` (OpenCV decodes colour to BGR whatever the format string says).
    """
    fmt = str(msg.format).lower()
    if "compresseddepth" in fmt:
        raise ConversionError("CompressedImage.format", msg.format, "compressedDepth is not supported (use jpeg or png)")
    if not any(key in fmt for key in ("jpeg", "jpg", "png")):
        raise ConversionError("CompressedImage.format", msg.format, "unsupported format (supported: jpeg, png)")
    data = as_uint8(msg.data)
    if data.size == 0:
        raise ConversionError("CompressedImage.data", "0 bytes", "empty payload")
    # The header is read (and its claimed size checked) before OpenCV allocates anything: a few hundred
    # bytes can claim 65000x65000 pixels. The payload must be JPEG or PNG by content; which of the two
    # the format string names does not matter (OpenCV sniffs the bytes, and some drivers mislabel).
    try:
        arr, _ = decode_image(data, cv2.IMREAD_UNCHANGED, max_pixels=max_pixels, formats=("JPEG", "PNG"))
    except ImageDataError as exc:
        raise ConversionError("CompressedImage.data", exc.value, exc.reason) from None
    if arr.ndim == 2:
        if arr.dtype == np.uint8:
            return arr, "mono8"
        if arr.dtype == np.uint16:
            return arr, "mono16"
    elif arr.ndim == 3 and arr.dtype == np.uint8 and arr.shape[2] in (3, 4):
        return arr, ("bgr8" if arr.shape[2] == 3 else "bgra8")
    raise ConversionError("CompressedImage.data", "%s %s" % (arr.dtype, arr.shape), "decoded to an unsupported pixel type")


def compressed_to_bgr8(msg, max_pixels=MAX_PIXELS_DEFAULT):
    """Decode a jpeg/png ``sensor_msgs/CompressedImage`` into a BGR uint8 array."""
    arr, encoding = compressed_to_numpy(msg, max_pixels=max_pixels)
    return to_bgr8(arr, encoding)


def numpy_to_compressed(arr, encoding, fmt="jpeg", header=None, quality=90):
    """Encode an array as ``sensor_msgs/CompressedImage`` (jpeg or png, image_transport format string)."""
    from sensor_msgs.msg import CompressedImage

    if fmt not in ("jpeg", "png"):
        raise ConversionError("fmt", fmt, "supported: jpeg, png")
    arr, dtype, channels = _check_array(arr, encoding)
    if arr.size == 0:
        raise ConversionError("array.shape", arr.shape, "image has no pixels")
    # OpenCV silently saturates unsupported depths to 8 bits: refuse them instead.
    supported = (np.uint8,) if fmt == "jpeg" else (np.uint8, np.uint16)
    if dtype not in supported:
        raise ConversionError("encoding", encoding, "%s cannot hold %s pixels" % (fmt, np.dtype(dtype).name))
    if channels == 3:
        bgr = to_bgr8(arr, encoding)
        target = "bgr8"
    elif channels == 4 and fmt == "jpeg":  # jpeg has no alpha channel
        bgr = to_bgr8(arr, encoding)
        target = "bgr8"
    elif channels == 4:
        bgr = arr if encoding in ("bgra8", "8UC4") else cv2.cvtColor(arr, cv2.COLOR_RGBA2BGRA)
        target = "bgra8"
    else:
        bgr = arr
        target = encoding
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if fmt == "jpeg" else []
    try:
        ok, buf = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", bgr, params)
    except cv2.error:
        ok = False
    if not ok:
        raise ConversionError("array", "%s %s" % (arr.dtype, arr.shape), "OpenCV could not encode it as %s" % fmt)
    msg = CompressedImage()
    if header is not None:
        msg.header = header
    msg.format = "%s; %s compressed %s" % (encoding, fmt, target)
    msg.data = to_byte_array(buf)
    return msg
