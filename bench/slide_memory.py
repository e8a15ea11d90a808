"""Peak RSS of the slide pipeline: a generated slide with ~1k vs ~20k tissue tiles.

Each run is a fresh subprocess (peak RSS is a lifetime high-water mark; bench/_process.py), with a small ONNX
encoder and a stand-in SPAN step, through run_slides (all outputs written). Memory should be
flat: the prefetcher bounds the tiles in flight; what grows with N is only the (N, F) features
and coords (20k x 64 x 4 B = 5 MB here) and the outputs' small per-tile records.

    python bench/slide_memory.py [--workdir /tmp/span_bench] [--sizes 1000 20000]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def child(slide: str, encoder: str, out: str, batch: int, workers: int) -> None:
    import psutil
    rss0 = psutil.Process().memory_info().rss
    from _common import MeanBackend

    from span_deploy.encoders.runner import OnnxEncoder
    from span_deploy.pipeline import run_slides
    enc = OnnxEncoder(encoder)
    base = psutil.Process().memory_info().rss
    t = time.perf_counter()
    rec = run_slides([slide], enc, MeanBackend(enc.feature_dim), out, batch, workers)[0]
    from _process import own_peak_mb
    peak = own_peak_mb() * 2**20
    print(json.dumps({"n_tiles": rec["n_tiles"], "peak_rss_mb": peak / 2**20,
                      "after_imports_mb": base / 2**20, "start_mb": rss0 / 2**20,
                      "seconds": time.perf_counter() - t, "tiles_per_s": rec["timings"]["tiles_per_s"],
                      "torch_loaded": "torch" in sys.modules}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", default="/tmp/span_bench")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 20000])
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--child", nargs=3, metavar=("SLIDE", "ENCODER", "OUT"))
    a = ap.parse_args()
    if a.child:
        return child(*a.child, a.batch_size, a.workers)
    from _common import export_small_cnn, square_slide
    wd = Path(a.workdir)
    wd.mkdir(parents=True, exist_ok=True)
    enc = wd / "small_cnn.onnx"
    if not enc.exists():
        export_small_cnn(enc)
    res = {}
    for n in a.sizes:
        t = time.perf_counter()
        slide, _ = square_slide(wd / f"slide_{n}.tif", n)
        print(f"slide {slide.name}: {slide.stat().st_size / 2**20:.1f} MB ({time.perf_counter() - t:.0f} s)",
              flush=True)
        out = subprocess.run([sys.executable, __file__, "--child", str(slide), str(enc), str(wd / f"out_{n}"),
                              "--batch-size", str(a.batch_size), "--workers", str(a.workers)],
                             capture_output=True, text=True, check=True)
        res[n] = json.loads(out.stdout.strip().splitlines()[-1])
        print(n, res[n], flush=True)
    lo, hi = res[min(res)], res[max(res)]
    print(f"peak RSS: {lo['n_tiles']} tiles {lo['peak_rss_mb']:.0f} MB, {hi['n_tiles']} tiles "
          f"{hi['peak_rss_mb']:.0f} MB; ratio {hi['peak_rss_mb'] / lo['peak_rss_mb']:.2f} "
          f"(tile ratio {hi['n_tiles'] / lo['n_tiles']:.1f}); above post-import baseline: "
          f"{lo['peak_rss_mb'] - lo['after_imports_mb']:.0f} MB vs {hi['peak_rss_mb'] - hi['after_imports_mb']:.0f} MB")


if __name__ == "__main__":
    main()
