"""sensor_msgs/PointCloud2 <-> numpy (s2m_ros.ros.conversions.pointcloud)."""
import struct

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from hypothesis import given, settings
from hypothesis import strategies as st
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import Header

from s2m_ros.ros.conversions.errors import ConversionError
from s2m_ros.ros.conversions.pointcloud import (
    DATATYPES,
    cloud_dtype,
    cloud_to_structured,
    cloud_to_xyz,
    structured_to_cloud,
    xyz_to_cloud,
)

# Velodyne (velodyne_pointcloud PointXYZIRT): x y z pad intensity ring pad time, point_step 32
VELODYNE = np.dtype({"names": ["x", "y", "z", "intensity", "ring", "time"],
                     "formats": ["<f4", "<f4", "<f4", "<f4", "<u2", "<f4"],
                     "offsets": [0, 4, 8, 16, 20, 24], "itemsize": 32})
# Ouster (ouster_ros PointOS1-like), point_step 48
OUSTER = np.dtype({"names": ["x", "y", "z", "intensity", "t", "reflectivity", "ring", "ambient", "range"],
                   "formats": ["<f4", "<f4", "<f4", "<f4", "<u4", "<u2", "<u1", "<u2", "<u4"],
                   "offsets": [0, 4, 8, 16, 20, 24, 26, 28, 32], "itemsize": 48})


def fields_of(msg):
    return [(f.name, f.offset, f.datatype, f.count) for f in msg.fields]


def fill(dtype, shape, rng):
    """Random values for every field of a structured dtype (finite floats, full-range ints)."""
    a = np.zeros(shape, dtype=dtype)
    for name in dtype.names:
        sub = dtype[name]
        base, fshape = (sub.base, sub.shape)
        full = tuple(shape) + fshape
        if np.issubdtype(base, np.integer):
            info = np.iinfo(base)
            a[name] = rng.integers(info.min, info.max, size=full, dtype=base, endpoint=True)
        else:
            a[name] = (rng.standard_normal(full) * 100).astype(base)
    return a


def assert_points_equal(out, expected):
    assert out.dtype == expected.dtype  # names, formats, offsets, itemsize
    assert out.dtype.isnative or all(out.dtype[n].base.isnative for n in out.dtype.names)
    assert out.shape == expected.shape
    for name in expected.dtype.names:
        np.testing.assert_array_equal(out[name], expected[name], err_msg=name)


# --------------------------------------------------------------------------- round trips


