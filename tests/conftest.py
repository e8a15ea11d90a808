"""Shared fixtures: a per-session export cache, and portable exports of the tiny public fixture."""
import pytest

from tests.cases import PUBLIC

pytest_plugins = ["tests.support.slides"]   # svs, ndpi, make_slide

TINY = PUBLIC / "cls_tiny_alltoall"


@pytest.fixture(scope="session")
def tiny_exports(tmp_path_factory):
    """Portable exports of the tiny fixture: fp32 and fp16 (needs the export side)."""
    from span_export.model import load_model
    from span_export.onnx_export import export_onnx

    d = tmp_path_factory.mktemp("exports")
    model = load_model(TINY / "checkpoint.pt", TINY / "config.yaml")
    return {"fp32": export_onnx(model, d / "p32.onnx", attention="portable"),
            "fp16": export_onnx(model, d / "p16.onnx", attention="portable", fp16=True),
            "model": model}


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    """On-the-fly exports go to a temporary cache, never the user's ~/.cache."""
    monkeypatch.setenv("SPAN_DEPLOY_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
