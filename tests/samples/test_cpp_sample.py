"""samples/cpp end to end: export the tiny fixture (attention='plugin'), prepare its engine inputs
with samples/cpp/prepare_inputs.py, run the built C++ sample build/bin/span_infer (ONNX Runtime C++
API + the custom-op library) and compare its logits with the fixture's reference logits."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.cases import PUBLIC

REPO = Path(__file__).resolve().parents[2]
FIXTURE = PUBLIC / "cls_tiny_alltoall"
BUILD = Path(os.environ.get("SPAN_BUILD_DIR", REPO / "build"))
SPAN_INFER = BUILD / "bin" / ("span_infer.exe" if os.name == "nt" else "span_infer")


def _missing(what: str):
    # CI builds the native part first (tools/build_native.sh): there a missing binary is a failure.
    if os.environ.get("CI", "").lower() not in ("", "0", "false"):
        pytest.fail(f"CI is set but {what}")
    pytest.skip(what)


@pytest.fixture(scope="module")
def ops_lib() -> Path:
    from span_deploy import native
    from span_deploy.errors import BackendError

    try:
        return Path(native.ort_ops_library())
    except BackendError as e:
        _missing(f"the custom-op library is missing: {e}")


@pytest.fixture(scope="module")
def span_infer() -> Path:
    if not SPAN_INFER.is_file():
        _missing(f"{SPAN_INFER} is not built (bash tools/build_native.sh builds it when the onnxruntime "
                 "wheel is importable)")
    return SPAN_INFER


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> tuple[Path, Path]:
    if not FIXTURE.is_dir():
        _missing(f"fixture {FIXTURE} not available")
    pytest.importorskip("torch")
    from span_export.model import load_model
    from span_export.onnx_export import export_onnx

    d = tmp_path_factory.mktemp("cpp_sample")
    model = export_onnx(load_model(FIXTURE / "checkpoint.pt", FIXTURE / "config.yaml"), d / "model.onnx",
                        attention="plugin")
    inputs = d / "inputs"
    r = subprocess.run([sys.executable, str(REPO / "samples/cpp/prepare_inputs.py"), str(FIXTURE / "slide.h5"),
                        str(model), str(inputs)], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    return Path(model), inputs


def _run(exe, *args):
    return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, timeout=120)


def test_manifest_matches_model_inputs(prepared):
    from span_deploy.metadata import read_metadata

    model, inputs = prepared
    lines = (inputs / "manifest.txt").read_text().split("\n")
    rows = [ln.split() for ln in lines if ln.strip()]
    assert [r[0] for r in rows] == read_metadata(model)["input_names"]
    for name, dtype, *dims in rows:
        assert dtype in ("float32", "int32")
        n = int(np.prod([int(x) for x in dims])) if dims else 1
        assert (inputs / f"{name}.bin").stat().st_size == 4 * n


def test_span_infer_logits_match_reference(span_infer, ops_lib, prepared):
    model, inputs = prepared
    r = _run(span_infer, ops_lib, model, inputs)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = {ln.split(":", 1)[0]: ln.split(":", 1)[1] for ln in r.stdout.splitlines() if ":" in ln}
    logits = np.array([float(v) for v in lines["logits"].split()], np.float32)
    expected = np.load(FIXTURE / "expected.npz")["logits"].reshape(-1)
    np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-4)
    assert int(lines["slide_embedding length"]) > 0


def test_span_infer_errors(span_infer, ops_lib, prepared, tmp_path):
    model, inputs = prepared
    # Wrong usage.
    r = _run(span_infer)
    assert r.returncode != 0 and "usage" in r.stderr
    # No manifest.
    r = _run(span_infer, ops_lib, model, tmp_path)
    assert r.returncode != 0 and "manifest.txt" in r.stderr
    # A missing .bin and a truncated one.
    bad = tmp_path / "bad"
    bad.mkdir()
    manifest = (inputs / "manifest.txt").read_text()
    (bad / "manifest.txt").write_text(manifest)
    r = _run(span_infer, ops_lib, model, bad)
    assert r.returncode != 0 and "missing input file" in r.stderr and "feats.bin" in r.stderr
    for p in inputs.glob("*.bin"):
        (bad / p.name).write_bytes(p.read_bytes())
    (bad / "feats.bin").write_bytes((inputs / "feats.bin").read_bytes()[:-4])
    r = _run(span_infer, ops_lib, model, bad)
    assert r.returncode != 0 and "size mismatch" in r.stderr
    # Missing custom-op library.
    r = _run(span_infer, tmp_path / "nope.so", model, inputs)
    assert r.returncode != 0 and "custom-op library not found" in r.stderr
