"""`export --target` writes a model directory that predict / run / embed open with `--model DIR`:
checked against the official golden logits, and every damaged folder gets one clear line."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.cases import PUBLIC, REPO, ops_library_or_skip

CASE = PUBLIC / "cls_default_r50"
TINY = PUBLIC / "cls_tiny_alltoall"
SLIDE = REPO / "samples" / "data" / "CMU-1-Small-Region.svs"
DEMO = REPO / "samples" / "demo"


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "span_deploy.cli", *map(str, args)], capture_output=True,
                          text=True, env=env)


def export_dir(case, target, out, *extra):
    r = cli("export", "--checkpoint", case / "checkpoint.pt", "--config", case / "config.yaml",
            "--target", target, "-o", out, *extra)
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="module")
def cpu_dir(tmp_path_factory):
    ops_library_or_skip()
    return export_dir(CASE, "cpu-fp32", tmp_path_factory.mktemp("md") / "cpu")


def test_cpu_target_directory_predicts_the_golden_logits(cpu_dir, tmp_path):
    doc = json.loads((cpu_dir / "deploy.json").read_text())
    assert doc["target"]["name"] == "cpu-fp32" and doc["files"]["onnx"] == "model.onnx"
    assert doc["metadata"]["attention"] == "plugin" and doc["metadata"]["precision"] == "fp32"
    assert doc["plugin_library"]["ort"] == "libspan_deploy_ops.so"
    assert doc["versions"]["export"]["torch"].startswith("2.13.0")
    out = tmp_path / "p.json"
    r = cli("predict", CASE / "slide.h5", "--model", cpu_dir, "-o", out)
    assert r.returncode == 0, r.stderr
    got = json.loads(out.read_text())
    assert got["backend"] == "ort"
    want = np.load(CASE / "expected.npz")["logits"].reshape(-1)
    np.testing.assert_allclose(np.asarray(got["logits"]).reshape(-1), want, atol=1e-4, rtol=0)


def test_an_explicit_backend_that_the_graph_cannot_run_is_refused(cpu_dir):
    r = cli("predict", CASE / "slide.h5", "--model", cpu_dir, "--backend", "ort-portable")
    assert r.returncode != 0 and "plugin attention, which runs on ort" in r.stderr
    assert "Traceback" not in r.stderr


def test_run_takes_the_encoder_from_the_model_directory(tmp_path):
    ops_library_or_skip()
    # the demo model and its encoder: the directory's run must equal the plain files' run
    md = tmp_path / "demo"
    r = cli("export", "--checkpoint", DEMO / "checkpoint.pt", "--config", DEMO / "config.yaml", "--target", "cpu-fp32",
            "--encoder", DEMO / "encoder.onnx", "-o", md)
    assert r.returncode == 0, r.stderr
    assert (md / "encoder.onnx").read_bytes() == (DEMO / "encoder.onnx").read_bytes()
    a, b = tmp_path / "a", tmp_path / "b"
    r1 = cli("run", SLIDE, "--model", md, "-o", a, "--no-progress")
    assert r1.returncode == 0, r1.stderr
    r2 = cli("run", SLIDE, "--model", md / "model.onnx", "--encoder", DEMO / "encoder.onnx", "-o", b, "--no-progress")
    assert r2.returncode == 0, r2.stderr
    ra = json.loads((a / SLIDE.stem / "result.json").read_text())
    rb = json.loads((b / SLIDE.stem / "result.json").read_text())
    assert ra["n_tiles"] == rb["n_tiles"] > 0
    np.testing.assert_allclose(ra["logits"], rb["logits"], atol=1e-6)


def test_trt_target_without_engine_says_to_build_it_and_its_onnx_still_runs_on_ort(tmp_path):
    ops_library_or_skip()
    md = export_dir(TINY, "jetson-orin-fp16", tmp_path / "orin")
    doc = json.loads((md / "deploy.json").read_text())
    assert doc["metadata"]["precision"] == "fp16" and doc["target"]["tensorrt"]["cuda_arch"] == "87"
    assert doc["files"]["engine"] is None
    r = cli("predict", TINY / "slide.h5", "--model", md)
    assert r.returncode == 2 and "build-engine" in r.stderr and "holds no engine" in r.stderr
    r = cli("predict", TINY / "slide.h5", "--model", md, "--backend", "ort")
    assert r.returncode == 0, r.stderr
    want = np.load(TINY / "expected.npz")["logits"].reshape(-1)
    np.testing.assert_allclose(np.asarray(json.loads(r.stdout)["logits"]).reshape(-1), want, atol=5e-2)


def test_export_into_an_existing_folder_is_refused_and_a_failed_export_leaves_nothing(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep")
    r = cli("export", "--checkpoint", TINY / "checkpoint.pt", "--config", TINY / "config.yaml", "--target",
            "cpu-fp32", "-o", tmp_path / "full")
    assert r.returncode != 0 and "already exists" in r.stderr
    assert (tmp_path / "full" / "x").read_text() == "keep"
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    r = cli("export", "--checkpoint", bad, "--config", TINY / "config.yaml", "--target", "cpu-fp32",
            "-o", tmp_path / "new")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pt", "full"]


def test_target_and_explicit_export_options_conflict(tmp_path):
    r = cli("export", "--checkpoint", TINY / "checkpoint.pt", "--config", TINY / "config.yaml", "--target",
            "cpu-fp32", "--attention", "portable", "-o", tmp_path / "m")
    assert r.returncode != 0 and "drop --attention" in r.stderr
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("damage,needle", [
    ("no_deploy", "not a span-deploy model directory"),
    ("bad_json", "not readable JSON"),
    ("version", "format version"),
    ("missing_onnx", "no such file"),
    ("escape", "must be a file name inside the folder"),
    ("target", "(target)"),
])
def test_damaged_model_directory_is_one_clear_error(cpu_dir, tmp_path, damage, needle):
    import shutil
    md = tmp_path / "m"
    shutil.copytree(cpu_dir, md)
    f = md / "deploy.json"
    doc = json.loads(f.read_text())
    if damage == "no_deploy":
        f.unlink()
    elif damage == "bad_json":
        f.write_text("{")
    elif damage == "version":
        doc["format_version"] = 99
        f.write_text(json.dumps(doc))
    elif damage == "missing_onnx":
        (md / "model.onnx").unlink()
    elif damage == "escape":
        doc["files"]["onnx"] = "../../etc/passwd"
        f.write_text(json.dumps(doc))
    elif damage == "target":
        doc["target"]["backend"] = "tpu"
        f.write_text(json.dumps(doc))
    r = cli("predict", CASE / "slide.h5", "--model", md)
    assert r.returncode == 2 and needle in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_build_engine_on_a_model_directory_uses_its_target_and_refuses_conflicts(tmp_path):
    ops_library_or_skip()
    md = export_dir(TINY, "jetson-orin-fp16", tmp_path / "orin")
    r = cli("build-engine", md)                    # settings from the target; TensorRT is missing here
    assert r.returncode == 2 and "TensorRT Python package not found" in r.stderr
    assert not (md / "model.engine").exists()
    r = cli("build-engine", md, "--max-tokens", "5")
    assert r.returncode == 2 and "drop --max-tokens" in r.stderr
    r = cli("build-engine", md, "--target", "cpu-fp32")
    assert r.returncode == 2 and "runs on ort, not TensorRT" in r.stderr
    r = cli("build-engine", md, "--target", "server-fp32")
    assert r.returncode == 2 and "is a fp16 export" in r.stderr


def test_a_recorded_engine_is_what_predict_opens(tmp_path):
    """deploy.json after build-engine names the engine; predict then routes to trt (and says plainly
    that TensorRT is missing here), while --backend ort still runs the ONNX."""
    from span_deploy.deploy.model_dir import read_model_dir, record_engine
    ops_library_or_skip()
    md = export_dir(TINY, "server-fp16", tmp_path / "srv")
    engine = md / "model.engine"
    engine.write_bytes(b"not built here: no TensorRT")   # stands for build-engine's output file
    d = record_engine(read_model_dir(md), engine, "10.3.0")
    assert d.engine == engine and d.doc["versions"]["engine"]["tensorrt"] == "10.3.0"
    assert d.model_for(None) == ("trt", engine)
    r = cli("predict", TINY / "slide.h5", "--model", md)
    assert r.returncode == 2 and "TensorRT Python package not found" in r.stderr
    assert cli("predict", TINY / "slide.h5", "--model", md, "--backend", "ort").returncode == 0
