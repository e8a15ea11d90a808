#!/usr/bin/env python3
"""Prepare the engine inputs of a span-deploy ONNX export for the C++ sample (span_infer).

    python samples/cpp/prepare_inputs.py FEATURES.h5 MODEL.onnx OUT_DIR

The host rulebook (index tables) is Python, so this script builds every engine input for one slide
and writes each as raw little-endian OUT_DIR/NAME.bin, plus OUT_DIR/manifest.txt with one line per
input in graph order:  name dtype dim0 dim1 ...   (dtype float32 or int32).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

DTYPES = {np.dtype(np.float32): "float32", np.dtype(np.int32): "int32"}


def prepare(features: str | Path, model: str | Path, out_dir: str | Path) -> list[str]:
    """Write NAME.bin + manifest.txt into out_dir; returns the input names in graph order."""
    from span_deploy.config import SpanConfig
    from span_deploy.features import read_features
    from span_deploy.metadata import read_metadata
    from span_deploy.rulebook import build_rulebook

    meta = read_metadata(model)
    cfg = SpanConfig.from_dict(meta["config"])
    slide = read_features(features)
    inputs = build_rulebook(slide.coords, cfg).engine_inputs(cfg, slide.feats)
    names = list(meta["input_names"])
    missing = [n for n in names if n not in inputs]
    if missing:
        raise SystemExit(f"prepare_inputs: error: the rulebook does not produce model input(s) {missing}")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    for name in names:
        arr = np.asarray(inputs[name])
        if np.issubdtype(arr.dtype, np.floating):
            arr = arr.astype("<f4", copy=False)
        elif np.issubdtype(arr.dtype, np.integer):
            arr = arr.astype("<i4", copy=False)
        else:
            raise SystemExit(f"prepare_inputs: error: input {name} has unsupported dtype {arr.dtype}")
        arr = np.ascontiguousarray(arr)
        (out / f"{name}.bin").write_bytes(arr.tobytes())
        dtype = "float32" if arr.dtype.kind == "f" else "int32"
        lines.append(" ".join([name, dtype] + [str(int(d)) for d in arr.shape]))
    (out / "manifest.txt").write_text("\n".join(lines) + "\n")
    return names


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("features", help="slide features (.h5)")
    ap.add_argument("model", help="span-deploy ONNX export (attention='plugin' or 'onnx')")
    ap.add_argument("out_dir", help="directory for NAME.bin files and manifest.txt")
    a = ap.parse_args(argv)
    from span_deploy.errors import SpanDeployError

    try:
        names = prepare(a.features, a.model, a.out_dir)
    except SpanDeployError as e:  # these name the offending file; print the message, not a trace
        print(f"prepare_inputs: error: {e}", file=sys.stderr)
        return 1
    print(f"prepare_inputs: wrote {len(names)} inputs to {a.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
