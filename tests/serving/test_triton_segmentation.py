"""A segmentation model through span_features on a real tritonserver: the demo segmentation model on
the features `span-deploy run` extracted from the bundled slide gives run's per-patch probabilities
and logits (PATCH_PROBABILITIES, PATCH_LOGITS) and an empty LOGITS."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from span_deploy.serving.triton.repository import write_repository
from span_deploy.serving.triton.server import TritonServer
from tests.serving.conftest import DEMO, READY_TIMEOUT, SAMPLE_SVS, span_deploy_cli

httpclient = pytest.importorskip("tritonclient.http")
SEG = DEMO / "segmentation" / "span.onnx"


def test_segmentation_span_features(tmp_path, triton_install):
    if not SEG.is_file():
        pytest.fail("samples/demo/segmentation/span.onnx is part of the repository")
    r = span_deploy_cli("run", str(SAMPLE_SVS), "--model", str(SEG), "--encoder", str(DEMO / "encoder.onnx"),
                        "--output", str(tmp_path / "run"), "--no-progress")
    assert r.returncode == 0, r.stderr[-3000:]
    with h5py.File(tmp_path / "run" / SAMPLE_SVS.stem / f"{SAMPLE_SVS.stem}.h5", "r") as f:
        feats, cords = f["feats"][()].astype(np.float32), f["cords"][()].astype(np.int64)
        probs, logits = f["patch_probabilities"][()], f["patch_logits"][()]
    write_repository(SEG, tmp_path / "repo")
    with TritonServer(tmp_path / "repo").start(READY_TIMEOUT) as server:
        c = httpclient.InferenceServerClient(server.http_url)
        a = httpclient.InferInput("FEATURES", list(feats.shape), "FP32")
        a.set_data_from_numpy(feats)
        b = httpclient.InferInput("COORDS", list(cords.shape), "INT64")
        b.set_data_from_numpy(cords)
        out = c.infer("span_features", [a, b])
        assert out.as_numpy("LOGITS").shape == (0,)
        np.testing.assert_allclose(out.as_numpy("PATCH_PROBABILITIES"), probs, atol=1e-5, rtol=0)
        np.testing.assert_allclose(out.as_numpy("PATCH_SCORES"), probs, atol=1e-5, rtol=0)
        np.testing.assert_allclose(out.as_numpy("PATCH_LOGITS"), logits, atol=1e-5, rtol=0)
        assert out.as_numpy("SLIDE_EMBEDDING").ndim == 1
