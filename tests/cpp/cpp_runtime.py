"""ctypes binding of the span-deploy C runtime (cpp/include/span_deploy/span_deploy.h), for the tests.

Where the built files are: $SPAN_DEPLOY_RUNTIME_LIB / $SPAN_INFER_BIN / $SPAN_DEPLOY_SELFTEST_BIN, else
build/lib/libspan_deploy_runtime.so, build/bin/span_infer, build/bin/span_deploy_selftest (the main build,
$SPAN_BUILD_DIR overrides). A missing file skips, and fails in CI (CI=true), as tests/cases.py does
for the custom-op library.
"""
from __future__ import annotations

import ctypes
import json
import os
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("SPAN_BUILD_DIR", REPO / "build"))

STATUS = {0: "SPAN_OK", 1: "SPAN_ERR_INVALID_ARGUMENT", 2: "SPAN_ERR_IO", 3: "SPAN_ERR_MODEL", 4: "SPAN_ERR_CONFIG",
          5: "SPAN_ERR_FEATURES", 6: "SPAN_ERR_RULEBOOK", 7: "SPAN_ERR_RUNTIME", 8: "SPAN_ERR_NOT_FOUND",
          9: "SPAN_ERR_INTERNAL", 10: "SPAN_ERR_PROFILE"}
DTYPES = {1: np.float32, 2: np.int32, 3: np.int64, 4: np.float64}


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false")


def missing(what: str):
    import pytest

    if in_ci():
        pytest.fail(f"CI must build the C runtime first (bash tools/build_native.sh): {what}")
    pytest.skip(what)


def built_file(env: str, default: Path, what: str) -> Path:
    p = Path(os.environ[env]) if os.environ.get(env) else default
    if not p.is_file():
        missing(f"{what} not built: {p} (bash tools/build_native.sh, or set {env})")
    return p


def runtime_lib_path() -> Path:
    return built_file("SPAN_DEPLOY_RUNTIME_LIB", BUILD / "lib" / "libspan_deploy_runtime.so", "the C runtime library")


def span_infer_path() -> Path:
    runtime_lib_path()      # the span_infer of the C runtime comes with it (an older build's does not)
    return built_file("SPAN_INFER_BIN", BUILD / "bin" / "span_infer", "the C++ sample span_infer")


def selftest_path() -> Path:
    return built_file("SPAN_DEPLOY_SELFTEST_BIN", BUILD / "bin" / "span_deploy_selftest", "span_deploy_selftest")


