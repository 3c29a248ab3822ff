"""Hypothesis strategies for random but well-typed input messages of both nodes (imported by the fuzz
tests, not a test itself).

Every strategy draws a message that rclpy can serialise (field types right), with values chosen to hit
the nodes' validation: wrong sizes and steps, unsupported encodings, truncated and bomb-sized compressed
payloads, NaN / inf everywhere, odd calibration, cloud layouts that lie about their data, ROIs outside
the image, degenerate quaternions and cycles in /tf_static. ``malformed_bytes`` draws wire bytes that
are not a valid message of the type at all (truncated or garbled CDR).
"""
import struct
import zlib

import cv2
import numpy as np
from hypothesis import strategies as st

ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", "8UC1", "8UC3", "8UC4", "16UC1", "16SC1",
             "32FC1", "64FC1", "yuv422", "bayer_rggb8", "", "BGR8", "bgr8\x7f")
CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "8UC3": 3, "8UC4": 4}
ITEMSIZE = {"mono16": 2, "16UC1": 2, "16SC1": 2, "32FC1": 4, "64FC1": 8}

# stamps of fuzz messages stay below this (the good frames that end a fuzz run come after it)
FUZZ_MAX_SEC = 1_000_000

_int32 = st.integers(-2 ** 31, 2 ** 31 - 1)
_uint32 = st.integers(0, 2 ** 32 - 1)
_float = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=64),
                   st.sampled_from([0.0, -0.0, 1.0, -1.0, 1e-30, 1e30, 400.0, 320.0]))
_float32 = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32),
                     st.sampled_from([0.0, 1.0, -1.0, 0.5, 3.4e38]))
_frame_id = st.one_of(st.sampled_from(["", "camera", "lidar", "base_link", "map", "odom", "camera/optical"]),
                      st.text(max_size=12))


@st.composite
def header(draw, max_sec=FUZZ_MAX_SEC):
    from std_msgs.msg import Header

    h = Header(frame_id=draw(_frame_id))
    h.stamp.sec = draw(st.one_of(st.integers(0, max_sec), st.sampled_from([-1, -2 ** 31])))
    h.stamp.nanosec = draw(st.one_of(st.integers(0, 999_999_999), st.sampled_from([10 ** 9, 2 ** 32 - 1])))
    return h


def _byte_array(data):
    import array

    return array.array("B", bytes(data))


def _bytes_around(draw, n):
    """``n`` bytes, or a few more or fewer (the data length must agree with the header fields)."""
    n = max(0, int(n) + draw(st.sampled_from([0, 0, 0, -1, 1, -7, 13])))
    n = min(n, 1 << 20)
    seed = draw(st.integers(0, 2 ** 32 - 1))
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


@st.composite
def raw_image(draw):
    from sensor_msgs.msg import Image

    encoding = draw(st.sampled_from(ENCODINGS))
    width = draw(st.one_of(st.integers(0, 48), st.sampled_from([320, 2 ** 31 - 1, 2 ** 32 - 1])))
    height = draw(st.one_of(st.integers(0, 40), st.sampled_from([240, 2 ** 31 - 1, 2 ** 32 - 1])))
    row = width * CHANNELS.get(encoding, 1) * ITEMSIZE.get(encoding, 1)
    step = draw(st.one_of(st.just(row), st.just(row + 3), st.integers(0, 256), st.just(2 ** 32 - 1)))
    step = min(step, 2 ** 32 - 1)
    size = step * height if step * height <= 1 << 20 else draw(st.integers(0, 4096))
    msg = Image(header=draw(header()), height=min(height, 2 ** 32 - 1), width=min(width, 2 ** 32 - 1),
                encoding=encoding, is_bigendian=draw(st.integers(0, 1)), step=step)
    msg.data = _byte_array(_bytes_around(draw, size))
    return msg


