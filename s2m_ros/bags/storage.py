"""rosbag2 bags (sqlite3 and MCAP) without rosbag2_py: write, read, and the synthetic scenario as a bag.

Storage is done by ``rosbags`` (pure Python); message (de)serialisation by rclpy's own CDR code
(``rclpy.serialization``) with the generated rclpy message classes, so a bag written here carries
the encoding the nodes publish, and what is read back is the class the nodes subscribe with.
Types without an rclpy class in this environment (``tf2_msgs/msg/TFMessage``: tf2_msgs is not on
PyPI) go through the ``rosbags`` typestore instead and come back as ``rosbags`` dataclasses; both
flavours have the same field names, and every function here accepts either.

The typestore (message definitions for MCAP schemas and the sqlite3 ``message_definitions`` table,
and the RIHS01 type hashes) is rosbags' ROS 2 Kilted store plus this package's messages parsed from
its ``msg/*.msg`` files (see ``msg_dir``).

A rosbag2 bag is a folder (``metadata.yaml`` + one ``.mcap`` or ``.db3`` file). Bags are written
in rosbag2 metadata version 8 by default (the Iron/Jazzy format, QoS profiles stored as a YAML
string), which every ROS 2 distribution's ``ros2 bag`` since Iron reads; version 9 is the Kilted one.
``write_scenario_bag`` puts the ground truth (``truth.json``) inside the bag folder: rosbag2 only opens
the files that ``metadata.yaml`` lists, so an extra file there is ignored by ``ros2 bag`` and travels
with the bag when it is copied.
"""
import functools
import importlib
import pathlib
import shutil
import time
from dataclasses import dataclass, field

import numpy as np

STORAGES = ("mcap", "sqlite3")
DEFAULT_VERSION = 8
TRUTH_FILE = "truth.json"
_STORAGE_SUFFIX = {".mcap": "mcap", ".db3": "sqlite3"}
_S2M_MESSAGES = ("OodMask", "OodMaskArray", "Obstacle", "ObstacleArray")


class BagError(Exception):
    """A bag cannot be written or read as asked; the message says what and what to do."""


class BadMessageError(BagError):
    """One message of a bag cannot be deserialised (truncated or corrupt CDR bytes); the rest of the bag
    may be fine. ``topic``, ``stamp_ns`` (receive time), ``msgtype``, ``size`` (bytes) say which."""

    def __init__(self, topic, stamp_ns, msgtype, size, error):
        self.topic, self.stamp_ns, self.msgtype, self.size = topic, int(stamp_ns), msgtype, int(size)
        self.error = " ".join(str(error).split()) or type(error).__name__
        super().__init__("cannot deserialise the %s message on %s at %d ns (%d bytes): %s" % (
            msgtype, topic, self.stamp_ns, self.size, self.error))


class BagWriteError(BagError):
    """Writing to a bag failed in its storage (full disk, file removed, ...): the output is not usable."""


# --------------------------------------------------------------------------- types


def normalize_msgtype(msgtype):
    """'sensor_msgs/Image' or 'sensor_msgs/msg/Image' -> 'sensor_msgs/msg/Image'."""
    parts = str(msgtype).strip("/").split("/")
    if len(parts) == 2:
        parts = [parts[0], "msg", parts[1]]
    if len(parts) != 3 or not all(parts):
        raise BagError("message type %r is not of the form package/msg/Name" % (msgtype,))
    return "/".join(parts)


def msg_dir():
    """The folder with this package's ``*.msg`` files: the source tree's ``msg/`` when this module runs
    from the source tree, else the install's ``share/s2m_ros/msg`` (found beside the module, then
    through the ament index).

    Returns None when neither is found (then the s2m_ros message types cannot be written or read
    without an rclpy class)."""
    here = pathlib.Path(__file__).resolve()
    candidates = [here.parents[1] / "msg"]  # source tree: <repo>/s2m_ros/bags/storage.py -> <repo>/msg
    if len(here.parents) > 4:  # install: <prefix>/lib/pythonX.Y/site-packages/s2m_ros/bags/storage.py
        candidates.append(here.parents[4] / "share" / "s2m_ros" / "msg")
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(pathlib.Path(get_package_share_directory("s2m_ros")) / "msg")
    except Exception:  # noqa: BLE001 - no ament index / package not installed: other candidates
        pass
    for folder in candidates:
        if all((folder / (name + ".msg")).is_file() for name in _S2M_MESSAGES):
            return folder
    return None


