"""`span-deploy bench` option handling, through click's CliRunner on the command object."""
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import span_deploy.backends as backends_pkg
from span_deploy.backends.base import SpanResult
from span_deploy.bench.report import validate
from span_deploy.commands.bench import command, parse_tokens
from span_deploy.errors import BackendError


class Trivial:
    def __init__(self, name, max_tokens=None):
        self.name, self.max_tokens, self.feat_dim = name, max_tokens, 6

    def run(self, coords, feats):
        n = len(coords)
        return SpanResult(np.zeros(2, np.float32), np.zeros(4, np.float32), [], feats[:, :2],
                          np.zeros(n, np.float32), [n], timings={"rulebook": 1e-4, "compute": 2e-4})


@pytest.fixture
def fake_backends(monkeypatch):
    opened = []

    def open_backend(name, model=None, checkpoint=None, config=None, device="cpu", threads=None):
        opened.append((name, model.name if model else None, device, threads))
        if name == "small":
            return Trivial(name, max_tokens=100)
        return Trivial(name)

    monkeypatch.setattr(backends_pkg, "available_backends", lambda: ["ort", "ort-portable", "small"],
                        raising=False)
    monkeypatch.setattr(backends_pkg, "open_backend", open_backend, raising=False)
    return opened


@pytest.fixture
def model(tmp_path):
    p = tmp_path / "m.onnx"
    p.write_bytes(b"")
    return str(p)


def invoke(*args):
    return CliRunner().invoke(command, list(args))


def test_unknown_backend_is_a_usage_error(fake_backends, model):
    r = invoke("--model", model, "--backend", "ort,tensorrt-llm")
    assert r.exit_code == 2
    assert "'tensorrt-llm' not available here; available: ort, ort-portable, small" in r.output
    assert fake_backends == []                             # nothing opened


@pytest.mark.parametrize("args, message", [
    ([], "nothing to benchmark"),
    (["--checkpoint", "{m}"], "--checkpoint needs --config"),
    (["--model", "{m}", "--checkpoint", "{m}", "--config", "{m}"], "either --model or --checkpoint"),
    (["--model", "{m}", "--tokens", "10,abc"], "'abc' is not a token count"),
    (["--model", "{m}", "--tokens", "0"], "whole numbers >= 1"),
    (["--model", "{m}", "--iterations", "3", "--duration", "2"], "either --iterations or --duration"),
    (["--model", "{m}", "--tokens", "10", "--slide", "{m}"], "either --tokens or --slide"),
    (["--model", "{m}", "--device", "tpu"], "'tpu' is not one of 'cpu', 'cuda'"),
    (["--model", "{m}", "--warmup", "-1"], "-1 is not in the range x>=0"),
])
def test_bad_options_exit_2(fake_backends, model, args, message):
    r = invoke(*[a.format(m=model) for a in args])
    assert r.exit_code == 2, r.output
    assert message in r.output
    assert fake_backends == []


def test_wrong_model_suffix(fake_backends, tmp_path):
    p = tmp_path / "weights.pt"
    p.write_bytes(b"")
    r = invoke("--model", str(p))
    assert r.exit_code == 2 and "expected one of .onnx, .engine" in r.output


def test_parse_tokens():
    assert parse_tokens("1000, 10k,0.1m,1000") == [1000, 10_000, 100_000]


DEMO_ONNX = Path(__file__).resolve().parents[2] / "samples" / "demo" / "span.onnx"   # a portable export


def test_default_backend_is_the_models_own(fake_backends, tmp_path):
    """An exported ONNX runs on the backend of its attention variant only (a portable export
    cannot feed the custom-op backend)."""
    out = tmp_path / "bench.json"
    r = invoke("--model", str(DEMO_ONNX), "--tokens", "30,120", "--warmup", "0", "--iterations", "2",
               "--threads", "1", "--no-gemm", "--json", str(out), "--seed", "4")
    assert r.exit_code == 0, r.output
    assert fake_backends == [("ort-portable", "span.onnx", "cpu", 1)]
    doc = json.loads(out.read_text())
    assert validate(doc) == []
    assert [b["name"] for b in doc["backends"]] == ["ort-portable"]
    res = doc["backends"][0]["results"]
    assert [(s["n_tokens"], s["feat_dim"], s["iterations"]) for s in res] == [(30, 6, 2), (120, 6, 2)]
    assert res[0]["timings"]["compute"]["median"] == 2e-4
    assert doc["settings"]["tokens"] == [30, 120] and doc["settings"]["seed"] == 4
    assert doc["gemm"] is None
    assert "latency" in r.output and "report written to" in r.output


def test_max_tokens_exceeded_exit_1_others_kept(fake_backends, model, tmp_path):
    out = tmp_path / "bench.json"
    r = invoke("--model", model, "--backend", "ort", "--backend", "small", "--tokens", "50,500",
               "--warmup", "0", "--iterations", "1", "--no-gemm", "--json", str(out))
    assert r.exit_code == 1
    assert "accepts at most 100 tokens" in r.output and "500 were requested" in r.output
    doc = json.loads(out.read_text())
    assert validate(doc) == []
    assert doc["backends"][0]["error"] is None and len(doc["backends"][0]["results"]) == 2
    assert "at most 100 tokens" in doc["backends"][1]["error"]


def test_backend_open_error_reported(monkeypatch, fake_backends, model):
    def refuse(name, **kw):
        raise BackendError(f"the {name} backend needs --checkpoint and --config")

    monkeypatch.setattr(backends_pkg, "open_backend", refuse)
    r = invoke("--model", model, "--backend", "ort", "--tokens", "20", "--iterations", "1", "--no-gemm")
    assert r.exit_code == 1
    assert "the ort backend needs --checkpoint and --config" in r.output


def test_slide_features_file(fake_backends, model, tmp_path):
    import h5py

    from span_deploy.bench.tissue_tokens import tissue_slide

    coords, feats = tissue_slide(75, seed=2, feat_dim=5)
    h5 = tmp_path / "slide.h5"
    with h5py.File(h5, "w") as f:
        f["features"], f["coords"] = feats, coords
    out = tmp_path / "b.json"
    r = invoke("--model", model, "--backend", "ort", "--slide", str(h5), "--warmup", "0",
               "--iterations", "2", "--no-gemm", "--json", str(out))
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    (res,) = doc["backends"][0]["results"]
    assert (res["workload"], res["n_tokens"], res["feat_dim"]) == ("slide", 75, 5)
    assert doc["settings"]["source"] == "slide" and doc["settings"]["tokens"] == [75]
