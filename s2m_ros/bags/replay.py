"""Offline, deterministic replay of a bag through both nodes' algorithms (what `s2m replay` runs).

Every message of the input bag is handled in bag order, as the nodes would handle it, but nothing
is dropped (no latest-only worker, no DDS) and nothing depends on the wall clock:

- images -> :class:`S2MPipeline` -> masks, instance image, score map, overlay (``s2m_ros.ros.outputs``);
- masks and clouds -> ``ObstacleFrontEnd.add_cloud`` and its :class:`NearestTimeMatcher` (the fusion
  node's: same tolerance, buffer and out-of-order policy) -> :class:`ObstaclePipeline` (fusion + fixed
  frame + tracking) -> obstacles and markers;
- CameraInfo, ``/tf_static`` (static extrinsics) and odometry (fixed frame) are taken from the bag;
- diagnostics of both stages are written once per second of bag time.

Outputs are written at the receive time of the input message that produced them. Fusion
parameters come from a fusion_node params file (``config/fusion.yaml`` format), validated against
the node's own parameter table, so the replay runs with exactly the settings the node would.

Hostile input never ends a replay: a message that cannot be deserialised (``bad_messages``), whose
content is refused (``bad_images``, ``bad_clouds``, ``bad_camera_info``, ``bad_odometry``,
``bad_tf_static``; all of these together: ``bad_input``) or on which anything else fails
(``processing_errors``) is skipped and counted, by topic and reason (the summary's ``skipped_by_topic``,
the first :data:`MAX_SKIPPED_EXAMPLES` with their error text in ``skipped``), and the replay goes on.
Storage that cannot be read any further ends the reading (``bag_read_errors``, a warning) but the
output bag is still written. Only a failure to write the output bag ends a replay (BagWriteError).
"""
import collections
import os
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np

from s2m_ros.ros import outputs
from s2m_ros.bags.storage import BagError, BagReader, BagWriteError, BagWriter
from s2m_ros.ros.conversions import ConversionError
from s2m_ros.ros.diagnostics import NodeStats

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
#: How many skipped messages the summary lists with their error text (all are counted).
MAX_SKIPPED_EXAMPLES = 20
#: Counter of a message whose content its handler refuses, by role.
BAD_INPUT_COUNTERS = {"image": "bad_images", "camera_info": "bad_camera_info", "cloud": "bad_clouds",
                      "odom": "bad_odometry", "tf_static": "bad_tf_static"}
EXPECTED_TYPES = {
    "image": IMAGE_TYPES,
    "camera_info": ("sensor_msgs/msg/CameraInfo",),
    "cloud": ("sensor_msgs/msg/PointCloud2",),
    "odom": ("nav_msgs/msg/Odometry",),
    "tf_static": ("tf2_msgs/msg/TFMessage",),
}


@dataclass
class ReplayTopics:
    image: str = "/camera/image_raw"
    camera_info: str = "/camera/camera_info"
    cloud: str = "/lidar/points"
    odom: str = "/odom"
    tf_static: str = "/tf_static"


@dataclass
class ReplayConfig:
    pipeline: object = None  # PipelineConfig (default: PipelineConfig())
    fusion_params: Dict[str, object] = field(default_factory=dict)  # fusion_node parameters (overrides)
    topics: ReplayTopics = field(default_factory=ReplayTopics)
    extrinsics: str = "auto"  # auto: /tf_static when the bag has it, else the extrinsics.* parameters
    fixed_frame: str = "auto"  # auto: the odometry's frame when the bag has odometry; on; off
    score_map: bool = True
    overlay: bool = True
    diagnostics_period_s: float = 1.0


@dataclass
class FusedFrame:
    """One tracked step, kept in memory for evaluation (``tracks`` includes tentative ones)."""

    stamp_ns: int
    frame_id: str
    tracks: list
    detections: list
    image_stamp_ns: int


