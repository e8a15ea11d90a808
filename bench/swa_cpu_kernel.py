"""SparseWindowAttention CPU kernel: the window kernel vs the reference kernel (not a test).

The op alone, as the default model (../shared/fixtures/cls_default_r50/config.yaml: trans_type
``long`` = mode 1, 8 heads x 64, window_size 3 -> S = 6) calls it: per stage s of a synthetic
tissue slide (span_deploy.bench.tissue_tokens.tissue_slide, seed 0) of each size, the real
rulebook tables (A = ``s{s}_win_u / s{s}_pos_u``, B = ``s{s}_win_s / s{s}_pos_s``), random
N(0, 1) q / k / v and a random bias table, through a one-node ONNX model in ONNX Runtime's CPU EP
with the custom-op library (span_deploy.native.ort_ops_library(): $SPAN_DEPLOY_OPS_LIB or
build/lib), inputs and output 64-byte aligned like ORT's own intermediate tensors, the output bound
to a preallocated buffer, intra-op spinning off (an idle worker must not spin on the cores while
the other one runs).

The kernel is chosen once per process by SPAN_SWA_CPU_KERNEL, so each kernel runs in its own
worker process (``reference`` and the default ``auto``, or --new KERNEL); the parent interleaves
them run by run (ref, new, new, ref, ...) so that both see the same machine, and measures a numpy
float32 2048^3 sgemm with the same thread count between the rounds (span_deploy.bench.gemm).

FLOPs: 2 * heads * head_dim * 2 per (query, key) pair (q.k and p.v), over the exact candidate
pairs of the tables (A keys without the self slot of rows 0 and N-1, plus the B keys outside the
query's A-window). The row "model" sums the three stages (the three calls of one forward pass).

    python bench/swa_cpu_kernel.py [--rows 20000 100000] [--threads 2] [--repeats 5] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FIX = Path(os.environ.get("SPAN_SHARED", REPO.parent / "shared")) / "fixtures" / "cls_default_r50"
DOMAIN = "span_deploy"


# --------------------------------------------------------------------------- tables and FLOPs

def stage_tables(rows: int, config: Path) -> tuple[dict, list[dict]]:
    """Model sizes and, per stage, the op's int32 tables from the real rulebook."""
    from span_deploy.bench.tissue_tokens import tissue_slide
    from span_deploy.config import load_config
    from span_deploy.rulebook import build_rulebook
    from span_deploy.rulebook.io import window_side

    cfg = load_config(config)
    coords, _ = tissue_slide(rows, seed=0, feat_dim=1)
    inputs = build_rulebook(coords, cfg).engine_inputs(cfg)
    S = window_side(cfg)
    mode = {"long": 1, "long_noshift": 0}.get(cfg.trans_type)
    if mode is None:
        raise SystemExit(f"trans_type {cfg.trans_type!r}: this bench covers long / long_noshift")
    stages = []
    for s in range(cfg.num_stages):
        win_a, pos_a = inputs[f"s{s}_win_u"], inputs[f"s{s}_pos_u"]
        # inactive shift: the shifted tables are the unshifted ones (io.engine_inputs omits them)
        win_b, pos_b = inputs.get(f"s{s}_win_s", win_a), inputs.get(f"s{s}_pos_s", pos_a)
        heads = cfg.stage_heads(s)
        dim = cfg.stage_dim(s)
        stages.append(dict(stage=s, win_a=win_a, pos_a=pos_a, win_b=win_b, pos_b=pos_b, heads=heads,
                           head_dim=dim // heads))
    return dict(S=S, mode=mode), stages


def candidate_pairs(win_a, pos_a, win_b, pos_b, S: int, mode: int) -> int:
    """Exact (query, key) candidate pairs of the op contract (README, Semantics)."""
    S2, n = S * S, len(pos_a)
    wa = pos_a.astype(np.int64) // S2
    keys_a = win_a[wa]                                      # (N, S2) A-window of each query
    valid_a = keys_a >= 0
    self_bad = np.zeros(n, bool)
    self_bad[[0, n - 1]] = True
    count = valid_a.sum(1) - (valid_a & (keys_a == np.arange(n)[:, None]) & self_bad[:, None]).sum(1)
    if mode == 1:
        keys_b = win_b[pos_b.astype(np.int64) // S2]
        valid_b = keys_b >= 0
        their_a = np.where(valid_b, pos_a[np.where(valid_b, keys_b, 0)].astype(np.int64) // S2, -1)
        count += (valid_b & (their_a != wa[:, None])).sum(1)
    return int(count.sum())


# --------------------------------------------------------------------------- worker (one kernel)

def make_model(H: int, Dh: int, S: int, mode: int):
    from onnx import TensorProto, helper
    C = H * Dh
    f, i = TensorProto.FLOAT, TensorProto.INT32
    shapes = dict(q=(f, ["N", C]), k=(f, ["N", C]), v=(f, ["N", C]), win_a=(i, ["Wa", S * S]), pos_a=(i, ["N"]),
                  win_b=(i, ["Wb", S * S]), pos_b=(i, ["N"]), bias=(f, [H, 2 * S - 1, 2 * S - 1]))
    inputs = [helper.make_tensor_value_info(name, t, shape) for name, (t, shape) in shapes.items()]
    node = helper.make_node("SparseWindowAttention", [x.name for x in inputs], ["out"], domain=DOMAIN,
                            num_heads=H, head_dim=Dh, window=S, scale=float(Dh) ** -0.5, mode=mode)
    graph = helper.make_graph([node], "swa", inputs, [helper.make_tensor_value_info("out", f, ["N", C])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(DOMAIN, 1)])
    model.ir_version = 9
    return model.SerializeToString()


def aligned(a: np.ndarray, align: int = 64) -> np.ndarray:
    """A copy of `a` whose data starts at a multiple of `align` bytes, as ONNX Runtime's CPU
    allocator places the model's intermediate tensors (numpy's own large arrays are often only
    16-byte aligned)."""
    buf = np.empty(a.nbytes + align, np.uint8)
    off = (-buf.ctypes.data) % align
    out = buf[off:off + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


def worker(npz: str, threads: int) -> None:
    """Holds one session per stage; on stdin `run s` times one run (prints ms), `dump s path`
    saves the output, `quit` ends."""
    import onnxruntime as ort

    from span_deploy import native

    data = np.load(npz)
    S, mode, nstages = int(data["S"]), int(data["mode"]), int(data["stages"])
    lib = str(native.ort_ops_library())
    runs = []
    for s in range(nstages):
        H, Dh = int(data[f"heads{s}"]), int(data[f"head_dim{s}"])
        n, C = len(data[f"pos_a{s}"]), H * Dh
        rng = np.random.default_rng([s, n])
        feeds = {x: aligned(rng.standard_normal((n, C), dtype=np.float32)) for x in ("q", "k", "v")}
        feeds["bias"] = (0.5 * rng.standard_normal((H, 2 * S - 1, 2 * S - 1))).astype(np.float32)
        for x in ("win_a", "pos_a", "win_b", "pos_b"):
            feeds[x] = np.ascontiguousarray(data[f"{x}{s}"], dtype=np.int32)
        so = ort.SessionOptions()
        so.register_custom_ops_library(lib)
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        # No spin-waiting after a run: the idle worker's pool would otherwise spin on the cores
        # while the other worker runs.
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        sess = ort.InferenceSession(make_model(H, Dh, S, mode), so, providers=["CPUExecutionProvider"])
        out = aligned(np.empty((n, C), np.float32))
        io = sess.io_binding()
        for name, arr in feeds.items():
            io.bind_cpu_input(name, arr)
        io.bind_output("out", "cpu", 0, np.float32, list(out.shape), out.ctypes.data)
        sess.run_with_iobinding(io)  # warm-up (pages, pool)
        runs.append((sess, io, out))
    print("ready", os.environ.get("SPAN_SWA_CPU_KERNEL", "auto"), flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == "quit":
            break
        sess, io, out = runs[int(cmd[1])]
        if cmd[0] == "run":
            t0 = time.perf_counter()
            sess.run_with_iobinding(io)
            print(f"{(time.perf_counter() - t0) * 1e3:.4f}", flush=True)
        elif cmd[0] == "dump":
            np.save(cmd[2], out)
            print("ok", flush=True)


class Worker:
    def __init__(self, kernel: str, npz: str, threads: int):
        env = dict(os.environ, SPAN_SWA_CPU_KERNEL=kernel)
        self.kernel = kernel
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker", npz, "--threads", str(threads)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        line = self.proc.stdout.readline()
        if not line.startswith("ready"):
            raise SystemExit(f"worker {kernel} failed to start: {line!r}")

    def ask(self, *cmd) -> str:
        self.proc.stdin.write(" ".join(map(str, cmd)) + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def close(self):
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
        except (BrokenPipeError, ValueError):
            pass
        self.proc.wait(timeout=60)


# --------------------------------------------------------------------------- parent

def sgemm(threads: int) -> float:
    from span_deploy.bench.gemm import measure_gemm
    return measure_gemm("cpu", threads=threads, size=2048, min_time=1.0).flops_per_s


def bench_size(rows: int, args, tmp: Path) -> dict:
    meta, stages = stage_tables(rows, args.config)
    npz = tmp / f"tables_{rows}.npz"
    arrays = {"S": meta["S"], "mode": meta["mode"], "stages": len(stages)}
    for st in stages:
        s = st["stage"]
        for x in ("win_a", "pos_a", "win_b", "pos_b"):
            arrays[f"{x}{s}"] = st[x]
        arrays[f"heads{s}"], arrays[f"head_dim{s}"] = st["heads"], st["head_dim"]
    np.savez(npz, **arrays)
    ref, new = Worker("reference", str(npz), args.threads), Worker(args.new, str(npz), args.threads)
    try:
        times = {(w, st["stage"]): [] for w in ("ref", "new") for st in stages}
        gemm = [sgemm(args.threads)]
        for rep in range(args.repeats):
            order = [("ref", ref), ("new", new)] if rep % 2 == 0 else [("new", new), ("ref", ref)]
            for st in stages:
                for name, w in order:
                    times[(name, st["stage"])].append(float(w.ask("run", st["stage"])))
            if rep == args.repeats // 2:
                gemm.append(sgemm(args.threads))
        gemm.append(sgemm(args.threads))
        out = []
        for st in stages:
            s = st["stage"]
            a, b = tmp / f"ref{rows}_{s}.npy", tmp / f"new{rows}_{s}.npy"
            ref.ask("dump", s, a)
            new.ask("dump", s, b)
            ya, yb = np.load(a), np.load(b)
            pairs = candidate_pairs(st["win_a"], st["pos_a"], st["win_b"], st["pos_b"], meta["S"], meta["mode"])
            flop = 4.0 * st["heads"] * st["head_dim"] * pairs
            t_ref, t_new = statistics.median(times[("ref", s)]), statistics.median(times[("new", s)])
            out.append(dict(stage=s, rows=len(st["pos_a"]), pairs=pairs, flop=flop, ref_ms=t_ref, new_ms=t_new,
                            ref_all_ms=times[("ref", s)], new_all_ms=times[("new", s)],
                            max_abs_diff=float(np.abs(ya - yb).max()), max_abs_ref=float(np.abs(ya).max()),
                            max_rel_diff=float(np.abs(ya - yb).max() / max(float(np.abs(ya).max()), 1e-30))))
            a.unlink()
            b.unlink()
    finally:
        ref.close()
        new.close()
    # per-rep model totals (the three calls of one forward), then their median
    model_ref = statistics.median(sum(r["ref_all_ms"][i] for r in out) for i in range(args.repeats))
    model_new = statistics.median(sum(r["new_all_ms"][i] for r in out) for i in range(args.repeats))
    return dict(rows=rows, stages=out, sgemm_flops=statistics.median(gemm), sgemm_all=gemm,
                model=dict(ref_ms=model_ref, new_ms=model_new, flop=sum(r["flop"] for r in out),
                           pairs=sum(r["pairs"] for r in out), rows=sum(r["rows"] for r in out)))


def print_table(results: list[dict], threads: int, new: str) -> None:
    print(f"\nSparseWindowAttention CPU kernel, ORT CPU EP, {threads} threads, new = {new}, "
          "median of the interleaved runs")
    hdr = (f"{'slide':>7} {'call':>6} {'rows':>7} {'pairs':>9} {'ref ms':>9} {'new ms':>8} {'new/ref':>8} "
           f"{'speedup':>8} {'ref GF/s':>9} {'new GF/s':>9} {'sgemm GF/s':>10} {'% sgemm':>8} {'max rel':>9}")
    print(hdr)
    print("-" * len(hdr))
    for r in results:
        g = r["sgemm_flops"] / 1e9
        rows = [(f"stage{s['stage']}", s) for s in r["stages"]] + [("model", r["model"])]
        for label, s in rows:
            rel = max(x["max_rel_diff"] for x in r["stages"]) if label == "model" else s["max_rel_diff"]
            gf_new, gf_ref = s["flop"] / s["new_ms"] / 1e6, s["flop"] / s["ref_ms"] / 1e6
            print(f"{r['rows']:>7} {label:>6} {s['rows']:>7} {s['pairs']:>9} {s['ref_ms']:>9.2f} {s['new_ms']:>8.2f} "
                  f"{s['new_ms'] / s['ref_ms']:>8.3f} {s['ref_ms'] / s['new_ms']:>7.2f}x {gf_ref:>9.1f} {gf_new:>9.1f} "
                  f"{g:>10.1f} {100 * gf_new / g:>7.1f}% {rel:>9.1e}")
    print("max rel = max |new - ref| / max |ref| over the output (float32 rounding: exp, summation order)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[20000, 100000], help="patches of the synthetic slide")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per kernel, stage and size")
    ap.add_argument("--new", default="auto", help="SPAN_SWA_CPU_KERNEL of the new side (auto, avx512, avx2, generic)")
    ap.add_argument("--config", type=Path, default=FIX / "config.yaml")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.threads)
        return
    results = []
    with tempfile.TemporaryDirectory(prefix="swa_bench_") as tmp:
        for rows in args.rows:
            results.append(bench_size(rows, args, Path(tmp)))
    print_table(results, args.threads, args.new)
    if args.json:
        args.json.write_text(json.dumps(dict(threads=args.threads, new=args.new, results=results), indent=1))


if __name__ == "__main__":
    main()
