"""ONNX Runtime backend (CPU or CUDA EP): coordinates + features in, SpanResult out. No torch."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..config import SpanConfig
from ..errors import BackendError
from ..rulebook import RULEBOOK_VERSION, build_rulebook
from .base import SpanResult
from .common import to_result


class OrtBackend:
    def __init__(self, model: str | Path, device: str = "cpu", threads: int | None = None,
                 expect_attention: str | None = None):
        import onnxruntime as ort

        from ..onnx.metadata import read_metadata

        self.path = Path(model)
        if not self.path.is_file():
            raise BackendError(f"model file not found: {self.path}")
        meta = read_metadata(self.path)
        if meta["rulebook_version"] != RULEBOOK_VERSION:
            raise BackendError(f"{self.path}: exported for rulebook version {meta['rulebook_version']}, this "
                               f"span-deploy builds version {RULEBOOK_VERSION}; re-export the model")
        self.attention = meta["attention"]
        if expect_attention and self.attention != expect_attention:
            want = "ort" if self.attention == "plugin" else "ort-portable"
            raise BackendError(f"{self.path} is a {self.attention} export; use --backend {want}")
        self.name = "ort" if self.attention == "plugin" else "ort-portable"
        self.cfg = SpanConfig.from_dict(meta["config"])
        self.feat_dim = self.cfg.feat_dim
        self.input_names = meta["input_names"]
        so = ort.SessionOptions()
        if threads:
            so.intra_op_num_threads = int(threads)
        if self.attention == "plugin":
            from ..native import ort_ops_library
            so.register_custom_ops_library(str(ort_ops_library()))
        providers = ["CPUExecutionProvider"]
        if device == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise BackendError("device cuda asked for, but this onnxruntime has no CUDA execution provider "
                                   "(pip install onnxruntime-gpu)")
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(self.path), so, providers=providers)
        except Exception as e:  # noqa: BLE001 - ORT raises its own exception types
            raise BackendError(f"{self.path}: ONNX Runtime could not load the model: {e}") from None
        self.fp16 = meta.get("precision") == "fp16"

    def run(self, coords: np.ndarray, feats: np.ndarray) -> SpanResult:
        t0 = time.perf_counter()
        rb = build_rulebook(coords, self.cfg)
        inputs = rb.engine_inputs(self.cfg, feats)
        if self.fp16:
            inputs["feats"] = inputs["feats"].astype(np.float16)
        t1 = time.perf_counter()
        outs = self.session.run(None, {n: inputs[n] for n in self.input_names})
        t2 = time.perf_counter()
        return to_result(outs, rb, self.cfg, {"rulebook": t1 - t0, "compute": t2 - t1, "total": t2 - t0})
