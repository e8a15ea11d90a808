"""The C runtime's TensorRT engine path where no TensorRT runs (this machine and CI have no GPU and no
libnvinfer): which file a path opens on which backend, and the clear errors on the way, with the
library as built (span_runtime_backends() says whether TensorRT was compiled in):

* built without TensorRT (CI's normal build): an engine is refused with "built without TensorRT;
  rebuild with TensorRT headers"; a model directory of a trt target still runs its ONNX (as before);
* built with TensorRT (tools/check_cpp_trt.sh builds one; point SPAN_DEPLOY_RUNTIME_LIB at it): the
  sidecar is read and checked against the engine, then libnvinfer is loaded at run time, and its
  absence is one clear error.

The engine itself (deserialise, enqueueV3, outputs) never runs here; the fake engines are bytes."""
from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from tests.cases import PUBLIC
from tests.cpp.cpp_runtime import CError, OpenOptions, Runtime, runtime_lib_path, span_infer_path

TINY = PUBLIC / "cls_tiny_alltoall"
NO_TRT = "this span-deploy runtime was built without TensorRT; rebuild with TensorRT headers"


@pytest.fixture(scope="module")
def rt() -> Runtime:
    return Runtime(runtime_lib_path())


@pytest.fixture(scope="module")
def meta() -> dict:
    from span_deploy.config import load_config
    from span_deploy.metadata import make_metadata

    return make_metadata(load_config(TINY / "config.yaml"), "portable", "fp32")


def has_trt(rt: Runtime) -> bool:
    return "trt" in rt.backends


def real_libnvinfer() -> bool:
    """Whether this machine has a libnvinfer (then the missing-library checks cannot be made)."""
    for name in ("libnvinfer.so.10", "libnvinfer.so.11"):
        try:
            ctypes.CDLL(name)
            return True
        except OSError:
            pass
    return ctypes.util.find_library("nvinfer") is not None


