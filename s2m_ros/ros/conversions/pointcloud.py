"""sensor_msgs/PointCloud2 <-> numpy, for any field layout.

``cloud_to_structured`` returns a numpy structured array with one named field
per PointField (native byte order; fields with count > 1 become sub-arrays),
shaped (height, width) for organized clouds and (width,) for unorganized ones
(height == 1). ``cloud_to_xyz`` gives the (N, 3) coordinates the fusion needs,
with NaN/inf points removed. ``structured_to_cloud`` writes any such array back,
keeping its padding (offsets, itemsize) as the point layout.
"""
import numpy as np

from s2m_ros.ros.conversions._buffer import as_uint8, to_byte_array
from s2m_ros.ros.conversions.errors import ConversionError

# sensor_msgs/PointField datatype constants -> numpy scalar types
DATATYPES = {
    1: np.int8,
    2: np.uint8,
    3: np.int16,
    4: np.uint16,
    5: np.int32,
    6: np.uint32,
    7: np.float32,
    8: np.float64,
}
_DATATYPE_OF = {np.dtype(t).str[1:]: code for code, t in DATATYPES.items()}


_MAX_POINT_STEP = 2 ** 31 - 1


def cloud_dtype(fields, point_step, is_bigendian=False):
    """The numpy dtype (itemsize = point_step) that describes one point of a cloud."""
    point_step = int(point_step)
    if point_step <= 0:
        raise ConversionError("PointCloud2.point_step", point_step, "must be positive")
    if point_step > _MAX_POINT_STEP:  # numpy's item size is a C int (found by the message fuzzer)
        raise ConversionError("PointCloud2.point_step", point_step, "larger than %d bytes" % _MAX_POINT_STEP)
    order = ">" if is_bigendian else "<"
    names, formats, offsets, spans = [], [], [], []
    for f in fields:
        name = str(f.name)
        if not name:
            raise ConversionError("PointField.name", name, "empty field name")
        if name in names:
            raise ConversionError("PointField.name", name, "duplicate field name")
        if f.datatype not in DATATYPES:
            raise ConversionError("PointField.datatype", "%s:%s" % (name, f.datatype),
                                  "unknown datatype (valid: 1..8, INT8..FLOAT64)")
        base = np.dtype(DATATYPES[f.datatype]).newbyteorder(order)
        count = max(int(f.count), 1)  # some drivers write count=0 for scalars
        offset = int(f.offset)
        end = offset + base.itemsize * count
        if offset < 0 or end > point_step:
            raise ConversionError("PointField.offset", "%s:%d" % (name, offset),
                                  "field bytes [%d, %d) exceed point_step %d" % (offset, end, point_step))
        for other, (o_start, o_end) in zip(names, spans):
            if offset < o_end and o_start < end:
                raise ConversionError("PointField.offset", "%s:%d" % (name, offset), "overlaps field %r" % other)
        names.append(name)
        formats.append(base if count == 1 else (base, (count,)))
        offsets.append(offset)
        spans.append((offset, end))
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": point_step})


def cloud_to_structured(msg):
    """Decode all fields of a ``sensor_msgs/PointCloud2`` into a structured array (native byte order)."""
    height, width = int(msg.height), int(msg.width)
    point_step, row_step = int(msg.point_step), int(msg.row_step)
    dtype = cloud_dtype(msg.fields, point_step, bool(msg.is_bigendian))
    if height < 0 or width < 0:
        raise ConversionError("PointCloud2.height/width", "%dx%d" % (width, height), "negative size")
    packed = width * point_step
    if height * width > 0 and row_step < packed:
        raise ConversionError("PointCloud2.row_step", row_step, "smaller than width*point_step = %d" % packed)
    data = as_uint8(msg.data)
    if data.size != row_step * height and not (height * width == 0 and data.size == 0):
        raise ConversionError("PointCloud2.data", "%d bytes" % data.size,
                              "expected row_step*height = %d*%d = %d bytes" % (row_step, height, row_step * height))
    if height * width == 0:
        points = np.zeros(0, dtype=dtype)
    else:
        rows = data.reshape(height, row_step)
        if row_step != packed:
            rows = np.ascontiguousarray(rows[:, :packed])
        points = rows.reshape(-1).view(dtype)
    if msg.is_bigendian:
        points = points.astype(dtype.newbyteorder("="))
    return points.reshape((height, width)) if height > 1 else points.reshape(-1)


def field_names(msg):
    return [str(f.name) for f in msg.fields]


