"""Backends: torch (reference), ort (custom op), ort-portable, trt -- one ``run`` interface."""
from __future__ import annotations

import importlib.util
from pathlib import Path

from ..errors import BackendError
from .base import Backend, SpanResult

BACKENDS = ("torch", "ort", "ort-portable", "trt")
__all__ = ["BACKENDS", "Backend", "SpanResult", "available_backends", "open_backend"]


def available_backends() -> list[str]:
    """Backends that can run on this machine now."""
    out = []
    if importlib.util.find_spec("torch") is not None:
        out.append("torch")
    if importlib.util.find_spec("onnxruntime") is not None:
        try:
            from ..native import ort_ops_library
            ort_ops_library()
            out.append("ort")
        except Exception:  # noqa: BLE001 - library not built
            pass
        out.append("ort-portable")
    if importlib.util.find_spec("tensorrt") is not None:
        out.append("trt")
    return out


def open_backend(name: str, model: str | Path | None = None, checkpoint: str | Path | None = None,
                 config: str | Path | None = None, device: str = "cpu", threads: int | None = None,
                 plugin_lib: str | Path | None = None) -> Backend:
    """Open a backend from a deployed model (ONNX / engine) or from checkpoint + config.

    ort / ort-portable without --model export the checkpoint on the fly (needs torch).
    """
    if name not in BACKENDS and Path(name).suffix.lower() in (".onnx", ".engine", ".plan"):
        model, name = Path(name), backend_for_model(Path(name))  # open_backend(path): pick by file
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
    if device not in ("cpu", "cuda"):
        raise BackendError(f"unknown device {device!r}; use cpu or cuda")
    if name == "torch":
        if checkpoint is None or config is None:
            raise BackendError("the torch backend needs --checkpoint and --config")
        if importlib.util.find_spec("torch") is None:
            raise BackendError("the torch backend needs PyTorch: pip install 'span-deploy[export]'")
        from .torch_backend import TorchBackend
        return TorchBackend(checkpoint, config, device=device, threads=threads)
    if name == "trt":
        if model is None:
            raise BackendError("the trt backend needs --model model.engine (see `span-deploy build-engine`)")
        from .trt import TrtBackend
        return TrtBackend(model, plugin_lib=plugin_lib)
    attention = "plugin" if name == "ort" else "portable"
    if model is None:
        if checkpoint is None or config is None:
            raise BackendError(f"the {name} backend needs --model model.onnx, or --checkpoint and --config")
        model = export_cached(checkpoint, config, attention)
    from .ort import OrtBackend
    return OrtBackend(model, device=device, threads=threads, expect_attention=attention)


def backend_for_model(path: Path) -> str:
    """trt for an engine; ort or ort-portable for an ONNX export, by its attention variant."""
    if path.suffix.lower() in (".engine", ".plan"):
        return "trt"
    if not path.is_file():
        raise BackendError(f"model file not found: {path}")
    from ..onnx.metadata import read_metadata
    return "ort" if read_metadata(path)["attention"] == "plugin" else "ort-portable"


def export_cached(checkpoint: str | Path, config: str | Path, attention: str) -> Path:
    """Export once per (checkpoint, config, attention) content into a cache folder."""
    import hashlib
    import os

    h = hashlib.sha256()
    for p in (checkpoint, config):
        h.update(Path(p).read_bytes())
    h.update(attention.encode())
    cache = Path(os.environ.get("SPAN_DEPLOY_CACHE", Path.home() / ".cache" / "span-deploy"))
    out = cache / f"span-{h.hexdigest()[:16]}-{attention}.onnx"
    if not out.exists():
        if importlib.util.find_spec("torch") is None:
            raise BackendError("exporting a checkpoint needs PyTorch: pip install 'span-deploy[export]', "
                               "or pass an exported --model")
        from ..model import load_model
        from ..onnx.export import export_onnx
        export_onnx(load_model(checkpoint, config), out, attention=attention)
    return out