@dataclass
class ReplaySummary:
    input: str
    output: str
    storage: str
    counters: Dict[str, int]
    stage_ms: Dict[str, Dict[str, float]]  # stage -> {median, max}
    output_counts: Dict[str, int]
    frames: List[FusedFrame]
    overlays: list  # (image index, image_stamp_ns, bgr overlay) of the images run(keep_overlays=...) named
    seconds: float
    tracking_frame: str
    extrinsics: str
    warnings: List[str] = field(default_factory=list)
    camera_masks: list = field(default_factory=list)  # FrameMasks of every image, with run(keep_masks=True)
    # messages skipped: the first MAX_SKIPPED_EXAMPLES as {"item", "topic", "stamp_ns", "reason", "error"}
    skipped: List[dict] = field(default_factory=list)
    skipped_by_topic: Dict[str, Dict[str, int]] = field(default_factory=dict)  # topic -> reason -> count

    @property
    def n_skipped(self):
        return sum(n for reasons in self.skipped_by_topic.values() for n in reasons.values())

    def to_dict(self):
        confirmed = sorted({t.id for f in self.frames for t in f.tracks if t.confirmed})
        return {"input": self.input, "output": self.output, "storage": self.storage, "counters": self.counters,
                "stage_ms": self.stage_ms, "output_counts": self.output_counts, "seconds": round(self.seconds, 3),
                "tracking_frame": self.tracking_frame, "extrinsics": self.extrinsics,
                "confirmed_track_ids": confirmed, "warnings": self.warnings,
                "n_skipped": self.n_skipped, "skipped_by_topic": self.skipped_by_topic, "skipped": self.skipped}


def fusion_parameters(overrides=None, params_file=None):
    """fusion_node parameter values: defaults <- params file (ros__parameters) <- overrides; validated."""
    from s2m_ros.ros import fusion_params
    from s2m_ros.ros.params import defaults, validate_all

    values = defaults(fusion_params.PARAMS)
    if params_file:
        values.update(read_params_file(params_file))
    values.update(overrides or {})
    values = {k: (list(v) if isinstance(v, tuple) else v) for k, v in values.items()}
    validate_all(values, fusion_params.PARAMS)
    return values


def flatten_params(tree, prefix=""):
    """{"a": {"b": 1}} -> {"a.b": 1} (ROS parameter names from nested YAML)."""
    flat = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            flat.update(flatten_params(v, prefix + str(k) + "."))
        else:
            flat[prefix + str(k)] = v
    return flat


def read_params_file(path):
    """Flat {dotted name: value} of a ROS 2 params file (first node section, ``ros__parameters``).

    ParameterError (one line) when the file is missing, unreadable, not YAML or has no such section."""
    from s2m_ros.files import YamlFileError, read_yaml_file
    from s2m_ros.ros.params import ParameterError

    try:
        data = read_yaml_file(path) or {}
    except YamlFileError as exc:
        raise ParameterError(exc.described("params file")) from None
    sections = data.values() if isinstance(data, dict) else ()
    for section in sections:
        if isinstance(section, dict) and "ros__parameters" in section:
            params = section["ros__parameters"] or {}
            if not isinstance(params, dict):
                raise ParameterError("%s: ros__parameters must be a mapping, got %s" % (path, type(params).__name__))
            return flatten_params(params)
    raise ParameterError("%s has no <node>: ros__parameters: section" % path)


class _BagClock:
    def __init__(self):
        self.now_s = 0.0

    def __call__(self):
        return self.now_s


