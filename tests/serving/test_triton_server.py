"""span_features on a real tritonserver: cls_default_r50 (plugin and portable exports) over HTTP and
gRPC equals the golden logits (1e-4) and `span-deploy predict` (1e-5); 8 concurrent clients get
their own slide's answer; malformed requests get an error response and the server keeps serving."""
from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from span_deploy.features import read_features
from tests.serving.conftest import CASE, span_deploy_cli

httpclient = pytest.importorskip("tritonclient.http")
grpcclient = pytest.importorskip("tritonclient.grpc")
from tritonclient.utils import InferenceServerException  # noqa: E402

OUTPUTS = ("LOGITS", "SLIDE_EMBEDDING", "PATCH_SCORES")


@pytest.fixture(scope="module")
def slide():
    sf = read_features(CASE / "slide.h5")
    return sf.feats.astype(np.float32), np.asarray(sf.coords, np.int64)


def infer(mod, url: str, feats: np.ndarray, coords: np.ndarray, dtype: str = "FP32", coords_dtype: str = "INT64"):
    c = mod.InferenceServerClient(url)
    a = mod.InferInput("FEATURES", list(feats.shape), dtype)
    a.set_data_from_numpy(feats)
    b = mod.InferInput("COORDS", list(coords.shape), coords_dtype)
    b.set_data_from_numpy(coords)
    r = c.infer("span_features", [a, b], outputs=[mod.InferRequestedOutput(n) for n in OUTPUTS])
    return {n: r.as_numpy(n) for n in OUTPUTS}


@pytest.fixture(scope="module")
def predicted(features_server):
    r = span_deploy_cli("predict", str(CASE / "slide.h5"), "--model", str(features_server.model_path))
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_logits_equal_golden_and_predict(features_server, slide, predicted, protocol):
    mod, url = (httpclient, features_server.http_url) if protocol == "http" else (grpcclient,
                                                                                    features_server.grpc_url)
    out = infer(mod, url, *slide)
    expected = np.load(CASE / "expected.npz")["logits"].reshape(-1)
    assert out["LOGITS"].dtype == np.float32 and out["LOGITS"].shape == expected.shape
    np.testing.assert_allclose(out["LOGITS"], expected, atol=1e-4, rtol=0)
    np.testing.assert_allclose(out["LOGITS"], predicted["logits"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(out["SLIDE_EMBEDDING"], predicted["slide_embedding"], atol=1e-5, rtol=0)
    assert out["PATCH_SCORES"].shape == (len(slide[0]),)


def test_eight_concurrent_clients(features_server, slide, predicted):
    """Each client sends the slide in its own row order: logits stay, patch scores follow the rows."""
    feats, coords = slide
    ref = infer(httpclient, features_server.http_url, feats, coords)
    results, errors = {}, []

    def client(i: int) -> None:
        try:
            perm = np.random.default_rng(i).permutation(len(feats))
            for _ in range(2):
                results[i] = (perm, infer(httpclient, features_server.http_url, feats[perm], coords[perm]))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(f"client {i}: {e!r}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert not errors, errors
    assert sorted(results) == list(range(8))
    for perm, out in results.values():
        np.testing.assert_allclose(out["LOGITS"], predicted["logits"], atol=1e-5, rtol=0)
        np.testing.assert_allclose(out["PATCH_SCORES"], ref["PATCH_SCORES"][perm], atol=1e-5, rtol=0)


def malformed(feats: np.ndarray, coords: np.ndarray) -> dict[str, tuple]:
    nan = feats.copy()
    nan[7, 3] = np.nan
    dup = coords.copy()
    dup[1] = dup[0]
    return {
        "wrong dtype": (feats.astype(np.float64), coords, "FP64", "INT64"),
        "wrong coords dtype": (feats, coords.astype(np.float32), "FP32", "FP32"),
        "wrong feature width": (feats[:, :1000].copy(), coords, "FP32", "INT64"),
        "wrong rank": (feats[:, :, None].copy(), coords, "FP32", "INT64"),
        "coords not (N, 2)": (feats, np.ascontiguousarray(coords[:, :1]), "FP32", "INT64"),
        "row mismatch": (feats, coords[:-3].copy(), "FP32", "INT64"),
        "NaN features": (nan, coords, "FP32", "INT64"),
        "empty": (feats[:0].copy(), coords[:0].copy(), "FP32", "INT64"),
        "duplicate grid cells": (feats, dup, "FP32", "INT64"),
    }


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_malformed_requests_get_errors_and_server_keeps_serving(features_server, slide, predicted, protocol):
    mod, url = (httpclient, features_server.http_url) if protocol == "http" else (grpcclient,
                                                                                    features_server.grpc_url)
    messages = {}
    for what, (f, c, fd, cd) in malformed(*slide).items():
        with pytest.raises(InferenceServerException) as e:
            infer(mod, url, f, c, fd, cd)
        messages[what] = str(e.value)
    assert "NaN" in messages["NaN features"], messages["NaN features"]
    assert "empty" in messages["empty"], messages["empty"]
    assert "grid cell" in messages["duplicate grid cells"], messages["duplicate grid cells"]
    assert "rows" in messages["row mismatch"], messages["row mismatch"]
    assert features_server.proc.poll() is None and features_server.ready()
    out = infer(mod, url, *slide)
    np.testing.assert_allclose(out["LOGITS"], predicted["logits"], atol=1e-5, rtol=0)
