"""TensorRT itself and the span-deploy plugin library: imported / loaded once, failures explained."""
from __future__ import annotations

from pathlib import Path

from ...errors import BackendError
from ...native import trt_plugin_library

TRT_MISSING = ("TensorRT Python package not found: install TensorRT (on JetPack it ships with the OS; elsewhere "
               "pip install tensorrt, matching your CUDA) to build or run engines, or use --backend ort")
PLUGIN = ("SparseWindowAttention", "1", "span_deploy")   # name, version, namespace (op.yaml)

_loaded: dict[Path, object] = {}    # resolved library path -> registry handle, per process


def import_tensorrt():
    """The tensorrt module, or a BackendError saying how to get it."""
    try:
        import tensorrt as trt  # noqa: PLC0415
    except ImportError:
        raise BackendError(TRT_MISSING) from None
    return trt


def load_plugin_library(trt, registry, plugin_lib: str | Path | None = None) -> object:
    """Load the plugin library into ``registry`` once per process and check its creator is there.

    A second load of the same file would register the creator twice (TensorRT logs an error and
    may refuse it), so the handle of the first load is reused.
    """
    lib = (Path(plugin_lib) if plugin_lib else trt_plugin_library()).resolve()
    if not lib.is_file():
        raise BackendError(f"TensorRT plugin library not found: {lib}")
    if lib not in _loaded:
        handle = registry.load_library(str(lib))
        if not handle:
            raise BackendError(f"TensorRT could not load the plugin library {lib} (see the TensorRT log above: "
                               "usually a missing CUDA / TensorRT shared library, or a library built for "
                               "another TensorRT major version; rebuild it with tools/build_native.sh)")
        _loaded[lib] = handle
    get = getattr(registry, "get_creator", None)   # TensorRT >= 10: (name, version, namespace)
    if get is not None and get(*PLUGIN) is None:
        raise BackendError(f"{lib} loaded, but TensorRT has no plugin creator {PLUGIN[0]} version {PLUGIN[1]} in "
                           f"namespace {PLUGIN[2]!r}; the library is not a span-deploy plugin of this version")
    return _loaded[lib]
