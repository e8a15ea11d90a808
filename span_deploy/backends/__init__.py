"""Backends: torch (reference), ort (custom op), ort-portable, trt -- one ``Backend`` protocol.

One package per backend owns its loading and running: ``onnxruntime/``, ``tensorrt/`` and
``torch/`` (the adapter to the export side).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from ..errors import BackendError
from ..metadata import read_metadata
from .base import Backend, SpanResult

BACKENDS = ("torch", "ort", "ort-portable", "trt")
MODEL_SUFFIXES = (".onnx", ".engine", ".plan")
__all__ = ["BACKENDS", "Backend", "SpanResult", "available_backends", "backend_for_model", "open_backend"]


def available_backends() -> list[str]:
    """Backends that can run on this machine now."""
    from .torch import export_side_available

    out = []
    if export_side_available():
        out.append("torch")
    if importlib.util.find_spec("onnxruntime") is not None:
        try:
            from ..native import ort_ops_library
            ort_ops_library()
            out.append("ort")
        except BackendError:  # library not built
            pass
        out.append("ort-portable")
    if importlib.util.find_spec("tensorrt") is not None:
        out.append("trt")
    return out


def open_backend(name: str | None = None, model: str | Path | None = None, checkpoint: str | Path | None = None,
                 config: str | Path | None = None, device: str = "cpu", threads: int | None = None,
                 plugin_lib: str | Path | None = None, single_slide: bool = False) -> Backend:
    """Open a backend from a deployed model (ONNX / engine / model directory) or from checkpoint + config.

    ``name`` None picks it from ``model`` (trt for an engine, ort / ort-portable by the export's
    attention variant, a model directory's target backend). ort / ort-portable without a model export the checkpoint on the fly
    (needs the export side). ``single_slide``: the backend runs one slide and is closed (predict);
    ONNX Runtime then runs without its CPU arena (lower peak memory for one forward).
    """
    if name is not None and name not in BACKENDS and (Path(name).suffix.lower() in MODEL_SUFFIXES
                                                      or Path(name).is_dir()):
        model, name = Path(name), None  # open_backend(path): pick by file / model directory
    if model is not None and Path(model).is_dir():
        from ..deploy.model_dir import read_model_dir
        name, model = read_model_dir(model).model_for(name)
    if name is None:
        if model is None:
            raise BackendError("give a --model (ONNX or engine), or --checkpoint and --config with --backend torch")
        name = backend_for_model(Path(model))
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
    if device not in ("cpu", "cuda"):
        raise BackendError(f"unknown device {device!r}; use cpu or cuda")
    if name == "torch":
        if checkpoint is None or config is None:
            raise BackendError("the torch backend needs --checkpoint and --config")
        from .torch import open_torch_backend
        return open_torch_backend(checkpoint, config, device=device, threads=threads)
    if name == "trt":
        if model is None:
            raise BackendError("the trt backend needs --model model.engine (see `span-deploy build-engine`)")
        from .tensorrt.runner import TrtBackend
        return TrtBackend(model, plugin_lib=plugin_lib)
    attention = "plugin" if name == "ort" else "portable"
    if model is None:
        if checkpoint is None or config is None:
            raise BackendError(f"the {name} backend needs --model model.onnx, or --checkpoint and --config")
        from .torch import export_cached
        model = export_cached(checkpoint, config, attention)
    from .onnxruntime import OrtBackend
    return OrtBackend(model, device=device, threads=threads, expect_attention=attention, single_slide=single_slide)


def backend_for_model(path: Path) -> str:
    """trt for an engine; ort or ort-portable for an ONNX export, by its attention variant."""
    if path.suffix.lower() in (".engine", ".plan"):
        return "trt"
    if not path.is_file():
        raise BackendError(f"model file not found: {path}")
    return "ort" if read_metadata(path)["attention"] == "plugin" else "ort-portable"
