"""Fuzzing every input surface of the command line (hypothesis, bounded): feature files, configs,
exported ONNX files, slides and numeric options. Each input either works (exit 0, output written)
or gets one clear line: a span-deploy error or a usage error (what `span-deploy` prints as one
line and a non-zero exit), never another exception (a traceback), never a half-written output,
and in bounded time (hypothesis deadline)."""
from __future__ import annotations

import json
from pathlib import Path

import click
import h5py
import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from span_deploy.cli import cli
from span_deploy.errors import SpanDeployError
from tests.cases import PUBLIC, REPO

TINY = PUBLIC / "cls_tiny_alltoall"           # 512-d features, a 2-class model
DEMO = REPO / "samples" / "demo"
SVS = REPO / "samples" / "data" / "CMU-1-Small-Region.svs"
FUZZ = settings(max_examples=25, deadline=20_000, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                         HealthCheck.too_slow])


def outcome(args: list, out: Path | None = None) -> str:
    """'ok' or 'clean-error'; fails the test on a traceback-type exception or a half-written output."""
    r = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=True)
    e = r.exception
    if e is None or (isinstance(e, SystemExit) and e.code == 0):
        if out is not None:
            assert out.exists() and out.stat().st_size > 0, "exit 0 but no output"
        return "ok"
    clean = isinstance(e, (SpanDeployError, click.ClickException, click.exceptions.Exit)) or (
        isinstance(e, SystemExit) and e.code not in (0, None))
    assert clean, f"traceback-type exception {type(e).__name__}: {e}\n{r.output}"
    if out is not None:
        assert not out.exists(), f"error but {out} was written"
        assert not list(out.parent.glob(f".{out.name}.*")), "temp file left behind"
    return "clean-error"


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    from span_export.model import load_model
    from span_export.onnx_export import export_onnx
    return export_onnx(load_model(TINY / "checkpoint.pt", TINY / "config.yaml"),
                       tmp_path_factory.mktemp("fz") / "tiny.onnx", attention="portable")


dtypes = st.sampled_from(["float32", "float64", "float16", "int64", "int8", "bool", "uint8"])
names = st.sampled_from([("feats", "cords"), ("features", "coords"), ("x", "pos"), ("feats", "nothing"),
                         ("a", "b")])