def cloud_to_xyz(msg, remove_invalid=True, dtype=np.float32, return_index=False):
    """The (N, 3) point coordinates of a cloud from its x, y, z fields (any numeric type).

    With ``remove_invalid`` (default) points with a NaN or infinite coordinate
    are dropped. With ``return_index`` the flat indices (row-major for organized
    clouds) of the returned points are returned too, to pick other fields.
    """
    names = field_names(msg)
    missing = [axis for axis in ("x", "y", "z") if axis not in names]
    if missing:
        raise ConversionError("PointCloud2.fields", names, "missing coordinate field(s) %s" % ", ".join(missing))
    points = cloud_to_structured(msg).reshape(-1)
    for axis in ("x", "y", "z"):
        if points.dtype[axis].shape:
            raise ConversionError("PointField.count", "%s:%d" % (axis, points.dtype[axis].shape[0]),
                                  "coordinate fields must be scalars")
    xyz = np.empty((points.size, 3), dtype=dtype)
    xyz[:, 0] = points["x"]
    xyz[:, 1] = points["y"]
    xyz[:, 2] = points["z"]
    index = np.arange(points.size)
    if remove_invalid:
        valid = np.isfinite(xyz).all(axis=1)
        if not valid.all():
            xyz, index = xyz[valid], index[valid]
    return (xyz, index) if return_index else xyz


def structured_to_cloud(points, header=None, is_bigendian=False, row_step=None, is_dense=None):
    """Encode a structured array as ``sensor_msgs/PointCloud2``.

    A 1-D array gives an unorganized cloud (height 1), a 2-D array an organized
    one. The array dtype's offsets and itemsize become the field offsets and
    point_step (so padding is kept). ``row_step`` may exceed width*point_step to
    pad rows. ``is_dense`` defaults to "x, y, z all finite" when those exist.
    """
    from sensor_msgs.msg import PointCloud2, PointField

    points = np.asarray(points)
    if points.dtype.names is None:
        raise ConversionError("array.dtype", str(points.dtype), "a structured array with named fields is needed")
    if points.ndim not in (1, 2):
        raise ConversionError("array.shape", points.shape, "must be (N,) or (H, W)")
    height, width = (1, points.shape[0]) if points.ndim == 1 else points.shape
    fields = []
    for name in points.dtype.names:
        sub, offset = points.dtype.fields[name][:2]
        base, shape = (sub.subdtype if sub.subdtype is not None else (sub, ()))
        if len(shape) > 1:
            raise ConversionError("array.dtype", "%s:%s" % (name, shape), "only 1-D sub-arrays are supported")
        code = _DATATYPE_OF.get(base.str[1:])
        if code is None:
            raise ConversionError("array.dtype", "%s:%s" % (name, base), "no PointField datatype for this type")
        fields.append(PointField(name=name, offset=int(offset), datatype=code, count=int(shape[0]) if shape else 1))
    order = ">" if is_bigendian else "<"
    wire = np.dtype({
        "names": list(points.dtype.names),
        "formats": [points.dtype.fields[n][0].newbyteorder(order) for n in points.dtype.names],
        "offsets": [points.dtype.fields[n][1] for n in points.dtype.names],
        "itemsize": points.dtype.itemsize,
    })
    flat = np.zeros(height * width, dtype=wire)  # zeroed so padding bytes are deterministic
    for name in points.dtype.names:
        flat[name] = points[name].reshape((height * width,) + points.dtype[name].shape)
    packed = width * points.dtype.itemsize
    row_step = packed if row_step is None else int(row_step)
    if row_step < packed:
        raise ConversionError("row_step", row_step, "smaller than width*point_step = %d" % packed)
    raw = flat.view(np.uint8).reshape(height, packed)
    if row_step != packed:
        padded = np.zeros((height, row_step), dtype=np.uint8)
        padded[:, :packed] = raw
        raw = padded
    if is_dense is None:
        is_dense = True
        for axis in ("x", "y", "z"):
            if axis in points.dtype.names and np.issubdtype(points.dtype[axis].base, np.floating):
                is_dense = is_dense and bool(np.isfinite(points[axis]).all())
    msg = PointCloud2()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(height), int(width)
    msg.fields = fields
    msg.is_bigendian = bool(is_bigendian)
    msg.point_step = int(points.dtype.itemsize)
    msg.row_step = row_step
    msg.is_dense = bool(is_dense)
    msg.data = to_byte_array(raw)
    return msg


def xyz_to_cloud(xyz, header=None, dtype=np.float32, **extra_fields):
    """Unorganized cloud with float x, y, z (and optional per-point extra fields, e.g. intensity=...)."""
    xyz = np.asarray(xyz)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ConversionError("xyz.shape", xyz.shape, "must be (N, 3)")
    spec = [("x", dtype), ("y", dtype), ("z", dtype)]
    for name, values in extra_fields.items():
        values = np.asarray(values)
        if values.shape[:1] != (xyz.shape[0],):
            raise ConversionError(name, values.shape, "needs one value per point (%d)" % xyz.shape[0])
        spec.append((name, values.dtype, values.shape[1:]) if values.ndim > 1 else (name, values.dtype))
    points = np.zeros(xyz.shape[0], dtype=spec)
    points["x"], points["y"], points["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    for name, values in extra_fields.items():
        points[name] = values
    return structured_to_cloud(points, header=header)
