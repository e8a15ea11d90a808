"""tools/gpu_check.sh without a GPU: the whole flow (staging, steps, OUT files, summary, exit
status) with SPAN_GPU_DRY_RUN=1, and the clear failure when no GPU is found. Staging needs the local
git mirror of wwyi1828/SPAN and ../shared/tools/dglshim: without them (CI clones) the dry-run test
is skipped."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MIRROR = Path(os.environ.get("SPAN_MIRROR", REPO.parent / ".mirror" / "wwyi1828+SPAN" / "repo"))
SHIM = Path(os.environ.get("SPAN_DGLSHIM", REPO.parent / "shared" / "tools" / "dglshim"))
OUT_NAME = re.compile(r"^[A-Za-z0-9._-]+$")   # what the device tool brings back from $OUT


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPAN_GPU_", "SPAN_CUDA_ARCH"))}
    env.update(OUT=str(tmp_path / "out"), SPAN_PYTHON=sys.executable,
               SPAN_GPU_BUILD_DIR=str(tmp_path / "build"), **extra)
    return env


def _check_out_folder(out: Path) -> None:
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) <= 8, files                    # the device tool returns at most 8 files
    assert all(OUT_NAME.match(p.name) and p.parent == out for p in files), files


def test_scripts_parse():
    for script in ("gpu_check.sh", "gpu_stage.sh"):
        subprocess.run(["bash", "-n", str(REPO / "tools" / script)], check=True)


def test_no_gpu_fails_clearly(tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    smi = fake / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver.'\n"
                   "exit 9\n")
    smi.chmod(0o755)
    env = _env(tmp_path, PATH=f"{fake}{os.pathsep}{os.environ['PATH']}")
    r = subprocess.run(["bash", str(REPO / "tools" / "gpu_check.sh")], capture_output=True, text=True, env=env,
                       timeout=120, cwd=REPO)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "no GPU found: nvidia-smi says 'NVIDIA-SMI has failed" in r.stdout
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    steps = {x["step"]: x for x in s["steps"]}
    assert s["ok"] is False and s["failed"] == ["device"]
    assert steps["device"]["status"] == "fail" and steps["device"]["reason"].startswith("no GPU found")
    assert all(steps[k]["status"] == "skipped" for k in ("build", "kernel", "model", "sanitizer", "ort_cuda_ep"))
    assert "FAILED: device" in (tmp_path / "out" / "summary.txt").read_text()
    _check_out_folder(tmp_path / "out")


@pytest.mark.skipif(not (MIRROR / "HEAD").exists() or not (SHIM / "dgl" / "__init__.py").is_file(),
                    reason=f"the official SPAN model needs the git mirror {MIRROR} and the DGL stand-in {SHIM} "
                           "(absent in CI clones)")
def test_dry_run_flow(tmp_path):
    carry = tmp_path / "carry"
    st = subprocess.run(["bash", str(REPO / "tools" / "gpu_stage.sh")], capture_output=True, text=True,
                        env={**os.environ, "SPAN_GPU_CARRY": str(carry), "SPAN_MIRROR": str(MIRROR),
                             "SPAN_DGLSHIM": str(SHIM)}, timeout=120, cwd=REPO)
    assert st.returncode == 0, st.stdout + st.stderr
    assert (carry / "official" / "src" / "span" / "model.py").is_file()
    assert (carry / "dglshim" / "dgl" / "__init__.py").is_file()

    env = _env(tmp_path, SPAN_GPU_DRY_RUN="1", SPAN_GPU_CARRY=str(carry), SPAN_GPU_DEADLINE_S="150")
    r = subprocess.run(["bash", str(REPO / "tools" / "gpu_check.sh")], capture_output=True, text=True, env=env,
                       timeout=200, cwd=REPO)
    out = tmp_path / "out"
    assert r.returncode == 0, r.stdout + r.stderr + (out / "gpu_check.log").read_text()
    s = json.loads((out / "summary.json").read_text())
    assert s["ok"] is True and s["dry_run"] is True and s["failed"] == []
    steps = {x["step"]: x for x in s["steps"]}
    assert list(steps) == ["device", "build", "kernel", "model", "sanitizer", "ort_cuda_ep"]
    for k in ("device", "build", "kernel", "sanitizer"):
        assert steps[k]["status"] == "skipped" and "dry run" in steps[k]["reason"], steps[k]
    assert steps["model"]["status"] == "skipped" and "left for later" in steps["model"]["reason"]
    assert steps["ort_cuda_ep"]["status"] == "skipped" and steps["ort_cuda_ep"]["reason"]
    assert "ALL STEPS OK" in (out / "summary.txt").read_text()
    _check_out_folder(out)