def test_xyz_float32_packed():
    xyz = np.array([[1.0, 2.0, 3.0], [-4.5, 0.25, 1e6], [0.0, -0.0, 7.0]], dtype=np.float32)
    header = Header(stamp=Time(sec=10, nanosec=20), frame_id="lidar")
    msg = xyz_to_cloud(xyz, header=header)
    assert msg.header == header
    assert fields_of(msg) == [("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 8, 7, 1)]
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (1, 3, 12, 36)
    assert len(msg.data) == 36 and msg.is_dense is True and msg.is_bigendian is False
    assert bytes(msg.data[:12]) == struct.pack("<fff", 1.0, 2.0, 3.0)
    np.testing.assert_array_equal(cloud_to_xyz(msg), xyz)
    pts = cloud_to_structured(msg)
    assert pts.shape == (3,)
    np.testing.assert_array_equal(pts["z"], xyz[:, 2])


@pytest.mark.parametrize("layout", [VELODYNE, OUSTER], ids=["velodyne32", "ouster48"])
def test_lidar_layouts_round_trip(layout):
    a = fill(layout, (50,), np.random.default_rng(0))
    msg = structured_to_cloud(a)
    assert msg.point_step == layout.itemsize
    assert msg.row_step == 50 * layout.itemsize and len(msg.data) == msg.row_step
    expected_fields = [(n, layout.fields[n][1], {np.dtype(t).str[1:]: c for c, t in DATATYPES.items()}[
        layout[n].str[1:]], 1) for n in layout.names]
    assert fields_of(msg) == expected_fields
    raw = np.frombuffer(bytes(msg.data), np.uint8).reshape(50, layout.itemsize)
    assert not raw[:, 12:16].any()  # padding bytes are zero
    out = cloud_to_structured(msg)
    assert_points_equal(out, a)
    np.testing.assert_array_equal(cloud_to_xyz(msg), np.stack([a["x"], a["y"], a["z"]], axis=1))


def test_xyz_float64():
    xyz = np.random.default_rng(1).standard_normal((20, 3))
    msg = xyz_to_cloud(xyz, dtype=np.float64)
    assert fields_of(msg) == [("x", 0, 8, 1), ("y", 8, 8, 1), ("z", 16, 8, 1)]
    assert msg.point_step == 24
    np.testing.assert_array_equal(cloud_to_xyz(msg, dtype=np.float64), xyz)  # exact in float64
    assert cloud_to_xyz(msg).dtype == np.float32
    np.testing.assert_array_equal(cloud_to_xyz(msg), xyz.astype(np.float32))


def test_count_greater_than_one():
    dt = np.dtype({"names": ["x", "y", "z", "normal", "rgba"],
                   "formats": ["<f4", "<f4", "<f4", ("<f4", (3,)), ("u1", (4,))],
                   "offsets": [0, 4, 8, 16, 28], "itemsize": 32})
    a = fill(dt, (9,), np.random.default_rng(2))
    msg = structured_to_cloud(a)
    assert fields_of(msg) == [("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 8, 7, 1), ("normal", 16, 7, 3),
                              ("rgba", 28, 2, 4)]
    out = cloud_to_structured(msg)
    assert out["normal"].shape == (9, 3) and out["rgba"].shape == (9, 4)
    assert_points_equal(out, a)
    # xyz_to_cloud with (N, k) extra fields makes count=k fields
    msg = xyz_to_cloud(a_xyz := np.ones((9, 3), np.float32), normal=a["normal"], ring=np.arange(9, dtype=np.uint16))
    assert fields_of(msg) == [("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 8, 7, 1), ("normal", 12, 7, 3),
                              ("ring", 24, 4, 1)]
    out = cloud_to_structured(msg)
    np.testing.assert_array_equal(out["normal"], a["normal"])
    np.testing.assert_array_equal(out["ring"], np.arange(9))
    np.testing.assert_array_equal(cloud_to_xyz(msg), a_xyz)


def test_count_zero_is_read_as_scalar():
    msg = PointCloud2(height=1, width=2, point_step=8, row_step=16, is_bigendian=False,
                      fields=[PointField(name="a", offset=0, datatype=7, count=0),
                              PointField(name="b", offset=4, datatype=5, count=0)],
                      data=struct.pack("<fifi", 1.5, -3, 2.5, 4))
    out = cloud_to_structured(msg)
    assert out["a"].tolist() == [1.5, 2.5] and out["b"].tolist() == [-3, 4]


def test_organized_cloud_with_nan():
    rng = np.random.default_rng(3)
    dt = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "<f4")])
    a = fill(dt, (4, 6), rng)
    a["x"][1, 2] = np.nan
    a["z"][3, 5] = np.nan
    msg = structured_to_cloud(a)
    assert (msg.height, msg.width, msg.row_step) == (4, 6, 6 * 16)
    assert msg.is_dense is False
    out = cloud_to_structured(msg)
    assert out.shape == (4, 6)
    assert_points_equal(out, a)
    xyz, index = cloud_to_xyz(msg, return_index=True)
    assert xyz.shape == (22, 3)
    assert 1 * 6 + 2 not in index and 3 * 6 + 5 not in index
    flat = a.reshape(-1)
    np.testing.assert_array_equal(xyz, np.stack([flat["x"][index], flat["y"][index], flat["z"][index]], axis=1))
    full = cloud_to_xyz(msg, remove_invalid=False)
    assert full.shape == (24, 3) and np.isnan(full[8, 0]) and np.isnan(full[23, 2])


def test_organized_single_row_decodes_unorganized():
    a = fill(np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4")]), (1, 5), np.random.default_rng(4))
    msg = structured_to_cloud(a)
    assert (msg.height, msg.width) == (1, 5)
    out = cloud_to_structured(msg)
    assert out.shape == (5,)
    assert_points_equal(out, a.reshape(-1))


def test_big_endian_round_trip_and_wire_bytes():
    a = fill(VELODYNE, (7,), np.random.default_rng(5))
    msg = structured_to_cloud(a, is_bigendian=True)
    assert msg.is_bigendian is True
    raw = bytes(msg.data)
    assert raw[0:4] == struct.pack(">f", a["x"][0])
    assert raw[20:22] == struct.pack(">H", a["ring"][0])
    assert raw[32 + 24:32 + 28] == struct.pack(">f", a["time"][1])
    out = cloud_to_structured(msg)
    assert all(out.dtype[n].isnative for n in out.dtype.names)
    assert_points_equal(out, a)
    np.testing.assert_array_equal(cloud_to_xyz(msg)[:, 1], a["y"])


def test_row_step_padding():
    a = fill(VELODYNE, (3, 4), np.random.default_rng(6))
    msg = structured_to_cloud(a, row_step=4 * 32 + 7)
    assert msg.row_step == 135 and len(msg.data) == 3 * 135
    raw = np.frombuffer(bytes(msg.data), np.uint8).reshape(3, 135)
    assert not raw[:, 128:].any()
    assert_points_equal(cloud_to_structured(msg), a)
    # garbage in the row padding is ignored
    garbage = raw.copy()
    garbage[:, 128:] = 0xEE
    msg.data = garbage.tobytes()
    assert_points_equal(cloud_to_structured(msg), a)


def test_cloud_round_trip_through_serialization():
    a = fill(OUSTER, (2, 5), np.random.default_rng(7))
    header = Header(stamp=Time(sec=1, nanosec=999_999_999), frame_id="os_sensor")
    msg = structured_to_cloud(a, header=header, is_bigendian=True, row_step=5 * 48 + 3)
    back = deserialize_message(serialize_message(msg), PointCloud2)
    assert back.header == header and fields_of(back) == fields_of(msg)
    assert_points_equal(cloud_to_structured(back), a)


def test_is_dense_computation():
    dt = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "<f4")])
    a = np.zeros(3, dt)
    assert structured_to_cloud(a).is_dense is True
    b = a.copy()
    b["intensity"][0] = np.nan  # only coordinates count
    assert structured_to_cloud(b).is_dense is True
    b = a.copy()
    b["z"][2] = np.inf
    assert structured_to_cloud(b).is_dense is False
    b = a.copy()
    b["y"][1] = np.nan
    assert structured_to_cloud(b).is_dense is False
    assert structured_to_cloud(b, is_dense=True).is_dense is True  # explicit value wins
    ints = np.zeros(2, [("x", "<i2"), ("y", "<i2"), ("z", "<i2")])
    assert structured_to_cloud(ints).is_dense is True
    assert structured_to_cloud(np.zeros(2, [("intensity", "<f4")])).is_dense is True


