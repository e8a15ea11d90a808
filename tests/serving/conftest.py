"""Fixtures for the Triton tests: a real tritonserver on loopback (free ports, bounded waits,
stopped by the fixture even when a test fails). Skipped only when no tritonserver is installed
(`pip install 'span-deploy[triton]'`; the dev extra has it, so CI runs these)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from span_deploy.serving.triton.repository import write_repository
from span_deploy.serving.triton.server import TritonServer, find_tritonserver
from tests.cases import PUBLIC, REPO

CASE = PUBLIC / "cls_default_r50"
DEMO = REPO / "samples" / "demo"
SAMPLE_SVS = REPO / "samples" / "data" / "CMU-1-Small-Region.svs"
READY_TIMEOUT = 120.0


@pytest.fixture(scope="session")
def triton_install():
    t = find_tritonserver()
    if t is None:
        pytest.skip("no tritonserver installed (pip install 'span-deploy[triton]' or NVIDIA's container)")
    return t


def span_deploy_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("span-deploy")
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "span_deploy.cli"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO)


@pytest.fixture(scope="session")
def cls_onnx(tmp_path_factory, triton_install):
    """cls_default_r50 exported by `span-deploy export`, both attention variants."""
    pytest.importorskip("span_export", reason="the export side (pip install -e ./export) exports the fixture")
    from tests.cases import ops_library_or_skip
    ops_library_or_skip()
    d = tmp_path_factory.mktemp("cls_onnx")
    out = {}
    for attention in ("plugin", "portable"):
        p = d / f"{attention}.onnx"
        r = span_deploy_cli("export", "--checkpoint", str(CASE / "checkpoint.pt"), "--config",
                            str(CASE / "config.yaml"), "-o", str(p), "--attention", attention)
        assert r.returncode == 0, r.stderr[-3000:]
        out[attention] = p
    return out


def _serve(repo: Path):
    server = TritonServer(repo)
    try:
        server.start(READY_TIMEOUT)
    except Exception:
        server.close()
        raise
    return server


@pytest.fixture(scope="module", params=["plugin", "portable"])
def features_server(request, cls_onnx, tmp_path_factory):
    """span_features for cls_default_r50 (2 CPU instances so concurrent slides overlap)."""
    repo = tmp_path_factory.mktemp(f"repo_{request.param}")
    write_repository(cls_onnx[request.param], repo, instances=2, threads=1)
    server = _serve(repo)
    server.model_path = cls_onnx[request.param]
    try:
        yield server
    finally:
        log = server.log_tail(60)
        rc = server.stop()
        server.close()
        if request.node.session.testsfailed:
            print(f"tritonserver log tail (exit {rc}):\n{log}")


@pytest.fixture(scope="module")
def slide_server(triton_install, tmp_path_factory):
    """span_features + patch_encoder + span_slide for the demo model and encoder."""
    if not (DEMO / "span.onnx").is_file() or not (DEMO / "encoder.onnx").is_file():
        pytest.fail("samples/demo/span.onnx and encoder.onnx are part of the repository")
    repo = tmp_path_factory.mktemp("repo_slide")
    write_repository(DEMO / "span.onnx", repo, encoder=DEMO / "encoder.onnx", encoder_batch=16)
    server = _serve(repo)
    try:
        yield server
    finally:
        server.close()