def write_engine(folder: Path, meta: dict, name: str = "model.engine", data: bytes = b"not a serialised engine",
                 sha: str | None = None, sidecar: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    eng = folder / name
    eng.write_bytes(data)
    if sidecar:
        doc = {"format": 1, "span_deploy": meta, "profile": {"feats": [[1, 64], [2002, 64], [102, 64]]},
               "max_tokens": 100, "precision": "fp32", "tensorrt": "10.3.0",
               "engine_sha256": sha or hashlib.sha256(data).hexdigest()}
        (folder / (name + ".json")).write_text(json.dumps(doc))
    return eng


def expect(status: str, fn, *args, contains: str = "", **kw) -> str:
    with pytest.raises(CError) as e:
        fn(*args, **kw)
    assert e.value.status == status, e.value
    assert contains in e.value.message, e.value.message
    return e.value.message


def model_dir(folder: Path, meta: dict, target_backend: str, engine: bool) -> Path:
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(b"a placeholder, not an ONNX file")
    if engine:
        write_engine(folder, meta)
    doc = {"format": "span-deploy-model-dir", "format_version": 1,
           "target": {"name": "jetson-orin-fp16", "backend": target_backend},
           "files": {"onnx": "model.onnx", "engine": "model.engine" if engine else None, "encoder": None},
           "plugin_library": {"ort": None, "trt": None}, "metadata": meta}
    (folder / "deploy.json").write_text(json.dumps(doc))
    return folder


def test_runtime_backends(rt):
    assert rt.backends in (["ort"], ["ort", "trt"])
    assert rt.lib.span_status_name(10) == b"SPAN_ERR_PROFILE"


def test_open_options_init_and_struct_size(rt, tmp_path):
    o = OpenOptions()
    rt.lib.span_open_options_init(ctypes.byref(o))
    assert o.struct_size == ctypes.sizeof(OpenOptions) and o.trt_contexts == 1 and not o.backend and o.threads == 0
    rt.lib.span_open_options_init(None)                      # NULL is fine
    h = ctypes.c_void_p()
    o.struct_size = 0
    assert rt.lib.span_model_open_ex(str(tmp_path / "m.onnx").encode(), ctypes.byref(o), ctypes.byref(h)) == 1 and not h
    assert b"struct_size" in rt.lib.span_last_error()
    # NULL options: the defaults (here: a missing file)
    assert rt.lib.span_model_open_ex(str(tmp_path / "m.onnx").encode(), None, ctypes.byref(h)) == 2
    assert b"model file not found" in rt.lib.span_last_error()
    assert rt.lib.span_model_open_ex(None, None, ctypes.byref(h)) == 1
    assert rt.lib.span_model_open_ex(b"x", None, None) == 1


def test_backend_option_errors(rt, meta, tmp_path):
    eng = write_engine(tmp_path, meta)
    (tmp_path / "model.onnx").write_bytes(b"x")
    expect("SPAN_ERR_INVALID_ARGUMENT", rt.open_ex, eng, backend="tensorrt", contains="backend 'tensorrt': expected auto")
    expect("SPAN_ERR_MODEL", rt.open_ex, eng, backend="ort", contains="is a TensorRT engine; backend ort runs ONNX exports")
    expect("SPAN_ERR_MODEL", rt.open_ex, tmp_path / "model.onnx", backend="trt",
           contains="is an ONNX export, not a TensorRT engine; build one with `span-deploy build-engine")
    expect("SPAN_ERR_IO", rt.open_ex, tmp_path / "none.engine", contains="engine file not found")
    expect("SPAN_ERR_INVALID_ARGUMENT", rt.open_ex, eng, trt_contexts=-1, contains="trt_contexts")
    expect("SPAN_ERR_INVALID_ARGUMENT", rt.open_ex, eng, device=-1, contains="device must be >= 0")


def test_engine_on_a_runtime_without_tensorrt(rt, meta, tmp_path):
    if has_trt(rt):
        pytest.skip("this runtime has TensorRT compiled in (see test_engine_without_libnvinfer)")
    eng = write_engine(tmp_path, meta)
    for open_ in (rt.open, rt.open_ex, lambda p: rt.open_ex(p, backend="trt")):
        msg = expect("SPAN_ERR_RUNTIME", open_, eng, contains=NO_TRT)
        assert str(eng) in msg and "TENSORRT_ROOT" in msg and "ONNX Runtime" in msg
    # no sidecar, any suffix with backend trt: the same answer first (nothing else matters here)
    plan = write_engine(tmp_path, meta, name="model.plan", sidecar=False)
    expect("SPAN_ERR_RUNTIME", rt.open, plan, contains=NO_TRT)


def test_model_directory_of_a_trt_target(rt, meta, tmp_path):
    d = model_dir(tmp_path / "trt_dir", meta, "trt", engine=True)
    if has_trt(rt):
        # the engine is chosen; what fails next is libnvinfer or the fake engine, never the ONNX
        msg = expect("SPAN_ERR_RUNTIME", rt.open_ex, d)
        assert "model.engine" in msg or "libnvinfer" in msg, msg
    else:
        # as before TensorRT support: a runtime without it runs the directory's ONNX (here a placeholder)
        expect("SPAN_ERR_MODEL", rt.open, d, contains="not a readable ONNX file")
        msg = expect("SPAN_ERR_RUNTIME", rt.open_ex, d, backend="trt", contains=NO_TRT)
        assert "open the model directory with backend ort" in msg and str(d / "model.onnx") in msg
    expect("SPAN_ERR_MODEL", rt.open_ex, d, backend="ort", contains="not a readable ONNX file")
    nd = model_dir(tmp_path / "no_engine", meta, "trt", engine=False)
    expect("SPAN_ERR_MODEL", rt.open_ex, nd, backend="trt",
           contains="target jetson-orin-fp16 runs on TensorRT but the folder holds no engine yet; build it on the machine "
                    f"that will run it: `span-deploy build-engine {nd}`")
    expect("SPAN_ERR_MODEL", rt.open_ex, nd, contains="not a readable ONNX file")    # auto: its ONNX


def test_engine_without_libnvinfer(rt, meta, tmp_path, monkeypatch):
    """TensorRT compiled in, libnvinfer missing at run time: one clear error (after the sidecar checks)."""
    if not has_trt(rt):
        pytest.skip("this runtime was built without TensorRT (tools/check_cpp_trt.sh builds one with it)")
    eng = write_engine(tmp_path, meta)
    # the sidecar is read and checked before TensorRT is needed
    no_side = write_engine(tmp_path / "b", meta, sidecar=False)
    expect("SPAN_ERR_MODEL", rt.open, no_side, contains="model.engine.json is missing; build engines with `span-deploy build-engine`")
    other = write_engine(tmp_path / "c", meta, sha="0" * 64)
    expect("SPAN_ERR_MODEL", rt.open, other, contains="was written for another engine than")
    bad = write_engine(tmp_path / "d", {**meta, "rulebook_version": 7})
    expect("SPAN_ERR_MODEL", rt.open, bad, contains="made for rulebook version 7, this span-deploy builds version 1; "
                                                    "re-export the model and rebuild the engine")
    if real_libnvinfer():
        pytest.skip("this machine has a libnvinfer: the missing-library errors cannot be seen here")
    monkeypatch.setenv("SPAN_DEPLOY_NVINFER_LIB", str(tmp_path / "libnvinfer.so.10"))
    msg = expect("SPAN_ERR_RUNTIME", rt.open, eng, contains="could not be loaded")
    assert "$SPAN_DEPLOY_NVINFER_LIB" in msg and "ONNX models run without it" in msg
    monkeypatch.delenv("SPAN_DEPLOY_NVINFER_LIB")
    msg = expect("SPAN_ERR_RUNTIME", rt.open_ex, eng, backend="trt", contains="TensorRT's library libnvinfer.so.")
    assert "could not be loaded" in msg and "headers and loads libnvinfer when an engine is opened" in msg, msg


def test_span_infer_backend_options(rt, meta, tmp_path):
    eng = write_engine(tmp_path, meta)
    r = subprocess.run([str(span_infer_path()), "--backend", "cuda", eng, tmp_path], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and "--backend must be auto, ort or trt" in r.stderr
    r = subprocess.run([str(span_infer_path()), "--device", "x", eng, tmp_path], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--device must be an integer" in r.stderr
    r = subprocess.run([str(span_infer_path()), "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "--plugin-lib" in r.stderr and "this runtime: ort" in r.stderr
    import numpy as np

    np.save(tmp_path / "features.npy", np.zeros((4, 64), np.float32))
    np.save(tmp_path / "coords.npy", np.array([[0, 0], [224, 0], [0, 224], [224, 224]]))
    r = subprocess.run([str(span_infer_path()), "--backend", "trt", "--plugin-lib", tmp_path / "none.so", eng, tmp_path],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stderr
    assert (NO_TRT in r.stderr) if not has_trt(rt) else ("libnvinfer" in r.stderr or "model.engine" in r.stderr), r.stderr
