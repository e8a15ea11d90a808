"""Locate the native libraries built by ``bash tools/build_native.sh``.

Search order: an environment variable, then ``<repo>/build/lib/``, then next to this package
(where a wheel would ship them).
"""
from __future__ import annotations

import os
from pathlib import Path

from .errors import BackendError

_PACKAGE_DIR = Path(__file__).resolve().parent
_REPO_BUILD_LIB = _PACKAGE_DIR.parent / "build" / "lib"

BUILD_HINT = "build it with `bash tools/build_native.sh` from the span-deploy repository"


def _find(file_name: str, env_var: str, what: str) -> Path:
    override = os.environ.get(env_var)
    if override:
        path = Path(override).expanduser()
        if path.is_file():
            return path.resolve()
        raise BackendError(f"{env_var}={override} does not name an existing file ({what}); fix the variable or unset it.")
    candidates = [_REPO_BUILD_LIB / file_name, _PACKAGE_DIR / file_name]
    for path in candidates:
        if path.is_file():
            return path
    searched = ", ".join(str(p) for p in candidates)
    raise BackendError(f"{what} ({file_name}) not found (looked in ${env_var}, {searched}); {BUILD_HINT}.")


def ort_ops_library() -> Path:
    """The ONNX Runtime custom-op library (span_deploy::SparseWindowAttention)."""
    return _find("libspan_deploy_ops.so", "SPAN_DEPLOY_OPS_LIB", "ONNX Runtime custom-op library")


def trt_plugin_library() -> Path:
    """The TensorRT plugin library (SparseWindowAttention, namespace span_deploy); built only when
    TensorRT headers are available (set TENSORRT_ROOT or TensorRT_INCLUDE_DIR before building)."""
    return _find("libspan_deploy_trt_plugin.so", "SPAN_DEPLOY_TRT_PLUGIN_LIB", "TensorRT plugin library")