@functools.lru_cache(maxsize=None)
def typestore():
    """rosbags typestore: ROS 2 Kilted messages + s2m_ros/msg/* from the .msg files (cached; do not modify)."""
    from rosbags.typesys import Stores, get_typestore, get_types_from_msg

    store = get_typestore(Stores.ROS2_KILTED)
    folder = msg_dir()
    if folder is not None:
        types = {}
        for path in sorted(folder.glob("*.msg")):
            types.update(get_types_from_msg(path.read_text(), "s2m_ros/msg/" + path.stem))
        store.register(types)
    return store


@functools.lru_cache(maxsize=None)
def rclpy_class(msgtype):
    """The rclpy message class of ``msgtype`` ('pkg/msg/Name'), or None when it cannot be imported here."""
    pkg, _, name = normalize_msgtype(msgtype).split("/")
    try:
        module = importlib.import_module(pkg + ".msg")
    except ImportError:
        return None
    cls = getattr(module, name, None)
    return cls if isinstance(cls, type) else None


def msgtype_of(msg):
    """'pkg/msg/Name' of an rclpy message or a rosbags message instance."""
    cls = type(msg)
    name = getattr(cls, "__msgtype__", None)
    if isinstance(name, str):
        return name
    parts = cls.__module__.split(".")
    if len(parts) >= 2 and parts[1] == "msg" and hasattr(cls, "_TYPE_SUPPORT"):
        return "%s/msg/%s" % (parts[0], cls.__name__)
    raise BagError("%s.%s is neither an rclpy nor a rosbags message" % (cls.__module__, cls.__name__))


def serialize(msg):
    """CDR bytes of ``msg``: rclpy's serialiser for rclpy messages, the typestore for rosbags ones."""
    msgtype = msgtype_of(msg)
    if hasattr(type(msg), "__msgtype__"):
        return bytes(typestore().serialize_cdr(msg, msgtype))
    from rclpy.serialization import serialize_message

    return serialize_message(msg)


def deserialize(data, msgtype, store=None):
    """CDR bytes -> rclpy message when the class is importable, else a rosbags dataclass."""
    msgtype = normalize_msgtype(msgtype)
    cls = rclpy_class(msgtype)
    if cls is not None:
        from rclpy.serialization import deserialize_message

        return deserialize_message(bytes(data), cls)
    store = store or typestore()
    if msgtype not in store.types:
        raise BagError("cannot decode %s: no rclpy class is importable here and the rosbags typestore "
                       "does not know it" % msgtype)
    return store.deserialize_cdr(data, msgtype)


# --------------------------------------------------------------------------- transforms


