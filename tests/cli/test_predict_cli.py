"""`span-deploy predict` JSON: the documented keys, survival outputs as the official evaluation."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.cases import ALL_CASES, PUBLIC

SURVIVAL = [c for c in ALL_CASES if c.name.startswith(("surv_", "x_surv_"))]


def predict(case, out):
    r = subprocess.run([sys.executable, "-m", "span_deploy.cli", "predict", case / "slide.h5", "--checkpoint",
                        case / "checkpoint.pt", "--config", case / "config.yaml", "--output", out],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return json.loads(out.read_text())


@pytest.mark.parametrize("case", SURVIVAL, ids=[c.name for c in SURVIVAL])
def test_survival_outputs(case, tmp_path):
    d = predict(case, tmp_path / "o.json")
    e = np.load(case / "expected.npz")
    np.testing.assert_allclose(d["logits"], e["logits"][0], atol=1e-4, rtol=0)
    np.testing.assert_allclose(d["hazards"], e["hazards"][0], atol=1e-4, rtol=0)
    np.testing.assert_allclose(d["survival"], e["surv"][0], atol=1e-4, rtol=0)
    assert abs(d["risk"] - float(e["risk"][0])) < 1e-4
    np.testing.assert_allclose(d["slide_embedding"], e["head_input"][0], atol=1e-4, rtol=0)


def test_classification_outputs(tmp_path):
    case = PUBLIC / "cls_1111_w2_proj_multiattn"
    d = predict(case, tmp_path / "o.json")
    e = np.load(case / "expected.npz")
    z = e["logits"][0]
    p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    np.testing.assert_allclose(d["probabilities"], p, atol=1e-5)
    assert d["stage_sizes"] == e["stage_sizes"].tolist()
    assert len(d["slide_embedding"]) == e["head_input"].shape[1]
    assert set(d["timings"]) >= {"rulebook", "compute", "total"}


@pytest.mark.parametrize("attention,backend", [("plugin", "ort"), ("portable", "ort-portable")])
def test_model_alone_picks_its_backend(attention, backend, tmp_path):
    """predict --model M.onnx without --backend (and without a checkpoint) runs M's own variant."""
    from tests.cases import ops_library_or_skip
    if attention == "plugin":
        ops_library_or_skip()
    case = PUBLIC / "cls_default_r50"
    model = tmp_path / "m.onnx"
    r = subprocess.run([sys.executable, "-m", "span_deploy.cli", "export", "--checkpoint", case / "checkpoint.pt",
                        "--config", case / "config.yaml", "-o", model, "--attention", attention],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "o.json"
    r = subprocess.run([sys.executable, "-m", "span_deploy.cli", "predict", case / "slide.h5", "--model", model,
                        "-o", out], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    d = json.loads(out.read_text())
    assert d["backend"] == backend
    np.testing.assert_allclose(d["logits"], np.load(case / "expected.npz")["logits"][0], atol=1e-4, rtol=0)
