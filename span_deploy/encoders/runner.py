"""Batched encoder inference in ONNX Runtime (CPU or CUDA EP). Never imports torch.

Feeds the exported contract: uint8 NHWC (B, 224, 224, 3) -> float32 (B, F); see contract.py.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import BackendError
from .contract import INPUT_FORMAT, METADATA_ARCH


class OnnxEncoder:
    """``encoder(tiles_uint8_nhwc) -> (B, F) float32``; ``feature_dim`` known before running."""

    def __init__(self, path: str | os.PathLike, device: str = "cpu", threads: int | None = None,
                 spin: bool = False):
        self.path = Path(path)
        if not self.path.is_file():
            raise BackendError(f"encoder ONNX not found: {self.path}. Export one with "
                               "`python -m span_export.encoders.export --arch ... --weights ... --out ...`.")
        from ..backends.onnxruntime.loader import import_onnxruntime
        ort = import_onnxruntime()
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        if not spin:   # spinning idle ORT threads steal the CPU the tile readers need
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if device == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise BackendError("--device cuda, but this onnxruntime has no CUDA execution provider "
                                   f"(available: {ort.get_available_providers()}). "
                                   "Install onnxruntime-gpu or use --device cpu.")
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        elif device == "cpu":
            providers = ["CPUExecutionProvider"]
        else:
            raise BackendError(f"unknown device {device!r}: use cpu or cuda.")
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=providers)
        except Exception as e:
            raise BackendError(f"cannot load encoder {self.path} ({e}). Re-export it.") from e
        meta = self.session.get_modelmeta().custom_metadata_map
        inp, out = self.session.get_inputs()[0], self.session.get_outputs()[0]
        fmt = meta.get("input_format", INPUT_FORMAT if inp.type == "tensor(uint8)" else "")
        if fmt != INPUT_FORMAT:
            raise BackendError(f"encoder {self.path} expects {fmt or inp.type + str(inp.shape)}, not "
                               f"{INPUT_FORMAT}; export it with `python -m span_export.encoders.export`.")
        dim = meta.get("feature_dim") or out.shape[-1]
        if not str(dim).isdigit():
            raise BackendError(f"encoder {self.path}: unknown feature dim; re-export it.")
        self.feature_dim = int(dim)
        self.name = meta.get(METADATA_ARCH, self.path.stem)
        self._in, self._out = inp.name, out.name
        self.device = device

    def __call__(self, tiles: np.ndarray) -> np.ndarray:
        if tiles.dtype != np.uint8 or tiles.ndim != 4 or tiles.shape[1:] != (224, 224, 3):
            raise ValueError(f"tiles must be uint8 (B, 224, 224, 3), got {tiles.dtype} {tiles.shape}")
        return self.session.run([self._out], {self._in: np.ascontiguousarray(tiles)})[0]
