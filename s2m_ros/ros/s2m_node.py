"""s2m_node: the camera node (thin rclpy shell around s2m_ros.segmentation.pipeline.S2MPipeline).

Subscribes to the camera (raw or compressed) and optional CameraInfo, decodes and validates every
frame, and hands it to a latest-only worker (s2m_ros.ros.worker): one frame is processed at a time, a
frame arriving while the worker is busy replaces the waiting one (counted as dropped), so the node
never falls behind the camera. For every processed frame it publishes, stamped with the image's
header: OodMaskArray (empty when nothing was found), the mono8 instance image, optionally the
32FC1 score map and a bgr8 overlay; and /diagnostics with rates, drops, per-stage latency, backend,
model and error counts. Bad input and failed frames are counted and skipped; the node keeps running.
"""
import time

from s2m_ros.ros.diagnostics import NodeStats, to_diagnostic_array
from s2m_ros.ros.runtime import RELIABILITY_CHOICES, decode_or_report, help_text, make_qos, on_camera_info, run_node
from s2m_ros.ros.params import ParamSpec, declare_all
from s2m_ros.segmentation.pipeline import (MIN_IMAGE_SIDE, PipelineConfig, PipelineConfigError, S2MPipeline,
                                           parse_profile)

NODE_NAME = "s2m_node"


def _profile_problem(value):
    """The pipeline's own profile check (one list of scorers and segmenters)."""
    try:
        parse_profile(value)
    except PipelineConfigError as exc:
        return str(exc)
    return None


PARAMS = (
    ParamSpec("input.transport", "raw", "subscribe to sensor_msgs/Image on `image` (raw) or "
              "sensor_msgs/CompressedImage (jpeg/png) on `image/compressed`", choices=("raw", "compressed")),
    ParamSpec("input.reliability", "best_effort", "QoS reliability of the image subscription "
              "(sensor data: best_effort)", choices=RELIABILITY_CHOICES),
    ParamSpec("input.depth", 1, "QoS history depth of the image subscription", min=1, max=100),
    ParamSpec("input.max_pixels", 16777216, "images with more pixels are rejected as bad input", min=1, max=268435456),
    ParamSpec("camera_info.enabled", False, "subscribe to sensor_msgs/CameraInfo on `camera_info`"),
    ParamSpec("profile", "surface+grabcut", "pipeline profile <scorer>+<segmenter>; `surface+grabcut` needs "
              "no model files", check=_profile_problem),
    ParamSpec("models.scorer", "", "scorer ONNX file (profiles espnet/espnetv2/onnx; `s2m export espnet ...`)"),
    ParamSpec("models.mobilesam_encoder", "", "MobileSAM encoder ONNX (profiles *+mobilesam; `s2m export mobilesam`)"),
    ParamSpec("models.mobilesam_decoder", "", "MobileSAM decoder ONNX (profiles *+mobilesam)"),
    ParamSpec("score.method", "msp", "score from logits (model scorers; rba: mask-classification models only)",
              choices=("msp", "maxlogit", "entropy", "energy", "sml", "rba")),
    ParamSpec("score.sml_stats", "", "statistics JSON from `s2m fit-sml` (score.method sml)"),
    ParamSpec("backend", "onnxruntime", "model runtime", choices=("onnxruntime", "tensorrt")),
    ParamSpec("threads", 0, "intra-op threads of the model runtimes (0 = runtime default)", min=0, max=64),
    ParamSpec("pipeline.config", "", "optional pipeline YAML (keys of config/pipeline.yaml: prompts, surface, "
              "grabcut, selection, refinement...); the parameters above override it"),
    ParamSpec("pipeline.refine", False, "also compute the refined anomaly map (published as the score map)"),
    ParamSpec("output.reliability", "reliable", "QoS reliability of the published outputs",
              choices=RELIABILITY_CHOICES),
    ParamSpec("output.depth", 5, "QoS history depth of the published outputs", min=1, max=100),
    ParamSpec("output.publish_score_map", False, "publish the float score map (32FC1) on `ood/score_map`"),
    ParamSpec("output.publish_overlay", True, "publish a bgr8 overlay for people on `ood/overlay`"),
    ParamSpec("diagnostics.period_s", 1.0, "period of diagnostic_msgs/DiagnosticArray on /diagnostics",
              min=0.05, max=60.0),
)

TOPICS = (
    # (name, direction, type, description)
    ("image", "sub", "sensor_msgs/Image", "camera image (input.transport=raw)"),
    ("image/compressed", "sub", "sensor_msgs/CompressedImage", "camera image (input.transport=compressed)"),
    ("camera_info", "sub", "sensor_msgs/CameraInfo", "camera calibration (camera_info.enabled)"),
    ("ood/masks", "pub", "s2m_ros/OodMaskArray", "object masks, one array per processed frame"),
    ("ood/instance_image", "pub", "sensor_msgs/Image", "mono8 instance ids (0 = background)"),
    ("ood/score_map", "pub", "sensor_msgs/Image", "32FC1 anomaly scores at the scorer's resolution"),
    ("ood/overlay", "pub", "sensor_msgs/Image", "bgr8 overlay for people"),
    ("/diagnostics", "pub", "diagnostic_msgs/DiagnosticArray", "rates, counters, errors"),
)

