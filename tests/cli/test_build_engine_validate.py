"""build-engine CLI (TensorRT missing here: a clear error, profile checked first) and validate CLI."""
import importlib.util
import re

from click.testing import CliRunner

from span_deploy.backends import available_backends
from span_deploy.cli import cli
from tests.cases import PUBLIC

TINY = PUBLIC / "cls_tiny_alltoall"

HAVE_TRT = importlib.util.find_spec("tensorrt") is not None


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


def test_validate_tiny_fixture():
    args = ["validate", str(TINY / "slide.h5"), "--checkpoint", str(TINY / "checkpoint.pt"),
            "--config", str(TINY / "config.yaml")]
    r = CliRunner().invoke(cli, args, terminal_width=150)
    assert r.exit_code == 0, r.output
    want = ["ort-portable"] + (["ort"] if "ort" in available_backends() else [])
    for be in want:
        for out in ("logits", "slide_embedding", "stage0_globals", "stage2_globals", "patch_features"):
            m = re.search(rf"{re.escape(be)}\s+│\s+{out}\s+│[^│]+│\s+(\S+)\s+│\s+(\S+)\s+│\s+PASS", r.output)
            assert m, f"{be} {out} row missing:\n{r.output}"
            assert float(m.group(1)) < 1e-5
    assert "validate: PASSED" in r.output
    # a tolerance nobody meets -> a FAIL row and exit 1
    r = CliRunner().invoke(cli, args + ["--backends", "ort-portable", "--atol", "1e-12"], terminal_width=150)
    assert r.exit_code == 1
    assert "FAIL" in r.output and "validate: FAILED" in r.output


def test_validate_given_model_and_bad_backend(tiny_exports):
    base = ["validate", str(TINY / "slide.h5"), "--checkpoint", str(TINY / "checkpoint.pt"),
            "--config", str(TINY / "config.yaml")]
    r = CliRunner().invoke(cli, base + ["--model", str(tiny_exports["fp16"]), "--backends", "ort-portable",
                                        "--atol", "2e-2"], terminal_width=150)
    assert r.exit_code == 0, r.output
    assert "ort-portable" in r.output and "validate: PASSED" in r.output
    r = CliRunner().invoke(cli, base + ["--backends", "trt"])
    assert r.exit_code != 0