def _png_chunk(kind, payload):
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def bomb_png(width, height):
    """A tiny PNG whose IHDR claims ``width`` x ``height`` grey pixels (valid CRCs, a few zero rows)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (min(width, 4096) + 1) * 4, 9)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", rows) + _png_chunk(b"IEND", b"")


def bomb_jpeg(width, height):
    """A small real JPEG whose SOF0 marker is patched to claim ``width`` x ``height`` pixels."""
    ok, buf = cv2.imencode(".jpg", np.full((16, 16, 3), 127, np.uint8))
    data = bytearray(buf.tobytes())
    i = data.index(b"\xff\xc0")  # SOF0: length(2) precision(1) height(2) width(2)
    data[i + 5:i + 7] = struct.pack(">H", height)
    data[i + 7:i + 9] = struct.pack(">H", width)
    return bytes(data)


@st.composite
def compressed_payload(draw):
    kind = draw(st.sampled_from(["jpeg", "png", "bomb_jpeg", "bomb_png", "truncated", "random", "empty", "png16"]))
    if kind in ("jpeg", "png", "truncated", "png16"):
        w, h = draw(st.integers(1, 48)), draw(st.integers(1, 40))
        channels = draw(st.sampled_from([1, 3, 4])) if kind != "jpeg" else draw(st.sampled_from([1, 3]))
        seed = draw(st.integers(0, 2 ** 32 - 1))
        rng = np.random.default_rng(seed)
        dtype = np.uint16 if kind == "png16" else np.uint8
        img = rng.integers(0, np.iinfo(dtype).max, size=(h, w, channels) if channels > 1 else (h, w), dtype=dtype)
        ext = ".jpg" if kind in ("jpeg", "truncated") and draw(st.booleans()) else ".png"
        if ext == ".jpg":
            img = img.astype(np.uint8)
        data = cv2.imencode(ext, img)[1].tobytes()
        if kind == "truncated":
            data = data[:draw(st.integers(0, max(0, len(data) - 1)))]
        return data
    if kind == "bomb_jpeg":
        return bomb_jpeg(draw(st.integers(20000, 65535)), draw(st.integers(20000, 65535)))
    if kind == "bomb_png":
        return bomb_png(draw(st.integers(8000, 2 ** 31 - 1)), draw(st.integers(8000, 2 ** 31 - 1)))
    if kind == "empty":
        return b""
    return draw(st.binary(max_size=600))


@st.composite
def compressed_image(draw):
    from sensor_msgs.msg import CompressedImage

    fmt = draw(st.sampled_from(["jpeg", "png", "bgr8; jpeg compressed bgr8", "rgb8; png compressed bgr8",
                                "", "tiff", "16UC1; compressedDepth png", "JPEG"]))
    msg = CompressedImage(header=draw(header()), format=fmt)
    msg.data = _byte_array(draw(compressed_payload()))
    return msg


@st.composite
def camera_info(draw):
    from sensor_msgs.msg import CameraInfo

    model = draw(st.sampled_from(["plumb_bob", "rational_polynomial", "equidistant", "", "fisheye", "kannala"]))
    n_d = draw(st.integers(0, 16))
    k = [draw(_float) if draw(st.integers(0, 5)) == 0 else v
         for v in (400.0, 0.0, 320.0, 0.0, 400.0, 180.0, 0.0, 0.0, 1.0)]
    msg = CameraInfo(header=draw(header()), width=draw(st.sampled_from([0, 1, 64, 640, 2 ** 32 - 1])),
                     height=draw(st.sampled_from([0, 1, 48, 360, 2 ** 32 - 1])), distortion_model=model,
                     d=[draw(_float) if draw(st.booleans()) else 0.0 for _ in range(n_d)], k=k)
    return msg


_POINT_TYPES = {1: 1, 2: 1, 3: 2, 4: 2, 5: 4, 6: 4, 7: 4, 8: 8}


@st.composite
def point_cloud(draw):
    from sensor_msgs.msg import PointCloud2, PointField

    names = draw(st.sampled_from([("x", "y", "z"), ("x", "y", "z", "intensity"), ("x", "y"), ("z", "y", "x"),
                                  ("x", "x", "y", "z"), ("a", "b", "c"), ()]))
    fields, offset = [], 0
    for name in names:
        datatype = draw(st.one_of(st.sampled_from([7, 7, 8]), st.integers(0, 12)))
        count = draw(st.sampled_from([1, 1, 1, 0, 3]))
        fields.append(PointField(name=name, offset=offset + draw(st.sampled_from([0, 0, 0, 2, 200])),
                                 datatype=datatype, count=count))
        offset += _POINT_TYPES.get(datatype, 4) * max(count, 1)
    point_step = draw(st.one_of(st.just(offset), st.just(offset + 4), st.integers(0, 64)))
    width = draw(st.one_of(st.integers(0, 300), st.sampled_from([2 ** 32 - 1])))
    height = draw(st.sampled_from([1, 1, 0, 2, 2 ** 32 - 1]))
    row_step = draw(st.one_of(st.just(point_step * width), st.integers(0, 4096)))
    row_step = min(row_step, 2 ** 32 - 1)
    size = row_step * height if row_step * height <= 1 << 20 else draw(st.integers(0, 4096))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    data = _bytes_around(draw, size)
    if draw(st.booleans()) and names[:3] == ("x", "y", "z") and all(f.datatype == 7 for f in fields):
        # plausible float32 coordinates instead of random bytes (NaN/inf sprinkled)
        vals = np.random.default_rng(seed).uniform(-50, 50, len(data) // 4).astype("<f4")
        vals[::7] = np.nan
        vals[::11] = np.inf
        data = vals.tobytes() + data[len(vals) * 4:]
    msg = PointCloud2(header=draw(header()), height=height, width=min(width, 2 ** 32 - 1), fields=fields,
                      is_bigendian=draw(st.booleans()), point_step=min(point_step, 2 ** 32 - 1), row_step=row_step,
                      is_dense=draw(st.booleans()))
    msg.data = _byte_array(data)
    return msg


@st.composite
def roi(draw):
    from sensor_msgs.msg import RegionOfInterest

    small = st.integers(0, 80)
    big = st.sampled_from([2 ** 31, 2 ** 32 - 1])
    return RegionOfInterest(x_offset=draw(st.one_of(small, big)), y_offset=draw(st.one_of(small, big)),
                            width=draw(st.one_of(small, big)), height=draw(st.one_of(small, big)),
                            do_rectify=draw(st.booleans()))


@st.composite
def ood_mask_array(draw):
    from sensor_msgs.msg import Image
    from s2m_ros.msg import OodMask, OodMaskArray

    masks = []
    for i in range(draw(st.integers(0, 4))):
        r = draw(roi())
        w, h = (r.width, r.height) if draw(st.booleans()) else (draw(st.integers(0, 30)), draw(st.integers(0, 30)))
        w, h = min(w, 64), min(h, 64)
        mask = Image(header=draw(header()), width=w, height=h, step=w,
                     encoding=draw(st.sampled_from(["mono8", "mono8", "8UC1", "bgr8", ""])))
        mask.data = _byte_array(_bytes_around(draw, w * h))
        masks.append(OodMask(id=draw(st.integers(0, 2 ** 32 - 1)), roi=r, mask=mask, area=draw(st.integers(0, 5000)),
                             anomaly_score=draw(_float32), contrast=draw(_float32), quality=draw(_float32),
                             prompt_box=draw(roi())))
    n_stages = draw(st.integers(0, 3))
    return OodMaskArray(header=draw(header()), image_width=draw(st.sampled_from([0, 64, 640, 2 ** 32 - 1])),
                        image_height=draw(st.sampled_from([0, 48, 360, 2 ** 32 - 1])), masks=masks,
                        scorer=draw(st.text(max_size=8)), segmenter=draw(st.text(max_size=8)),
                        stage_names=["s%d" % i for i in range(n_stages)],
                        stage_latencies_ms=[draw(_float32) for _ in range(draw(st.sampled_from([n_stages, 1])))])


def _quaternion(draw):
    from geometry_msgs.msg import Quaternion

    if draw(st.booleans()):
        return Quaternion(x=0.0, y=0.0, z=0.0, w=1.0)
    return Quaternion(x=draw(_float), y=draw(_float), z=draw(_float), w=draw(_float))


@st.composite
def odometry(draw):
    from nav_msgs.msg import Odometry

    msg = Odometry(header=draw(header()), child_frame_id=draw(_frame_id))
    p = msg.pose.pose.position
    p.x, p.y, p.z = draw(_float), draw(_float), draw(_float)
    msg.pose.pose.orientation = _quaternion(draw)
    return msg


@st.composite
def tf_message(draw):
    from geometry_msgs.msg import TransformStamped
    from tf2_msgs.msg import TFMessage

    transforms = []
    for _ in range(draw(st.integers(0, 4))):
        t = TransformStamped(header=draw(header()), child_frame_id=draw(_frame_id))
        t.transform.translation.x = draw(_float)
        t.transform.rotation = _quaternion(draw)
        transforms.append(t)
    return TFMessage(transforms=transforms)


@st.composite
def malformed_bytes(draw, message):
    """Wire bytes of ``message`` truncated or garbled so that they do not deserialise (or do, oddly)."""
    from rclpy.serialization import serialize_message

    data = bytearray(serialize_message(message))
    how = draw(st.sampled_from(["truncate", "garble", "length", "empty_payload"]))
    if how == "truncate" and len(data) > 4:
        # at least one byte: an empty payload is not a sample at all (DDS never delivers it)
        data = data[:draw(st.integers(1, len(data) - 1))]
    elif how == "garble":
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    elif how == "length" and len(data) > 12:  # a sequence length claiming far more than there is
        i = draw(st.integers(4, len(data) - 4))
        data[i:i + 4] = struct.pack("<I", draw(st.sampled_from([2 ** 31 - 1, 2 ** 32 - 1, 10 ** 6])))
    else:
        data = data[:4]  # the CDR encapsulation header only
    return bytes(data)


@st.composite
def coherent_frame(draw):
    """One frame that fusion_node can fuse: CameraInfo, /tf_static, odometry around the stamp, a cloud and a
    mask array at the same stamp, in frames the other strategies never name; the cloud, the masks and
    the calibration's distortion are still drawn at random (objects anywhere, NaN scores, masks on the
    image border, padded D). Returns [(target, message), ...] in publishing order."""
    import fusion_scene as fs
    from nav_msgs.msg import Odometry
    from sensor_msgs.msg import CameraInfo

    from s2m_ros.bags.storage import tf_message
    from s2m_ros.obstacles.geometry import transform_matrix
    from s2m_ros.ros.conversions.pointcloud import xyz_to_cloud
    from s2m_ros.ros.conversions.s2m_msgs import frame_masks_to_msg, make_header

    t = draw(st.integers(1, FUZZ_MAX_SEC - 1)) * 10 ** 9
    t_base_lidar = transform_matrix([1.2, 0.0, 1.9], [0.0, 0.0, 0.0, 1.0])
    tf = tf_message([("fz_base", "fz_lidar", t_base_lidar),
                     ("fz_base", "fz_cam", t_base_lidar @ np.linalg.inv(fs.T_CL))], t)
    model, n_d = draw(st.sampled_from([("plumb_bob", 5), ("plumb_bob", 8), ("rational_polynomial", 8),
                                       ("rational_polynomial", 14), ("equidistant", 4)]))
    d = [draw(st.floats(-0.3, 0.3)) for _ in range(n_d)]
    info = CameraInfo(header=make_header(t, "fz_cam"), width=fs.W, height=fs.H, distortion_model=model, d=d,
                      k=[float(v) for v in fs.K.ravel()])
    odom = []
    for dt in (-10 ** 8, 10 ** 8):
        o = Odometry(header=make_header(t + dt, "map"), child_frame_id="fz_base")
        o.pose.pose.position.x = draw(st.floats(-100, 100))
        o.pose.pose.orientation.w = 1.0
        odom.append(("odom", o))
    boxes = [((draw(st.floats(2, 60)), draw(st.floats(-15, 15))),
              (draw(st.floats(0.05, 3)), draw(st.floats(0.05, 3)), draw(st.floats(0.05, 3))))
             for _ in range(draw(st.integers(0, 3)))]
    xyz = fs.cloud(boxes, seed=draw(st.integers(0, 1000)))
    if draw(st.booleans()):
        xyz[:: draw(st.integers(2, 50))] = np.nan
    masks = []
    for i in range(draw(st.integers(0, 4))):
        x, y = draw(st.integers(0, fs.W - 1)), draw(st.integers(0, fs.H - 1))
        w, h = draw(st.integers(1, fs.W - x)), draw(st.integers(1, fs.H - y))
        masks.append(fs.rect_mask(x, y, w, h, draw(st.integers(1, 2 ** 32 - 1)),
                                  score=draw(st.one_of(st.floats(-10, 10), st.just(float("nan"))))))
    return ([("tf", tf), ("info", info)] + odom +
            [("points", xyz_to_cloud(xyz, header=make_header(t, "fz_lidar"))),
             ("masks", frame_masks_to_msg(fs.frame_masks(t, masks)))])