def test_non_contiguous_and_big_endian_input_arrays():
    a = fill(VELODYNE, (6, 8), np.random.default_rng(8))
    view = a[::2, 1::3]  # strided view
    assert_points_equal(cloud_to_structured(structured_to_cloud(view)), view.copy())
    be = np.zeros(4, [("x", ">f4"), ("y", ">f8"), ("ring", ">u2")])
    be["x"], be["y"], be["ring"] = [1.5, -2, 3, 4], [0.1, 0.2, 0.3, 0.4], [1, 2, 3, 65535]
    msg = structured_to_cloud(be)  # a big-endian numpy array is written little-endian unless asked
    assert msg.is_bigendian is False and fields_of(msg) == [("x", 0, 7, 1), ("y", 4, 8, 1), ("ring", 12, 4, 1)]
    out = cloud_to_structured(msg)
    assert out.dtype == be.dtype.newbyteorder("<")
    for name in be.dtype.names:
        np.testing.assert_array_equal(out[name], be[name])


# --------------------------------------------------------------------------- hand-built messages


def velodyne_fields():
    return [PointField(name="x", offset=0, datatype=PointField.FLOAT32, count=1),
            PointField(name="y", offset=4, datatype=PointField.FLOAT32, count=1),
            PointField(name="z", offset=8, datatype=PointField.FLOAT32, count=1),
            PointField(name="intensity", offset=12, datatype=PointField.FLOAT32, count=1),
            PointField(name="ring", offset=16, datatype=PointField.UINT16, count=1)]


POINTS = [(1.5, -2.0, 0.25, 100.0, 7), (-0.5, 3.75, -1.0, 0.0, 31), (8.0, 0.0, 2.5, 255.0, 0)]


@pytest.mark.parametrize("point_step", [18, 22, 32])
def test_hand_built_velodyne_little_endian(point_step):
    data = b"".join(struct.pack("<ffffH", *p) + b"\xab" * (point_step - 18) for p in POINTS)
    msg = PointCloud2(height=1, width=3, fields=velodyne_fields(), is_bigendian=False, point_step=point_step,
                      row_step=3 * point_step, data=data, is_dense=True)
    out = cloud_to_structured(msg)
    assert out.shape == (3,)
    assert out.dtype.itemsize == point_step and out.dtype.names == ("x", "y", "z", "intensity", "ring")
    assert out["ring"].dtype == np.uint16 and out["x"].dtype == np.float32
    assert [tuple(p) for p in out.tolist()] == POINTS
    np.testing.assert_array_equal(cloud_to_xyz(msg), np.array([p[:3] for p in POINTS], np.float32))