@st.composite
def feature_files(draw):
    n = draw(st.integers(0, 12))
    f_dim = draw(st.sampled_from([512, 512, 512, 511, 1024, 1]))
    feat_shape = draw(st.sampled_from([(n, f_dim), (n, f_dim), (n,), (1, n, f_dim), (n, f_dim, 1)]))
    feats = np.random.default_rng(draw(st.integers(0, 99))).standard_normal(feat_shape).astype(draw(dtypes))
    if feats.size and draw(st.booleans()) and feats.dtype.kind == "f":
        feats.flat[draw(st.integers(0, feats.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    kind = draw(st.sampled_from(["grid", "negative", "huge", "fractional", "duplicate", "nan"]))
    m = draw(st.sampled_from([n, n, max(n - 1, 0), n + 1]))
    cells = np.stack([np.arange(m) % 4, np.arange(m) // 4], 1).astype(np.float64) * 224
    if kind == "negative":
        cells -= 224 * 10
    elif kind == "huge":
        cells += 1e12
    elif kind == "fractional":
        cells += draw(st.floats(0, 223, allow_nan=False))
    elif kind == "duplicate" and m > 1:
        cells[-1] = cells[0]
    elif kind == "nan" and m:
        cells[0, 0] = np.nan
    cdt = draw(st.sampled_from(["int64", "float64", "float32", "int32"]))
    with np.errstate(invalid="ignore"):
        coords = cells.astype(cdt) if kind != "nan" or cdt.startswith("float") else cells
    return draw(names), feats, coords


@FUZZ
@given(feature_files())
def test_feature_files(tiny_onnx, tmp_path, spec):
    (fname, cname), feats, coords = spec
    p = tmp_path / "slide.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset(fname, data=feats)
        f.create_dataset(cname, data=coords)
    out = tmp_path / "o.json"
    out.unlink(missing_ok=True)
    outcome(["predict", p, "--model", tiny_onnx, "-o", out], out)


@settings(max_examples=12, deadline=20_000)
@given(st.integers(0, 4000), st.binary(max_size=64))
def test_broken_h5_bytes(tmp_path_factory, cut, junk):
    src = (TINY / "slide.h5").read_bytes()
    p = tmp_path_factory.mktemp("b") / "slide.h5"
    p.write_bytes(src[:cut] + junk)
    out = p.with_suffix(".json")
    outcome(["predict", p, "--checkpoint", TINY / "checkpoint.pt", "--config", TINY / "config.yaml", "-o", out], out)


MODEL_KEYS = ["slide_configs", "trans_type", "econvs_type", "embed_dim_div", "window_size", "kernel_size",
              "stride", "dilation", "pos_emb", "token_init_types", "global_strategy", "edge_mode",
              "conv_norm_position", "ff_ratio", "share_qkv", "input_projection", "channel_factor", "not_a_key"]
values = st.one_of(st.none(), st.integers(-3, 70), st.floats(allow_nan=True, allow_infinity=True),
                   st.text(max_size=6), st.lists(st.integers(-1, 3), max_size=3), st.booleans(),
                   st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


@settings(max_examples=30, deadline=30_000, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(MODEL_KEYS), values, min_size=1, max_size=3),
       st.sampled_from(["keep", "no-model", "model-not-dict", "task", "scalar"]))
def test_configs(tmp_path_factory, changes, shape):
    doc = yaml.safe_load((TINY / "config.yaml").read_text())
    doc["model"].update(changes)
    if shape == "no-model":
        doc.pop("model")
    elif shape == "model-not-dict":
        doc["model"] = "111"
    elif shape == "task":
        doc["task"] = "regression"
    elif shape == "scalar":
        doc = 42
    d = tmp_path_factory.mktemp("c")
    cfg = d / "config.yaml"
    try:
        cfg.write_text(yaml.safe_dump(doc))
    except yaml.YAMLError:
        return
    out = d / "o.json"
    outcome(["predict", TINY / "slide.h5", "--checkpoint", TINY / "checkpoint.pt", "--config", cfg, "-o", out], out)


@settings(max_examples=15, deadline=20_000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(["cut", "junk", "metadata", "version", "config", "empty"]), st.integers(0, 10**6))
def test_onnx_files(tiny_onnx, tmp_path, how, k):
    import onnx
    data = tiny_onnx.read_bytes()
    p = tmp_path / "m.onnx"
    if how == "cut":
        p.write_bytes(data[:k % len(data)])
    elif how == "junk":
        p.write_bytes(np.random.default_rng(k).bytes(200))
    elif how == "empty":
        p.write_bytes(b"")
    else:
        proto = onnx.load(str(tiny_onnx))
        meta = json.loads(proto.metadata_props[0].value)
        if how == "version":
            meta["rulebook_version"] = 99
        elif how == "config":
            meta["config"].pop("encoder_string", None)
            meta["config"]["window_size"] = "three"
        del proto.metadata_props[:]
        onnx.helper.set_model_props(proto, {"span_deploy": json.dumps(meta) if how != "metadata" else "{not json"})
        onnx.save(proto, str(p))
    out = tmp_path / "o.json"
    out.unlink(missing_ok=True)
    r = outcome(["predict", TINY / "slide.h5", "--model", p, "-o", out], out)
    assert r == "clean-error"


@settings(max_examples=10, deadline=60_000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(["cut", "garbage", "zero", "wrong-ext"]), st.floats(0.0, 0.999))
def test_slides(tmp_path, how, frac):
    data = SVS.read_bytes()
    name = "s.txt" if how == "wrong-ext" else "s.svs"
    p = tmp_path / name
    p.write_bytes({"cut": data[:int(len(data) * frac)], "garbage": np.random.default_rng(int(frac * 1e6)).bytes(5000),
                   "zero": b"", "wrong-ext": data}[how])
    out = tmp_path / "o"
    r = CliRunner().invoke(cli, ["run", str(p), "--model", str(DEMO / "span.onnx"), "--output", str(out),
                                 "--no-progress"])
    e = r.exception
    assert isinstance(e, (SpanDeployError, click.ClickException, SystemExit)) and not (
        isinstance(e, SystemExit) and e.code == 0), (type(e), r.output)
    assert not (out / "s" / "result.json").exists()


@pytest.mark.parametrize("args", [
    ["--batch-size", "0"], ["--batch-size", "-5"], ["--workers", "-1"], ["--tissue-threshold", "-0.1"],
    ["--tissue-threshold", "1.5"], ["--threads", "0"], ["--target-mpp", "inf"], ["--mpp", "0"],
    ["--threshold", "0.3"],                 # a segmentation option on a classification model
])
def test_run_options_past_their_bounds(tmp_path, args):
    out = tmp_path / "o"
    r = CliRunner().invoke(cli, ["run", str(SVS), "--model", str(DEMO / "span.onnx"), "--output", str(out),
                                 "--no-progress", *args])
    assert r.exit_code == 2, r.output
    assert not out.exists()


@pytest.mark.parametrize("args", [["--iterations", "0"], ["--warmup", "-1"], ["--tokens", "0"], ["--tokens", "abc"],
                                  ["--duration", "-1"], ["--tokens", "-5"]])
def test_bench_options_past_their_bounds(args):
    r = CliRunner().invoke(cli, ["bench", "--model", str(DEMO / "span.onnx"), *args])
    assert r.exit_code == 2, r.output


@pytest.mark.parametrize("args", [["--opset", "13"], ["--opset", "99"], ["--attention", "dense"]])
def test_export_options_past_their_bounds(tmp_path, args):
    out = tmp_path / "m.onnx"
    r = CliRunner().invoke(cli, ["export", "--checkpoint", str(DEMO / "checkpoint.pt"), "--config",
                                 str(DEMO / "config.yaml"), "-o", str(out), *args])
    assert r.exit_code == 2 and not out.exists(), r.output
