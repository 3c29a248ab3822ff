"""s2m_ros messages (OodMaskArray, ObstacleArray) <-> core dataclasses, plus time helpers."""
import math

import numpy as np

from s2m_ros.ros.conversions.errors import ConversionError
from s2m_ros.ros.conversions.image import image_to_numpy, numpy_to_image
from s2m_ros.types import FrameMasks, InstanceMask, Obstacle3D, ObstacleFrame

_NS = 1_000_000_000


def stamp_to_ns(stamp):
    """builtin_interfaces/Time -> integer nanoseconds."""
    return int(stamp.sec) * _NS + int(stamp.nanosec)


def ns_to_stamp(ns):
    """Integer nanoseconds -> builtin_interfaces/Time (nanosec always in [0, 1e9))."""
    from builtin_interfaces.msg import Time

    sec, nanosec = divmod(int(ns), _NS)
    if not -2**31 <= sec < 2**31:
        raise ConversionError("stamp", ns, "outside the int32 seconds range of builtin_interfaces/Time")
    return Time(sec=sec, nanosec=nanosec)


def make_header(stamp_ns, frame_id):
    from std_msgs.msg import Header

    return Header(stamp=ns_to_stamp(stamp_ns), frame_id=str(frame_id))


def _roi(box):
    from sensor_msgs.msg import RegionOfInterest

    x, y, w, h = (int(v) for v in box)
    if min(x, y, w, h) < 0:
        raise ConversionError("box", box, "negative coordinates or size")
    return RegionOfInterest(x_offset=x, y_offset=y, width=w, height=h)


def _box(roi):
    return int(roi.x_offset), int(roi.y_offset), int(roi.width), int(roi.height)


def _float(value):
    return float("nan") if value is None else float(value)


def frame_masks_to_msg(frame, header=None):
    """core FrameMasks -> s2m_ros/OodMaskArray (header stamp/frame copied exactly; ``header``: the source
    image's std_msgs/Header to copy as it is, default built from the frame's stamp and frame id)."""
    from sensor_msgs.msg import Image
    from s2m_ros.msg import OodMask, OodMaskArray

    if header is None:
        header = make_header(frame.stamp_ns, frame.frame_id)
    out = OodMaskArray(header=header, image_width=int(frame.width), image_height=int(frame.height),
                       scorer=str(frame.scorer), segmenter=str(frame.segmenter))
    out.stage_names = [str(k) for k in frame.stage_ms]
    out.stage_latencies_ms = [float(v) for v in frame.stage_ms.values()]
    masks = []
    for m in frame.masks:
        x, y, w, h = m.roi
        if x + w > frame.width or y + h > frame.height:
            raise ConversionError("InstanceMask.roi", m.roi, "outside the %dx%d image" % (frame.width, frame.height))
        if w * h:
            mask_image = numpy_to_image(m.mask.astype(np.uint8) * np.uint8(255), "mono8", header=header)
        else:
            mask_image = Image(header=header, encoding="mono8")
        masks.append(OodMask(
            id=int(m.id), roi=_roi(m.roi), area=m.area, mask=mask_image,
            anomaly_score=_float(m.anomaly_score), contrast=_float(m.contrast), quality=_float(m.quality),
            prompt_box=_roi(m.prompt_box)))
    out.masks = masks
    return out


def msg_to_frame_masks(msg):
    """s2m_ros/OodMaskArray -> core FrameMasks. Validates every mask against its roi and the image size."""
    width, height = int(msg.image_width), int(msg.image_height)
    if len(msg.stage_names) != len(msg.stage_latencies_ms):
        raise ConversionError("OodMaskArray.stage_latencies_ms", len(msg.stage_latencies_ms),
                              "length differs from stage_names (%d)" % len(msg.stage_names))
    masks = []
    for i, m in enumerate(msg.masks):
        box = _box(m.roi)
        x, y, w, h = box
        if x + w > width or y + h > height:
            raise ConversionError("OodMaskArray.masks[%d].roi" % i, box, "outside the %dx%d image" % (width, height))
        pbox = _box(m.prompt_box)
        if pbox[0] + pbox[2] > width or pbox[1] + pbox[3] > height:
            raise ConversionError("OodMaskArray.masks[%d].prompt_box" % i, pbox,
                                  "outside the %dx%d image" % (width, height))
        if w * h == 0:
            crop = np.zeros((h, w), dtype=bool)
        else:
            if m.mask.encoding not in ("mono8", "8UC1"):
                raise ConversionError("OodMaskArray.masks[%d].mask.encoding" % i, m.mask.encoding, "must be mono8")
            if (int(m.mask.width), int(m.mask.height)) != (w, h):
                raise ConversionError("OodMaskArray.masks[%d].mask" % i, "%dx%d" % (m.mask.width, m.mask.height),
                                      "size differs from roi %dx%d" % (w, h))
            try:
                crop = image_to_numpy(m.mask) > 0
            except ConversionError as exc:
                raise ConversionError("OodMaskArray.masks[%d].mask" % i, exc.value, str(exc)) from None
        masks.append(InstanceMask(id=int(m.id), roi=box, mask=crop, anomaly_score=float(m.anomaly_score),
                                  contrast=float(m.contrast), quality=float(m.quality), prompt_box=pbox))
    return FrameMasks(stamp_ns=stamp_to_ns(msg.header.stamp), frame_id=str(msg.header.frame_id),
                      width=width, height=height, masks=masks, scorer=str(msg.scorer), segmenter=str(msg.segmenter),
                      stage_ms=dict(zip(msg.stage_names, (float(v) for v in msg.stage_latencies_ms))))