class CError(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(f"{STATUS.get(code, code)}: {message}")
        self.code, self.status, self.message = code, STATUS.get(code, str(code)), message


class Tensor(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("dtype", ctypes.c_int), ("ndim", ctypes.c_int32),
                ("shape", ctypes.c_int64 * 4), ("data", ctypes.c_void_p)]

    def array(self) -> np.ndarray:
        shape = tuple(self.shape[i] for i in range(self.ndim))
        dt = np.dtype(DTYPES[self.dtype])
        n = int(np.prod(shape)) if shape else 1
        if n == 0 or not self.data:
            return np.zeros(shape, dt)
        return np.frombuffer(ctypes.string_at(self.data, n * dt.itemsize), dt).reshape(shape).copy()


_P = ctypes.c_void_p


class OpenOptions(ctypes.Structure):
    """span_open_options (span_deploy.h)."""
    _fields_ = [("struct_size", ctypes.c_uint32), ("backend", ctypes.c_char_p), ("ops_library", ctypes.c_char_p),
                ("plugin_library", ctypes.c_char_p), ("threads", ctypes.c_int32), ("device", ctypes.c_int32),
                ("trt_contexts", ctypes.c_int32)]


class Runtime:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        lib = self.lib = ctypes.CDLL(str(path))
        for name, res, args in [
            ("span_version", ctypes.c_char_p, []),
            ("span_last_error", ctypes.c_char_p, []),
            ("span_status_name", ctypes.c_char_p, [ctypes.c_int]),
            ("span_model_open", ctypes.c_int, [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int32, ctypes.POINTER(_P)]),
            ("span_open_options_init", None, [ctypes.POINTER(OpenOptions)]),
            ("span_model_open_ex", ctypes.c_int, [ctypes.c_char_p, ctypes.POINTER(OpenOptions), ctypes.POINTER(_P)]),
            ("span_runtime_backends", ctypes.c_char_p, []),
            ("span_model_backend", ctypes.c_char_p, [_P]),
            ("span_model_free", None, [_P]),
            ("span_model_task", ctypes.c_char_p, [_P]),
            ("span_model_attention", ctypes.c_char_p, [_P]),
            ("span_model_precision", ctypes.c_char_p, [_P]),
            ("span_model_onnx_path", ctypes.c_char_p, [_P]),
            ("span_model_metadata_json", ctypes.c_char_p, [_P]),
            ("span_model_feat_dim", ctypes.c_int64, [_P]),
            ("span_model_num_outputs", ctypes.c_int64, [_P]),
            ("span_model_threshold", ctypes.c_double, [_P]),
            ("span_model_run", ctypes.c_int, [_P, _P, ctypes.c_int64, ctypes.c_int64, _P, ctypes.POINTER(_P)]),
            ("span_model_run_f64", ctypes.c_int, [_P, _P, ctypes.c_int64, ctypes.c_int64, _P, ctypes.POINTER(_P)]),
            ("span_result_free", None, [_P]),
            ("span_result_count", ctypes.c_size_t, [_P]),
            ("span_result_get", ctypes.c_int, [_P, ctypes.c_size_t, ctypes.POINTER(Tensor)]),
            ("span_result_find", ctypes.c_int, [_P, ctypes.c_char_p, ctypes.POINTER(Tensor)]),
            ("span_rulebook_build", ctypes.c_int, [ctypes.c_char_p, _P, ctypes.c_int64, ctypes.POINTER(_P)]),
            ("span_rulebook_build_f64", ctypes.c_int, [ctypes.c_char_p, _P, ctypes.c_int64, ctypes.POINTER(_P)]),
            ("span_rulebook_for_model", ctypes.c_int, [_P, _P, ctypes.c_int64, ctypes.POINTER(_P)]),
            ("span_rulebook_free", None, [_P]),
            ("span_rulebook_count", ctypes.c_size_t, [_P]),
            ("span_rulebook_num_engine_inputs", ctypes.c_size_t, [_P]),
            ("span_rulebook_get", ctypes.c_int, [_P, ctypes.c_size_t, ctypes.POINTER(Tensor)]),
            ("span_rulebook_find", ctypes.c_int, [_P, ctypes.c_char_p, ctypes.POINTER(Tensor)]),
        ]:
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = res, args

    def check(self, code: int) -> None:
        if code != 0:
            raise CError(code, self.lib.span_last_error().decode())

    def _tensors(self, handle, count, get) -> dict[str, np.ndarray]:
        out = {}
        for i in range(count(handle)):
            t = Tensor()
            self.check(get(handle, i, ctypes.byref(t)))
            out[t.name.decode()] = t.array()
        return out

    def rulebook(self, config, coords: np.ndarray) -> tuple[dict[str, np.ndarray], int]:
        """(tables by name in C order of creation, number of engine-input tables). `config`: a dict or JSON."""
        text = config if isinstance(config, str) else json.dumps(config)
        c = np.asarray(coords)
        if c.dtype.kind == "f":
            c, fn = np.ascontiguousarray(c, np.float64), self.lib.span_rulebook_build_f64
        else:
            c, fn = np.ascontiguousarray(c, np.int64), self.lib.span_rulebook_build
        h = _P()
        n = c.shape[0] if c.ndim else 0
        self.check(fn(text.encode(), c.ctypes.data if c.size else None, n, ctypes.byref(h)))
        try:
            return (self._tensors(h, self.lib.span_rulebook_count, self.lib.span_rulebook_get),
                    int(self.lib.span_rulebook_num_engine_inputs(h)))
        finally:
            self.lib.span_rulebook_free(h)

    @property
    def backends(self) -> list[str]:
        """["ort"], or ["ort", "trt"] when the library was built with TensorRT."""
        return self.lib.span_runtime_backends().decode().split(",")

    def open_ex(self, path, backend=None, ops_library=None, plugin_library=None, threads: int = 0, device: int = 0,
                trt_contexts: int = 0) -> "Model":
        o = OpenOptions()
        self.lib.span_open_options_init(ctypes.byref(o))

        def b(v):
            return None if v is None else str(v).encode()
        o.backend, o.ops_library, o.plugin_library = b(backend), b(ops_library), b(plugin_library)
        o.threads, o.device, o.trt_contexts = threads, device, trt_contexts
        h = _P()
        self.check(self.lib.span_model_open_ex(str(path).encode(), ctypes.byref(o), ctypes.byref(h)))
        return Model(self, h)

    def open(self, path, ops_library=None, threads: int = 0) -> "Model":
        h = _P()
        code = self.lib.span_model_open(str(path).encode(), None if ops_library is None else str(ops_library).encode(),
                                        threads, ctypes.byref(h))
        self.check(code)
        return Model(self, h)


class Model:
    def __init__(self, rt: Runtime, handle):
        self.rt, self.h = rt, handle

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self.h:
            self.rt.lib.span_model_free(self.h)
            self.h = None

    def __del__(self):
        self.close()

    @property
    def task(self) -> str:
        return self.rt.lib.span_model_task(self.h).decode()

    @property
    def feat_dim(self) -> int:
        return int(self.rt.lib.span_model_feat_dim(self.h))

    def info(self) -> dict:
        lib = self.rt.lib
        return {"task": self.task, "backend": lib.span_model_backend(self.h).decode(),
                "attention": lib.span_model_attention(self.h).decode(),
                "precision": lib.span_model_precision(self.h).decode(), "feat_dim": self.feat_dim,
                "num_outputs": int(lib.span_model_num_outputs(self.h)), "threshold": lib.span_model_threshold(self.h),
                "onnx": lib.span_model_onnx_path(self.h).decode(),
                "metadata": json.loads(lib.span_model_metadata_json(self.h).decode())}

    def run(self, feats: np.ndarray, coords: np.ndarray) -> dict[str, np.ndarray]:
        f = np.ascontiguousarray(feats, np.float32)
        c = np.asarray(coords)
        if c.dtype.kind == "f":
            c, fn = np.ascontiguousarray(c, np.float64), self.rt.lib.span_model_run_f64
        else:
            c, fn = np.ascontiguousarray(c, np.int64), self.rt.lib.span_model_run
        n = f.shape[0] if f.ndim == 2 else 0
        fd = f.shape[1] if f.ndim == 2 else 0
        h = _P()
        self.rt.check(fn(self.h, f.ctypes.data if f.size else None, n, fd, c.ctypes.data if c.size else None,
                         ctypes.byref(h)))
        try:
            return self.rt._tensors(h, self.rt.lib.span_result_count, self.rt.lib.span_result_get)
        finally:
            self.rt.lib.span_result_free(h)

    def rulebook(self, coords: np.ndarray) -> dict[str, np.ndarray]:
        c = np.ascontiguousarray(coords, np.int64)
        h = _P()
        self.rt.check(self.rt.lib.span_rulebook_for_model(self.h, c.ctypes.data, c.shape[0], ctypes.byref(h)))
        try:
            return self.rt._tensors(h, self.rt.lib.span_rulebook_count, self.rt.lib.span_rulebook_get)
        finally:
            self.rt.lib.span_rulebook_free(h)
