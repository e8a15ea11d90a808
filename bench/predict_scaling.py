"""How `span-deploy predict --model` scales with the slide (not a test): 20k -> 200k patches.

Each size is a tissue-shaped synthetic slide (span_deploy.bench.tissue_tokens, the default
1,024-d features) written as an official feats/cords h5. Every run is a fresh process (peak RSS is
a lifetime high-water mark, bench/_process.py); rounds interleave the sizes so all see the same
machine. Per size: the whole process's wall time and peak RSS, the forward (`timings.compute` of
predict's JSON) and its microseconds per patch, the per-patch ratio to the smallest size (the
target is within +-15 %) as a ratio of medians and as the median of each round's own ratio
("paired": the machine's drift between rounds cancels), and peak RSS against
2 x (input features + weights) + 300 MB.

    python bench/predict_scaling.py [--sizes 20000 50000 100000 200000] [--threads 2] [--rounds 2]
        [--model M.onnx | --case ../shared/fixtures/cls_default_r50] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _process import run_measured  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[20000, 50000, 100000, 200000])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--case", type=Path, default=SHARED / "fixtures" / "cls_default_r50")
    ap.add_argument("--model", type=Path, help="exported ONNX (exported from --case if absent)")
    ap.add_argument("--workdir", type=Path, help="keep the slides here (default: a temporary folder)")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()

    import h5py
    import onnx

    from span_deploy.bench.tissue_tokens import tissue_slide

    work = a.workdir or Path(tempfile.mkdtemp(prefix="span-scaling-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads)}
    model = a.model or work / "model.onnx"
    if not model.exists():
        subprocess.run([sys.executable, "-m", "span_deploy.cli", "export", "--checkpoint", str(a.case / "checkpoint.pt"),
                        "--config", str(a.case / "config.yaml"), "-o", str(model)], check=True, env=env)
    weights_mb = sum(t.ByteSize() for t in onnx.load(str(model), load_external_data=False).graph.initializer) / 2**20
    slides = {}
    for n in a.sizes:
        slides[n] = work / f"slide_{n}.h5"
        if not slides[n].exists():
            coords, feats = tissue_slide(n, seed=0, feat_dim=1024)
            with h5py.File(slides[n], "w") as h:
                h["feats"], h["cords"] = feats, coords
            del feats
    rows: dict[int, list[dict]] = {n: [] for n in a.sizes}
    for r in range(a.rounds + 1):       # round 0 warms the page cache, not counted
        for n in a.sizes:
            out = work / f"pred_{n}.json"
            wall, peak, _ = run_measured([sys.executable, "-m", "span_deploy.cli", "predict", "--model", str(model),
                                   str(slides[n]), "--threads", str(a.threads), "-o", str(out)], env)
            t = json.loads(out.read_text())["timings"]
            if r:
                rows[n].append({"wall_s": wall, "peak_mb": peak, "compute_s": t["compute"]})
                print(f"round {r}: {n:7d} patches  wall {wall:6.2f} s  compute {t['compute']:6.2f} s  "
                      f"peak {peak:7.0f} MB", flush=True)
    med = {n: {k: statistics.median(x[k] for x in rs) for k in rs[0]} for n, rs in rows.items()}
    base = med[a.sizes[0]]["compute_s"] / a.sizes[0]
    first = a.sizes[0]
    # per round: each size's time per patch over the first size's in the same round (the machine's
    # drift between rounds cancels), then the median over rounds
    paired = {n: statistics.median((rows[n][r]["compute_s"] / n) / (rows[first][r]["compute_s"] / first)
                                   for r in range(a.rounds)) for n in a.sizes}
    print(f"\n{a.threads} threads, {a.rounds} rounds (medians), weights {weights_mb:.0f} MB")
    print(f"{'patches':>8} {'wall s':>7} {'compute s':>9} {'us/patch':>9} {'vs first':>8} {'paired':>7} "
          f"{'peak MB':>8} {'target MB':>9} {'peak/target':>11}")
    summary = []
    for n in a.sizes:
        m = med[n]
        feats_mb = n * 1024 * 4 / 2**20
        target = 2 * (feats_mb + weights_mb) + 300
        per = m["compute_s"] / n
        summary.append({"patches": n, **m, "us_per_patch": per * 1e6, "per_patch_vs_first": per / base,
                        "per_patch_vs_first_paired": paired[n], "target_mb": target})
        print(f"{n:8d} {m['wall_s']:7.2f} {m['compute_s']:9.2f} {per * 1e6:9.1f} {per / base:8.2f} {paired[n]:7.2f} "
              f"{m['peak_mb']:8.0f} {target:9.0f} {m['peak_mb'] / target:11.2f}")
    if a.json:
        a.json.write_text(json.dumps({"threads": a.threads, "weights_mb": weights_mb, "rows": rows,
                                      "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