def _yaw_to_quaternion(yaw):
    from geometry_msgs.msg import Quaternion

    return Quaternion(x=0.0, y=0.0, z=math.sin(yaw / 2.0), w=math.cos(yaw / 2.0))


def _quaternion_to_yaw(q):
    yaw = math.atan2(2.0 * (q.w * q.z + q.x * q.y), 1.0 - 2.0 * (q.y * q.y + q.z * q.z))
    return math.pi if yaw <= -math.pi else yaw  # (-pi, pi]: atan2(-0.0, -1) gives -pi


def obstacle_frame_to_msg(frame, stamp=None):
    """core ObstacleFrame -> s2m_ros/ObstacleArray (``stamp``: a builtin_interfaces/Time to copy into the
    header as it is, e.g. the source cloud's; default built from ``frame.stamp_ns``)."""
    from geometry_msgs.msg import Point, Point32, Pose, Vector3
    from std_msgs.msg import Header
    from s2m_ros.msg import Obstacle, ObstacleArray

    out = ObstacleArray(header=make_header(frame.stamp_ns, frame.frame_id) if stamp is None else
                        Header(stamp=stamp, frame_id=str(frame.frame_id)))
    items = []
    for o in frame.obstacles:
        c, s, v = o.center, o.size, o.velocity
        items.append(Obstacle(
            id=int(o.id),
            pose=Pose(position=Point(x=float(c[0]), y=float(c[1]), z=float(c[2])),
                      orientation=_yaw_to_quaternion(float(o.yaw))),
            size=Vector3(x=float(s[0]), y=float(s[1]), z=float(s[2])),
            velocity=Vector3(x=float(v[0]), y=float(v[1]), z=float(v[2])),
            footprint=[Point32(x=float(p[0]), y=float(p[1]), z=float(p[2])) for p in o.footprint],
            range=float(o.range), height=float(o.height), existence_probability=float(o.existence_probability),
            hits=int(o.hits), age=float(o.age), confirmed=bool(o.confirmed), low_support=bool(o.low_support),
            anomaly_score=float(o.anomaly_score), num_points=int(o.num_points), mask_id=int(o.mask_id)))
    out.obstacles = items
    return out


def msg_to_obstacle_frame(msg):
    """s2m_ros/ObstacleArray -> core ObstacleFrame."""
    obstacles = []
    for o in msg.obstacles:
        p = o.pose.position
        obstacles.append(Obstacle3D(
            id=int(o.id), center=(p.x, p.y, p.z), size=(o.size.x, o.size.y, o.size.z),
            yaw=_quaternion_to_yaw(o.pose.orientation), velocity=(o.velocity.x, o.velocity.y, o.velocity.z),
            footprint=np.array([(q.x, q.y, q.z) for q in o.footprint], dtype=float).reshape(-1, 3),
            range=float(o.range), height=float(o.height), existence_probability=float(o.existence_probability),
            hits=int(o.hits), age=float(o.age), confirmed=bool(o.confirmed), low_support=bool(o.low_support),
            anomaly_score=float(o.anomaly_score), num_points=int(o.num_points), mask_id=int(o.mask_id)))
    return ObstacleFrame(stamp_ns=stamp_to_ns(msg.header.stamp), frame_id=str(msg.header.frame_id),
                         obstacles=obstacles)
