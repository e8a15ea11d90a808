"""This device's float32 matrix-multiply rate, measured in the same run as the model.

A model's FLOP/s alone says little; as a fraction of what a plain sgemm reaches on the same
machine, same threads, same moment (clocks, co-tenants), it says how much headroom is left.

CPU: numpy's BLAS (OpenBLAS or MKL) with its thread count set through the library's own C API
for the duration of the measurement (no threadpoolctl dependency); ``threads_applied`` says
whether that worked. CUDA: one MatMul on ONNX Runtime's CUDA EP with TF32 off (TF32 is not fp32).
"""
from __future__ import annotations

import ctypes
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .stats import summarize


@dataclass(frozen=True)
class GemmResult:
    device: str
    library: str
    dtype: str
    m: int
    n: int
    k: int
    threads: int | None           # BLAS threads in effect (requested, or the library default)
    threads_applied: bool         # a requested count was really set
    repeats: int
    median_s: float
    flops_per_s: float            # 2*m*n*k / median time
    best_flops_per_s: float       # from the fastest repeat
    tf32: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure_gemm(device: str = "cpu", threads: int | None = None, size: int | None = None,
                 min_time: float = 0.5, max_repeats: int = 50) -> GemmResult:
    """Time C = A @ B for square float32 matrices (default 1024 on CPU, 4096 on CUDA).

    Repeats until ``min_time`` seconds of timed work or ``max_repeats``, after one warm-up.
    """
    if device == "cpu":
        return _cpu(size or 1024, threads, min_time, max_repeats)
    if device == "cuda":
        return _cuda(size or 4096, min_time, max_repeats, threads)
    raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")


def _time_loop(fn: Callable[[], None], sync: Callable[[], None], min_time: float,
               max_repeats: int) -> list[float]:
    fn()
    sync()
    times: list[float] = []
    while len(times) < max_repeats and (sum(times) < min_time or len(times) < 3):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return times


def _result(device: str, library: str, size: int, threads: int | None, applied: bool,
            times: list[float], tf32: bool = False) -> GemmResult:
    flop = 2.0 * size ** 3
    s = summarize(times)
    return GemmResult(device=device, library=library, dtype="float32", m=size, n=size, k=size,
                      threads=threads, threads_applied=applied, repeats=s.count, median_s=s.median,
                      flops_per_s=flop / s.median, best_flops_per_s=flop / s.min, tf32=tf32)


def _cpu(size: int, threads: int | None, min_time: float, max_repeats: int) -> GemmResult:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    c = np.empty((size, size), dtype=np.float32)
    with blas_threads(threads) as (library, effective):
        times = _time_loop(lambda: np.matmul(a, b, out=c), lambda: None, min_time, max_repeats)
    applied = threads is not None and effective == threads
    return _result("cpu", library, size, effective if effective is not None else threads, applied, times)


def _cuda(size: int, min_time: float, max_repeats: int, threads: int | None) -> GemmResult:
    """One fp32 MatMul through ONNX Runtime's CUDA EP (cuBLAS), operands bound on the device,
    TF32 off (``use_tf32=0``): the same library path the ort backend takes, and no torch."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise RuntimeError("device=cuda gemm measurement needs onnxruntime-gpu (CUDA execution provider)")
    x = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [size, size]) for n in "abc"]
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "sgemm", x[:2], x[2:])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    sess = ort.InferenceSession(model.SerializeToString(),
                                providers=[("CUDAExecutionProvider", {"use_tf32": "0"})])
    rng = np.random.default_rng(0)
    binding = sess.io_binding()
    for name in "ab":
        host = rng.standard_normal((size, size), dtype=np.float32)
        binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(host, "cuda", 0))
    binding.bind_ortvalue_output("c", ort.OrtValue.ortvalue_from_shape_and_type((size, size), np.float32, "cuda", 0))
    times = _time_loop(lambda: sess.run_with_iobinding(binding), binding.synchronize_outputs,
                       min_time, max_repeats)
    return _result("cuda", f"onnxruntime {ort.__version__} CUDA EP / cuBLAS", size, threads, False, times)


# --------------------------------------------------------------------------- BLAS threads

_SETTERS = (  # (setter, getter) C symbols, most specific first
    ("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
    ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
    ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
    ("openblas_set_num_threads", "openblas_get_num_threads"),
    ("MKL_Set_Num_Threads", "MKL_Get_Max_Threads"),
)


def _blas_api() -> tuple[str, Callable[[int], Any], Callable[[], int]] | None:
    """Find the BLAS numpy loaded (via /proc/self/maps) and its thread-count functions."""
    try:
        with open("/proc/self/maps", encoding="utf-8") as fh:
            paths = {line.split()[-1] for line in fh if "blas" in line.lower() or "mkl" in line.lower()}
    except OSError:
        return None
    for path in sorted(p for p in paths if p.startswith("/")):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for setter, getter in _SETTERS:
            if hasattr(lib, setter) and hasattr(lib, getter):
                set_fn, get_fn = getattr(lib, setter), getattr(lib, getter)
                set_fn.argtypes, get_fn.restype = [ctypes.c_int], ctypes.c_int
                name = path.rsplit("/", 1)[-1]
                return name, set_fn, get_fn
    return None


@contextmanager
def blas_threads(threads: int | None) -> Iterator[tuple[str, int | None]]:
    """Set numpy's BLAS thread count inside the block (None: leave it); yields
    (library name, thread count in effect or None when the library is not recognised)."""
    api = _blas_api()
    if api is None:
        yield "numpy BLAS (unknown)", None
        return
    name, set_fn, get_fn = api
    prev = get_fn()
    if threads is not None:
        set_fn(int(threads))
    try:
        yield name, int(get_fn())
    finally:
        set_fn(prev)