def matrix_to_quaternion(rotation):
    """(x, y, z, w) unit quaternion of a 3x3 rotation matrix (w >= 0)."""
    r = np.asarray(rotation, dtype=float)[:3, :3]
    trace = r[0, 0] + r[1, 1] + r[2, 2]
    # Shepperd: take the largest of 4w^2, 4x^2, 4y^2, 4z^2 for accuracy
    i = int(np.argmax([trace, r[0, 0], r[1, 1], r[2, 2]]))
    if i == 0:
        s = 2.0 * np.sqrt(max(1.0 + trace, 0.0))
        q = [(r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s, 0.25 * s]
    elif i == 1:
        s = 2.0 * np.sqrt(max(1.0 + r[0, 0] - r[1, 1] - r[2, 2], 0.0))
        q = [0.25 * s, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s, (r[2, 1] - r[1, 2]) / s]
    elif i == 2:
        s = 2.0 * np.sqrt(max(1.0 + r[1, 1] - r[0, 0] - r[2, 2], 0.0))
        q = [(r[0, 1] + r[1, 0]) / s, 0.25 * s, (r[1, 2] + r[2, 1]) / s, (r[0, 2] - r[2, 0]) / s]
    else:
        s = 2.0 * np.sqrt(max(1.0 + r[2, 2] - r[0, 0] - r[1, 1], 0.0))
        q = [(r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, 0.25 * s, (r[1, 0] - r[0, 1]) / s]
    q = np.asarray(q)
    q /= np.linalg.norm(q)
    return q if q[3] >= 0 else -q


def _stamp_fields(stamp_ns):
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return sec, nanosec


def tf_message(transforms, stamp_ns):
    """tf2_msgs/TFMessage of (parent, child, 4x4 parent<-child) tuples, all stamped ``stamp_ns``.

    An rclpy message when tf2_msgs is importable, else a rosbags dataclass (both write the same bytes)."""
    sec, nanosec = _stamp_fields(stamp_ns)
    use_rclpy = rclpy_class("tf2_msgs/msg/TFMessage") is not None

    def make(msgtype, **kw):
        if use_rclpy:
            return rclpy_class(msgtype)(**kw)
        return typestore().types[msgtype](**kw)

    items = []
    for parent, child, matrix in transforms:
        m = np.asarray(matrix, dtype=float).reshape(4, 4)
        q = matrix_to_quaternion(m[:3, :3])
        t = m[:3, 3]
        items.append(make(
            "geometry_msgs/msg/TransformStamped",
            header=make("std_msgs/msg/Header", stamp=make("builtin_interfaces/msg/Time", sec=sec, nanosec=nanosec),
                        frame_id=str(parent)),
            child_frame_id=str(child),
            transform=make("geometry_msgs/msg/Transform",
                           translation=make("geometry_msgs/msg/Vector3", x=float(t[0]), y=float(t[1]), z=float(t[2])),
                           rotation=make("geometry_msgs/msg/Quaternion", x=float(q[0]), y=float(q[1]),
                                         z=float(q[2]), w=float(q[3])))))
    return make("tf2_msgs/msg/TFMessage", transforms=items)


def static_transforms(msg):
    """[(parent, child, 4x4 parent<-child float64)] of a tf2_msgs/TFMessage (rclpy or rosbags flavour)."""
    from s2m_ros.ros.conversions.transforms import transform_to_matrix

    return [(str(t.header.frame_id), str(t.child_frame_id), transform_to_matrix(t.transform))
            for t in msg.transforms]


def camera_info_msg(camera, stamp_ns, frame_id=None):
    """sensor_msgs/CameraInfo of a core PinholeCamera (R = I, P = [K | 0]: the raw, unrectified camera)."""
    from sensor_msgs.msg import CameraInfo

    from s2m_ros.ros.conversions.s2m_msgs import make_header

    K = np.asarray(camera.K, dtype=float).reshape(3, 3)
    P = np.zeros((3, 4))
    P[:, :3] = K
    return CameraInfo(header=make_header(stamp_ns, camera.frame_id if frame_id is None else frame_id),
                      width=int(camera.width), height=int(camera.height),
                      distortion_model=str(camera.distortion_model), d=[float(v) for v in camera.D],
                      k=[float(v) for v in K.reshape(-1)], r=[float(v) for v in np.eye(3).reshape(-1)],
                      p=[float(v) for v in P.reshape(-1)])


def odometry_msg(stamp_ns, T_world_base, frame_id, child_frame_id):
    """nav_msgs/Odometry with the pose of ``child_frame_id`` in ``frame_id`` (twist and covariances zero)."""
    from geometry_msgs.msg import Point, Pose, Quaternion
    from nav_msgs.msg import Odometry

    from s2m_ros.ros.conversions.s2m_msgs import make_header

    m = np.asarray(T_world_base, dtype=float).reshape(4, 4)
    q = matrix_to_quaternion(m[:3, :3])
    msg = Odometry(header=make_header(stamp_ns, frame_id), child_frame_id=str(child_frame_id))
    msg.pose.pose = Pose(position=Point(x=float(m[0, 3]), y=float(m[1, 3]), z=float(m[2, 3])),
                         orientation=Quaternion(x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3])))
    return msg


# --------------------------------------------------------------------------- writing


def _latched_qos():
    """The offered QoS rosbag2 records for a latched (static) topic such as /tf_static."""
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    infinite = QosTime(sec=2147483647, nsec=4294967295)
    return Qos(history=QosHistory.KEEP_LAST, depth=1, reliability=QosReliability.RELIABLE,
               durability=QosDurability.TRANSIENT_LOCAL, deadline=infinite, lifespan=infinite,
               liveliness=QosLiveliness.AUTOMATIC, liveliness_lease_duration=infinite,
               avoid_ros_namespace_conventions=False)


def _looks_like_bag(path):
    """True for a folder that is a rosbag2 bag (or what a writer left of one) or is empty."""
    entries = list(path.iterdir())
    if (path / "metadata.yaml").is_file():
        return True
    allowed = {".mcap", ".db3", ".yaml", ".json", ".db3-shm", ".db3-wal"}
    return all(e.is_file() and (e.suffix in allowed or e.name.endswith(".tmp")) for e in entries)


