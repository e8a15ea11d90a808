"""Bad input through the C API and span_infer: each is an error code with a clear message, never a
crash; the runtime's own JSON / ONNX-metadata readers (span_deploy_selftest); the CI policy for a
missing build."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.cases import ERROR_CASES, PUBLIC
from tests.cpp import cpp_runtime
from tests.cpp.cpp_runtime import CError, Runtime, runtime_lib_path, selftest_path, span_infer_path

TINY = PUBLIC / "cls_tiny_alltoall"


@pytest.fixture(scope="module")
def rt() -> Runtime:
    return Runtime(runtime_lib_path())


@pytest.fixture(scope="module")
def portable(tiny_exports) -> Path:
    return Path(tiny_exports["fp32"])


@pytest.fixture(scope="module")
def model(rt, portable):
    with rt.open(portable) as m:
        yield m


def slide():
    import h5py

    with h5py.File(TINY / "slide.h5", "r") as f:
        return f["feats"][()].astype(np.float32), f["cords"][()]


def expect(status: str, fn, *args, contains: str = ""):
    with pytest.raises(CError) as e:
        fn(*args)
    assert e.value.status == status, e.value
    assert contains in e.value.message, e.value.message
    return e.value.message


def with_metadata(src: Path, dst: Path, edit) -> Path:
    import onnx

    p = onnx.load(str(src))
    for prop in p.metadata_props:
        if prop.key == "span_deploy":
            prop.value = edit(prop.value)
    onnx.save(p, str(dst))
    return dst


def test_selftest_json_and_onnx_metadata_readers(tmp_path):
    r = subprocess.run([str(selftest_path())], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "checks passed" in r.stdout


def test_open_errors(rt, portable, tmp_path):
    expect("SPAN_ERR_IO", rt.open, tmp_path / "nope.onnx", contains="model file not found")
    (tmp_path / "text.onnx").write_text("this is not an onnx file\n" * 20)
    expect("SPAN_ERR_MODEL", rt.open, tmp_path / "text.onnx", contains="not a readable ONNX file")
    (tmp_path / "empty.onnx").write_bytes(b"")
    expect("SPAN_ERR_MODEL", rt.open, tmp_path / "empty.onnx", contains="empty")
    # a valid ONNX that span-deploy did not export
    import onnx
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(g), str(tmp_path / "other.onnx"))
    expect("SPAN_ERR_MODEL", rt.open, tmp_path / "other.onnx", contains="not a span-deploy export (no 'span_deploy' metadata)")
    # truncated export
    data = portable.read_bytes()
    (tmp_path / "cut.onnx").write_bytes(data[: len(data) // 2])
    expect("SPAN_ERR_MODEL", rt.open, tmp_path / "cut.onnx", contains="not a readable ONNX file")
    # damaged / other-version metadata
    expect("SPAN_ERR_MODEL", rt.open, with_metadata(portable, tmp_path / "dmg.onnx", lambda v: v[:-5]),
           contains="metadata is damaged")
    expect("SPAN_ERR_MODEL", rt.open, with_metadata(portable, tmp_path / "v2.onnx",
                                                   lambda v: v.replace('"rulebook_version": 1', '"rulebook_version": 2')),
           contains="made for rulebook version 2, this span-deploy builds version 1")
    expect("SPAN_ERR_MODEL", rt.open, with_metadata(portable, tmp_path / "cfg.onnx",
                                                   lambda v: v.replace('"window_size": 3', '"window_size": "3"')),
           contains="config key 'window_size' is a string; expected an integer")
    # a config whose contract does not match the graph's inputs
    expect("SPAN_ERR_MODEL", rt.open, with_metadata(portable, tmp_path / "rope.onnx",
                                                   lambda v: v.replace('"trans_type": "long"', '"trans_type": "long_noshift"')),
           contains="the model takes input 's0_win_s'")
    expect("SPAN_ERR_INVALID_ARGUMENT", rt.open, portable, None, -1, contains="threads")


def test_plugin_export_needs_the_ops_library(rt, tmp_path, monkeypatch):
    pytest.importorskip("span_export")
    from span_deploy.backends.torch import export_checkpoint

    plugin = export_checkpoint(TINY / "checkpoint.pt", TINY / "config.yaml", tmp_path / "p.onnx", attention="plugin")
    expect("SPAN_ERR_IO", rt.open, plugin, tmp_path / "missing.so", contains="custom-op library not found")
    monkeypatch.setenv("SPAN_DEPLOY_OPS_LIB", str(tmp_path / "nope.so"))
    expect("SPAN_ERR_IO", rt.open, plugin, contains="SPAN_DEPLOY_OPS_LIB=")
    monkeypatch.delenv("SPAN_DEPLOY_OPS_LIB")
    if not (runtime_lib_path().parent / "libspan_deploy_ops.so").exists():
        expect("SPAN_ERR_IO", rt.open, plugin, contains="needs the custom-op library libspan_deploy_ops.so")
    (tmp_path / "bad.so").write_text("not a library")
    expect("SPAN_ERR_RUNTIME", rt.open, plugin, tmp_path / "bad.so", contains="could not be loaded")


def test_model_directory_errors(rt, portable, tmp_path):
    d = tmp_path / "dir"
    d.mkdir()
    expect("SPAN_ERR_MODEL", rt.open, d, contains="not a span-deploy model directory (no deploy.json)")
    (d / "deploy.json").write_text("{not json")
    expect("SPAN_ERR_MODEL", rt.open, d, contains="not readable JSON")
    (d / "deploy.json").write_text(json.dumps({"format": "other"}))
    expect("SPAN_ERR_MODEL", rt.open, d, contains="not a span-deploy deploy.json")
    doc = {"format": "span-deploy-model-dir", "format_version": 1, "files": {"onnx": "model.onnx"},
           "metadata": {"attention": "portable"}}
    (d / "deploy.json").write_text(json.dumps({**doc, "format_version": 9}))
    expect("SPAN_ERR_MODEL", rt.open, d, contains="format version 9")
    (d / "deploy.json").write_text(json.dumps(doc))
    expect("SPAN_ERR_MODEL", rt.open, d, contains="names model.onnx (onnx) but the folder has no such file")
    (d / "deploy.json").write_text(json.dumps({**doc, "files": {"onnx": "../model.onnx"}}))
    expect("SPAN_ERR_MODEL", rt.open, d, contains="must be a file name inside the folder")
    (d / "deploy.json").write_text(json.dumps({**doc, "metadata": {}}))
    expect("SPAN_ERR_MODEL", rt.open, d, contains="deploy.json is damaged")
    shutil.copyfile(portable, d / "model.onnx")
    (d / "deploy.json").write_text(json.dumps(doc))
    with rt.open(d) as m:
        assert m.info()["onnx"] == str(d / "model.onnx")


def test_run_errors(rt, model):
    feats, coords = slide()
    f = model.feat_dim
    # NaN / Inf features: refused, as read_features refuses them (same wording)
    bad = feats.copy()
    bad[3, 1] = np.nan
    bad[5, 0] = np.inf
    msg = expect("SPAN_ERR_FEATURES", model.run, bad, coords, contains="2 patch(es) have NaN/Inf features (first: row 3)")
    assert "re-extract or drop those patches" in msg
    expect("SPAN_ERR_FEATURES", model.run, np.zeros((len(coords), 10), np.float32), coords,
           contains=f"features are 10-d but the model expects {f}-d")
    # duplicate cells: the rulebook's message, word for word
    from span_deploy.config import SpanConfig
    from span_deploy.errors import RulebookError
    from span_deploy.rulebook import build_rulebook

    dup = coords.copy()
    dup[4] = dup[2] + 100           # same cell after the float32 normalisation
    with pytest.raises(RulebookError) as py:
        build_rulebook(dup, SpanConfig.from_dict(model.info()["metadata"]["config"]))
    assert expect("SPAN_ERR_RULEBOOK", model.run, feats, dup) == str(py.value)
    expect("SPAN_ERR_RULEBOOK", model.run, np.zeros((0, f), np.float32), np.zeros((0, 2), np.int64),
           contains="no patches")
    expect("SPAN_ERR_RULEBOOK", model.run, feats, coords.astype(np.float64) * np.nan, contains="NaN or Inf")
    expect("SPAN_ERR_RULEBOOK", model.run, feats[:2], np.array([[0, 0], [224 * 40000, 0]]), contains="int16")


def test_null_arguments_and_lookups(rt, model):
    import ctypes

    lib = rt.lib
    out = ctypes.c_void_p()
    assert lib.span_model_open(None, None, 0, ctypes.byref(out)) == 1 and not out
    assert b"path must not be NULL" in lib.span_last_error()
    assert lib.span_model_open(b"x", None, 0, None) == 1
    feats, coords = slide()
    assert lib.span_model_run(None, feats.ctypes.data, len(feats), feats.shape[1], coords.ctypes.data,
                              ctypes.byref(out)) == 1
    assert lib.span_model_run(model.h, None, len(feats), feats.shape[1], None, ctypes.byref(out)) == 1
    assert lib.span_model_run(model.h, None, -1, 4, None, ctypes.byref(out)) == 1
    assert lib.span_rulebook_build(None, None, 0, ctypes.byref(out)) == 1
    t = cpp_runtime.Tensor()
    assert lib.span_result_get(None, 0, ctypes.byref(t)) == 1
    assert lib.span_rulebook_find(None, b"x", ctypes.byref(t)) == 1
    for fn in ("span_model_free", "span_result_free", "span_rulebook_free"):
        getattr(lib, fn)(None)                        # NULL is fine
    assert lib.span_model_task(None) == b"" and lib.span_model_feat_dim(None) == 0
    assert lib.span_status_name(6) == b"SPAN_ERR_RULEBOOK" and lib.span_status_name(99) == b"SPAN_ERR_UNKNOWN"
    assert lib.span_version().decode().count(".") == 2
    # a result: unknown names and indexes
    res = ctypes.c_void_p()
    c = np.ascontiguousarray(coords, np.int64)
    assert lib.span_model_run(model.h, feats.ctypes.data, len(feats), feats.shape[1], c.ctypes.data, ctypes.byref(res)) == 0
    try:
        assert lib.span_result_find(res, b"nope", ctypes.byref(t)) == 8
        assert b"no result tensor named 'nope' (have: logits, slide_embedding" in lib.span_last_error()
        assert lib.span_result_get(res, 999, ctypes.byref(t)) == 8
        assert lib.span_result_find(res, b"logits", ctypes.byref(t)) == 0 and t.array().shape == (2,)
    finally:
        lib.span_result_free(res)


def test_config_json_errors(rt):
    from span_deploy.config import load_config

    cfg = load_config(TINY / "config.yaml").to_dict()
    c = np.array([[0, 0]])
    expect("SPAN_ERR_CONFIG", rt.rulebook, '{"task": "classification",\n "x": [1,]}', c, contains="line 2, column 10")
    expect("SPAN_ERR_CONFIG", rt.rulebook, "[]", c, contains="must be a JSON object")
    expect("SPAN_ERR_CONFIG", rt.rulebook, {k: v for k, v in cfg.items() if k != "stride"}, c,
           contains="config key 'stride' is missing")
    expect("SPAN_ERR_CONFIG", rt.rulebook, {**cfg, "window_size": 0}, c, contains="'window_size' is 0; expected 1..27")
    expect("SPAN_ERR_CONFIG", rt.rulebook, {**cfg, "conv_type": "conv3d"}, c, contains="expected one of dwpatchconv")
    expect("SPAN_ERR_CONFIG", rt.rulebook, {**cfg, "encoder_string": "10"}, c, contains="encoder_string")
    expect("SPAN_ERR_CONFIG", rt.rulebook, {**cfg, "task": "segmentation", "decoder_string": ""}, c,
           contains="decoder_string")


def run_infer(*args, env=None):
    return subprocess.run([str(span_infer_path()), *map(str, args)], capture_output=True, text=True, timeout=120,
                          env=env)


def test_span_infer_errors(portable, tmp_path):
    feats, coords = slide()
    r = run_infer()
    assert r.returncode == 2 and "usage" in r.stderr
    r = run_infer("--threads", "x", portable, tmp_path)
    assert r.returncode == 2 and "--threads must be an integer" in r.stderr
    r = run_infer(portable, tmp_path / "missing")
    assert r.returncode == 1 and "feature file not found" in r.stderr
    r = run_infer(portable, tmp_path)
    assert r.returncode == 1 and "must hold features.npy + coords.npy" in r.stderr
    np.save(tmp_path / "f.npy", feats)
    np.save(tmp_path / "c.npy", coords)
    r = run_infer(portable, tmp_path / "f.npy")
    assert r.returncode == 1 and "needs its coordinates .npy" in r.stderr
    np.save(tmp_path / "c16.npy", coords.astype(np.int16))
    r = run_infer(portable, tmp_path / "f.npy", tmp_path / "c16.npy")
    assert r.returncode == 1 and "dtype '<i2' is not supported" in r.stderr
    np.save(tmp_path / "fo.npy", np.asfortranarray(feats))
    r = run_infer(portable, tmp_path / "fo.npy", tmp_path / "c.npy")
    assert r.returncode == 1 and "Fortran-order arrays are not supported" in r.stderr
    (tmp_path / "cut.npy").write_bytes((tmp_path / "f.npy").read_bytes()[:-10])
    r = run_infer(portable, tmp_path / "cut.npy", tmp_path / "c.npy")
    assert r.returncode == 1 and "truncated data" in r.stderr
    (tmp_path / "txt.npy").write_text("hello")
    r = run_infer(portable, tmp_path / "txt.npy", tmp_path / "c.npy")
    assert r.returncode == 1 and "not a .npy file" in r.stderr
    np.save(tmp_path / "c3.npy", coords[:3])
    r = run_infer(portable, tmp_path / "f.npy", tmp_path / "c3.npy")
    assert r.returncode == 1 and f"{len(feats)} feature rows but 3 coordinates" in r.stderr
    np.save(tmp_path / "c1.npy", coords[:, :1])
    r = run_infer(portable, tmp_path / "f.npy", tmp_path / "c1.npy")
    assert r.returncode == 1 and "coordinates must have shape (N, 2)" in r.stderr
    nan = feats.copy()
    nan[0, 0] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    r = run_infer(portable, tmp_path / "nan.npy", tmp_path / "c.npy")
    assert r.returncode == 1 and "NaN/Inf features (first: row 0)" in r.stderr
    r = run_infer("--threshold", "0.3", portable, tmp_path / "f.npy", tmp_path / "c.npy")
    assert r.returncode == 1 and "--threshold applies to segmentation models" in r.stderr
    r = run_infer(tmp_path / "none.onnx", tmp_path / "f.npy", tmp_path / "c.npy")
    assert r.returncode == 1 and "model file not found" in r.stderr
    # the duplicate-cell fixture: refused with the rulebook's message
    import h5py

    with h5py.File(ERROR_CASES[0] / "slide.h5", "r") as f:
        np.save(tmp_path / "dc.npy", f["cords"][()])
        np.save(tmp_path / "df.npy", f["feats"][()].astype(np.float32))
    expected = (ERROR_CASES[0] / "expected_error.txt").read_text().strip()
    r = run_infer(portable, tmp_path / "df.npy", tmp_path / "dc.npy")
    assert r.returncode == 1 and "already occupied grid cell" in r.stderr, (r.stderr, expected)
    # .h5: read when built with HDF5, else a clear line
    r = run_infer(portable, TINY / "slide.h5")
    assert r.returncode == 0 or "built without HDF5" in r.stderr, r.stderr


def test_missing_build_fails_in_ci(monkeypatch, tmp_path):
    monkeypatch.setenv("SPAN_DEPLOY_RUNTIME_LIB", str(tmp_path / "none.so"))
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must build the C runtime"):
        cpp_runtime.runtime_lib_path()
    monkeypatch.setenv("CI", "")
    with pytest.raises(pytest.skip.Exception):
        cpp_runtime.runtime_lib_path()
    assert os.environ["SPAN_DEPLOY_RUNTIME_LIB"].endswith("none.so")