def test_hand_built_big_endian_organized():
    rows = 2
    data = b"".join(struct.pack(">ffffH", *p) + b"\x00\x00" for p in POINTS + POINTS[::-1])
    msg = PointCloud2(height=rows, width=3, fields=velodyne_fields(), is_bigendian=True, point_step=20,
                      row_step=60, data=data)
    out = cloud_to_structured(msg)
    assert out.shape == (2, 3)
    assert [tuple(p) for p in out[0].tolist()] == POINTS
    assert [tuple(p) for p in out[1].tolist()] == POINTS[::-1]


def test_hand_built_fields_out_of_offset_order():
    # ring first in the field list but last in memory; float64 x at offset 2
    fields = [PointField(name="ring", offset=26, datatype=PointField.UINT16, count=1),
              PointField(name="z", offset=18, datatype=PointField.FLOAT64, count=1),
              PointField(name="x", offset=2, datatype=PointField.FLOAT64, count=1),
              PointField(name="y", offset=10, datatype=PointField.INT32, count=1),
              PointField(name="flag", offset=0, datatype=PointField.INT8, count=1)]
    data = struct.pack("<bxdixxxxdH", -3, 1.25, -7, 9.5, 65535)
    assert len(data) == 28
    msg = PointCloud2(height=1, width=1, fields=fields, point_step=28, row_step=28, data=data)
    out = cloud_to_structured(msg)
    assert out.dtype.names == ("ring", "z", "x", "y", "flag")
    assert out[0].tolist() == (65535, 9.5, 1.25, -7, -3)
    # written back with the same layout
    again = structured_to_cloud(out)
    assert fields_of(again) == fields_of(msg)
    assert bytes(again.data) == data


# --------------------------------------------------------------------------- cloud_to_xyz


def test_cloud_to_xyz_removes_nan_and_inf_with_index():
    xyz = np.arange(30, dtype=np.float32).reshape(10, 3)
    xyz[1, 0] = np.nan
    xyz[4, 1] = np.inf
    xyz[7, 2] = -np.inf
    msg = xyz_to_cloud(xyz, intensity=np.arange(10, dtype=np.float32) * 2)
    assert msg.is_dense is False
    out, index = cloud_to_xyz(msg, return_index=True)
    assert index.tolist() == [0, 2, 3, 5, 6, 8, 9]
    np.testing.assert_array_equal(out, xyz[index])
    intensity = cloud_to_structured(msg)["intensity"]
    np.testing.assert_array_equal(intensity[index], index * 2.0)
    np.testing.assert_array_equal(cloud_to_xyz(msg), out)
    kept, all_index = cloud_to_xyz(msg, remove_invalid=False, return_index=True)
    assert kept.shape == (10, 3) and all_index.tolist() == list(range(10))


@pytest.mark.parametrize("int_type", [np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32])
def test_cloud_to_xyz_int_coordinates(int_type):
    info = np.iinfo(int_type)
    dt = np.dtype([("x", int_type), ("y", int_type), ("z", int_type)])
    a = np.array([(info.min, 0, info.max), (1, 2, 3)], dtype=dt)
    msg = structured_to_cloud(a)
    out = cloud_to_xyz(msg, dtype=np.float64)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, [[info.min, 0, info.max], [1, 2, 3]])


def test_cloud_to_xyz_missing_coordinate():
    msg = structured_to_cloud(np.zeros(3, [("x", "<f4"), ("y", "<f4"), ("intensity", "<f4")]))
    with pytest.raises(ConversionError) as err:
        cloud_to_xyz(msg)
    assert err.value.field == "PointCloud2.fields"
    assert err.value.value == ["x", "y", "intensity"]
    assert "z" in err.value.reason


def test_cloud_to_xyz_vector_coordinate_rejected():
    msg = structured_to_cloud(np.zeros(3, [("x", "<f4", (2,)), ("y", "<f4"), ("z", "<f4")]))
    with pytest.raises(ConversionError) as err:
        cloud_to_xyz(msg)
    assert err.value.field == "PointField.count"