def remove_bag(path):
    """Delete the bag folder (or single .mcap/.db3 file) at ``path``; refuse anything that is not a bag."""
    path = pathlib.Path(path)
    if path.is_dir() and not path.is_symlink():
        if not _looks_like_bag(path):
            raise BagError("%s exists and is not a rosbag2 bag folder; not deleting it" % path)
        shutil.rmtree(path)
    elif path.is_file() and path.suffix in _STORAGE_SUFFIX:
        path.unlink()
    elif path.exists() or path.is_symlink():
        raise BagError("%s exists and is not a rosbag2 bag; not deleting it" % path)


class BagWriter:
    """Write a rosbag2 bag folder (MCAP or sqlite3).

    ``write(topic, stamp_ns, msg)`` takes an rclpy message (serialised by rclpy) or a rosbags one
    (serialised by the typestore); ``stamp_ns`` is the bag's receive time (ns). Topics are declared
    with ``add_topic`` or on first write (type taken from the message). Use as a context manager:
    on a clean exit the bag is closed (``metadata.yaml`` written); on an exception it is aborted
    and the partial folder removed, so a bag folder that exists is a complete bag.
    """

    def __init__(self, path, storage="mcap", force=False, version=DEFAULT_VERSION):
        from rosbags.rosbag2 import StoragePlugin, Writer, WriterError

        if storage not in STORAGES:
            raise BagError("unknown storage %r (choose one of: %s)" % (storage, ", ".join(STORAGES)))
        self.path = pathlib.Path(path)
        self.storage = storage
        if self.path.exists() or self.path.is_symlink():
            if not force:
                raise BagError("%s exists already and rosbag2 bags are never overwritten: remove it or "
                               "pass --force (force=True) to replace it" % self.path)
            remove_bag(self.path)
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        base = self.path.parent
        while not base.exists() and base != base.parent:
            base = base.parent
        if not base.is_dir():
            raise BagError("cannot create bag %s: %s is not a folder" % (self.path, base))
        try:
            if not self.path.parent.is_dir():
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = Writer(self.path, version=int(version), storage_plugin=plugin)
            self._writer.open()
        except (WriterError, OSError) as exc:
            reason = "%s: %s" % (exc.filename, exc.strerror) if getattr(exc, "strerror", None) else exc
            raise BagError("cannot create bag %s: %s" % (self.path, reason)) from None
        self._topics = {}  # topic -> (connection, msgtype)
        self.counts = {}  # topic -> messages written
        self._closed = False

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False

    def set_custom_data(self, key, value):
        """A string key/value stored in metadata.yaml (``custom_data``)."""
        self._writer.set_custom_data(str(key), str(value))

    def add_topic(self, topic, msgtype, latched=False):
        """Declare ``topic`` of ``msgtype``; ``latched`` records a transient-local QoS (like /tf_static)."""
        msgtype = normalize_msgtype(msgtype)
        if topic in self._topics:
            if self._topics[topic][1] != msgtype:
                raise BagError("topic %s is %s in this bag, not %s" % (topic, self._topics[topic][1], msgtype))
            return
        store = typestore()
        if msgtype not in store.types:
            hint = ""
            if msgtype.startswith("s2m_ros/") and msg_dir() is None:
                hint = " (the s2m_ros .msg files were not found in the share directory or the source tree)"
            raise BagError("cannot write %s: message type %s is unknown to the typestore%s" % (topic, msgtype, hint))
        connection = self._writer.add_connection(topic, msgtype, typestore=store,
                                                 offered_qos_profiles=[_latched_qos()] if latched else ())
        self._topics[topic] = (connection, msgtype)
        self.counts[topic] = 0

    def write(self, topic, stamp_ns, msg):
        """Serialise ``msg`` and write it on ``topic`` at receive time ``stamp_ns``."""
        msgtype = msgtype_of(msg)
        if topic not in self._topics:
            self.add_topic(topic, msgtype)
        elif self._topics[topic][1] != msgtype:
            raise BagError("topic %s is %s in this bag; got a %s message" % (topic, self._topics[topic][1], msgtype))
        self.write_raw(topic, stamp_ns, serialize(msg))

    def write_raw(self, topic, stamp_ns, data):
        """Write already serialised CDR bytes on a declared topic."""
        if topic not in self._topics:
            raise BagError("topic %s was not declared (add_topic) before write_raw" % topic)
        stamp_ns = int(stamp_ns)
        if not 0 <= stamp_ns < 2**63:
            raise BagError("receive time %d ns is outside [0, 2^63)" % stamp_ns)
        try:
            self._writer.write(self._topics[topic][0], stamp_ns, data)
        except Exception as exc:  # noqa: BLE001 - OSError, sqlite3 and rosbags errors of the storage
            raise BagWriteError("cannot write to bag %s: %s" % (self.path, _one_line(exc))) from exc
        self.counts[topic] += 1

    def topics(self):
        return {topic: msgtype for topic, (_, msgtype) in self._topics.items()}

    def close(self):
        if not self._closed:
            self._closed = True
            try:
                self._writer.close()
            except Exception as exc:  # noqa: BLE001 - OSError, sqlite3 and rosbags errors of the storage
                shutil.rmtree(self.path, ignore_errors=True)  # never leave a bag folder without its metadata
                raise BagWriteError("cannot finish bag %s: %s" % (self.path, _one_line(exc))) from exc

    def abort(self):
        """Stop without writing metadata and remove what was written."""
        if not self._closed:
            self._closed = True
            try:
                self._writer.abort()
            finally:
                shutil.rmtree(self.path, ignore_errors=True)


