"""polygraphy runners for SPAN models: feed = the engine inputs, outputs = the graph's named outputs.

* ``ort_runner``: polygraphy's ``OnnxrtRunner`` over the session ``backends.onnxruntime`` makes
  (metadata and attention variant checked; the plugin graph gets the custom-op library
  registered in its session options).
* ``trt_runner``: polygraphy's ``TrtRunner`` over ``EngineFromBytes`` (plugin library loaded into
  TensorRT's registry first, the slide checked against the engine's profile). Needs TensorRT and
  a GPU, so it is untested here: kept to those few calls.
* ``TorchRunner``: the eager PyTorch reference (``backends.torch``), a ``BaseRunner`` giving the
  same output names as the ONNX graphs.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
from polygraphy import util
from polygraphy.backend.base import BaseRunner
from polygraphy.backend.onnxrt import OnnxrtRunner
from polygraphy.common import TensorMetadata
from polygraphy.datatype import DataType

from ..errors import BackendError
from ..rulebook import engine_inputs, output_names


def ort_runner(model: str | Path, attention: str, threads: int | None = None) -> OnnxrtRunner:
    """``attention`` plugin -> runner ``ort`` (custom-op library registered), portable -> ``ort-portable``."""
    from ..backends.onnxruntime.loader import backend_name, load_model_file

    m = load_model_file(model, threads=threads, expect_attention=attention)
    return OnnxrtRunner(m.session, name=backend_name(attention))


def trt_runner(engine: str | Path, feed: dict[str, np.ndarray], num_patches: int,
               plugin_lib: str | Path | None = None):
    """A ``TrtRunner`` for ``engine`` (+ its sidecar). Not runnable without TensorRT and a GPU."""
    from ..backends.tensorrt.plugin import import_tensorrt, load_plugin_library
    from ..backends.tensorrt.profiles import check_fits
    from ..backends.tensorrt.sidecar import read_sidecar
    from ..metadata import check_rulebook_version

    trt = import_tensorrt()
    path = Path(engine)
    if not path.is_file():
        raise BackendError(f"engine file not found: {path}")
    data = path.read_bytes()
    side = read_sidecar(path, data)
    check_rulebook_version(side["span_deploy"], path, "re-export the model and rebuild the engine")
    prof = {n: [tuple(s) for s in v] for n, v in side["profile"].items()}
    check_fits({n: v[2] for n, v in prof.items()}, {n: tuple(a.shape) for n, a in feed.items()}, num_patches,
               {n: v[0] for n, v in prof.items()})
    if side["span_deploy"]["attention"] == "plugin":
        load_plugin_library(trt, trt.get_plugin_registry(), plugin_lib)
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner

    return TrtRunner(EngineFromBytes(data), name="trt")


class TorchRunner(BaseRunner):
    """The torch reference backend (span_export's TorchBackend, from ``backends.torch``) as a runner.

    It runs the backend's SpanModel on the feed (``run_inputs``), so its outputs are the graph's, by
    the same names and in the same (rulebook) row order as the ONNX graphs'. torch stays behind the
    export side's backend; this module never imports it.
    """

    def __init__(self, backend, name: str = "torch"):
        super().__init__(name=name, prefix="torch-runner")
        self.backend = backend
        self.output_names = output_names(backend.cfg)

    def activate_impl(self):
        pass

    def get_input_metadata_impl(self):
        meta = TensorMetadata()
        for t in engine_inputs(self.backend.cfg):
            meta.add(t.name, dtype=DataType.from_dtype(np.dtype(t.dtype)), shape=t.shape())
        return meta

    def infer_impl(self, feed_dict):
        t0 = time.perf_counter()
        named = self.backend.run_inputs(feed_dict)
        self.inference_time = time.perf_counter() - t0
        return OrderedDict((n, named[n]) for n in self.backend.model.output_names)

    def deactivate_impl(self):
        pass