@pytest.mark.parametrize("height", [0, 1, 3])
def test_cloud_to_xyz_empty(height):
    msg = PointCloud2(height=height, width=0, fields=velodyne_fields(), point_step=20, row_step=0, data=b"")
    out, index = cloud_to_xyz(msg, return_index=True)
    assert out.shape == (0, 3) and out.dtype == np.float32
    assert index.shape == (0,)
    empty = xyz_to_cloud(np.zeros((0, 3)))
    assert (empty.width, len(empty.data)) == (0, 0)
    assert cloud_to_xyz(empty).shape == (0, 3)
    assert cloud_to_structured(empty).shape == (0,)


# --------------------------------------------------------------------------- property test

NAMES = ["x", "y", "z", "intensity", "ring", "t", "rgb", "label"]


@st.composite
def clouds(draw):
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=6, unique=True))
    specs = []
    for name in names:
        code = draw(st.integers(1, 8))
        count = draw(st.sampled_from([1, 1, 1, 2, 3]))
        specs.append((name, np.dtype(DATATYPES[code]), count))
    placement = draw(st.permutations(range(len(specs))))  # memory order differs from field order
    offsets = [0] * len(specs)
    cursor = 0
    for i in placement:
        cursor += draw(st.integers(0, 5))  # gap before the field
        offsets[i] = cursor
        cursor += specs[i][1].itemsize * specs[i][2]
    point_step = cursor + draw(st.integers(0, 8))
    dt = np.dtype({"names": [s[0] for s in specs],
                   "formats": [s[1] if s[2] == 1 else (s[1], (s[2],)) for s in specs],
                   "offsets": offsets, "itemsize": point_step})
    if draw(st.booleans()):
        shape = (draw(st.integers(2, 5)), draw(st.integers(0, 6)))
    else:
        shape = (draw(st.integers(0, 12)),)
    return dt, shape


@settings(max_examples=60, deadline=None)
@given(spec=clouds(), big_endian=st.booleans(), row_pad=st.integers(0, 9), seed=st.integers(0, 2**32 - 1),
       nan=st.booleans())
def test_structured_round_trip_property(spec, big_endian, row_pad, seed, nan):
    dt, shape = spec
    a = fill(dt, shape, np.random.default_rng(seed))
    if nan and a.size and np.issubdtype(dt[dt.names[0]].base, np.floating):
        a[dt.names[0]].reshape(-1)[0] = np.nan
    width = shape[-1]
    row_step = width * dt.itemsize + row_pad
    msg = structured_to_cloud(a, is_bigendian=big_endian, row_step=row_step)
    height = shape[0] if len(shape) == 2 else 1
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (height, width, dt.itemsize, row_step)
    assert len(msg.data) == row_step * height
    assert msg.is_bigendian is big_endian
    assert [(f.name, f.offset, f.count) for f in msg.fields] == [
        (n, dt.fields[n][1], dt[n].shape[0] if dt[n].shape else 1) for n in dt.names]
    assert [DATATYPES[f.datatype] for f in msg.fields] == [dt[n].base.type for n in dt.names]
    assert cloud_dtype(msg.fields, msg.point_step) == dt
    out = cloud_to_structured(msg)
    assert_points_equal(out, a)


# --------------------------------------------------------------------------- bad input


def cloud(fields=None, point_step=12, width=2, height=1, row_step=None, data=None):
    fields = fields if fields is not None else [PointField(name=n, offset=4 * i, datatype=7, count=1)
                                                for i, n in enumerate("xyz")]
    row_step = width * point_step if row_step is None else row_step
    data = bytes(row_step * height) if data is None else data
    return PointCloud2(height=height, width=width, fields=fields, point_step=point_step, row_step=row_step,
                       data=data)


@pytest.mark.parametrize("datatype", [0, 9, 255])
def test_unknown_datatype(datatype):
    fields = [PointField(name="x", offset=0, datatype=7, count=1),
              PointField(name="weird", offset=4, datatype=datatype, count=1)]
    with pytest.raises(ConversionError) as err:
        cloud_to_structured(cloud(fields=fields, point_step=8))
    assert err.value.field == "PointField.datatype"
    assert err.value.value == "weird:%d" % datatype


