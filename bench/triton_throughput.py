"""span_features on a real tritonserver: requests/s and p50 / p99 latency at 1, 4 and 8 concurrent
clients (not a test). One request = one slide (cls_default_r50's features: 1400 patches x 1024).

    python bench/triton_throughput.py [--model m.onnx] [--instances 2] [--threads 1]
        [--requests 40] [--protocol grpc|http] [--clients 1 4 8]

Without --model it exports cls_default_r50 (plugin attention) with `span-deploy export` into a
temporary folder first (needs the export side). The server runs on loopback with free ports.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.cases import PUBLIC  # noqa: E402

CASE = PUBLIC / "cls_default_r50"


def export_fixture(out: Path) -> Path:
    exe = Path(sys.executable).with_name("span-deploy")
    p = out / "cls_default_r50.onnx"
    subprocess.run([str(exe), "export", "--checkpoint", str(CASE / "checkpoint.pt"), "--config",
                    str(CASE / "config.yaml"), "-o", str(p), "--attention", "plugin"], check=True,
                   capture_output=True)
    return p


def one_client(mod, url: str, feats, coords, n: int, lat: list[float]) -> None:
    c = mod.InferenceServerClient(url)
    a = mod.InferInput("FEATURES", list(feats.shape), "FP32")
    a.set_data_from_numpy(feats)
    b = mod.InferInput("COORDS", list(coords.shape), "INT64")
    b.set_data_from_numpy(coords)
    for _ in range(n):
        t = time.perf_counter()
        c.infer("span_features", [a, b])
        lat.append(time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path)
    ap.add_argument("--instances", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="ORT intra-op threads per instance")
    ap.add_argument("--requests", type=int, default=40, help="requests per concurrency level (all clients)")
    ap.add_argument("--protocol", choices=["grpc", "http"], default="grpc")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8])
    args = ap.parse_args()

    from span_deploy.features import read_features
    from span_deploy.serving.triton.repository import write_repository
    from span_deploy.serving.triton.server import TritonServer

    sf = read_features(CASE / "slide.h5")
    feats, coords = sf.feats.astype(np.float32), np.asarray(sf.coords, np.int64)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or export_fixture(Path(tmp))
        write_repository(model, Path(tmp) / "repo", instances=args.instances, threads=args.threads)
        if args.protocol == "grpc":
            import tritonclient.grpc as mod
        else:
            import tritonclient.http as mod
        with TritonServer(Path(tmp) / "repo") as server:
            url = server.grpc_url if args.protocol == "grpc" else server.http_url
            one_client(mod, url, feats, coords, 3, [])       # warm-up
            print(f"span_features, {len(feats)} patches x {feats.shape[1]}, {args.instances} instance(s) x "
                  f"{args.threads} thread(s), {args.protocol}")
            print(f"{'clients':>7} {'requests':>8} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8}")
            for k in args.clients:
                per = max(1, args.requests // k)
                lats: list[float] = []
                threads = [threading.Thread(target=one_client, args=(mod, url, feats, coords, per, lats))
                           for _ in range(k)]
                t0 = time.perf_counter()
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                wall = time.perf_counter() - t0
                ms = np.asarray(lats) * 1e3
                print(f"{k:>7} {len(lats):>8} {len(lats) / wall:>7.2f} {np.percentile(ms, 50):>8.1f} "
                      f"{np.percentile(ms, 99):>8.1f}")


if __name__ == "__main__":
    main()