SUMMARY = ("s2m_ros camera node: anomaly masks of unknown objects from camera images (S2M).\n"
           "Each frame: anomaly score map -> threshold-free prompts -> promptable segmenter -> mask\n"
           "selection; latest-only processing (frames arriving while busy are dropped and counted).")


def pipeline_config(p):
    """PipelineConfig from the node's parameters (``pipeline.config`` YAML first, parameters on top).

    Every problem is a PipelineConfigError on one line (exit code 2): the file missing, a folder, not YAML
    or not a mapping (naming the path), a bad key or value in it (naming the dotted key and the file), a
    model file the profile needs left empty (naming the node parameter).
    """
    from s2m_ros.segmentation.pipeline import check_model_files, load_pipeline_yaml

    source = p["pipeline.config"]
    data = load_pipeline_yaml(source, "pipeline.config") if source else {}
    data.update(profile=p["profile"], backend=p["backend"], threads=p["threads"], score_method=p["score.method"],
                refine=p["pipeline.refine"])
    params = (("scorer_model", "models.scorer"), ("mobilesam_encoder", "models.mobilesam_encoder"),
              ("mobilesam_decoder", "models.mobilesam_decoder"), ("sml_stats", "score.sml_stats"))
    for key, param in params:
        if p[param]:
            data[key] = p[param]
    try:
        config = PipelineConfig.from_dict(data)
    except PipelineConfigError as exc:
        if not source:
            raise
        raise type(exc)("%s (pipeline.config %s)" % (exc, source)) from None
    check_model_files(config, {key: "%s (node parameter %s%s)" % (key, param, ", or %s in pipeline.config" % key
                                                                   if source else "") for key, param in params})
    return config


