"""Embed a slide with SPAN from Python (vendor-app style).

    python samples/python/embed_slide.py samples/data/CMU-1-Small-Region.svs \
        --model span.onnx --encoder encoder.onnx

Two ways in: a slide path (span-deploy tiles it), or your own tiles -- an iterable of
(uint8 224x224x3 RGB tile at 0.5 µm/px, (x, y)) on a regular grid, x and y in units where the
grid step is ``tile_step``.
"""
from __future__ import annotations

import argparse

import numpy as np

from span_deploy.backends import open_backend
from span_deploy.encoders.runner import OnnxEncoder
from span_deploy.pipeline import embed_slide
from span_deploy.slide import open_slide, tile_slide


def my_tiles(path: str):
    """Stand-in for a viewer's own tile source: yields (tile, (x, y)) in level-0 px."""
    with open_slide(path) as reader:
        grid = tile_slide(reader)
        for x, y in grid.coords:
            yield reader.read_tile(int(x), int(y)), (int(x), int(y))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("slide")
    ap.add_argument("--model", required=True)
    ap.add_argument("--encoder", required=True)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    encoder = OnnxEncoder(a.encoder, device=a.device)
    backend = open_backend(a.model, device=a.device)

    emb = embed_slide(a.slide, encoder, backend)                       # 1) from the file
    print("slide embedding", emb.shape, emb[:4])

    with open_slide(a.slide) as r:                                      # 2) from your own tiles
        step = r.step0                                                  # grid step in level-0 px
    emb2 = embed_slide(my_tiles(a.slide), encoder, backend, tile_step=step)
    print("same embedding from own tiles:", np.allclose(emb, emb2, atol=1e-5))


if __name__ == "__main__":
    main()
