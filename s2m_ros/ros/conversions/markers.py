"""Tracked obstacles -> visualization_msgs/MarkerArray for RViz.

One namespace per layer, so each can be toggled in RViz:

  ``boxes``       CUBE at the oriented box, at least MIN_BOX (0.3 m) per side so FOD stays visible
                  (low-support tracks have no size: a MIN_BOX cube)
  ``footprints``  closed LINE_STRIP along the ground footprint (convex hull), when there is one
  ``labels``      TEXT_VIEW_FACING above the box: ``#id  range m  p=existence  score``
  ``velocity``    ARROW from the centre along the velocity, when faster than 0.2 m/s

Colours encode the state: confirmed = red, tentative = yellow (translucent), low support = grey
outline colour on top of either. Marker ids are the track ids (mod 2**31: Marker.id is int32).
A marker whose track vanished gets an explicit DELETE in the next array (``MarkerBuilder`` remembers
what it published); every marker also has a short ``lifetime``, so nothing lingers if that DELETE is
lost or the node dies.
"""
import math

from s2m_ros.ros.conversions.s2m_msgs import make_header

NAMESPACES = ("boxes", "footprints", "labels", "velocity")
CONFIRMED_RGBA = (0.95, 0.15, 0.1, 0.75)
TENTATIVE_RGBA = (1.0, 0.85, 0.0, 0.35)
LOW_SUPPORT_RGBA = (0.6, 0.6, 0.6, 0.6)
TEXT_RGBA = (1.0, 1.0, 1.0, 0.95)
MIN_BOX = 0.3  # m, drawn size of a low-support (sizeless) obstacle
MIN_ARROW_SPEED = 0.2  # m/s


def _rgba(values):
    from std_msgs.msg import ColorRGBA

    r, g, b, a = values
    return ColorRGBA(r=float(r), g=float(g), b=float(b), a=float(a))


def _duration(seconds):
    from builtin_interfaces.msg import Duration

    sec, nanosec = divmod(int(round(seconds * 1e9)), 10 ** 9)
    return Duration(sec=sec, nanosec=nanosec)


def marker_id(track_id):
    return int(track_id) % (2 ** 31)


def label_text(o):
    score = "" if not math.isfinite(o.anomaly_score) else "  s=%.2f" % o.anomaly_score
    rng = "?" if not math.isfinite(o.range) else "%.1f" % o.range
    flags = "" if o.confirmed else " (tentative)"
    if o.low_support:
        flags += " low-support"
    return "#%d  %s m  p=%.2f%s%s" % (o.id, rng, o.existence_probability, score, flags)


class MarkerBuilder:
    """Builds one MarkerArray per obstacle frame, with DELETEs for ids that vanished since the last."""

    def __init__(self, lifetime_s=0.5, show_tentative=True):
        self.lifetime_s = float(lifetime_s)
        self.show_tentative = bool(show_tentative)
        self._published = {ns: set() for ns in NAMESPACES}

    def build(self, frame, stamp=None):
        """MarkerArray for an ObstacleFrame (header = the frame's stamp and frame_id; ``stamp``: a
        builtin_interfaces/Time to copy as it is instead, e.g. the source cloud's)."""
        from geometry_msgs.msg import Point, Pose, Quaternion, Vector3
        from std_msgs.msg import Header
        from visualization_msgs.msg import Marker, MarkerArray

        header = make_header(frame.stamp_ns, frame.frame_id) if stamp is None else \
            Header(stamp=stamp, frame_id=str(frame.frame_id))
        lifetime = _duration(self.lifetime_s)
        now = {ns: set() for ns in NAMESPACES}
        markers = []

        def add(ns, o, **kwargs):
            mid = marker_id(o.id)
            now[ns].add(mid)
            markers.append(Marker(header=header, ns=ns, id=mid, action=Marker.ADD, lifetime=lifetime, **kwargs))

        for o in frame.obstacles:
            if not o.confirmed and not self.show_tentative:
                continue
            c = [float(v) for v in o.center]
            if not all(math.isfinite(v) for v in c):
                continue
            colour = CONFIRMED_RGBA if o.confirmed else TENTATIVE_RGBA
            if o.low_support:
                colour = LOW_SUPPORT_RGBA[:3] + (colour[3],)
            yaw = float(o.yaw) if math.isfinite(o.yaw) else 0.0
            pose = Pose(position=Point(x=c[0], y=c[1], z=c[2]),
                        orientation=Quaternion(x=0.0, y=0.0, z=math.sin(yaw / 2), w=math.cos(yaw / 2)))
            size = [max(float(v), MIN_BOX) if math.isfinite(v) else MIN_BOX for v in o.size]
            add("boxes", o, type=Marker.CUBE, pose=pose, scale=Vector3(x=size[0], y=size[1], z=size[2]),
                color=_rgba(colour))
            if len(o.footprint) >= 2:
                pts = [Point(x=float(p[0]), y=float(p[1]), z=float(p[2])) for p in o.footprint]
                add("footprints", o, type=Marker.LINE_STRIP, pose=Pose(), scale=Vector3(x=0.05, y=0.0, z=0.0),
                    color=_rgba(colour[:3] + (1.0,)), points=pts + [pts[0]])
            text_pose = Pose(position=Point(x=c[0], y=c[1], z=c[2] + size[2] / 2 + 0.4))
            add("labels", o, type=Marker.TEXT_VIEW_FACING, pose=text_pose, scale=Vector3(x=0.0, y=0.0, z=0.35),
                color=_rgba(TEXT_RGBA), text=label_text(o))
            v = [float(x) for x in o.velocity]
            if all(math.isfinite(x) for x in v) and math.hypot(v[0], v[1]) >= MIN_ARROW_SPEED:
                add("velocity", o, type=Marker.ARROW, pose=Pose(), scale=Vector3(x=0.08, y=0.16, z=0.2),
                    color=_rgba(colour[:3] + (1.0,)),
                    points=[Point(x=c[0], y=c[1], z=c[2]), Point(x=c[0] + v[0], y=c[1] + v[1], z=c[2] + v[2])])
        for ns in NAMESPACES:
            for mid in sorted(self._published[ns] - now[ns]):
                markers.append(Marker(header=header, ns=ns, id=mid, action=Marker.DELETE))
        self._published = now
        return MarkerArray(markers=markers)
