"""A small Triton client for a repository written by `span-deploy triton export`.

    span-deploy triton export --model model.onnx [--encoder encoder.onnx] --output repo
    span-deploy triton serve repo                      # HTTP 127.0.0.1:8000, gRPC :8001
    python samples/triton/client.py features.h5        # span_features: features + coords
    python samples/triton/client.py slide.svs --slide  # span_slide: tiles + coords (needs --encoder)

Features files are the official h5 (feats/cords) or TRIDENT (features/coords; the coords there are
level-0 pixels: pass --level0 so they are turned into 224-grid cords with the patch size in level-0
pixels, attribute ``patch_size_level0``). COORDS sent to Triton are always the 224-grid ``cords``.
"""
from __future__ import annotations

import argparse
import json

import numpy as np

OUTPUTS = ("LOGITS", "SLIDE_EMBEDDING", "PATCH_SCORES")


def features_request(path: str, level0: bool) -> tuple[np.ndarray, np.ndarray]:
    import h5py

    with h5py.File(path, "r") as f:
        if "feats" in f:
            return f["feats"][()].astype(np.float32), f["cords"][()].astype(np.int64)
        feats, coords = f["features"][()], f["coords"][()]
        if feats.ndim == 3:
            feats, coords = feats[0], coords[0]
        if level0:
            step0 = float(f.attrs.get("patch_size_level0") or f["coords"].attrs["patch_size_level0"])
            coords = np.round(coords / step0).astype(np.int64) * 224
        return feats.astype(np.float32), coords.astype(np.int64)


def slide_request(path: str) -> tuple[np.ndarray, np.ndarray]:
    from span_deploy.slide import SlideReader, tile_slide

    with SlideReader(path) as reader:
        grid = tile_slide(reader)
        tiles = np.stack([reader.read_tile(int(x), int(y)) for x, y in grid.coords])
    return tiles, np.asarray(grid.cords, np.int64)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input", help="features .h5, or a slide with --slide")
    ap.add_argument("--slide", action="store_true", help="send tiles to span_slide instead of features")
    ap.add_argument("--level0", action="store_true", help="TRIDENT coords are level-0 px: convert to cords")
    ap.add_argument("--url", default="127.0.0.1:8001", help="gRPC endpoint (use --http for HTTP on :8000)")
    ap.add_argument("--http", action="store_true")
    args = ap.parse_args()
    if args.http:
        import tritonclient.http as tc
        url = args.url if args.url != "127.0.0.1:8001" else "127.0.0.1:8000"
    else:
        import tritonclient.grpc as tc
        url = args.url
    if args.slide:
        model, (x, coords), x_name, x_type = "span_slide", slide_request(args.input), "TILES", "UINT8"
    else:
        model, (x, coords), x_name, x_type = ("span_features", features_request(args.input, args.level0),
                                              "FEATURES", "FP32")
    client = tc.InferenceServerClient(url)
    a = tc.InferInput(x_name, list(x.shape), x_type)
    a.set_data_from_numpy(x)
    b = tc.InferInput("COORDS", list(coords.shape), "INT64")
    b.set_data_from_numpy(coords)
    r = client.infer(model, [a, b], outputs=[tc.InferRequestedOutput(n) for n in OUTPUTS])
    logits = r.as_numpy("LOGITS")
    p = np.exp(logits - logits.max()) if logits.size else logits
    print(json.dumps({"model": model, "patches": int(len(x)), "logits": logits.tolist(),
                      "probabilities": (p / p.sum()).tolist() if p.size else [],
                      "slide_embedding_dim": int(r.as_numpy("SLIDE_EMBEDDING").size),
                      "top_patches": np.argsort(-r.as_numpy("PATCH_SCORES"))[:5].tolist()}, indent=1))


if __name__ == "__main__":
    main()
