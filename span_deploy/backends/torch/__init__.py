"""The one door from the runtime to the torch side (the ``span_export`` package in export/).

Nothing else under span_deploy/ imports torch or span_export (tests/test_layering.py checks it).
Through here: the torch reference backend (``predict/validate --backend torch``), exporting a
checkpoint (``span-deploy export``) and the on-the-fly export that lets ``--backend ort`` take a
checkpoint. Each imports span_export only when called, and says how to install it when missing.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

from ...errors import BackendError

INSTALL_HINT = ("install the export side (torch) next to the runtime: from the span-deploy repository, "
                "pip install -e ./export  (it pins torch==2.13.0)")


def export_side_available() -> bool:
    """span_export and torch are both importable (without importing either)."""
    return all(importlib.util.find_spec(m) is not None for m in ("span_export", "torch"))


def _require(what: str) -> None:
    if not export_side_available():
        raise BackendError(f"{what} needs PyTorch and the span-deploy export package; {INSTALL_HINT}")


def open_torch_backend(checkpoint: str | Path, config: str | Path, device: str = "cpu",
                       threads: int | None = None):
    """The eager PyTorch reference (span_export.reference.TorchBackend)."""
    _require("the torch backend")
    from span_export.reference import TorchBackend
    return TorchBackend(checkpoint, config, device=device, threads=threads)


def export_checkpoint(checkpoint: str | Path, config: str | Path, out: str | Path, attention: str = "plugin",
                      opset: int | None = None, fp16: bool = False) -> Path:
    """checkpoint + config -> ONNX at ``out`` (written atomically)."""
    _require("exporting a checkpoint")
    from span_export import export_checkpoint as export
    return export(checkpoint, config, out, attention=attention, opset=opset, fp16=fp16)


CACHE_KEEP = 8          # on-the-fly exports kept (the most recently used); a model is 1-400 MB


def cache_dir() -> Path:
    """Where checkpoints given to --backend ort / ort-portable / run --model CKPT are exported:
    $SPAN_DEPLOY_CACHE, else ~/.cache/span-deploy."""
    return Path(os.environ.get("SPAN_DEPLOY_CACHE", Path.home() / ".cache" / "span-deploy"))


def prune_cache(folder: Path, keep: int = CACHE_KEEP) -> list[Path]:
    """Delete all but the ``keep`` most recently used exports; returns what was removed."""
    files = sorted(folder.glob("span-*.onnx"), key=lambda p: p.stat().st_mtime, reverse=True)
    for p in files[keep:]:
        p.unlink(missing_ok=True)
    return files[keep:]


def export_cached(checkpoint: str | Path, config: str | Path, attention: str) -> Path:
    """Export once per (checkpoint, config, attention) content into the cache folder."""
    h = hashlib.sha256()
    for p in (checkpoint, config):
        if not Path(p).is_file():
            raise BackendError(f"file not found: {p}")
        h.update(Path(p).read_bytes())
    h.update(attention.encode())
    out = cache_dir() / f"span-{h.hexdigest()[:16]}-{attention}.onnx"
    if out.exists():
        os.utime(out)      # mark it used: pruning keeps the most recently used
    else:
        _require(f"--backend {'ort' if attention == 'plugin' else 'ort-portable'} with a checkpoint "
                 "(exported on the fly; or pass an exported --model)")
        export_checkpoint(checkpoint, config, out, attention=attention)
        prune_cache(out.parent)
    return out