@pytest.mark.parametrize("offset,datatype,count", [(10, 7, 1), (12, 2, 1), (4, 7, 3), (8, 8, 1)])
def test_field_beyond_point_step(offset, datatype, count):
    fields = [PointField(name="x", offset=0, datatype=7, count=1),
              PointField(name="v", offset=offset, datatype=datatype, count=count)]
    with pytest.raises(ConversionError) as err:
        cloud_to_structured(cloud(fields=fields, point_step=12))
    assert err.value.field == "PointField.offset"
    assert err.value.value == "v:%d" % offset


@pytest.mark.parametrize("offset", [0, 2, 3])
def test_overlapping_fields(offset):
    fields = [PointField(name="x", offset=0, datatype=7, count=1),
              PointField(name="y", offset=offset, datatype=7, count=1)]
    with pytest.raises(ConversionError) as err:
        cloud_to_structured(cloud(fields=fields, point_step=12))
    assert err.value.field == "PointField.offset"
    assert "overlaps" in err.value.reason
    # adjacent is fine
    fields[1].offset = 4
    assert cloud_to_structured(cloud(fields=fields, point_step=12)).dtype.names == ("x", "y")


def test_duplicate_and_empty_names():
    fields = [PointField(name="x", offset=0, datatype=7, count=1), PointField(name="x", offset=4, datatype=7, count=1)]
    with pytest.raises(ConversionError) as err:
        cloud_to_structured(cloud(fields=fields))
    assert err.value.field == "PointField.name" and err.value.value == "x"
    fields = [PointField(name="", offset=0, datatype=7, count=1)]
    with pytest.raises(ConversionError) as err:
        cloud_to_structured(cloud(fields=fields))
    assert err.value.field == "PointField.name"


@pytest.mark.parametrize("delta", [-1, -12, 1, 24])
def test_data_length_mismatch(delta):
    with pytest.raises(ConversionError) as err:
        cloud_to_structured(cloud(width=3, height=2, data=bytes(72 + delta)))
    assert err.value.field == "PointCloud2.data"
    assert err.value.value == "%d bytes" % (72 + delta)


def test_row_step_too_small():
    with pytest.raises(ConversionError) as err:
        cloud_to_structured(cloud(width=3, row_step=35, data=bytes(35)))
    assert err.value.field == "PointCloud2.row_step"
    assert err.value.value == 35


def test_point_step_zero():
    with pytest.raises(ConversionError) as err:
        cloud_to_structured(cloud(fields=[], point_step=0, row_step=0, data=b""))
    assert err.value.field == "PointCloud2.point_step"
    with pytest.raises(ConversionError) as err:
        cloud_dtype([], 0)
    assert err.value.field == "PointCloud2.point_step"


def test_structured_to_cloud_bad_input():
    with pytest.raises(ConversionError) as err:
        structured_to_cloud(np.zeros((4, 3), np.float32))
    assert err.value.field == "array.dtype"
    with pytest.raises(ConversionError) as err:
        structured_to_cloud(np.zeros((2, 2, 2), [("x", "<f4")]))
    assert err.value.field == "array.shape"
    with pytest.raises(ConversionError) as err:
        structured_to_cloud(np.zeros(2, [("x", "<f2")]))
    assert err.value.field == "array.dtype"
    with pytest.raises(ConversionError) as err:
        structured_to_cloud(np.zeros(2, [("x", "<f4", (2, 2))]))
    assert err.value.field == "array.dtype"
    with pytest.raises(ConversionError) as err:
        structured_to_cloud(np.zeros(2, [("x", "<f4")]), row_step=7)
    assert err.value.field == "row_step"
    with pytest.raises(ConversionError) as err:
        xyz_to_cloud(np.zeros((4, 2)))
    assert err.value.field == "xyz.shape"
    with pytest.raises(ConversionError) as err:
        xyz_to_cloud(np.zeros((4, 3)), intensity=np.zeros(5))
    assert err.value.field == "intensity"


@pytest.mark.parametrize("point_step", [2 ** 31, 2 ** 32 - 1])
def test_a_point_step_beyond_numpy_item_sizes_is_a_conversion_error(point_step):
    """Found by the 10-minute message fuzzer: point_step >= 2^31 (a garbled wire message) made numpy raise
    "integer won't fit into a C int" from cloud_dtype, counted as processing_errors instead of bad_cloud."""
    msg = PointCloud2(height=1, width=1, point_step=point_step, row_step=point_step,
                      fields=[PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1)
                              for i, n in enumerate("xyz")])
    with pytest.raises(ConversionError, match="point_step.*larger than 2147483647"):
        cloud_to_xyz(msg)
