import os
from pathlib import Path

import pytest

FIX = Path("/work/shared/fixtures")
TINY = FIX / "cls_tiny_alltoall"


@pytest.fixture(scope="session")
def tiny_exports(tmp_path_factory):
    """Portable exports of the tiny fixture: fp32 and fp16."""
    from span_deploy.model import load_model
    from span_deploy.onnx.export import export_onnx

    d = tmp_path_factory.mktemp("exports")
    model = load_model(TINY / "checkpoint.pt", TINY / "config.yaml")
    return {"fp32": export_onnx(model, d / "p32.onnx", attention="portable"),
            "fp16": export_onnx(model, d / "p16.onnx", attention="portable", fp16=True),
            "model": model}


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SPAN_DEPLOY_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
