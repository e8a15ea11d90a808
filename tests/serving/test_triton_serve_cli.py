"""`span-deploy triton serve`: one clear error line without a tritonserver; with one, ready on
loopback and a clean stop on SIGTERM / SIGINT."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from span_deploy.serving.triton.repository import write_repository
from span_deploy.serving.triton.server import free_port
from tests.cases import REPO
from tests.serving.conftest import DEMO, READY_TIMEOUT, span_deploy_cli


def test_no_tritonserver_is_one_clear_line(tmp_path):
    write_repository(DEMO / "span.onnx", tmp_path)
    env = {**os.environ, "SPAN_TRITONSERVER": str(tmp_path / "no-such-tritonserver")}
    exe = Path(sys.executable).with_name("span-deploy")
    r = subprocess.run([str(exe), "triton", "serve", str(tmp_path)], capture_output=True, text=True, env=env,
                       timeout=60)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "no tritonserver found" in r.stderr and "pip install 'span-deploy[triton]'" in r.stderr


def test_not_a_repository(tmp_path, triton_install):
    r = span_deploy_cli("triton", "serve", str(tmp_path), timeout=60)
    assert r.returncode != 0 and "not a model repository" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_until_signal(tmp_path, triton_install, sig):
    import urllib.request

    write_repository(DEMO / "span.onnx", tmp_path / "repo")
    http, grpc = free_port(), free_port()
    exe = Path(sys.executable).with_name("span-deploy")
    p = subprocess.Popen([str(exe), "triton", "serve", str(tmp_path / "repo"), "--http-port", str(http),
                          "--grpc-port", str(grpc), "--timeout", str(READY_TIMEOUT)], stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        line = p.stderr.readline()          # printed once ready
        assert "tritonserver ready" in line and f"127.0.0.1:{http}" in line, line
        with urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/models/span_features/ready", timeout=5) as r:
            assert r.status == 200
        p.send_signal(sig)
        assert p.wait(60) == 0, p.stderr.read()
        time.sleep(0.5)
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/health/ready", timeout=2)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