# --------------------------------------------------------------------------- reading


class BagReader:
    """Read a rosbag2 bag: a bag folder (sqlite3 or MCAP, from metadata.yaml), or one .mcap / .db3 file.

    ``messages()`` yields ``(topic, stamp_ns, msg)`` in receive-time order (ties in write order),
    ``stamp_ns`` being the bag's receive time; messages are rclpy objects where the class is
    importable, else rosbags dataclasses. A type rclpy does not know is decoded with the definition
    the bag carries (MCAP schema / sqlite3 message_definitions) when the typestore lacks it.
    """

    def __init__(self, path):
        from rosbags.rosbag2 import Reader

        self.path = pathlib.Path(path)
        if not self.path.exists():
            raise BagError("no such bag: %s" % self.path)
        target = self.path
        if self.path.is_dir():
            if not (self.path / "metadata.yaml").is_file():
                files = sorted(p for p in self.path.iterdir() if p.suffix in _STORAGE_SUFFIX and p.is_file())
                if len(files) != 1:
                    raise BagError("%s is a folder but not a rosbag2 bag (no metadata.yaml%s)" % (
                        self.path, "" if not files else " and %d storage files" % len(files)))
                target = files[0]
        elif self.path.suffix not in _STORAGE_SUFFIX:
            raise BagError("%s is not a rosbag2 bag: give the bag folder (with metadata.yaml) or its "
                           ".mcap / .db3 file" % self.path)
        try:
            self._reader = Reader(target)
            self._reader.open()
        except Exception as exc:  # noqa: BLE001 - rosbags raises ReaderError, sqlite3/OS/YAML errors
            raise BagError("cannot read bag %s: %s" % (self.path, exc)) from None
        self.storage = self._detect_storage(target)
        self._decoders = {}

    def _detect_storage(self, target):
        if target.is_file():
            return _STORAGE_SUFFIX[target.suffix]
        storages = getattr(self._reader.storage, "storages", [])
        name = type(storages[0]).__name__.lower() if storages else ""
        return "mcap" if "mcap" in name else "sqlite3"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        if self._reader.is_open:
            self._reader.close()

    # ---- metadata
    def topics(self):
        """{topic: msgtype} in the order the bag declares them."""
        return {c.topic: c.msgtype for c in self._reader.connections}

    def counts(self):
        """{topic: number of messages}."""
        out = {}
        for c in self._reader.connections:
            out[c.topic] = out.get(c.topic, 0) + int(c.msgcount)
        return out

    @property
    def message_count(self):
        return int(self._reader.message_count)

    @property
    def start_ns(self):
        """Receive time of the first message (None for an empty bag)."""
        return int(self._reader.start_time) if self.message_count else None

    @property
    def end_ns(self):
        """Receive time of the last message (None for an empty bag)."""
        return int(self._reader.end_time) - 1 if self.message_count else None

    @property
    def duration_ns(self):
        return (self.end_ns - self.start_ns) if self.message_count else 0

    def latched(self, topic):
        """True when the recorded QoS of ``topic`` is transient-local (a latched topic like /tf_static)."""
        from rosbags.interfaces import QosDurability

        for c in self._reader.connections:
            if c.topic == topic:
                return any(q.durability == QosDurability.TRANSIENT_LOCAL
                           for q in getattr(c.ext, "offered_qos_profiles", ()))
        raise BagError(self._missing_topics_text([topic]))

    def type_problem(self, topic):
        """None when the bag's type hash of ``topic`` matches this environment's definition, else why not.

        rosbag2 (Iron and later) stores RIHS01 hashes; an empty hash (Humble bags) is not checked."""
        for c in self._reader.connections:
            if c.topic == topic:
                store = typestore()
                if not c.digest or not str(c.digest).startswith("RIHS01_") or c.msgtype not in store.types:
                    return None
                ours = store.hash_rihs01(c.msgtype)
                if ours != c.digest:
                    return "%s in the bag has type hash %s, this environment's definition %s" % (
                        c.msgtype, c.digest, ours)
                return None
        raise BagError(self._missing_topics_text([topic]))

    def _missing_topics_text(self, missing):
        have = ", ".join("%s (%s)" % kv for kv in self.topics().items()) or "no topics"
        return "topic(s) %s not in bag %s; it has: %s" % (", ".join(missing), self.path, have)

    def select_topics(self, topics=None):
        """{topic: msgtype} of ``topics`` (all when None); BagError naming what the bag has when one is missing."""
        return {c.topic: c.msgtype for c in self._connections(topics)}

    def _connections(self, topics):
        if topics is None:
            return list(self._reader.connections)
        topics = [topics] if isinstance(topics, str) else list(topics)
        missing = [t for t in topics if t not in self.topics()]
        if missing:
            raise BagError(self._missing_topics_text(missing))
        return [c for c in self._reader.connections if c.topic in set(topics)]

    # ---- messages
    def _decoder(self, connection):
        """A function bytes -> message for the connection's type (cached per type)."""
        key = (connection.msgtype, connection.digest)
        if key in self._decoders:
            return self._decoders[key]
        msgtype = connection.msgtype
        problem = self.type_problem(connection.topic)
        cls = None if problem else rclpy_class(msgtype)
        if cls is not None:
            from rclpy.serialization import deserialize_message

            def decode(data, cls=cls):
                return deserialize_message(bytes(data), cls)
        else:
            store = typestore()
            if problem or msgtype not in store.types:
                store = self._bag_store(connection, problem)
            decode = functools.partial(_deserialize_with, store, msgtype)
        self._decoders[key] = decode
        return decode

    def _bag_store(self, connection, problem):
        """A typestore holding the bag's own definition of the connection's type (MCAP schema /
        sqlite3 message_definitions): alone when it is complete, else on top of the Kilted store."""
        from rosbags.interfaces import MessageDefinitionFormat
        from rosbags.typesys import Stores, get_types_from_idl, get_types_from_msg, get_typestore

        msgdef = connection.msgdef
        if msgdef is None or msgdef.format == MessageDefinitionFormat.NONE or not msgdef.data:
            raise BagError("cannot decode %s (%s): %s and the bag carries no message definition" % (
                connection.topic, connection.msgtype, problem or "no rclpy class is importable here and "
                "the typestore does not know the type"))
        error = None
        for base in (Stores.EMPTY, Stores.ROS2_KILTED):
            try:
                if msgdef.format == MessageDefinitionFormat.IDL:
                    types = get_types_from_idl(msgdef.data)
                else:
                    types = get_types_from_msg(msgdef.data, connection.msgtype)
                store = get_typestore(base)
                store.register(types)
                store.generate_msgdef(connection.msgtype, ros_version=2)  # every dependency resolvable
                return store
            except Exception as exc:  # noqa: BLE001 - parser/typestore errors of a foreign definition
                error = exc
        raise BagError("cannot decode %s (%s): the bag's message definition is unusable: %s" % (
            connection.topic, connection.msgtype, error))

    def messages(self, topics=None, start_ns=None, stop_ns=None, raw=False, on_error=None):
        """(topic, stamp_ns, msg) for the given topics (all when None) with start_ns <= stamp < stop_ns.

        ``raw=True`` yields the serialised CDR bytes instead of messages. Unknown topics and types
        that cannot be decoded raise BagError here, before the first message.

        A message whose bytes cannot be deserialised (truncated, corrupt) raises :class:`BadMessageError`
        (which ends the iteration), or, with ``on_error``, is passed to ``on_error(BadMessageError)`` and
        skipped, and the iteration goes on. Storage that cannot be read any further (a damaged file)
        raises BagError naming the bag and how many messages were read."""
        connections = self._connections(topics)
        decoders = {} if raw else {c.id: self._decoder(c) for c in connections}
        return self._iterate(connections, decoders, start_ns, stop_ns, raw, on_error)

    def _iterate(self, connections, decoders, start_ns, stop_ns, raw, on_error=None):
        if not connections:  # rosbags reads every topic for an empty selection
            return
        stream = iter(self._reader.messages(connections, start=start_ns, stop=stop_ns))
        n = 0
        while True:
            try:
                connection, stamp, data = next(stream)
            except StopIteration:
                return
            except Exception as exc:  # noqa: BLE001 - sqlite3 / MCAP / rosbags errors of damaged storage
                raise BagError("cannot read bag %s after %d message(s): %s" % (self.path, n, _one_line(exc))) \
                    from exc
            n += 1
            if raw:
                yield connection.topic, int(stamp), bytes(data)
                continue
            try:
                msg = decoders[connection.id](data)
            except Exception as exc:  # noqa: BLE001 - rclpy RMWError, rosbags SerdeError, struct/index errors
                bad = BadMessageError(connection.topic, stamp, connection.msgtype, len(data), exc)
                if on_error is None:
                    raise bad from exc
                on_error(bad)
                continue
            yield connection.topic, int(stamp), msg


