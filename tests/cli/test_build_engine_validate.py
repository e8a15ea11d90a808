"""build-engine CLI (TensorRT missing here: a clear error, profile and paths checked first) and the
validate CLI on polygraphy: PASS / FAIL rows, --json, --save-inputs / --save-outputs replayed by
polygraphy's own CLI, bad paths as one line."""
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import onnx
from click.testing import CliRunner
from onnx import numpy_helper
from polygraphy.comparator import RunResults
from polygraphy.json import load_json

from span_deploy.backends import available_backends
from span_deploy.cli import cli
from span_deploy.config import load_config
from span_deploy.rulebook import output_names
from tests.cases import PUBLIC

TINY = PUBLIC / "cls_tiny_alltoall"
BASE = ["validate", str(TINY / "slide.h5"), "--checkpoint", str(TINY / "checkpoint.pt"),
        "--config", str(TINY / "config.yaml")]
POLYGRAPHY = Path(sys.executable).with_name("polygraphy")

HAVE_TRT = importlib.util.find_spec("tensorrt") is not None


def cli_run(*args):
    return subprocess.run([sys.executable, "-m", "span_deploy.cli", *map(str, args)], capture_output=True, text=True)


def one_line_error(r):
    """A non-zero exit with one clear line on stderr, no traceback."""
    assert r.returncode != 0, r.stdout
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    return lines[0]


def rows(output):
    """backend -> output -> (max abs, status) from validate's table."""
    out: dict[str, dict[str, tuple[float, str]]] = {}
    for m in re.finditer(r"│\s+(\S+)\s+│\s+(\S+)\s+│[^│]+│\s+(\S+)\s+│\s+\S+\s+│\s+(PASS|FAIL)", output):
        out.setdefault(m.group(1), {})[m.group(2)] = (float(m.group(3)), m.group(4))
    return out


def tampered(src, dst):
    """The export with every float weight scaled by 1.001 (metadata kept)."""
    model = onnx.load(str(src))
    for init in model.graph.initializer:
        w = numpy_helper.to_array(init)
        if w.dtype.kind == "f" and w.size > 1:
            init.CopyFrom(numpy_helper.from_array((w * 1.001).astype(w.dtype), init.name))
    onnx.save(model, str(dst))
    return dst


def test_build_engine_needs_tensorrt(tiny_exports, tmp_path):
    out = tmp_path / "m.engine"
    r = CliRunner().invoke(cli, ["build-engine", str(tiny_exports["fp32"]), "-o", str(out), "--max-tokens", "5000"])
    if HAVE_TRT:  # a real build (needs a GPU): engine + sidecar with the profile
        assert r.exit_code == 0, r.output
        assert out.stat().st_size > 0 and (tmp_path / "m.engine.json").is_file()
        assert "max 5000 tokens" in r.output
    else:
        assert r.exit_code != 0
        assert "TensorRT Python package not found" in str(r.exception)
        assert not out.exists()


def test_build_engine_validates_profile_first(tiny_exports, tmp_path):
    r = CliRunner().invoke(cli, ["build-engine", str(tiny_exports["fp32"]), "-o", str(tmp_path / "m.engine"),
                                 "--min-tokens", "50", "--max-tokens", "10"])
    assert r.exit_code != 0 and "larger than --max-tokens" in str(r.exception)
    r = CliRunner().invoke(cli, ["build-engine", str(tiny_exports["fp32"]), "-o", str(tmp_path / "m.engine"),
                                 "--profile", str(tmp_path / "p.yaml"), "--max-tokens", "10"])
    assert r.exit_code == 2 and "not both" in r.output


def test_build_engine_bad_output_path_is_one_line(tiny_exports, tmp_path):
    (tmp_path / "file").write_text("x")
    line = one_line_error(cli_run("build-engine", tiny_exports["fp32"], "-o", tmp_path / "file" / "m.engine"))
    assert "is a file, not a folder" in line
    line = one_line_error(cli_run("build-engine", tiny_exports["fp32"], "-o", tmp_path / "m.engine",
                                  "--timing-cache", tmp_path / "file" / "t.cache"))
    assert "is a file, not a folder" in line


def test_validate_tiny_fixture():
    r = CliRunner().invoke(cli, BASE, terminal_width=150)
    assert r.exit_code == 0, r.output
    got = rows(r.output)
    want = ["ort-portable"] + (["ort"] if "ort" in available_backends() else [])
    names = output_names(load_config(TINY / "config.yaml"))
    for be in want:
        assert list(got[be]) == names, r.output     # the graph's output names, every one
        for out, (max_abs, status) in got[be].items():
            assert status == "PASS" and max_abs < 1e-5, (be, out)
    assert "validate: PASSED" in r.output
    # a tolerance nobody meets -> FAIL rows and exit 1
    r = CliRunner().invoke(cli, BASE + ["--backends", "ort-portable", "--atol", "1e-12"], terminal_width=150)
    assert r.exit_code == 1
    assert "FAIL" in r.output and "validate: FAILED" in r.output


