"""TensorRT backend (optional): engines built from the ONNX file, cached, run with CUDA streams.

Needs the ``tensorrt`` Python package (10.x) and CUDA runtime bindings (``cuda-python``), i.e. an
NVIDIA GPU machine (Jetson Orin / x86 + GPU). Nothing here is imported unless a session asks for
``backend="tensorrt"``; CPU machines and CI never need it.

Engine cache: an engine is only valid for one TensorRT version, one GPU model and one precision, so
the cached file name is a hash of (ONNX file contents, TensorRT version, GPU name, precision,
optimisation-profile shapes). A missing engine is built (minutes for large models on Orin) and saved;
a stale or corrupt one (deserialisation fails) is rebuilt; a failed build raises
:class:`TensorRTError` naming the ONNX file and the parser/builder messages.
"""
import hashlib
import json
import os
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from s2m_ros.inference.model_files import require_file

PRECISIONS = ("fp32", "fp16")


class TensorRTError(RuntimeError):
    """TensorRT is unavailable, or an engine could not be built / loaded / run."""


def default_cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "s2m_ros", "tensorrt")


def engine_cache_key(onnx_bytes: bytes, trt_version: str, gpu_name: str, precision: str,
                     profiles: Optional[Dict[str, Tuple[Sequence[int], Sequence[int], Sequence[int]]]] = None):
    """Stable key of everything an engine depends on (hex, 20 chars)."""
    if precision not in PRECISIONS:
        raise ValueError("precision must be one of %s, got %r" % (PRECISIONS, precision))
    h = hashlib.sha256()
    h.update(hashlib.sha256(onnx_bytes).digest())
    meta = {"trt": str(trt_version), "gpu": str(gpu_name), "precision": precision,
            "profiles": {k: [list(map(int, s)) for s in v] for k, v in sorted((profiles or {}).items())}}
    h.update(json.dumps(meta, sort_keys=True).encode())
    return h.hexdigest()[:20]


def engine_path(cache_dir, onnx_path, key):
    stem = os.path.splitext(os.path.basename(onnx_path))[0]
    return os.path.join(cache_dir, "%s.%s.engine" % (stem, key))


