"""Segmentation through the command line: the shared parity tool on the public segmentation cases
for every CPU backend, the JSON keys, --threshold, and refusals."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.cases import SEG_PUBLIC, SHARED, ops_library_or_skip

PARITY = SHARED / "tools" / "parity.py"


@pytest.mark.parametrize("backend", ["torch", "ort", "ort-portable"])
def test_shared_parity_tool_passes(backend):
    if backend == "ort":
        ops_library_or_skip()
    cmd = (f"{sys.executable} -m span_deploy.cli predict {{slide}} --checkpoint {{ckpt}} --config {{cfg}} "
           f"--backend {{backend}} --output {{out}}")
    r = subprocess.run([sys.executable, str(PARITY), str(SEG_PUBLIC), "--backend", backend, "--cmd", cmd],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2/2 cases within 0.0001" in r.stdout


def predict(case, out, *extra):
    return subprocess.run([sys.executable, "-m", "span_deploy.cli", "predict", case / "slide.h5", "--checkpoint",
                           case / "checkpoint.pt", "--config", case / "config.yaml", "-o", out, *map(str, extra)],
                          capture_output=True, text=True)


def test_json_keys_and_threshold(tmp_path):
    case = SEG_PUBLIC / "seg_default"
    exp = np.load(case / "expected.npz")
    r = predict(case, tmp_path / "a.json")
    assert r.returncode == 0, r.stderr
    d = json.loads((tmp_path / "a.json").read_text())
    n = len(exp["patch_logits"])
    assert d["task"] == "segmentation" and d["threshold"] == 0.2 and d["num_patches"] == n
    for k in ("patch_logits", "patch_probabilities", "patch_labels"):
        assert len(d[k]) == n
    order = exp["sort_index"]
    probs = np.empty(n)
    probs[order] = exp["patch_probs"]
    pred = np.empty(n, int)
    pred[order] = exp["patch_pred"]
    np.testing.assert_allclose(d["patch_probabilities"], probs, rtol=0, atol=1e-5)
    assert d["patch_labels"] == pred.tolist()                     # the official predictions at 0.2
    assert d["stage_sizes"] == exp["stage_sizes"].tolist() and set(d["timings"]) >= {"rulebook", "compute"}
    r = predict(case, tmp_path / "b.json", "--threshold", "0.9")
    assert r.returncode == 0, r.stderr
    b = json.loads((tmp_path / "b.json").read_text())
    assert b["threshold"] == 0.9
    assert b["patch_labels"] == (np.asarray(b["patch_probabilities"], np.float32) >= np.float32(0.9)).astype(int).tolist()
    assert b["num_positive"] < d["num_positive"]


def test_threshold_refused_for_classification_and_out_of_range(tmp_path):
    cls = SHARED / "fixtures" / "cls_tiny_alltoall"
    r = predict(cls, tmp_path / "o.json", "--threshold", "0.5")
    assert r.returncode == 2 and "applies to segmentation models" in r.stderr
    r = predict(SEG_PUBLIC / "seg_default", tmp_path / "o.json", "--threshold", "1.5")
    assert r.returncode == 2 and not (tmp_path / "o.json").exists()
