"""TrtBackend: a model.engine (+ its .json sidecar) and the plugin library; no torch.

Each slide: build the rulebook on the host, check its shapes against the engine's profile
(clear error above ``max_tokens``), set the input shapes, copy the inputs to the GPU, run
``execute_async_v3`` on one CUDA stream and copy the outputs back. Device buffers and the stream
are polygraphy's thin CUDA-runtime wrappers (``polygraphy.cuda``), kept between slides and grown
only when a larger slide needs it.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ...errors import BackendError
from ...metadata import check_rulebook_version, config_from_metadata
from ...rulebook import SortedFeatures, rulebook_for
from ..base import SpanResult
from ..result import to_result
from .plugin import import_tensorrt, load_plugin_library
from .profiles import check_fits
from .sidecar import read_sidecar

# trt.DataType name -> numpy dtype name
TRT_TO_NUMPY = {"FLOAT": "float32", "HALF": "float16", "INT32": "int32", "INT64": "int64", "BOOL": "bool",
                "INT8": "int8", "UINT8": "uint8"}
POLYGRAPHY_MISSING = "the trt backend moves tensors with polygraphy's CUDA wrapper: pip install polygraphy"


def numpy_dtype_name(trt_dtype) -> str:
    name = getattr(trt_dtype, "name", str(trt_dtype).rsplit(".", 1)[-1])
    if name not in TRT_TO_NUMPY:
        raise BackendError(f"engine tensor type {name} is not supported by the trt backend")
    return TRT_TO_NUMPY[name]


def numpy_input(arr: np.ndarray, dtype: str) -> np.ndarray:
    """Cast a host input to the engine's tensor dtype (feats may be fp16)."""
    return np.ascontiguousarray(arr.astype(np.dtype(dtype), copy=False))


def import_cuda():
    try:
        from polygraphy import cuda  # noqa: PLC0415
    except ImportError:
        raise BackendError(POLYGRAPHY_MISSING) from None
    return cuda


class TrtBackend:
    name = "trt"

    def __init__(self, model: str | Path, plugin_lib: str | Path | None = None):
        trt = import_tensorrt()
        self._cuda = import_cuda()
        self.path = Path(model)
        if not self.path.is_file():
            raise BackendError(f"engine file not found: {self.path}")
        data = self.path.read_bytes()
        side = read_sidecar(self.path, data)
        meta = side["span_deploy"]
        check_rulebook_version(meta, self.path, "re-export the model and rebuild the engine")
        self.cfg = config_from_metadata(meta, self.path)
        self.input_names = meta["input_names"]
        self.output_names = meta["output_names"]
        self.attention = meta["attention"]
        self.logger = trt.Logger(trt.Logger.WARNING)
        trt.init_libnvinfer_plugins(self.logger, "")
        if self.attention == "plugin":
            load_plugin_library(trt, trt.get_plugin_registry(), plugin_lib)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(data)
        if self.engine is None:
            raise BackendError(f"{self.path}: TensorRT could not deserialize the engine (built with TensorRT "
                               f"{side.get('tensorrt')}, this is {trt.__version__}; engines are not portable "
                               "across TensorRT versions or GPUs: rebuild it here)")
        self.context = self.engine.create_execution_context()
        # TensorRT drops a network input nothing reads (a table of a layer whose output is dead
        # code, which the ONNX graph keeps as an unused input): feed only what the engine takes
        engine_io = {self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)}
        self.input_names = [n for n in self.input_names if n in engine_io]
        self.profile_min, self.profile_max = {}, {}
        for n in self.input_names:
            lo, _, hi = self.engine.get_tensor_profile_shape(n, 0)
            self.profile_min[n] = tuple(int(d) for d in lo)
            self.profile_max[n] = tuple(int(d) for d in hi)
        self.max_tokens = int(side.get("max_tokens", self.profile_max["feats"][0] - 2))
        self.dtypes = {n: numpy_dtype_name(self.engine.get_tensor_dtype(n))
                       for n in self.input_names + self.output_names}
        self.stream = self._cuda.Stream()
        self._buffers: dict[str, object] = {}

    @property
    def feat_dim(self) -> int:
        return self.cfg.feat_dim

    def check_shapes(self, shapes: dict[str, tuple[int, ...]], num_patches: int) -> None:
        check_fits(self.profile_max, shapes, num_patches, self.profile_min)

    def _buffer(self, name: str, shape: tuple[int, ...]):
        """The device buffer of ``name``, resized to ``shape`` (reallocated only when it grows)."""
        buf = self._buffers.get(name)
        if buf is None:
            buf = self._buffers[name] = self._cuda.DeviceArray(shape=shape, dtype=np.dtype(self.dtypes[name]))
        else:
            buf.resize(shape)
        return buf

    def run(self, coords: np.ndarray, feats: np.ndarray | SortedFeatures) -> SpanResult:
        t0 = time.perf_counter()
        if len(coords) > self.max_tokens:
            raise BackendError(f"the slide has {len(coords)} patches, the engine {self.path} takes at most "
                               f"{self.max_tokens}; rebuild it with a larger --max-tokens")
        rb = rulebook_for(coords, feats, self.cfg)
        inputs = rb.engine_inputs(self.cfg, feats)
        self.check_shapes({n: tuple(inputs[n].shape) for n in self.input_names}, len(coords))
        t1 = time.perf_counter()
        for n in self.input_names:
            host = numpy_input(inputs[n], self.dtypes[n])
            dev = self._buffer(n, host.shape)
            dev.copy_from(host, stream=self.stream)
            if not self.context.set_input_shape(n, tuple(host.shape)):
                raise BackendError(f"TensorRT refused shape {host.shape} for input {n}")
            self.context.set_tensor_address(n, dev.ptr)
        host_outs: dict[str, np.ndarray] = {}
        for n in self.output_names:
            shape = tuple(self.context.get_tensor_shape(n))
            if any(d < 0 for d in shape):
                raise BackendError(f"output {n} has unresolved shape {shape}")
            dev = self._buffer(n, shape)
            host_outs[n] = np.empty(shape, np.dtype(self.dtypes[n]))
            self.context.set_tensor_address(n, dev.ptr)
        if not self.context.execute_async_v3(self.stream.ptr):
            raise BackendError("TensorRT execution failed (see the log above)")
        for n in self.output_names:
            self._buffers[n].copy_to(host_outs[n], stream=self.stream)
        self.stream.synchronize()
        t2 = time.perf_counter()
        outs = {n: a.astype(np.float32, copy=False) for n, a in host_outs.items()}
        return to_result(outs, rb, self.cfg, {"rulebook": t1 - t0, "compute": t2 - t1, "total": t2 - t0})
