"""span_slide (BLS: patch_encoder in chunks, then span_features) on a real tritonserver: the bundled
slide's tiles give the same logits as `span-deploy run`; bad tile requests get errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

from span_deploy.slide import SlideReader, tile_slide
from tests.serving.conftest import DEMO, SAMPLE_SVS, span_deploy_cli

grpcclient = pytest.importorskip("tritonclient.grpc")
from tritonclient.utils import InferenceServerException  # noqa: E402


@pytest.fixture(scope="module")
def tiles():
    with SlideReader(SAMPLE_SVS) as reader:
        grid = tile_slide(reader)
        t = np.stack([reader.read_tile(int(x), int(y)) for x, y in grid.coords])
    return t, np.asarray(grid.cords, np.int64)


@pytest.fixture(scope="module")
def run_record(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    r = span_deploy_cli("run", str(SAMPLE_SVS), "--model", str(DEMO / "span.onnx"), "--encoder",
                        str(DEMO / "encoder.onnx"), "--output", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads((out / SAMPLE_SVS.stem / "result.json").read_text())


def infer_slide(url, tiles, coords, tile_dtype="UINT8"):
    c = grpcclient.InferenceServerClient(url)
    a = grpcclient.InferInput("TILES", list(tiles.shape), tile_dtype)
    a.set_data_from_numpy(tiles)
    b = grpcclient.InferInput("COORDS", list(coords.shape), "INT64")
    b.set_data_from_numpy(coords)
    r = c.infer("span_slide", [a, b])
    return {n: r.as_numpy(n) for n in ("LOGITS", "SLIDE_EMBEDDING", "PATCH_SCORES")}


def test_slide_tiles_equal_run(slide_server, tiles, run_record):
    t, cords = tiles
    assert len(t) == run_record["n_tiles"] == 51
    out = infer_slide(slide_server.grpc_url, t, cords)
    np.testing.assert_allclose(out["LOGITS"], run_record["logits"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(out["SLIDE_EMBEDDING"], run_record["prediction"]["slide_embedding"], atol=1e-4,
                               rtol=0)
    assert out["PATCH_SCORES"].shape == (51,)


def test_patch_encoder_alone(slide_server, tiles):
    t, _ = tiles
    c = grpcclient.InferenceServerClient(slide_server.grpc_url)
    a = grpcclient.InferInput("TILES", [5, 224, 224, 3], "UINT8")
    a.set_data_from_numpy(np.ascontiguousarray(t[:5]))
    f = c.infer("patch_encoder", [a]).as_numpy("FEATURES")
    assert f.shape == (5, 512) and f.dtype == np.float32 and np.isfinite(f).all()


def test_bad_slide_requests(slide_server, tiles, run_record):
    t, cords = tiles
    for args in ((t[:, :100].copy(), cords), (t, cords[:10].copy()), (t[:0].copy(), cords[:0].copy()),
                 (t.astype(np.float32), cords, "FP32")):
        with pytest.raises(InferenceServerException):
            infer_slide(slide_server.grpc_url, *args)
    dup = cords.copy()
    dup[1] = dup[0]
    with pytest.raises(InferenceServerException, match="grid cell"):
        infer_slide(slide_server.grpc_url, t, dup)
    out = infer_slide(slide_server.grpc_url, t, cords)
    np.testing.assert_allclose(out["LOGITS"], run_record["logits"], atol=1e-4, rtol=0)


def test_sample_client(slide_server, run_record):
    """samples/triton/client.py against the server: the slide through span_slide (gRPC)."""
    from tests.cases import REPO
    import subprocess
    import sys

    r = subprocess.run([sys.executable, str(REPO / "samples" / "triton" / "client.py"), str(SAMPLE_SVS), "--slide",
                        "--url", slide_server.grpc_url], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(r.stdout)
    assert doc["model"] == "span_slide" and doc["patches"] == 51
    np.testing.assert_allclose(doc["logits"], run_record["logits"], atol=1e-4, rtol=0)
