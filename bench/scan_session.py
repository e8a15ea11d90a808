"""Scan-time inference: latency from a scan's last tile to the SPAN result, with a SlideSession
(tiles encoded while the scan goes on) against the after-scan baseline (encode everything once the
last tile is in, then SPAN), both measured in this run on the same tiles and model.

The scanner is simulated by a producer that emits tiles at a fixed rate: by default 80% of the
encoder's throughput measured first in this run (a scanner a little slower than the encoder;
`--scan-rate` sets tiles/s). Cases: the bundled slide's tissue tiles, and a tissue-shaped synthetic
slide of `--tiles` tiles (default 20,000; pixels from a pool of random tiles, so memory stays small).

    python bench/scan_session.py [--tiles 20000] [--threads 2] [--batch-size 64] [--scan-rate R]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def bundled_tiles():
    from span_deploy.slide import SlideReader, tile_slide
    with SlideReader(REPO / "samples" / "data" / "CMU-1-Small-Region.svs") as r:
        grid = tile_slide(r)
        tiles = np.stack([r.read_tile(int(x), int(y)) for x, y in grid.coords])
        return tiles, np.arange(len(tiles)), grid.coords.astype(np.int64), r.step0


def synthetic_tiles(n: int):
    """Tissue-shaped grid of n cells (level-0 px at 0.5 µm/px: step 224); pixels from 256 random tiles."""
    from span_deploy.bench.tissue_tokens import tissue_slide
    coords, _ = tissue_slide(n, feat_dim=1)
    pool = np.random.default_rng(0).integers(0, 256, (256, 224, 224, 3), dtype=np.uint8)
    return pool, np.arange(n) % len(pool), coords.astype(np.int64), 224


def encoder_rate(model, pool, batch: int, seconds: float = 3.0) -> float:
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        model.encoder(pool[np.arange(batch) % len(pool)])
        n += batch
    return n / (time.perf_counter() - t0)


def scan(model, pool, idx, coords, step, rate: float, batch: int) -> tuple[float, float, np.ndarray]:
    """Session: (scan seconds, last-tile-to-result seconds, logits)."""
    s = model.slide_session(tile_step=step, batch_size=batch)
    t0 = time.perf_counter()
    for k, (i, (x, y)) in enumerate(zip(idx, coords)):
        due = t0 + k / rate
        wait = due - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        s.add_tile(pool[i], x, y)
    t_last = time.perf_counter()
    pred = s.finish()
    return t_last - t0, time.perf_counter() - t_last, pred.logits


def after_scan(model, pool, idx, coords, step, batch: int) -> tuple[float, np.ndarray]:
    """Baseline: the scan is over; encode all tiles in batches, then SPAN."""
    t0 = time.perf_counter()
    feats = np.concatenate([model.encoder(pool[idx[a:a + batch]]) for a in range(0, len(idx), batch)])
    pred = model.predict(feats, coords // step * 224)
    return time.perf_counter() - t0, pred.logits


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiles", type=int, default=20000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--scan-rate", type=float, default=None, help="tiles/s [default: 0.8 x encoder rate]")
    ap.add_argument("--model", default=str(REPO / "samples" / "demo" / "span.onnx"))
    a = ap.parse_args()

    import span_deploy
    model = span_deploy.load(a.model, threads=a.threads)
    print(f"model {a.model} ({model.backend_name}), encoder {model.encoder.name}, {a.threads} threads, "
          f"batch {a.batch_size}")
    for name, (pool, idx, coords, step) in (("bundled slide", bundled_tiles()),
                                            (f"synthetic {a.tiles} tiles", synthetic_tiles(a.tiles))):
        enc = encoder_rate(model, pool, a.batch_size)
        rate = a.scan_rate or 0.8 * enc
        base, ref = after_scan(model, pool, idx, coords, step, a.batch_size)
        scan_s, latency, got = scan(model, pool, idx, coords, step, rate, a.batch_size)
        assert np.allclose(got, ref, atol=1e-5), "session result differs from the after-scan result"
        print(f"{name}: {len(idx)} tiles, encoder {enc:.0f} tiles/s, scan {scan_s:.1f} s at {rate:.0f} tiles/s; "
              f"last tile -> result: session {latency * 1e3:.0f} ms vs after-scan {base * 1e3:.0f} ms "
              f"(ratio {latency / base:.3f})")


if __name__ == "__main__":
    main()