def _deserialize_with(store, msgtype, data):
    return store.deserialize_cdr(data, msgtype)


def _one_line(exc):
    if isinstance(exc, OSError) and exc.strerror:
        return "%s: %s" % (exc.filename, exc.strerror) if exc.filename else exc.strerror
    return " ".join(str(exc).split()) or type(exc).__name__


def bag_size(path):
    """Bytes on disk of a bag folder (all its files) or a single file."""
    path = pathlib.Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# --------------------------------------------------------------------------- scenario bags

# Topic layout of a scenario bag (what `s2m scenario` writes and the demo plays).
SCENARIO_TOPICS = {
    "/tf_static": "tf2_msgs/msg/TFMessage",
    "/camera/image_raw": "sensor_msgs/msg/Image",
    "/camera/camera_info": "sensor_msgs/msg/CameraInfo",
    "/lidar/points": "sensor_msgs/msg/PointCloud2",
    "/odom": "nav_msgs/msg/Odometry",
    "/tf": "tf2_msgs/msg/TFMessage",
}


@dataclass
class BagSummary:
    """What a bag writer produced."""

    path: pathlib.Path
    storage: str
    frames: int
    counts: dict = field(default_factory=dict)
    size_bytes: int = 0
    seconds: float = 0.0


def _scenario_frame_ids():
    try:
        from s2m_ros.sim import scenario as sc

        return sc.FRAME_WORLD, sc.FRAME_BASE, sc.FRAME_LIDAR, sc.FRAME_CAMERA
    except ImportError:  # the contract's names (s2m_ros/sim/scenario.py not present)
        return "map", "base_link", "lidar", "camera_optical"