def default_profiles(input_shapes: Dict[str, Sequence], max_batch: int = 16):
    """min/opt/max shapes for inputs with dynamic dims: a dynamic dim 0 ranges 1..max_batch (opt
    max_batch // 2), other dynamic dims must be given explicitly (raises)."""
    profiles = {}
    for name, shape in input_shapes.items():
        if all(isinstance(d, int) and d > 0 for d in shape):
            continue
        lo, opt, hi = [], [], []
        for i, d in enumerate(shape):
            if isinstance(d, int) and d > 0:
                lo.append(d), opt.append(d), hi.append(d)
            elif i == 0:
                lo.append(1), opt.append(max(1, max_batch // 2)), hi.append(max_batch)
            else:
                raise TensorRTError("input %r has dynamic dim %d (%r): give its min/opt/max shapes in "
                                    "profiles={...}" % (name, i, d))
        profiles[name] = (lo, opt, hi)
    return profiles


def _import():
    try:
        import tensorrt as trt
    except ImportError as exc:  # pragma: no cover - CPU machines
        raise TensorRTError("backend 'tensorrt' needs the tensorrt Python package and an NVIDIA GPU "
                            "(%s); use backend 'onnxruntime' on this machine" % exc) from exc
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart
        except ImportError as exc:  # pragma: no cover
            raise TensorRTError("backend 'tensorrt' needs CUDA runtime bindings: pip install cuda-python") from exc
    return trt, cudart


def _check(result):  # pragma: no cover - GPU only
    err = result[0]
    if int(err) != 0:
        raise TensorRTError("CUDA call failed: %s" % err)
    return result[1] if len(result) == 2 else result[1:]


def _onnx_input_shapes(onnx_bytes):
    import onnx

    model = onnx.load_model_from_string(onnx_bytes)
    init = {i.name for i in model.graph.initializer}
    shapes = {}
    for inp in model.graph.input:
        if inp.name in init:
            continue
        dims = inp.type.tensor_type.shape.dim
        shapes[inp.name] = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in dims]
    return shapes


class TrtSession:  # pragma: no cover - exercised on GPU machines only
    """Same interface as :class:`s2m_ros.inference.backend.OrtSession`."""

    backend = "tensorrt"

    def __init__(self, path, precision="fp16", cache_dir=None, profiles=None, max_batch=16,
                 workspace_gib=2.0, hint=""):
        trt, cudart = _import()
        self._trt, self._cudart = trt, cudart
        self.path = require_file(path, hint)
        self.name = os.path.basename(self.path)
        self.providers = ["TensorRT-%s" % trt.__version__]
        with open(self.path, "rb") as f:
            onnx_bytes = f.read()
        shapes = _onnx_input_shapes(onnx_bytes)
        self.profiles = profiles if profiles is not None else default_profiles(shapes, max_batch)
        props = _check(cudart.cudaGetDeviceProperties(0))
        gpu = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
        key = engine_cache_key(onnx_bytes, trt.__version__, gpu, precision, self.profiles)
        cache_dir = cache_dir or default_cache_dir()
        os.makedirs(cache_dir, exist_ok=True)
        self.engine_file = engine_path(cache_dir, self.path, key)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        engine = None
        if os.path.isfile(self.engine_file):
            with open(self.engine_file, "rb") as f:
                engine = self._runtime.deserialize_cuda_engine(f.read())
            # None: stale (other TensorRT build) or corrupt -> rebuild below
        if engine is None:
            plan = self._build(onnx_bytes, precision, workspace_gib)
            tmp = self.engine_file + ".tmp"
            with open(tmp, "wb") as f:
                f.write(plan)
            os.replace(tmp, self.engine_file)
            engine = self._runtime.deserialize_cuda_engine(plan)
            if engine is None:
                raise TensorRTError("TensorRT could not load the engine it just built from %s" % self.path)
        self._engine = engine
        self._context = engine.create_execution_context()
        self._stream = _check(cudart.cudaStreamCreate())
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        mode_in = trt.TensorIOMode.INPUT
        self.input_names = [n for n in names if engine.get_tensor_mode(n) == mode_in]
        self.output_names = [n for n in names if engine.get_tensor_mode(n) != mode_in]
        self.input_shapes = {n: list(engine.get_tensor_shape(n)) for n in self.input_names}
        self.output_shapes = {n: list(engine.get_tensor_shape(n)) for n in self.output_names}
        self._dtypes = {n: np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in names}
        self._buffers = {}  # name -> (device ptr, nbytes)

    def _build(self, onnx_bytes, precision, workspace_gib):
        trt = self._trt
        builder = trt.Builder(self._logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, self._logger)
        if not parser.parse(onnx_bytes):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise TensorRTError("TensorRT could not parse %s: %s" % (self.path, errors))
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
        if precision == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
        if self.profiles:
            profile = builder.create_optimization_profile()
            for name, (lo, opt, hi) in self.profiles.items():
                profile.set_shape(name, lo, opt, hi)
            config.add_optimization_profile(profile)
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise TensorRTError("TensorRT failed to build an engine from %s (precision %s)" % (self.path, precision))
        return bytes(plan)

    def _device(self, name, nbytes):
        ptr, size = self._buffers.get(name, (None, 0))
        if ptr is None or size < nbytes:
            if ptr is not None:
                _check(self._cudart.cudaFree(ptr))
            ptr = _check(self._cudart.cudaMalloc(max(nbytes, 1)))
            self._buffers[name] = (ptr, nbytes)
        return ptr

    def run(self, feeds: Dict[str, np.ndarray], outputs=None):
        cudart = self._cudart
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        missing = set(self.input_names) - set(feeds)
        if missing:
            raise TensorRTError("missing inputs: %s" % sorted(missing))
        keep = []
        for name in self.input_names:
            arr = np.ascontiguousarray(feeds[name], dtype=self._dtypes[name])
            keep.append(arr)
            self._context.set_input_shape(name, arr.shape)
            ptr = self._device(name, arr.nbytes)
            _check(cudart.cudaMemcpyAsync(ptr, arr.ctypes.data, arr.nbytes, h2d, self._stream))
            self._context.set_tensor_address(name, ptr)
        results = {}
        for name in self.output_names:
            shape = tuple(self._context.get_tensor_shape(name))
            out = np.empty(shape, dtype=self._dtypes[name])
            ptr = self._device(name, out.nbytes)
            self._context.set_tensor_address(name, ptr)
            results[name] = (out, ptr)
        if not self._context.execute_async_v3(self._stream):
            raise TensorRTError("TensorRT execution failed for %s" % self.name)
        for out, ptr in results.values():
            _check(cudart.cudaMemcpyAsync(out.ctypes.data, ptr, out.nbytes, d2h, self._stream))
        _check(cudart.cudaStreamSynchronize(self._stream))
        names = list(outputs) if outputs else self.output_names
        return {n: results[n][0] for n in names}

    def __del__(self):
        try:
            for ptr, _ in self._buffers.values():
                self._cudart.cudaFree(ptr)
            self._cudart.cudaStreamDestroy(self._stream)
        except Exception:
            pass
