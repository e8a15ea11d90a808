"""The window CPU kernel of SparseWindowAttention against the reference CPU kernel (hypothesis).

plugins/sparse_window_attention/kernels/swa_cpu.cpp holds two kernels of one contract: the window
kernel behind swa_forward_cpu / swa_forward_cpu_rows (ISA variants avx512, avx2, neon, generic)
and the reference kernel (one query at a time, scalar loops). SPAN_SWA_CPU_KERNEL picks one per
process, so every kernel runs in a worker subprocess of its own (an ONNX Runtime session with the
custom-op library, $SPAN_DEPLOY_OPS_LIB or build/lib), and each case goes to all of them:

* random valid tables (every entry in range, as the op checks) of random sizes: N = 1, 2 and up to
  200 rows (several of the op's 32-row tasks, so windows are split between row ranges), S = 1..7,
  1..3 heads, head_dim 1..70 (odd ones too), mode 0 and 1, sparse windows (empty queries), full
  ones, windows listing rows whose pos points elsewhere and rows listed twice, -inf bias entries
  (some queries with every key masked), scale 0 / negative / Dh^-1/2, float32 and float16;
* the window kernel (default selection and every variant this CPU has) with 1, 2 and 3 intra-op
  threads must give bit-identical outputs for every thread count, exact +0 where the contract
  says zeros (no candidate key, or every score -inf), and the reference kernel's output to
  float32 rounding: |new - ref| <= 8 eps (2 + 2 max |score| + 2 S^2) max |v| (a score's rounding
  moves its weight by eps |score|, each of up to 2 S^2 terms adds eps max |v|); float16: that plus
  2 ulp of the output (both round a float32 value).
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[2]
DOMAIN = "span_deploy"
THREADS = (1, 2, 3)
EPS32 = float(np.finfo(np.float32).eps)


def isa_variants() -> list[str]:
    """The window-kernel variants this machine runs (as __builtin_cpu_supports would say)."""
    machine = platform.machine().lower()
    out = ["generic"]
    if machine in ("x86_64", "amd64"):
        flags: set[str] = set()
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as fh:
                for line in fh:
                    if line.startswith("flags"):
                        flags = set(line.split(":", 1)[1].split())
                        break
        except OSError:
            pass
        if {"avx2", "fma"} <= flags:
            out.append("avx2")
            if "avx512f" in flags:
                out.append("avx512")
    elif machine in ("aarch64", "arm64"):
        out.append("neon")
    return out


# --------------------------------------------------------------------------- worker process

def make_model(H: int, Dh: int, S: int, scale: float, mode: int, half: bool) -> bytes:
    from onnx import TensorProto, helper
    elem, C = (TensorProto.FLOAT16 if half else TensorProto.FLOAT), H * Dh
    i32 = TensorProto.INT32
    shapes = dict(q=(elem, ["N", C]), k=(elem, ["N", C]), v=(elem, ["N", C]), win_a=(i32, ["Wa", S * S]),
                  pos_a=(i32, ["N"]), win_b=(i32, ["Wb", S * S]), pos_b=(i32, ["N"]),
                  bias=(TensorProto.FLOAT, [H, 2 * S - 1, 2 * S - 1]))
    inputs = [helper.make_tensor_value_info(name, t, shape) for name, (t, shape) in shapes.items()]
    node = helper.make_node("SparseWindowAttention", [x.name for x in inputs], ["out"], domain=DOMAIN,
                            num_heads=H, head_dim=Dh, window=S, scale=float(scale), mode=mode)
    graph = helper.make_graph([node], "swa", inputs, [helper.make_tensor_value_info("out", elem, ["N", C])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(DOMAIN, 1)])
    model.ir_version = 9
    return model.SerializeToString()


def worker_main() -> None:
    """Reads case files (one path per line), writes `<path>.<kernel>.npz` with the output of
    every thread count, answers `ok` (or `error <message>`)."""
    import onnxruntime as ort

    from span_deploy import native

    lib = str(native.ort_ops_library())
    kernel = os.environ.get("SPAN_SWA_CPU_KERNEL", "auto") or "auto"
    for line in sys.stdin:
        path = line.strip()
        if not path:
            break
        try:
            case = dict(np.load(path))
            meta = json.loads(str(case.pop("meta")))
            model = make_model(meta["H"], meta["Dh"], meta["S"], meta["scale"], meta["mode"], meta["half"])
            outs = {}
            for threads in meta["threads"]:
                so = ort.SessionOptions()
                so.register_custom_ops_library(lib)
                so.intra_op_num_threads = threads
                so.add_session_config_entry("session.intra_op.allow_spinning", "0")
                sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
                outs[f"t{threads}"] = sess.run(None, case)[0]
            # in place: the output bound to q's own buffer (the contract allows out == q on the CPU)
            q = case["q"].copy()
            io = sess.io_binding()
            for name, value in case.items():
                io.bind_cpu_input(name, q if name == "q" else value)
            io.bind_output("out", "cpu", 0, q.dtype, list(q.shape), q.ctypes.data)
            sess.run_with_iobinding(io)
            outs["inplace"] = q
            np.savez(f"{path}.{kernel}.npz", **outs)
            print("ok", flush=True)
        except Exception as e:  # reported to the test, which fails with it
            print("error " + " ".join(str(e).split()), flush=True)


class Worker:
    def __init__(self, kernel: str):
        self.kernel = kernel
        env = dict(os.environ, SPAN_SWA_CPU_KERNEL=kernel, PYTHONPATH=str(REPO))
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)

    def run(self, path: Path) -> dict[str, np.ndarray]:
        self.proc.stdin.write(f"{path}\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().strip()
        if answer != "ok":
            err = self.proc.stderr.read() if self.proc.poll() is not None else ""
            raise AssertionError(f"kernel {self.kernel}: {answer or 'worker died'} {err}")
        return dict(np.load(f"{path}.{self.kernel}.npz"))

    def close(self):
        try:
            self.proc.stdin.write("\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=60)
        except (BrokenPipeError, OSError, subprocess.TimeoutExpired):
            self.proc.kill()


@pytest.fixture(scope="module")
def workers():
    from tests.cases import ops_library_or_skip
    ops_library_or_skip()
    pool = {k: Worker(k) for k in ["reference", "auto", *isa_variants()]}
    yield pool
    for w in pool.values():
        w.close()


@pytest.fixture(scope="module")
def case_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("swa_cases")


# --------------------------------------------------------------------------- cases

def random_windowing(rng, n: int, S: int, fill: float, messy: bool) -> tuple[np.ndarray, np.ndarray]:
    """n rows at distinct random slots of enough windows for `fill` of their slots; messy: some
    window entries replaced by other rows (listed twice, or in a window their pos does not name)
    or emptied (a row missing from its own window)."""
    S2 = S * S
    num_win = max(1, int(np.ceil(n / (S2 * fill))))
    pos = rng.choice(num_win * S2, size=n, replace=False).astype(np.int32)
    win = np.full(num_win * S2, -1, np.int32)
    win[pos] = np.arange(n, dtype=np.int32)
    if messy:
        spots = rng.choice(win.size, size=max(1, win.size // 8), replace=False)
        win[spots] = rng.integers(-1, n, size=spots.size)
    return win.reshape(num_win, S2), pos


def grid_windowing(cells: np.ndarray, S: int, shift: int) -> tuple[np.ndarray, np.ndarray]:
    """SPAN-like: cells (row-major row ids) in windows of side S whose origin is shifted."""
    r, c = cells[:, 0] + shift, cells[:, 1] + shift
    key = (r // S) * (int(c.max()) // S + 2) + (c // S)
    uniq, wid = np.unique(key, return_inverse=True)
    pos = (wid * S * S + (r % S) * S + (c % S)).astype(np.int32)
    win = np.full((len(uniq), S * S), -1, np.int32)
    win.reshape(-1)[pos] = np.arange(len(cells), dtype=np.int32)
    return win, pos


@st.composite
def cases(draw):
    n = draw(st.one_of(st.sampled_from([1, 2, 3, 33]), st.integers(1, 200)))
    S = draw(st.integers(1, 7))
    H = draw(st.integers(1, 3))
    Dh = draw(st.one_of(st.sampled_from([1, 3, 16, 17, 33, 64, 65]), st.integers(1, 70)))
    meta = dict(n=n, S=S, H=H, Dh=Dh, mode=draw(st.sampled_from([0, 1])), half=draw(st.booleans()),
                kind=draw(st.sampled_from(["random", "random", "messy", "grid"])),
                fill=draw(st.sampled_from([0.04, 0.3, 0.7, 1.0])),
                ninf=draw(st.sampled_from([0.0, 0.0, 0.2, 0.7, 1.0])),
                bias_amp=draw(st.sampled_from([0.0, 1.0, 4.0])),
                scale=draw(st.sampled_from(["dh", "dh", 0.0, -0.7, 1.3])),
                seed=draw(st.integers(0, 2**32 - 1)))
    return meta


def build_case(meta: dict) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(meta["seed"])
    n, S, H, Dh = meta["n"], meta["S"], meta["H"], meta["Dh"]
    if meta["kind"] == "grid":
        side = max(1, int(np.ceil(np.sqrt(n / meta["fill"]))))
        flat = rng.choice(side * side, size=min(n, side * side), replace=False)
        cells = np.sort(flat)
        cells = np.stack([cells // side, cells % side], 1)
        n = meta["n"] = len(cells)
        win_a, pos_a = grid_windowing(cells, S, 0)
        win_b, pos_b = grid_windowing(cells, S, S // 2)
    else:
        messy = meta["kind"] == "messy"
        win_a, pos_a = random_windowing(rng, n, S, meta["fill"], messy)
        win_b, pos_b = random_windowing(rng, n, S, meta["fill"], messy)
    dtype = np.float16 if meta["half"] else np.float32
    C = H * Dh
    q, k, v = (rng.uniform(-1, 1, (n, C)).astype(dtype) for _ in range(3))
    bias = (meta["bias_amp"] * rng.standard_normal((H, 2 * S - 1, 2 * S - 1))).astype(np.float32)
    bias[rng.random(bias.shape) < meta["ninf"]] = -np.inf
    scale = Dh ** -0.5 if meta["scale"] == "dh" else float(meta["scale"])
    meta["scale"] = scale
    return dict(q=q, k=k, v=v, win_a=win_a, pos_a=pos_a, win_b=win_b, pos_b=pos_b, bias=bias)


def expected_zeros(f: dict[str, np.ndarray], meta: dict) -> np.ndarray:
    """(N, H) bool: no candidate key, or every candidate's bias -inf (scores -inf): exact zeros."""
    n, S, H = meta["n"], meta["S"], meta["H"]
    S2, B = S * S, 2 * S - 1
    zero = np.ones((n, H), bool)
    for i in range(n):
        wa, sa = divmod(int(f["pos_a"][i]), S2)
        cands = [(t, sa) for t, j in enumerate(f["win_a"][wa]) if j >= 0 and (j != i or 1 <= i <= n - 2)]
        if meta["mode"] == 1:
            wb, sb = divmod(int(f["pos_b"][i]), S2)
            cands += [(t, sb) for t, j in enumerate(f["win_b"][wb]) if j >= 0 and int(f["pos_a"][j]) // S2 != wa]
        for h in range(H):
            zero[i, h] = all(np.isneginf(f["bias"][h, t // S - s // S + S - 1, t % S - s % S + S - 1])
                             for t, s in cands)
    return zero


def score_bound(f: dict[str, np.ndarray], meta: dict) -> float:
    """An upper bound of |score| over the case: |scale q.k| over all row pairs + the largest finite bias."""
    H, Dh = meta["H"], meta["Dh"]
    q = f["q"].astype(np.float64).reshape(-1, H, Dh)
    k = f["k"].astype(np.float64).reshape(-1, H, Dh)
    dots = max(float(np.abs(q[:, h] @ k[:, h].T).max()) for h in range(H))
    finite = f["bias"][np.isfinite(f["bias"])]
    return abs(meta["scale"]) * dots + (float(np.abs(finite).max()) if finite.size else 0.0)


def check_case(workers, path: Path, meta: dict, f: dict[str, np.ndarray]) -> None:
    meta = dict(meta, threads=list(THREADS))
    np.savez(path, meta=json.dumps(meta), **f)
    ref = workers["reference"].run(path)
    for t in THREADS:  # the reference itself does not depend on the threads
        assert np.array_equal(ref[f"t{t}"].view(np.uint8), ref["t1"].view(np.uint8))
    assert np.array_equal(ref["inplace"].view(np.uint8), ref["t1"].view(np.uint8)), "reference: out over q differs"
    ref1 = ref["t1"].astype(np.float64)
    zeros = np.repeat(expected_zeros(f, meta), meta["Dh"], axis=1)
    vmax = float(np.abs(f["v"].astype(np.float64)).max(initial=0.0))
    keys = 2 * meta["S"] ** 2
    tol = 8 * EPS32 * (2 + 2 * score_bound(f, meta) + keys) * max(vmax, 1e-30)
    if meta["half"]:  # plus the rounding of both float32 results to float16
        tol = tol + 2 * np.spacing(np.abs(ref["t1"]).astype(np.float16)).astype(np.float64)
    for name, w in workers.items():
        if name == "reference":
            continue
        out = w.run(path)
        first = out[f"t{THREADS[0]}"]
        for t in THREADS:
            got = out[f"t{t}"]
            assert np.array_equal(got.view(np.uint8), first.view(np.uint8)), \
                f"{name}: {t} threads differ from {THREADS[0]}"
        # the output over q's buffer (row passes do this: backends/onnxruntime/row_plan.py)
        assert np.array_equal(out["inplace"].view(np.uint8), out[f"t{THREADS[-1]}"].view(np.uint8)), \
            f"{name}: written over q, the output differs"
        bits = first.view(np.uint16 if meta["half"] else np.uint32)
        assert (bits[zeros] == 0).all(), f"{name}: a query with no usable key is not exact +0"
        assert (ref["t1"].view(bits.dtype)[zeros] == 0).all(), "reference: a query with no usable key is not +0"
        diff = np.abs(first.astype(np.float64) - ref1)
        assert np.isfinite(first).all(), f"{name}: non-finite output"
        bad = diff > tol
        assert not bad.any(), (f"{name}: {int(bad.sum())} values off the reference, max diff {diff.max():.3g} "
                               f"(tol {np.max(tol):.3g}) {meta}")


# --------------------------------------------------------------------------- tests

@settings(max_examples=int(os.environ.get("SPAN_SWA_FAST_EXAMPLES", "100")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(meta=cases())
def test_window_kernel_matches_reference(workers, case_dir, meta):
    f = build_case(meta)
    check_case(workers, case_dir / f"case_{meta['seed']}_{meta['n']}.npz", meta, f)


@pytest.mark.parametrize("mode", [0, 1])
@pytest.mark.parametrize("half", [False, True])
def test_model_tables(workers, case_dir, mode, half):
    """Real rulebook tables (stage 0 and 1 of a 3000-patch tissue slide, default config sizes:
    8 heads x 64, S = 6)."""
    from span_deploy.bench.tissue_tokens import tissue_slide
    from span_deploy.config import load_config
    from span_deploy.rulebook import build_rulebook

    shared = Path(os.environ.get("SPAN_SHARED", REPO.parent / "shared"))
    config = shared / "fixtures" / "cls_default_r50" / "config.yaml"
    if not config.is_file():
        pytest.skip(f"{config} not found")
    cfg = load_config(config)
    coords, _ = tissue_slide(3000, seed=1, feat_dim=1)
    inputs = build_rulebook(coords, cfg).engine_inputs(cfg)
    rng = np.random.default_rng(mode)
    for s in (0, 1):
        win_a, pos_a = inputs[f"s{s}_win_u"], inputs[f"s{s}_pos_u"]
        win_b, pos_b = inputs.get(f"s{s}_win_s", win_a), inputs.get(f"s{s}_pos_s", pos_a)
        n, H, S = len(pos_a), cfg.stage_heads(s), 2 * cfg.window_size
        Dh = cfg.stage_dim(s) // H
        dtype = np.float16 if half else np.float32
        f = dict(q=rng.standard_normal((n, H * Dh)).astype(dtype), k=rng.standard_normal((n, H * Dh)).astype(dtype),
                 v=rng.standard_normal((n, H * Dh)).astype(dtype), win_a=win_a, pos_a=pos_a, win_b=win_b, pos_b=pos_b,
                 bias=(0.5 * rng.standard_normal((H, 2 * S - 1, 2 * S - 1))).astype(np.float32))
        meta = dict(n=n, S=S, H=H, Dh=Dh, mode=mode, half=half, scale=Dh ** -0.5, seed=s)
        check_case(workers, case_dir / f"model_{s}_{mode}_{int(half)}.npz", meta, f)


def test_unknown_kernel_name_falls_back(case_dir):
    """An unknown SPAN_SWA_CPU_KERNEL is named on stderr once and the default kernel runs."""
    from tests.cases import ops_library_or_skip
    ops_library_or_skip()
    meta = dict(n=40, S=3, H=2, Dh=5, mode=1, half=False, kind="random", fill=0.7, ninf=0.0, bias_amp=1.0,
                scale="dh", seed=7)
    f = build_case(meta)
    path = case_dir / "fallback.npz"
    np.savez(path, meta=json.dumps(dict(meta, threads=[1])), **f)
    outs = {}
    for kernel in ("auto", "no-such-kernel"):
        env = dict(os.environ, SPAN_SWA_CPU_KERNEL=kernel, PYTHONPATH=str(REPO))
        r = subprocess.run([sys.executable, __file__, "--worker"], input=f"{path}\n\n", capture_output=True,
                           text=True, env=env, cwd=REPO, timeout=120)
        assert r.stdout.strip() == "ok", r.stdout + r.stderr
        outs[kernel] = (np.load(f"{path}.{kernel}.npz")["t1"], r.stderr)
    assert "SPAN_SWA_CPU_KERNEL=no-such-kernel is not available" in outs["no-such-kernel"][1]
    assert "SPAN_SWA_CPU_KERNEL" not in outs["auto"][1]
    assert np.array_equal(outs["auto"][0], outs["no-such-kernel"][0])


if __name__ == "__main__" and "--worker" in sys.argv:
    sys.path.insert(0, str(REPO))
    worker_main()