def test_validate_fails_on_a_tampered_model(tiny_exports, tmp_path):
    bad = tampered(tiny_exports["fp32"], tmp_path / "tampered.onnx")
    r = cli_run(*BASE, "--model", bad, "--backends", "ort-portable", "--json", tmp_path / "r.json")
    assert r.returncode == 1, r.stdout + r.stderr                # through the real entry point
    got = rows(r.stdout)["ort-portable"]
    assert got["logits"][1] == "FAIL" and got["slide_embedding"][1] == "FAIL"
    assert "validate: FAILED" in r.stdout
    doc = json.loads((tmp_path / "r.json").read_text())       # written on failure too
    assert doc["passed"] is False and doc["runners"]["ort-portable"]["model"] == str(bad)
    assert doc["runners"]["ort-portable"]["outputs"]["logits"]["ok"] is False


def test_validate_json_and_polygraphy_replay(tiny_exports, tmp_path):
    portable = tiny_exports["fp32"]
    inp, outp, js = tmp_path / "in.json", tmp_path / "out.json", tmp_path / "sub" / "r.json"
    r = CliRunner().invoke(cli, BASE + ["--model", str(portable), "--json", str(js), "--save-inputs", str(inp),
                                        "--save-outputs", str(outp)], terminal_width=150)
    assert r.exit_code == 0, r.output
    doc = json.loads(js.read_text())
    names = output_names(load_config(TINY / "config.yaml"))
    assert doc["passed"] is True and doc["reference"] == "torch" and doc["patches"] == 9
    assert doc["tolerances"]["atol"] == 1e-4 and doc["tolerances"]["rtol"] == 0
    assert {"polygraphy", "onnxruntime", "torch", "span-deploy"} <= set(doc["versions"])
    ort_portable = doc["runners"]["ort-portable"]
    assert ort_portable["model"] == str(portable) and list(ort_portable["outputs"]) == names
    for o in ort_portable["outputs"].values():
        assert o["ok"] and o["max_abs"] < 1e-5 and o["atol"] == 1e-4 and o["rtol"] == 0 and "max_rel" in o
    # polygraphy's own formats
    feeds = load_json(str(inp))
    assert isinstance(feeds, list) and len(feeds) == 1 and feeds[0]["feats"].shape == (11, 512)
    saved = RunResults.load(str(outp))
    assert "torch" in list(saved.keys()) and "ort-portable" in list(saved.keys())
    # replay the slide with polygraphy's CLI: the portable graph vs every saved run
    replay = [str(POLYGRAPHY), "run", str(portable), "--onnxrt", "--load-inputs", str(inp),
              "--load-outputs", str(outp), "--atol", "1e-4", "--rtol", "0"]
    p = subprocess.run(replay, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    assert "PASSED" in p.stdout and "vs. torch" in p.stdout
    # ... and the replay does compare: a tampered graph fails against the saved torch outputs
    bad = tampered(portable, tmp_path / "tampered.onnx")
    p = subprocess.run([str(POLYGRAPHY), "run", str(bad)] + replay[3:], capture_output=True, text=True)
    assert p.returncode != 0 and "FAILED" in p.stdout


def test_validate_bad_paths_are_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    for opt in ("--json", "--save-inputs", "--save-outputs"):
        line = one_line_error(cli_run(*BASE, opt, tmp_path / "file" / "x.json"))
        assert "is a file, not a folder" in line and str(tmp_path / "file") in line
    r = cli_run(*BASE, "--json", tmp_path)                     # click's own check: a usage error
    assert r.returncode == 2 and "is a directory" in r.stderr and "Traceback" not in r.stderr
    r = cli_run(*BASE, "--save-inputs", tmp_path / "a.json", "--save-outputs", tmp_path / "a.json")
    assert r.returncode == 2 and "name the same file" in r.stderr and "Traceback" not in r.stderr
    line = one_line_error(cli_run("validate", tmp_path / "missing.h5", *BASE[2:]))
    assert "not found" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]      # nothing written


def test_validate_given_model_and_bad_backend(tiny_exports):
    r = CliRunner().invoke(cli, BASE + ["--model", str(tiny_exports["fp16"]), "--backends", "ort-portable",
                                        "--atol", "2e-2"], terminal_width=150)
    assert r.exit_code == 0, r.output
    assert "ort-portable" in r.output and "validate: PASSED" in r.output
    r = CliRunner().invoke(cli, BASE + ["--backends", "trt"])
    assert r.exit_code != 0
    r = CliRunner().invoke(cli, BASE + ["--model", str(tiny_exports["fp16"]), "--model", str(tiny_exports["fp32"])])
    assert r.exit_code == 2 and "two --model files for ort-portable" in r.output


def test_validate_help_says_how_to_replay():
    r = CliRunner().invoke(cli, ["validate", "--help"], terminal_width=200)
    assert r.exit_code == 0
    text = " ".join(r.output.split())
    assert "polygraphy run model.onnx --onnxrt --load-inputs" in text
    assert "cannot register an ONNX Runtime custom-op library" in text
