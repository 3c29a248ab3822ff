"""Zero-copy access to the byte payload of ROS messages (array.array, bytes, list)."""
import array

import numpy as np


def as_uint8(data):
    """Return ``data`` (a ROS uint8[] field) as a 1-D uint8 numpy array, without copying if possible."""
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8) if data.dtype.itemsize == 1 else data.astype(np.uint8).reshape(-1)
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError):
        return np.asarray(data, dtype=np.uint8).reshape(-1)


def to_byte_array(buf):
    """Wrap bytes (or a contiguous numpy array) as the ``array.array('B')`` rclpy stores for uint8[]."""
    out = array.array("B")
    out.frombytes(buf if isinstance(buf, (bytes, bytearray)) else np.ascontiguousarray(buf).tobytes())
    return out
