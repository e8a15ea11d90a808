"""torch eager vs ORT portable vs ORT custom-op on one default-config slide (not a test).

Default: a 20k-patch synthetic tissue slide (seed 0, random N(0,1) features) through the default
R50 checkpoint. Per backend, in a fresh subprocess (peak = VmHWM of that process, so each
backend's peak is its own): open, warm up, time ``run(coords, feats)`` a few times (median
wall = harness clock around run(), rulebook included; median compute = the backend's 'compute').
Achieved FLOP/s uses span_deploy.flops.model_flops with exact attention pairs from the rulebook,
and is compared with a numpy float32 2048^3 sgemm measured in this run with the same threads.

    python bench/onnx_backends.py [--tokens 20000] [--threads 2] [--runs 3] [--warmup 1]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

FIX = Path(os.environ.get("SPAN_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "fixtures" / "cls_default_r50"
BACKENDS = ("torch", "ort-portable", "ort")
MB = 2 ** 20


def _rss() -> int:
    import psutil
    return psutil.Process().memory_info().rss


def _hwm() -> int:
    """This process's peak RSS: VmHWM belongs to the address space, so it starts afresh at exec
    (ru_maxrss does not: Linux keeps the parent's high-water mark across fork + execve)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child(name: str, ckpt: str, cfg: str, tokens: int, threads: int, runs: int, warmup: int) -> None:
    import numpy as np

    from span_deploy.backends import open_backend
    from span_deploy.bench.tissue_tokens import tissue_slide

    coords, feats = tissue_slide(tokens, seed=0, feat_dim=1024)
    rss_slide = _rss()
    t0 = time.perf_counter()
    b = open_backend(name, checkpoint=ckpt, config=cfg, threads=threads)
    load_s = time.perf_counter() - t0
    rss_loaded = _rss()
    for _ in range(warmup):
        r = b.run(coords, feats)
    wall, compute = [], []
    for _ in range(runs):
        t = time.perf_counter()
        r = b.run(coords, feats)
        wall.append(time.perf_counter() - t)
        compute.append(r.timings.get("compute", wall[-1]))
    peak = _hwm()
    print(json.dumps({"backend": name, "load_s": load_s, "wall_s": float(np.median(wall)),
                      "compute_s": float(np.median(compute)), "walls": wall,
                      "peak_rss": peak, "rss_after_slide": rss_slide, "rss_after_load": rss_loaded,
                      "torch_loaded": "torch" in sys.modules, "stage_sizes": r.stage_sizes,
                      "logits": np.asarray(r.logits, np.float64).ravel().tolist()}))


def activation_estimate(cfg, rb) -> tuple[dict[str, int], dict[str, int]]:
    """Stage-0 tensors of one layer (bytes, float32): the biggest live ones and a live-set sum.

    Stage 0 is the largest stage; M = N0 + G rows. Window blocks: one windowing at a time, all of
    its windows (the traced portable graph; torch eager chunks 2048 windows at a time).
    """
    n0, g = rb.stage_sizes[0], cfg.num_globals
    m, d, f, h = n0 + g, cfg.embed_dim, cfg.feat_dim, cfg.num_heads
    ff = int(d * cfg.ff_ratio)
    s2 = (2 * cfg.window_size) ** 2
    w = max(rb.stages[0].windows.unshifted.num_windows, rb.stages[0].windows.shifted.num_windows)
    t = {
        "feats (N0 x F, padded copy)": n0 * f * 4,
        "ffn hidden (M x ff)": m * ff * 4,
        "q/k/v one (M x D)": m * d * 4,
        "window q/k/v gathered (W x S^2 x D)": w * s2 * d * 4,
        "window scores (W x H x S^2 x S^2)": w * h * s2 * s2 * 4,
    }
    live = {
        "caller feats (N x F) + padded copy": (rb.num_patches + n0) * f * 4,
        "x, z, h, local (4 x M x D)": 4 * m * d * 4,
        "q1k1v1 + q2k2v2 (6 x M x D)": 6 * m * d * 4,
        "window blocks q/k/v + scores + exp (one windowing)": 3 * w * s2 * d * 4 + 2 * w * h * s2 * s2 * 4,
        "ffn hidden (M x ff)": m * ff * 4,
    }
    return t, live


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", type=int, default=20000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--checkpoint", default=str(FIX / "checkpoint.pt"))
    ap.add_argument("--config", default=str(FIX / "config.yaml"))
    ap.add_argument("--backends", nargs="+", default=list(BACKENDS))
    ap.add_argument("--child", metavar="BACKEND")
    a = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(a.threads)
    if a.child:
        return child(a.child, a.checkpoint, a.config, a.tokens, a.threads, a.runs, a.warmup)

    import numpy as np

    from span_deploy.backends.torch import export_cached
    from span_deploy.bench.gemm import measure_gemm
    from span_export.checkpoint import read_state_dict
    from span_deploy.config import load_config
    from span_deploy.flops import flops_breakdown
    from span_deploy.rulebook import build_rulebook
    from span_deploy.bench.tissue_tokens import tissue_slide

    cfg = load_config(a.config)
    for name in a.backends:          # export outside the timed children (they then need no torch)
        if name.startswith("ort"):
            export_cached(a.checkpoint, a.config, "plugin" if name == "ort" else "portable")
    coords, _ = tissue_slide(a.tokens, seed=0, feat_dim=1)
    rb = build_rulebook(coords, cfg)
    parts = flops_breakdown(cfg, rb.stage_sizes, rulebook=rb)
    flops = sum(parts.values())
    weights = sum(v.numel() * v.element_size() for v in read_state_dict(a.checkpoint).values())

    gemm = measure_gemm(device="cpu", threads=a.threads, size=2048)
    results = []
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    for name in a.backends:
        cmd = [sys.executable, __file__, "--child", name, "--tokens", str(a.tokens), "--threads",
               str(a.threads), "--runs", str(a.runs), "--warmup", str(a.warmup),
               "--checkpoint", a.checkpoint, "--config", a.config]
        p = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if p.returncode:
            print(f"{name}: failed\n{p.stderr[-2000:]}")
            continue
        results.append(json.loads(p.stdout.strip().splitlines()[-1]))
    gemm2 = measure_gemm(device="cpu", threads=a.threads, size=2048)   # drift check (shared machine)

    biggest, live = activation_estimate(cfg, rb)
    live_sum = sum(live.values())
    big_name, big = max(biggest.items(), key=lambda kv: kv[1])
    print(f"slide: {a.tokens:,} patches, stage sizes {rb.stage_sizes}, threads {a.threads}")
    print(f"model FLOPs (2 x MACs, exact attention pairs): {flops / 1e9:.1f} G  "
          + ", ".join(f"{k} {v / 1e9:.2f}" for k, v in parts.items() if v >= 1e7))
    print(f"sgemm 2048^3 fp32 ({gemm.library}, {gemm.threads} thr, applied={gemm.threads_applied}): "
          f"{gemm.flops_per_s / 1e9:.1f} GFLOP/s before, {gemm2.flops_per_s / 1e9:.1f} after")
    rate = (gemm.flops_per_s + gemm2.flops_per_s) / 2
    print()
    hdr = (f"| backend | wall s (median) | compute s | runs | GFLOP/s (compute) | of sgemm | load s "
           f"| RSS after load MB | peak RSS MB | peak - load MB | peak / (weights+live est) |")
    print(hdr)
    print("|" + "|".join("---" for _ in range(hdr.count("|") - 1)) + "|")
    ref = None
    for r in results:
        gf = flops / r["compute_s"]
        print(f"| {r['backend']} | {r['wall_s']:.2f} | {r['compute_s']:.2f} | "
              f"{' '.join(f'{x:.2f}' for x in r['walls'])} | {gf / 1e9:.1f} | {gf / rate:.1%} | "
              f"{r['load_s']:.1f} | {r['rss_after_load'] / MB:.0f} | {r['peak_rss'] / MB:.0f} | "
              f"{(r['peak_rss'] - r['rss_after_load']) / MB:.0f} | {r['peak_rss'] / (weights + live_sum):.2f} |")
        ref = ref or r["logits"]
    print()
    print(f"weights: {weights / MB:.1f} MB; largest single activation: {big_name} {big / MB:.0f} MB")
    print("stage-0 tensors: " + ", ".join(f"{k} {v / MB:.0f} MB" for k, v in biggest.items()))
    print(f"live-set estimate (one stage-0 layer): {live_sum / MB:.0f} MB = "
          + " + ".join(f"{k} {v / MB:.0f}" for k, v in live.items()))
    for r in results:
        diff = float(np.max(np.abs(np.asarray(r["logits"]) - np.asarray(ref))))
        print(f"{r['backend']}: peak RSS / largest tensor {r['peak_rss'] / big:.1f}x, "
              f"peak / (weights + live) {r['peak_rss'] / (weights + live_sum):.2f}x, torch loaded in child: "
              f"{r['torch_loaded']}, max |logits - {results[0]['backend']}| {diff:.2e}")


if __name__ == "__main__":
    main()