def _make_node_class():
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
    from rclpy.node import Node
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image

    from s2m_ros.ros import guard, outputs
    from s2m_ros.ros.conversions import ConversionError
    from s2m_ros.ros.conversions.image import compressed_to_bgr8, image_to_bgr8
    from s2m_ros.ros.conversions.s2m_msgs import stamp_to_ns
    from s2m_ros.segmentation.model_scorer import NonFiniteOutputError
    from s2m_ros.msg import OodMaskArray
    from s2m_ros.ros.worker import LatestOnlyWorker

    class S2MNode(Node):
        def __init__(self):
            super().__init__(NODE_NAME)
            self.worker = None
            self.params = p = declare_all(self, PARAMS)
            self.stats = NodeStats()
            self._last_stamp_ns = None
            self.camera = None
            # fails here (exit code 2) on a missing model file, with its path and the export command
            self.pipeline = S2MPipeline(pipeline_config(p))
            in_qos = make_qos(p["input.reliability"], p["input.depth"])
            out_qos = make_qos(p["output.reliability"], p["output.depth"])
            self.pubs = {outputs.MASKS: self.create_publisher(OodMaskArray, outputs.MASKS, out_qos),
                         outputs.INSTANCE_IMAGE: self.create_publisher(Image, outputs.INSTANCE_IMAGE, out_qos)}
            if p["output.publish_score_map"]:
                self.pubs[outputs.SCORE_MAP] = self.create_publisher(Image, outputs.SCORE_MAP, out_qos)
            if p["output.publish_overlay"]:
                self.pubs[outputs.OVERLAY] = self.create_publisher(Image, outputs.OVERLAY, out_qos)
            self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
            self.worker = LatestOnlyWorker(self._process, on_error=self._on_worker_error)
            # every callback guarded: no single message (malformed bytes, a bug of ours) can end the node
            if p["input.transport"] == "raw":
                guard.subscribe(self, Image, "image", self._on_image, in_qos)
            else:
                guard.subscribe(self, CompressedImage, "image/compressed", self._on_compressed, in_qos)
            if p["camera_info.enabled"]:
                guard.subscribe(self, CameraInfo, "camera_info", lambda msg: on_camera_info(self, msg), in_qos)
            guard.timer(self, p["diagnostics.period_s"], self._publish_diagnostics, "diagnostics")
            self.stats.info.update(profile=p["profile"], backend=p["backend"], scorer=self.pipeline.scorer_name,
                                   segmenter=self.pipeline.segmenter_name)
            for stage in ("frames_received", "frames_decoded", "dropped_frames", "frames_processed", "processing_errors",
                          "model_output_nonfinite", "bad_input", "malformed_messages", "time_resets", "errors_total"):
                self.stats.count(stage, 0)
            self.get_logger().info("started: %s input on '%s', profile %s (scorer %s, segmenter %s, backend %s)" % (
                p["input.transport"], self.resolve_topic_name(
                    "image" if p["input.transport"] == "raw" else "image/compressed"), p["profile"],
                self.pipeline.scorer_name, self.pipeline.segmenter_name, p["backend"]))

        # -- input ---------------------------------------------------------
        def _on_image(self, msg):
            self._handle(msg, lambda: image_to_bgr8(msg, max_pixels=self.params["input.max_pixels"]))

        def _on_compressed(self, msg):
            self._handle(msg, lambda: compressed_to_bgr8(msg, max_pixels=self.params["input.max_pixels"]))

        def _handle(self, msg, decode):
            def decode_checked():
                bgr = decode()
                if min(bgr.shape[:2]) < MIN_IMAGE_SIDE:
                    raise ConversionError("image size", "%dx%d" % (bgr.shape[1], bgr.shape[0]), "smaller than the "
                                          "pipeline's %dx%d minimum" % (MIN_IMAGE_SIDE, MIN_IMAGE_SIDE))
                return bgr

            self.stats.count("frames_received")
            self.stats.tick("input")
            stamp_ns = stamp_to_ns(msg.header.stamp)
            if self._last_stamp_ns is not None and stamp_ns < self._last_stamp_ns:
                self.stats.count("time_resets")
                self.get_logger().info("image stamps went backwards by %.3f s (bag loop?)" % (
                    (self._last_stamp_ns - stamp_ns) * 1e-9))
            self._last_stamp_ns = stamp_ns
            t0 = time.perf_counter()
            bgr = decode_or_report(self, self.stats, "bad_input", "frame", decode_checked)
            if bgr is None:
                return
            self.stats.count("frames_decoded")
            self.stats.set_info("last_frame", "%dx%d %s" % (bgr.shape[1], bgr.shape[0], msg.header.frame_id))
            decode_ms = (time.perf_counter() - t0) * 1e3
            # the header travels with the frame and is copied into every output exactly as received
            if self.worker.submit((stamp_ns, msg.header, bgr, decode_ms, time.perf_counter())):
                self.stats.count("dropped_frames")

        # -- processing (worker thread) ----------------------------------------
        def _process(self, frame):
            stamp_ns, header, bgr, decode_ms, t_in = frame
            res = self.pipeline.process(bgr)
            fm = res.frame_masks(stamp_ns, header.frame_id)
            fm.stage_ms = dict(decode=decode_ms, **fm.stage_ms)
            t_pub = time.perf_counter()
            msgs = outputs.camera_messages(res, bgr, fm, score_map=outputs.SCORE_MAP in self.pubs,
                                           overlay=outputs.OVERLAY in self.pubs, header=header)
            for topic, msg in msgs.items():
                self.pubs[topic].publish(msg)
            now = time.perf_counter()
            self.stats.count("frames_processed")
            self.stats.count("masks_published", len(fm.masks))
            self.stats.tick("output")
            self.stats.latencies(dict(fm.stage_ms, publish=(now - t_pub) * 1e3, in_node=(now - t_in) * 1e3 + decode_ms))
            self.stats.set_info("last_result", "%d mask(s), %d prompt(s)" % (len(fm.masks), len(res.prompts)))

        def _on_worker_error(self, frame, exc):
            counter = "model_output_nonfinite" if isinstance(exc, NonFiniteOutputError) else "processing_errors"
            self.stats.error(counter, "%s: %s" % (type(exc).__name__, exc))
            if counter == "processing_errors":
                h, w = frame[2].shape[:2]
                self.stats.set_info("last_processing_error", "%dx%d frame: %s: %s" % (w, h, type(exc).__name__, exc))
            self.get_logger().warning("frame skipped (%s): %s" % (counter, exc), throttle_duration_sec=2.0)

        # -- diagnostics ---------------------------------------------------
        def _publish_diagnostics(self):
            errors = self.stats.counters.get("errors_total", 0)
            level = DiagnosticStatus.WARN if errors else DiagnosticStatus.OK
            message = "%d frame(s) processed, %d dropped (latest-only), %d error(s)" % (
                self.stats.counters.get("frames_processed", 0), self.stats.counters.get("dropped_frames", 0), errors)
            self.pub_diag.publish(to_diagnostic_array(
                self.stats, "%s: pipeline" % self.get_fully_qualified_name(), "camera", level, message,
                stamp=self.get_clock().now().to_msg()))

        def destroy_node(self):
            worker = getattr(self, "worker", None)  # absent when construction failed
            if worker is not None:
                worker.stop()
            return super().destroy_node()

    return S2MNode


def main(argv=None):
    return run_node(lambda: _make_node_class()(), argv, help_text(NODE_NAME, SUMMARY, TOPICS, PARAMS))
