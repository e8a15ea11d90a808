"""Soak (not a test): N small generated slides through ONE `span-deploy run` process; samples the
process's RSS and open files while it runs and prints their slope per 100 slides (flat = no leak).

    python bench/soak.py [--slides 500] [--model samples/demo/span.onnx]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.support.tiff_slides import write_synthetic_slide  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--slides", type=int, default=500)
    ap.add_argument("--model", type=Path, default=ROOT / "samples" / "demo" / "span.onnx")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        src = d / "slides"
        src.mkdir()
        t0 = time.perf_counter()
        for k in range(a.slides):   # 6x6 cells of 224 px at 0.5 um/px, 4-12 tissue tiles each
            write_synthetic_slide(src / f"s{k:04d}.tif", 6 * 224, 6 * 224,
                                  (224, 224, (2 + k % 3) * 224 + 224, 4 * 224), 0.5, (1, 4))
        print(f"{a.slides} slides generated in {time.perf_counter() - t0:.1f} s")
        out = d / "out"
        exe = Path(sys.executable).with_name("span-deploy")
        p = subprocess.Popen([str(exe), "run", str(src), "--model", str(a.model), "--output", str(out),
                              "--no-progress", "--workers", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        proc = psutil.Process(p.pid)
        samples = []   # (slides done, rss MiB, open files)
        while p.poll() is None:
            try:
                done = len(list(out.glob("*/result.json"))) if out.exists() else 0
                samples.append((done, proc.memory_info().rss / 2**20, proc.num_fds()))
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                break
            time.sleep(0.5)
        err = p.stderr.read().decode()
        if p.returncode != 0:
            sys.exit(f"run failed: {err[-500:]}")
        s = np.array([x for x in samples if x[0] >= 20], float)   # after warm-up (sessions, caches)
        if len(s) < 3:
            sys.exit("too few samples; use more --slides")
        rss_slope = np.polyfit(s[:, 0], s[:, 1], 1)[0] * 100
        fd_slope = np.polyfit(s[:, 0], s[:, 2], 1)[0] * 100
        print(f"{a.slides} slides in one process: RSS {s[0, 1]:.0f} -> {s[-1, 1]:.0f} MiB (slope "
              f"{rss_slope:+.2f} MiB / 100 slides), open files {int(s[0, 2])} -> {int(s[-1, 2])} "
              f"(slope {fd_slope:+.2f} / 100 slides), peak RSS {s[:, 1].max():.0f} MiB")


if __name__ == "__main__":
    main()
