"""int8 vs fp32 on every golden fixture: how far `span-deploy export --int8` moves the outputs, and
what it buys in compute time (both measured in this run, ONNX Runtime CPU, same threads).

Per fixture: max |Δlogit| of int8 against the official golden logits (fp32 for reference), the
probability change and argmax agreement (classification), the per-patch score correlation and the
slide-embedding cosine against fp32, and the int8 / fp32 compute-time ratio (median of --repeats).
Static mode calibrates on synthetic tissue-shaped slides of the model's feature width (standard
normal features, like the fixtures'); with a real model, calibrate on real feature files.

Then the speed that matters: fp32 vs dynamic int8 of the default 1,024-d fixture (cls_default_r50) on
tissue-shaped synthetic slides of --speed-patches, forwards in interleaved pairs in one process
(the machine's speed drifts; the pair's ratio does not), the median of the pairs' ratios.

    python bench/int8_parity.py [--mode dynamic|static|both] [--threads 2] [--repeats 5] [--cases PATTERN]
        [--speed-patches 20000,100000 | none]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def calibration_folder(d: Path, feat_dim: int) -> Path:
    import h5py

    from span_deploy.bench.tissue_tokens import tissue_slide
    out = d / f"cal{feat_dim}"
    if not out.is_dir():
        out.mkdir()
        for i in range(8):
            c, f = tissue_slide(500 + 400 * i, seed=100 + i, feat_dim=feat_dim)
            with h5py.File(out / f"s{i}.h5", "w") as h:
                h["feats"], h["cords"] = f, c
    return out


def timed(be, coords, feats, repeats: int):
    res, times = None, []
    for _ in range(repeats):
        res = be.run(coords, feats)
        times.append(res.timings["compute"])
    return res, statistics.median(times)


def speed(d: Path, sizes: list[int], threads: int, repeats: int) -> None:
    """fp32 / dynamic int8 forward time of the default fixture, interleaved pairs."""
    from span_deploy.backends import open_backend
    from span_deploy.backends.torch import export_checkpoint
    from span_deploy.bench.tissue_tokens import tissue_slide
    from span_deploy.quantize import quantize_int8

    case = REPO.parent / "shared" / "fixtures" / "cls_default_r50"
    fp32 = export_checkpoint(case / "checkpoint.pt", case / "config.yaml", d / "speed.onnx")
    q = d / "speed.int8.onnx"
    quantize_int8(fp32, q, None)
    b32, b8 = open_backend(model=fp32, threads=threads), open_backend(model=q, threads=threads)
    print(f"\nforward, {case.name}, {threads} threads, {repeats} interleaved pairs (medians):")
    for n in sizes:
        coords, feats = tissue_slide(n, seed=0, feat_dim=b32.feat_dim)
        b32.run(coords, feats), b8.run(coords, feats)                  # warm-up: arena, caches
        t32, t8 = [], []
        for _ in range(repeats):
            t32.append(b32.run(coords, feats).timings["compute"])
            t8.append(b8.run(coords, feats).timings["compute"])
        ratios = [x / y for x, y in zip(t32, t8)]
        print(f"{n:7d} patches: fp32 {statistics.median(t32) * 1e3:7.0f} ms, int8 {statistics.median(t8) * 1e3:7.0f} ms, "
              f"int8 is {statistics.median(ratios):.2f}x faster (pairs {min(ratios):.2f}-{max(ratios):.2f})",
              flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=["dynamic", "static", "both"], default="both")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--cases", default="*")
    ap.add_argument("--speed-patches", default="20000,100000",
                    help="slide sizes for the fp32 vs int8 forward timing, comma-separated, or none")
    a = ap.parse_args()

    from span_deploy.backends import open_backend
    from span_deploy.backends.torch import export_checkpoint
    from span_deploy.features import read_features
    from span_deploy.outputs.prediction import softmax
    from span_deploy.quantize import quantize_int8
    from tests.cases import EXTRA_CASES, PUBLIC_CASES, SEG_CASES

    modes = ["dynamic", "static"] if a.mode == "both" else [a.mode]
    cases = [c for c in PUBLIC_CASES + EXTRA_CASES + SEG_CASES if Path(c.name).match(a.cases)]
    print(f"{'fixture':44s} {'mode':8s} {'|dlogit| fp32':>13s} {'|dlogit| int8':>13s} {'|dprob|':>8s} "
          f"{'argmax':>6s} {'patch r':>8s} {'emb cos':>8s} {'time int8/fp32':>14s}")
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        for case in cases:
            fp32 = export_checkpoint(case / "checkpoint.pt", case / "config.yaml", d / f"{case.name}.onnx")
            ref_be = open_backend(model=fp32, threads=a.threads)
            sf = read_features(case / "slide.h5", feat_dim=ref_be.feat_dim)
            ref, t_ref = timed(ref_be, sf.coords, sf.feats, a.repeats)
            golden = np.load(case / "expected.npz")
            seg = ref.task == "segmentation"
            key = "patch_logits" if seg else "logits"
            # the golden patch logits are in the official sorted row order, ours in the file's:
            # segmentation rows compare int8 with fp32 only
            want = golden[key].reshape(-1) if key in golden and not seg else None
            for mode in modes:
                q = d / f"{case.name}.{mode}.onnx"
                cal = calibration_folder(d, ref_be.feat_dim) if mode == "static" else None
                try:
                    quantize_int8(fp32, q, cal)
                except Exception as e:  # noqa: BLE001 - a report row, not a crash
                    print(f"{case.name:44s} {mode:8s} failed: {e}")
                    continue
                got, t_q = timed(open_backend(model=q, threads=a.threads), sf.coords, sf.feats, a.repeats)
                a32 = np.asarray(ref.patch_logits if seg else ref.logits, np.float64).reshape(-1)
                a8 = np.asarray(got.patch_logits if seg else got.logits, np.float64).reshape(-1)
                d32 = float(np.abs(a32 - want).max()) if want is not None else float("nan")
                d8 = float(np.abs(a8 - want).max()) if want is not None else float(np.abs(a8 - a32).max())
                if ref.task == "classification":
                    p32, p8 = softmax(ref.logits), softmax(got.logits)
                    dprob, agree = f"{np.abs(p32 - p8).max():8.4f}", "yes" if p32.argmax() == p8.argmax() else "NO"
                else:
                    dprob, agree = f"{'-':>8s}", "-"
                s32, s8 = np.asarray(ref.patch_scores, np.float64), np.asarray(got.patch_scores, np.float64)
                r = float(np.corrcoef(s32, s8)[0, 1]) if len(s32) > 1 and s32.std() > 0 and s8.std() > 0 else 1.0
                e32, e8 = np.asarray(ref.slide_embedding, np.float64), np.asarray(got.slide_embedding, np.float64)
                cos = float(e32 @ e8 / max(np.linalg.norm(e32) * np.linalg.norm(e8), 1e-30))
                print(f"{case.name:44s} {mode:8s} {d32:13.2e} {d8:13.2e} {dprob} {agree:>6s} {r:8.4f} {cos:8.4f} "
                      f"{t_q / t_ref:14.2f}", flush=True)
        if a.speed_patches != "none":
            speed(d, [int(x) for x in a.speed_patches.split(",")], a.threads, a.repeats)


if __name__ == "__main__":
    main()
