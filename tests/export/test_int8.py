"""`export --int8`: dynamic and calibrated int8 exports run on ONNX Runtime, say what they are in
their metadata, and stay close to fp32 (embedding cosine and per-patch score correlation)."""
from __future__ import annotations

import subprocess
import sys

import h5py
import numpy as np
import onnx
import pytest

from span_deploy.backends import open_backend
from span_deploy.bench.tissue_tokens import tissue_slide
from span_deploy.features import read_features
from span_deploy.metadata import read_metadata
from tests.cases import PUBLIC, ops_library_or_skip

CASE = PUBLIC / "cls_default_r50"


def cli(*args):
    return subprocess.run([sys.executable, "-m", "span_deploy.cli", *map(str, args)], capture_output=True, text=True)


def export(out, *extra):
    r = cli("export", "--checkpoint", CASE / "checkpoint.pt", "--config", CASE / "config.yaml", "-o", out, *extra)
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    ops_library_or_skip()
    d = tmp_path_factory.mktemp("int8")
    cal = d / "cal"
    cal.mkdir()
    for i in range(3):                       # calibration slides of the model's feature width
        c, f = tissue_slide(600 + 300 * i, seed=i, feat_dim=1024)
        with h5py.File(cal / f"s{i}.h5", "w") as h:
            h["feats"], h["cords"] = f, c
    return {"fp32": export(d / "fp32.onnx"), "dynamic": export(d / "dyn.onnx", "--int8"),
            "static": export(d / "static.onnx", "--int8", "--calibration", cal)}


@pytest.mark.parametrize("mode,op", [("dynamic", "MatMulInteger"), ("static", "QuantizeLinear")])
def test_int8_export_is_marked_and_close_to_fp32(models, mode, op):
    meta = read_metadata(models[mode])
    assert meta["precision"] == "int8" and meta["quantization"]["mode"] == mode
    ops = {n.op_type for n in onnx.load(str(models[mode])).graph.node}
    assert op in ops and "SparseWindowAttention" in ops
    sf = read_features(CASE / "slide.h5")
    ref = open_backend(model=models["fp32"]).run(sf.coords, sf.feats)
    got = open_backend(model=models[mode]).run(sf.coords, sf.feats)
    e32, e8 = ref.slide_embedding.astype(np.float64), got.slide_embedding.astype(np.float64)
    assert e32 @ e8 / (np.linalg.norm(e32) * np.linalg.norm(e8)) > 0.99
    assert np.corrcoef(ref.patch_scores, got.patch_scores)[0, 1] > 0.99
    assert np.abs(got.logits - ref.logits).max() < 0.2          # measured 1.3e-2 (dynamic), 5.3e-3 (static)


def test_int8_option_errors_are_clear(tmp_path):
    r = cli("export", "--checkpoint", CASE / "checkpoint.pt", "--config", CASE / "config.yaml", "-o",
            tmp_path / "m.onnx", "--int8", "--fp16")
    assert r.returncode != 0 and "exclude each other" in r.stderr
    r = cli("export", "--checkpoint", CASE / "checkpoint.pt", "--config", CASE / "config.yaml", "-o",
            tmp_path / "m.onnx", "--calibration", tmp_path)
    assert r.returncode != 0 and "--calibration goes with --int8" in r.stderr
    r = cli("export", "--checkpoint", CASE / "checkpoint.pt", "--config", CASE / "config.yaml", "-o",
            tmp_path / "m.onnx", "--int8", "--calibration", tmp_path / "none")
    assert r.returncode == 2 and "calibration folder not found" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "m.onnx").exists()
