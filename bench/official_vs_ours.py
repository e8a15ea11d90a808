"""The official SPAN model beside ours, whole processes, interleaved (not a test).

Each round runs, in turn, the official code (wwyi1828/SPAN with real DGL, through
../shared/tools/official/run.py and its venv) and `span-deploy predict --model M.onnx` on the same
synthetic tissue-shaped slide, each as a fresh process: wall time from start to exit (imports, model
load, index building, one forward, writing the logits) and the process's own peak RSS
(bench/_process.py: a plain child's rusage also counts this script's memory). The ratios
are taken round by round (the machine's speed drifts) and their median printed, with the logits'
max |difference|.

    python bench/official_vs_ours.py [--patches 20000] [--threads 2] [--rounds 3]
        [--case ../shared/fixtures/cls_default_r50] [--model M.onnx] [--json out.json]

Set up the official side first: `fetch` github wwyi1828/SPAN, then ../shared/tools/official/setup.sh
(venv /tmp/span-official-venv, source /tmp/span-official-src; override with --official-python /
SPAN_OFFICIAL_SRC).
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

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _process import run_measured  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patches", type=int, default=20000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--case", type=Path, default=SHARED / "fixtures" / "cls_default_r50",
                    help="a folder with config.yaml + checkpoint.pt (official format)")
    ap.add_argument("--model", type=Path, help="our exported ONNX of that checkpoint (exported here if absent)")
    ap.add_argument("--official-python", default="/tmp/span-official-venv/bin/python")
    ap.add_argument("--official-run", type=Path, default=SHARED / "tools" / "official" / "run.py")
    ap.add_argument("--json", type=Path, help="write the rows and medians here")
    a = ap.parse_args()
    if not Path(a.official_python).exists() or not a.official_run.is_file():
        sys.exit(f"official_vs_ours: official venv {a.official_python} or {a.official_run} missing; "
                 "run ../shared/tools/official/setup.sh first")

    import h5py

    from span_deploy.bench.tissue_tokens import tissue_slide

    work = Path(tempfile.mkdtemp(prefix="span-vs-official-"))
    slide = work / "slide.h5"
    coords, feats = tissue_slide(a.patches, seed=0, feat_dim=1024)
    with h5py.File(slide, "w") as h:   # the official loader's names; predict reads them too
        h["feats"], h["cords"] = feats, coords
    del feats
    model = a.model or work / "model.onnx"
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads)}
    if not model.exists():
        subprocess.run([sys.executable, "-m", "span_deploy.cli", "export", "--checkpoint", str(a.case / "checkpoint.pt"),
                        "--config", str(a.case / "config.yaml"), "-o", str(model)], check=True, env=env)
    official = [a.official_python, str(a.official_run), "--config", str(a.case / "config.yaml"),
                "--checkpoint", str(a.case / "checkpoint.pt"), "--h5", str(slide), "--threads", str(a.threads),
                "--json", str(work / "official.json")]
    ours = [sys.executable, "-m", "span_deploy.cli", "predict", "--model", str(model), str(slide),
            "--threads", str(a.threads), "-o", str(work / "ours.json")]
    rows = []
    for r in range(a.rounds + 1):   # round 0 warms the page cache for both, not counted
        t_o, m_o, _ = run_measured(official, env)
        t_s, m_s, _ = run_measured(ours, env)
        if r == 0:
            continue
        rows.append({"round": r, "official_s": t_o, "official_mb": m_o, "ours_s": t_s, "ours_mb": m_s,
                     "time_ratio": t_s / t_o, "memory_ratio": m_s / m_o})
        print(f"round {r}: official {t_o:6.2f} s {m_o:7.0f} MB | ours {t_s:6.2f} s {m_s:7.0f} MB | "
              f"ratio time {t_s / t_o:.3f} memory {m_s / m_o:.3f}", flush=True)
    lo = np.asarray(json.loads((work / "official.json").read_text())["logits"], np.float64).ravel()
    ls = np.asarray(json.loads((work / "ours.json").read_text())["logits"], np.float64).ravel()
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0] if k != "round"}
    diff = float(np.abs(lo - ls).max())
    print(f"{a.patches} patches, {a.threads} threads, {a.rounds} rounds (medians): official {med['official_s']:.2f} s "
          f"{med['official_mb']:.0f} MB, ours {med['ours_s']:.2f} s {med['ours_mb']:.0f} MB; "
          f"time ratio {med['time_ratio']:.3f}, memory ratio {med['memory_ratio']:.3f}; logits max|diff| {diff:.2e}")
    if a.json:
        a.json.write_text(json.dumps({"patches": a.patches, "threads": a.threads, "rows": rows, "median": med,
                                      "logits_max_abs_diff": diff}, indent=1))


if __name__ == "__main__":
    main()