class Replayer:
    """Runs the camera pipeline and the obstacle pipeline over one bag (see module docstring)."""

    def __init__(self, config: Optional[ReplayConfig] = None):
        from s2m_ros.ros.conversions.markers import MarkerBuilder
        from s2m_ros.ros.frontend import ObstacleFrontEnd
        from s2m_ros.segmentation.pipeline import PipelineConfig, PipelineConfigError, S2MPipeline

        self.config = config or ReplayConfig()
        self.params = p = fusion_parameters(self.config.fusion_params)
        try:
            self.pipeline = S2MPipeline(self.config.pipeline or PipelineConfig())
        except (TypeError, ValueError) as exc:  # a value the configuration took but a stage refuses
            if isinstance(exc, PipelineConfigError):
                raise
            raise PipelineConfigError("invalid pipeline configuration: %s: %s" % (type(exc).__name__, exc)) from exc
        self.front = ObstacleFrontEnd(p)  # extrinsics source and fixed frame are decided per bag in run()
        self.matcher = self.front.matcher  # the fusion node's matcher, with the same time policy
        self.markers = MarkerBuilder(p["markers.lifetime_s"], p["markers.show_tentative"])
        self.clock = _BagClock()
        self.camera_stats = NodeStats(clock=self.clock, latency_window=10 ** 6)
        self.fusion_stats = NodeStats(clock=self.clock, latency_window=10 ** 6)
        self.frames: List[FusedFrame] = []
        self.overlays = []
        self.camera_masks = []
        self._current = (None, 0)  # (topic, receive time) of the message being handled
        self.skip_counts = collections.OrderedDict()  # topic -> {reason: count}
        self.skipped: List[dict] = []  # the first MAX_SKIPPED_EXAMPLES

    # ------------------------------------------------------------------ main loop
    def run(self, in_bag, out_bag, storage="mcap", force=False, show_progress=None, keep_overlays=(),
            keep_masks=False):
        """Replay ``in_bag`` into ``out_bag``. ``keep_overlays``: indices (0-based, in bag order) of the
        images whose overlays the summary keeps in memory (for pictures; the bag gets every overlay);
        ``keep_masks``: the summary keeps every image's FrameMasks too (``camera_masks``, for evaluation)."""
        from s2m_ros.files import progress

        t_start = time.perf_counter()
        warnings = []
        topics_cfg = self.config.topics
        src, dst = os.path.realpath(str(in_bag)), os.path.realpath(str(out_bag))
        # without force an existing output is refused by the writer ("exists"); with it, it would be deleted
        if dst.startswith(src + os.sep) or (force and (src == dst or src.startswith(dst + os.sep))):
            raise BagError("the output bag %s would replace or sit inside the input bag %s; choose another output"
                           % (out_bag, in_bag))
        with BagReader(in_bag) as reader:
            available = reader.topics()
            wanted = {role: getattr(topics_cfg, role) for role in EXPECTED_TYPES}
            for role in ("image", "camera_info"):
                if wanted[role] not in available:
                    raise BagError("%s has no %s topic %s (topics: %s); choose it with --topics %s=TOPIC" % (
                        in_bag, role.replace("_", " "), wanted[role],
                        ", ".join("%s [%s]" % kv for kv in sorted(available.items())), role))
            present = {role: t for role, t in wanted.items() if t in available}
            for role, topic in present.items():
                if available[topic] not in EXPECTED_TYPES[role]:
                    raise BagError("topic %s is %s; the %s topic must be %s" % (
                        topic, available[topic], role.replace("_", " "), " or ".join(EXPECTED_TYPES[role])))
            if "cloud" not in present:
                warnings.append("no point cloud topic %s: camera outputs only, no obstacles" % wanted["cloud"])
            mode = self.config.extrinsics
            if mode == "tf_static" and "tf_static" not in present:
                raise BagError("--extrinsics tf_static but the bag has no %s" % wanted["tf_static"])
            self.front.use_tf_static = mode == "tf_static" or (mode == "auto" and "tf_static" in present)
            fixed = self.config.fixed_frame
            if fixed == "on" and "odom" not in present:
                raise BagError("--fixed-frame on but the bag has no odometry topic %s" % wanted["odom"])
            self.front.use_fixed = fixed == "on" or (fixed == "auto" and "odom" in present)
            self.extrinsics_source = "tf_static" if self.front.use_tf_static else "parameters"
            order = list(present.values())
            total = sum(reader.counts().get(t, 0) for t in order)
            self._stats_init()
            self._keep_overlays = set(keep_overlays)
            self._keep_masks = bool(keep_masks)
            with BagWriter(out_bag, storage=storage, force=force) as writer:
                for topic in (outputs.MASKS, outputs.INSTANCE_IMAGE, outputs.OBSTACLES, outputs.MARKERS,
                              outputs.DIAGNOSTICS) + ((outputs.SCORE_MAP,) if self.config.score_map else ()) + (
                                  (outputs.OVERLAY,) if self.config.overlay else ()):
                    writer.add_topic(_abs(topic), outputs.OUTPUT_TYPES[topic])
                self.writer = writer
                self._next_diag_ns = None
                self._roles = roles = {t: r for r, t in present.items()}
                last_ns = None
                stream = reader.messages(order, on_error=self._on_bad_message)
                try:
                    for topic, stamp_ns, msg in progress(stream, total=total,
                                                         desc="replay %s" % os.path.basename(str(in_bag)),
                                                         enabled=show_progress):
                        self._current = (topic, stamp_ns)
                        self.clock.now_s = stamp_ns * 1e-9
                        self._handle(roles[topic], stamp_ns, msg)
                        self._maybe_diagnostics(stamp_ns)
                        last_ns = stamp_ns
                except BagWriteError:
                    raise
                except BagError as exc:  # the storage cannot be read further: keep what was replayed
                    self.fusion_stats.error("bag_read_errors", str(exc))
                    warnings.append("stopped reading: %s" % exc)
                if self._next_diag_ns is not None and last_ns is not None:
                    self._write_diagnostics(last_ns)
                output_counts = {t: n for t, n in writer.counts.items()}
        counters = _merge_counters(self.camera_stats.counters, self.fusion_stats.counters)
        counters["messages"] = self._n_messages
        counters["bad_messages"] = counters.get("bad_messages", 0)
        counters["bad_input"] = sum(counters.get(k, 0) for k in ("bad_messages",) + tuple(BAD_INPUT_COUNTERS.values()))
        for reason, n in self.matcher.unmatched.items():
            counters["unmatched_" + reason] = n
        counters["time_resets_tracker"] = self.front.pipeline.tracker.time_resets
        stage_ms = {}
        for stats in (self.camera_stats, self.fusion_stats):
            for name, values in stats.latency_history().items():
                stage_ms[name] = {"median": round(float(np.median(values)), 3), "max": round(max(values), 3),
                                  "count": len(values)}
        return ReplaySummary(
            input=str(in_bag), output=str(out_bag), storage=storage, counters=counters, stage_ms=stage_ms,
            output_counts=output_counts, frames=self.frames, overlays=self.overlays,
            camera_masks=self.camera_masks, seconds=time.perf_counter() - t_start,
            tracking_frame=(self.front.fixed_frame_id or "odometry frame") if self.front.use_fixed else "LiDAR frame",
            extrinsics=self.extrinsics_source, warnings=warnings,
            skipped=list(self.skipped), skipped_by_topic={t: dict(r) for t, r in self.skip_counts.items()})

    # ------------------------------------------------------------------ hostile input
    def _handle(self, role, stamp_ns, msg):
        """One message through its handler; whatever fails on it is this message's, counted, not the run's
        (except a failing output bag, which ends the replay)."""
        self._n_messages += 1
        try:
            getattr(self, "_on_" + role)(stamp_ns, msg)
        except BagWriteError:
            raise
        except ValueError as exc:  # ConversionError and other refusals of the message's content
            self._reject(self._stats_of(role), BAD_INPUT_COUNTERS[role], "%s: %s" % (type(exc).__name__, exc))
        except Exception as exc:  # noqa: BLE001 - one message must not end a replay (the nodes do the same)
            self._reject(self._stats_of(role), "processing_errors", "%s: %s" % (type(exc).__name__, exc))

    def _stats_of(self, role):
        return self.camera_stats if role == "image" else self.fusion_stats

    def _on_bad_message(self, bad):
        """The reader could not deserialise a message (BadMessageError): count it and go on."""
        self._n_messages += 1
        self._current = (bad.topic, bad.stamp_ns)
        self._reject(self._stats_of(self._roles.get(bad.topic)), "bad_messages",
                     "cannot deserialise %s (%d bytes): %s" % (bad.msgtype, bad.size, bad.error))

    def _reject(self, stats, counter, text):
        """Count the current message as skipped for ``counter`` (in ``stats`` and by topic)."""
        text = " ".join(str(text).split())
        stats.error(counter, text)
        topic, stamp_ns = self._current
        by_reason = self.skip_counts.setdefault(topic, collections.OrderedDict())
        by_reason[counter] = by_reason.get(counter, 0) + 1
        if len(self.skipped) < MAX_SKIPPED_EXAMPLES:
            self.skipped.append({"item": "%s @ %d" % (topic, stamp_ns), "topic": topic, "stamp_ns": int(stamp_ns),
                                 "reason": counter, "error": text})

    def _stats_init(self):
        self._n_messages = 0
        self.skip_counts.clear()
        del self.skipped[:]
        for name in ("images", "images_processed", "bad_images", "processing_errors", "masks"):
            self.camera_stats.count(name, 0)
        for name in ("clouds", "bad_clouds", "matched", "fused", "skipped_no_camera_info", "skipped_no_extrinsics",
                     "skipped_no_pose", "skipped_out_of_order", "fusion_errors"):
            self.fusion_stats.count(name, 0)

    # ------------------------------------------------------------------ handlers
    def _write(self, topic, stamp_ns, msg):
        self.writer.write(_abs(topic), stamp_ns, msg)

    def _on_camera_info(self, stamp_ns, msg):
        from s2m_ros.ros.conversions.camera_info import camera_info_to_camera

        try:
            self.front.camera = camera_info_to_camera(msg)
        except ConversionError as exc:
            self._reject(self.fusion_stats, "bad_camera_info", str(exc))

    def _on_tf_static(self, stamp_ns, msg):
        for error in self.front.add_tf_message(msg):
            self._reject(self.fusion_stats, "bad_tf_static", error)

    def _on_odom(self, stamp_ns, msg):
        try:
            self.front.add_odometry(msg)
        except ValueError as exc:
            self._reject(self.fusion_stats, "bad_odometry", str(exc))

    def _on_image(self, stamp_ns, msg):
        from s2m_ros.ros.conversions.image import compressed_to_bgr8, image_to_bgr8
        from s2m_ros.ros.conversions.s2m_msgs import stamp_to_ns

        st = self.camera_stats
        index = st.counters["images"]
        st.count("images")
        st.tick("input")
        t0 = time.perf_counter()
        try:
            bgr = compressed_to_bgr8(msg) if hasattr(msg, "format") else image_to_bgr8(msg)
        except ConversionError as exc:
            self._reject(st, "bad_images", str(exc))
            return
        decode_ms = (time.perf_counter() - t0) * 1e3
        try:
            res = self.pipeline.process(bgr)
        except Exception as exc:  # noqa: BLE001 - one bad frame must not stop a replay (the node does the same)
            self._reject(st, "processing_errors", "%s: %s" % (type(exc).__name__, exc))
            return
        fm = res.frame_masks(stamp_to_ns(msg.header.stamp), msg.header.frame_id)
        fm.stage_ms = dict(decode=decode_ms, **fm.stage_ms)
        keep = index in self._keep_overlays
        msgs = outputs.camera_messages(res, bgr, fm, score_map=self.config.score_map,
                                       overlay=self.config.overlay or keep, header=msg.header)
        if keep:
            self.overlays.append((index, fm.stamp_ns, _image_array(msgs[outputs.OVERLAY])))
        if self._keep_masks:
            self.camera_masks.append(fm)
        for topic, out in msgs.items():
            if topic != outputs.OVERLAY or self.config.overlay:
                self._write(topic, stamp_ns, out)
        st.count("images_processed")
        st.count("masks", len(fm.masks))
        st.tick("output")
        st.latencies(fm.stage_ms)
        match, _ = self.matcher.add_item(fm.stamp_ns, fm)
        if match is not None:
            self._fuse(stamp_ns, match)

    def _on_cloud(self, stamp_ns, msg):
        from s2m_ros.ros.conversions.pointcloud import cloud_to_xyz
        from s2m_ros.ros.conversions.s2m_msgs import stamp_to_ns

        st = self.fusion_stats
        st.count("clouds")
        st.tick("cloud")
        try:
            xyz = cloud_to_xyz(msg)
        except ConversionError as exc:
            self._reject(st, "bad_clouds", str(exc))
            return
        match, event = self.front.add_cloud(stamp_to_ns(msg.header.stamp), (xyz, msg.header))
        if event == "skipped_out_of_order":
            st.error(event, "cloud stamp %d is older than the last tracked frame (late message; tracks kept)"
                     % stamp_to_ns(msg.header.stamp))
        elif event == "time_reset":
            st.count("time_resets")
        if match is not None:
            self._fuse(stamp_ns, match)

    def _fuse(self, stamp_ns, match):
        st = self.fusion_stats
        st.count("matched")
        xyz, cloud_header = match.cloud  # the header travels with the cloud: its stamp is copied exactly
        out = self.front.fuse(match.item, xyz, match.cloud_stamp_ns, cloud_header.frame_id)
        if out.skipped:
            return st.error(out.skipped, out.reason)
        step = out.step
        for topic, out in outputs.obstacle_messages(step, self.markers, self.params["output.include_tentative"],
                                                    stamp=cloud_header.stamp).items():
            self._write(topic, stamp_ns, out)
        st.count("fused")
        st.tick("obstacles")
        for report in step.fusion.reports:
            st.count("masks_" + report.status)
        st.latencies(step.stage_ms)
        self.frames.append(FusedFrame(step.stamp_ns, step.frame_id, step.tracks, step.detections,
                                      match.item_stamp_ns))

    def _maybe_diagnostics(self, stamp_ns):
        period = int(self.config.diagnostics_period_s * 1e9)
        if self._next_diag_ns is None:
            self._next_diag_ns = stamp_ns + period
        elif stamp_ns >= self._next_diag_ns:
            self._write_diagnostics(stamp_ns)
            self._next_diag_ns = stamp_ns + period

    def _write_diagnostics(self, stamp_ns):
        from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus

        from s2m_ros.ros.conversions.s2m_msgs import ns_to_stamp
        from s2m_ros.ros.diagnostics import to_diagnostic_array

        statuses = []
        for stats, name, hw in ((self.camera_stats, "s2m replay: pipeline", "camera"),
                                (self.fusion_stats, "s2m replay: fusion", "lidar+camera")):
            errors = stats.counters.get("errors_total", 0)
            level = DiagnosticStatus.WARN if errors else DiagnosticStatus.OK
            statuses += to_diagnostic_array(stats, name, hw, level, "%d error(s)" % errors).status
        out = DiagnosticArray(status=statuses)
        out.header.stamp = ns_to_stamp(stamp_ns)
        self.writer.write(outputs.DIAGNOSTICS, stamp_ns, out)


def _abs(topic):
    return topic if topic.startswith("/") else "/" + topic


def _merge_counters(*counter_dicts):
    """One dict of counters; a name both stages count (errors_total, processing_errors, ...) is summed."""
    out = {}
    for counters in counter_dicts:
        for k, v in counters.items():
            out[k] = out.get(k, 0) + v
    return out


def _image_array(msg):
    from s2m_ros.ros.conversions.image import image_to_numpy

    return image_to_numpy(msg).copy()