def lidar_cloud_msg(points, ring, stamp_ns, frame_id):
    """PointCloud2 with float32 x, y, z, intensity and uint16 ring (packed, 18 bytes per point)."""
    from s2m_ros.ros.conversions.pointcloud import xyz_to_cloud
    from s2m_ros.ros.conversions.s2m_msgs import make_header

    points = np.asarray(points, dtype=np.float32).reshape(-1, 4)
    return xyz_to_cloud(points[:, :3], header=make_header(stamp_ns, frame_id),
                        intensity=np.ascontiguousarray(points[:, 3]),
                        ring=np.asarray(ring, dtype=np.uint16).reshape(-1))


def write_scenario_bag(scenario, path, storage="mcap", frames=None, force=False, truth=None,
                       show_progress=None, version=DEFAULT_VERSION):
    """Write a scenario (s2m_ros.sim.scenario) as a rosbag2 bag, with ``truth.json`` inside the folder.

    Topics (receive time = header stamp): /tf_static (latched, at the first stamp: base_link->lidar,
    base_link->camera_optical), per camera frame /camera/image_raw (bgr8) and /camera/camera_info,
    per LiDAR scan /lidar/points (x, y, z, intensity, ring), /odom (map->base_link at the scan
    stamp) and /tf (the same pose). ``frames``: the frames to write (default: all of
    ``scenario.frames()``); ``truth``: the sidecar dict (default ``truth_dict(scenario, frames)``).
    Returns a BagSummary.
    """
    from s2m_ros.files import progress, write_json
    from s2m_ros.ros.conversions.image import numpy_to_image
    from s2m_ros.ros.conversions.s2m_msgs import make_header

    world, base, lidar, camera_frame = _scenario_frame_ids()
    t0 = time.perf_counter()
    total = len(frames) if frames is not None else getattr(getattr(scenario, "config", None), "frames", None)
    camera = scenario.camera
    cam_frame = camera.frame_id or camera_frame
    written = []
    # the writer first, so an existing output fails before any frame is generated
    with BagWriter(path, storage=storage, force=force, version=version) as bag:
        for topic, msgtype in SCENARIO_TOPICS.items():
            bag.add_topic(topic, msgtype, latched=(topic == "/tf_static"))
        seed = getattr(getattr(scenario, "config", None), "seed", None)
        if seed is not None:
            bag.set_custom_data("s2m_ros.scenario.seed", str(seed))
        bag.set_custom_data("s2m_ros.truth", TRUTH_FILE)
        source = scenario.frames() if frames is None else iter(frames)
        for frame in progress(source, total=total, desc="writing %s" % pathlib.Path(path).name,
                              enabled=show_progress):
            if not written:  # static transforms first, at the earliest stamp (rosbag2 records latched data first)
                first = min(frame.stamp_ns, frame.lidar_stamp_ns)
                bag.write("/tf_static", first, tf_message([(base, lidar, scenario.T_base_lidar),
                                                           (base, cam_frame, scenario.T_base_camera)], first))
            written.append(frame)
            pending = []  # (stamp, order, topic, msg) of this frame, written in time order
            header = make_header(frame.stamp_ns, cam_frame)
            pending.append((frame.stamp_ns, 0, "/camera/image_raw", numpy_to_image(frame.image, "bgr8", header=header)))
            pending.append((frame.stamp_ns, 1, "/camera/camera_info", camera_info_msg(camera, frame.stamp_ns, cam_frame)))
            ls = frame.lidar_stamp_ns
            pending.append((ls, 2, "/lidar/points", lidar_cloud_msg(frame.points, frame.ring, ls, lidar)))
            pending.append((ls, 3, "/odom", odometry_msg(ls, frame.T_world_base_lidar, world, base)))
            pending.append((ls, 4, "/tf", tf_message([(world, base, frame.T_world_base_lidar)], ls)))
            for stamp, _, topic, msg in sorted(pending, key=lambda p: (p[0], p[1])):
                bag.write(topic, stamp, msg)
        if not written:
            raise BagError("no frames to write")
        if truth is None:
            from s2m_ros.sim.scenario import truth_dict

            truth = truth_dict(scenario, written)
        counts = dict(bag.counts)
    write_json(pathlib.Path(path) / TRUTH_FILE, truth)
    return BagSummary(path=pathlib.Path(path), storage=storage, frames=len(written), counts=counts,
                      size_bytes=bag_size(path), seconds=time.perf_counter() - t0)


def read_truth(path):
    """The truth sidecar (``truth.json``) of a scenario bag folder."""
    p = pathlib.Path(path) / TRUTH_FILE
    if not p.is_file():
        raise BagError("%s has no %s (not a scenario bag written by `s2m scenario`?)" % (path, TRUTH_FILE))
    import json

    try:
        with open(str(p), "rb") as f:
            return json.load(f)
    except (OSError, ValueError) as exc:  # unreadable, not JSON, not UTF-8
        raise BagError("cannot read %s: %s" % (p, _one_line(exc))) from None


__all__ = [
    "BadMessageError", "BagError", "BagReader", "BagWriteError", "BagSummary", "BagWriter", "DEFAULT_VERSION", "SCENARIO_TOPICS", "STORAGES",
    "TRUTH_FILE", "bag_size", "camera_info_msg", "deserialize", "lidar_cloud_msg",
    "matrix_to_quaternion", "msg_dir", "msgtype_of", "normalize_msgtype", "odometry_msg", "rclpy_class",
    "read_truth", "remove_bag", "serialize", "static_transforms", "tf_message", "typestore",
    "write_scenario_bag",
]
