"""TensorRT backend: a model.engine (+ its .json sidecar) and the plugin library; torch CUDA buffers.

Each slide: build the rulebook on the host, check its shapes against the engine's profile
(clear error above ``max_tokens``), set the input shapes, copy the inputs to the GPU with torch,
``execute_async_v3`` on a torch stream, and read the outputs back.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..config import SpanConfig
from ..errors import BackendError
from ..rulebook import RULEBOOK_VERSION, build_rulebook
from .base import SpanResult
from .common import to_result

# trt.DataType name -> torch dtype name (resolved lazily: no torch at import)
TRT_TO_TORCH = {"FLOAT": "float32", "HALF": "float16", "INT32": "int32", "INT64": "int64", "BOOL": "bool",
                "INT8": "int8", "UINT8": "uint8", "BF16": "bfloat16"}


def torch_dtype_name(trt_dtype) -> str:
    name = getattr(trt_dtype, "name", str(trt_dtype).rsplit(".", 1)[-1])
    if name not in TRT_TO_TORCH:
        raise BackendError(f"engine tensor type {name} is not supported by the trt backend")
    return TRT_TO_TORCH[name]


def numpy_input(arr: np.ndarray, torch_dtype: str) -> np.ndarray:
    """Cast a host input to the engine's tensor dtype (feats may be fp16)."""
    return np.ascontiguousarray(arr.astype(np.dtype(torch_dtype), copy=False))


class TrtBackend:
    name = "trt"

    def __init__(self, model: str | Path, plugin_lib: str | Path | None = None):
        from ..engine.build import import_tensorrt, read_sidecar

        trt = import_tensorrt()
        try:
            import torch
        except ImportError:
            raise BackendError("the trt backend moves tensors with PyTorch (CUDA build): pip install torch") from None
        if not torch.cuda.is_available():
            raise BackendError("the trt backend needs a CUDA GPU, and torch sees none (torch.cuda.is_available() "
                               "is False); use --backend ort")
        self._trt, self._torch = trt, torch
        self.path = Path(model)
        if not self.path.is_file():
            raise BackendError(f"engine file not found: {self.path}")
        data = self.path.read_bytes()
        side = read_sidecar(self.path, data)
        meta = side["span_deploy"]
        if meta["rulebook_version"] != RULEBOOK_VERSION:
            raise BackendError(f"{self.path}: built for rulebook version {meta['rulebook_version']}, this "
                               f"span-deploy builds version {RULEBOOK_VERSION}; re-export and rebuild")
        self.cfg = SpanConfig.from_dict(meta["config"])
        self.feat_dim = self.cfg.feat_dim
        self.input_names = meta["input_names"]
        self.output_names = meta["output_names"]
        self.attention = meta["attention"]
        self.logger = trt.Logger(trt.Logger.WARNING)
        trt.init_libnvinfer_plugins(self.logger, "")
        if self.attention == "plugin":
            from ..native import trt_plugin_library
            lib = Path(plugin_lib) if plugin_lib else trt_plugin_library()
            if not lib.is_file():
                raise BackendError(f"TensorRT plugin library not found: {lib}")
            trt.get_plugin_registry().load_library(str(lib))
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(data)
        if self.engine is None:
            raise BackendError(f"{self.path}: TensorRT could not deserialize the engine (built with TensorRT "
                               f"{side.get('tensorrt')}, this is {trt.__version__}; engines are not portable "
                               "across TensorRT versions or GPUs: rebuild it here)")
        self.context = self.engine.create_execution_context()
        self.profile_max = {n: tuple(int(d) for d in self.engine.get_tensor_profile_shape(n, 0)[2])
                            for n in self.input_names}
        self.profile_min = {n: tuple(int(d) for d in self.engine.get_tensor_profile_shape(n, 0)[0])
                            for n in self.input_names}
        self.max_tokens = int(side.get("max_tokens", self.profile_max["feats"][0] - 2))
        self.dtypes = {n: torch_dtype_name(self.engine.get_tensor_dtype(n))
                       for n in self.input_names + self.output_names}
        self.device = torch.device("cuda")
        self.stream = torch.cuda.Stream()

    def check_shapes(self, shapes: dict[str, tuple[int, ...]], num_patches: int) -> None:
        from ..engine.profiles import check_fits
        check_fits(self.profile_max, shapes, num_patches, self.profile_min)

    def run(self, coords: np.ndarray, feats: np.ndarray) -> SpanResult:
        torch = self._torch
        t0 = time.perf_counter()
        if len(coords) > self.max_tokens:
            raise BackendError(f"the slide has {len(coords)} patches, the engine {self.path} takes at most "
                               f"{self.max_tokens}; rebuild it with a larger --max-tokens")
        rb = build_rulebook(coords, self.cfg)
        inputs = rb.engine_inputs(self.cfg, feats)
        self.check_shapes({n: tuple(inputs[n].shape) for n in self.input_names}, len(coords))
        t1 = time.perf_counter()
        keep = []
        with torch.cuda.stream(self.stream):
            for n in self.input_names:
                host = numpy_input(inputs[n], self.dtypes[n])
                dev = torch.from_numpy(host).to(self.device, non_blocking=False)
                keep.append(dev)
                if not self.context.set_input_shape(n, tuple(host.shape)):
                    raise BackendError(f"TensorRT refused shape {host.shape} for input {n}")
                self.context.set_tensor_address(n, dev.data_ptr())
            outs = []
            for n in self.output_names:
                shape = tuple(self.context.get_tensor_shape(n))
                if any(d < 0 for d in shape):
                    raise BackendError(f"output {n} has unresolved shape {shape}")
                buf = torch.empty(shape, dtype=getattr(torch, self.dtypes[n]), device=self.device)
                outs.append(buf)
                self.context.set_tensor_address(n, buf.data_ptr())
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise BackendError("TensorRT execution failed (see the log above)")
        self.stream.synchronize()
        t2 = time.perf_counter()
        host_outs = [o.float().cpu().numpy() for o in outs]
        t3 = time.perf_counter()
        return to_result(host_outs, rb, self.cfg,
                         {"rulebook": t1 - t0, "compute": t2 - t1, "copy_out": t3 - t2, "total": t3 - t0})
