"""One small interface over model runtimes.

``create_session(path, backend=...)`` returns an object with ``input_names``, ``input_shapes``
(dims as int, or a string/None for dynamic ones), ``output_names``, ``output_shapes``, ``name``, ``backend``,
``providers`` and ``run(feeds) -> {output name: np.ndarray}``. ONNX Runtime is always available
(CPU, or CUDA when its provider is present); TensorRT is an optional import
(:mod:`s2m_ros.inference.tensorrt`) that only GPU machines need.
"""
import os
from typing import Dict, Optional, Sequence

import numpy as np

# ModelFileError / InvalidModelError / require_file: part of this interface
from s2m_ros.inference.model_files import (InvalidModelError, ModelFileError, require_file,  # noqa: F401
                                           require_model_file)

BACKENDS = ("onnxruntime", "tensorrt")
# ONNX Runtime's errors (onnxruntime.capi.onnxruntime_pybind11_state) that mean "this file is not a model it
# can load": empty, truncated or foreign bytes (InvalidProtobuf; InvalidArgument "No graph was found"), an
# invalid graph, an operator it does not implement. Any other of its errors at load ("Fail") only when it
# says so ("Load model from ... failed"); e.g. a CUDA failure stays what it is.
_ORT_LOAD_ERRORS = ("InvalidProtobuf", "InvalidArgument", "InvalidGraph", "NoModel", "NotImplemented")


def _is_load_error(exc):
    if not type(exc).__module__.startswith("onnxruntime"):
        return False
    return type(exc).__name__ in _ORT_LOAD_ERRORS or "Load model from" in str(exc)


def _ort_reason(exc):
    """ONNX Runtime's message without its prefix: '[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Load model
    from m.onnx failed:Protobuf parsing failed.' -> 'ONNX Runtime: Protobuf parsing failed.'"""
    text = " ".join(str(exc).split())
    if "failed:" in text:
        text = text.split("failed:", 1)[1].strip()
    return "ONNX Runtime: %s" % (text[:200] or type(exc).__name__)


class OrtSession:
    """ONNX Runtime session: CPU by default, CUDA first when requested and available."""

    backend = "onnxruntime"

    def __init__(self, path, providers: Optional[Sequence[str]] = None, threads: int = 0,
                 hint: str = ""):
        import onnxruntime as ort

        self.path = require_model_file(path, hint)
        self.name = os.path.basename(self.path)
        available = ort.get_available_providers()
        if providers is None or list(providers) == ["auto"]:
            wanted = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        else:
            wanted = list(providers)
        chosen = [p for p in wanted if p in available] or ["CPUExecutionProvider"]
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(self.path, sess_options=opts, providers=chosen)
        except Exception as exc:
            if _is_load_error(exc):
                raise InvalidModelError(self.path, _ort_reason(exc), hint) from exc
            raise
        self.providers = self._session.get_providers()
        inputs = self._session.get_inputs()
        self.input_names = [i.name for i in inputs]
        self.input_shapes = {i.name: list(i.shape) for i in inputs}
        self.input_types = {i.name: i.type for i in inputs}
        outputs = self._session.get_outputs()
        self.output_names = [o.name for o in outputs]
        self.output_shapes = {o.name: list(o.shape) for o in outputs}

    def run(self, feeds: Dict[str, np.ndarray], outputs: Optional[Sequence[str]] = None):
        names = list(outputs) if outputs else self.output_names
        values = self._session.run(names, feeds)
        return dict(zip(names, values))


def create_session(path, backend: str = "onnxruntime", providers=None, threads: int = 0,
                   precision: str = "fp16", cache_dir: Optional[str] = None, hint: str = ""):
    """Open ``path`` (an .onnx file) with ``backend``; TensorRT builds/caches an engine from it.

    A missing file raises :class:`ModelFileError`, a file that is not a loadable ONNX model (empty,
    truncated, not ONNX) :class:`InvalidModelError` (a ModelFileError), both naming the file and ``hint``
    (the command that produces it).
    """
    if backend == "onnxruntime":
        return OrtSession(path, providers=providers, threads=threads, hint=hint)
    if backend == "tensorrt":
        from s2m_ros.inference.tensorrt import TrtSession  # optional: needs tensorrt + a GPU

        return TrtSession(path, precision=precision, cache_dir=cache_dir, hint=hint)
    raise ValueError("unknown backend %r, expected one of %s" % (backend, ", ".join(BACKENDS)))
