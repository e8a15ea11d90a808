"""span_export: the torch side of span-deploy (installed from export/, needs torch).

The checkpoint-compatible PyTorch SPAN (``model``), safe checkpoint loading (``checkpoint``), ONNX
export with the SparseWindowAttention node or the portable graph and fp16 (``onnx_export``), the
patch encoders and their export (``encoders``), the demo-model maker (``demo_model``) and the
torch reference backend (``reference``). It imports span_deploy (config, rulebook, the tensor
contract); span_deploy reaches it only through span_deploy.backends.torch.
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["export_checkpoint", "load_model"]


def load_model(checkpoint: str | Path, config):
    """An eval-mode SpanModel with the checkpoint's weights (see span_export.model.load_model)."""
    from .model import load_model as load
    return load(checkpoint, config)


def export_checkpoint(checkpoint: str | Path, config, out: str | Path, attention: str = "plugin",
                      opset: int | None = None, fp16: bool = False) -> Path:
    """checkpoint + config -> ONNX at ``out`` (atomic); returns the path."""
    from .model import load_model as load
    from .onnx_export import DEFAULT_OPSET, export_onnx
    return export_onnx(load(checkpoint, config), out, attention=attention,
                       opset=DEFAULT_OPSET if opset is None else opset, fp16=fp16)
