"""ONNX Runtime session options for the SPAN graph, by measurement (not a test).

Each setting runs in a fresh process (peak RSS is a lifetime high-water mark): one session, then a
sequence of slides of different sizes as a `run` over a folder sees them (default 20k, 12k, 20k
patches of tissue-shaped synthetic features), timing every forward. Settings: memory arena on/off
x memory pattern on/off. Rounds interleave the settings so that all see the same machine.

    python bench/ort_session_options.py MODEL.onnx [--sizes 20000 12000 20000] [--threads 2] [--rounds 2]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _process import own_peak_mb  # noqa: E402

SETTINGS = {"default (arena, pattern)": (True, True), "no pattern": (True, False),
            "no arena": (False, True), "neither": (False, False)}


def child(model: str, arena: bool, pattern: bool, sizes: list[int], threads: int) -> None:
    import onnxruntime as ort

    from span_deploy.bench.tissue_tokens import tissue_slide
    from span_deploy.metadata import config_from_metadata, read_metadata
    from span_deploy.native import ort_ops_library
    from span_deploy.rulebook import build_rulebook

    meta = read_metadata(model)
    cfg = config_from_metadata(meta, model)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.enable_cpu_mem_arena, so.enable_mem_pattern = arena, pattern
    if meta["attention"] == "plugin":
        so.register_custom_ops_library(str(ort_ops_library()))
    s = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    names = [i.name for i in s.get_inputs()]
    times = []
    for i, n in enumerate(sizes):
        coords, feats = tissue_slide(n, seed=i, feat_dim=cfg.feat_dim)
        feed = build_rulebook(coords, cfg).engine_inputs(cfg, feats)
        t = time.perf_counter()
        s.run(None, {k: feed[k] for k in names})
        times.append(time.perf_counter() - t)
    print(json.dumps({"times": times, "peak_mb": own_peak_mb()}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--sizes", type=int, nargs="+", default=[20000, 12000, 20000])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return child(a.model, a.child[0] == "1", a.child[1] == "1", a.sizes, a.threads)
    res: dict[str, list[dict]] = {k: [] for k in SETTINGS}
    for _ in range(a.rounds):
        for name, (arena, pattern) in SETTINGS.items():
            out = subprocess.run([sys.executable, __file__, a.model, "--sizes", *map(str, a.sizes), "--threads",
                                  str(a.threads), "--child", str(int(arena)), str(int(pattern))],
                                 capture_output=True, text=True, check=True).stdout
            res[name].append(json.loads(out.strip().splitlines()[-1]))
    base = min(sum(r["times"]) for r in res["default (arena, pattern)"])
    print(f"slides {a.sizes} patches, {a.threads} threads, best of {a.rounds} rounds")
    for name, rs in res.items():
        best = min(rs, key=lambda r: sum(r["times"]))
        print(f"{name:26s} forwards {', '.join(f'{t:.2f}' for t in best['times'])} s  total {sum(best['times']):.2f} s "
              f"({sum(best['times']) / base:.2f}x default)  peak RSS {min(r['peak_mb'] for r in rs):.0f} MB")


if __name__ == "__main__":
    main()
