"""This device's float32 matrix-multiply rate, measured in the same run as the model.

A model's FLOP/s alone says little; as a fraction of what a plain sgemm reaches on the same
machine, same threads, same moment (clocks, co-tenants), it says how much headroom is left.

CPU: numpy's BLAS (OpenBLAS or MKL) with its thread count set through the library's own C API
for the duration of the measurement (no threadpoolctl dependency); ``threads_applied`` says
whether that worked. CUDA: torch.matmul with TF32 off unless asked (TF32 is not fp32).
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
    try:
        import torch
    except ImportError as exc:
        raise RuntimeError("device=cuda gemm measurement needs torch") from exc
    if not torch.cuda.is_available():
        raise RuntimeError("device=cuda but torch sees no CUDA device")
    prev = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False     # measure real fp32 (backends state theirs)
    try:
        a = torch.randn(size, size, device="cuda")
        b = torch.randn(size, size, device="cuda")
        c = torch.empty(size, size, device="cuda")
        times = _time_loop(lambda: torch.matmul(a, b, out=c), torch.cuda.synchronize,
                           min_time, max_repeats)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = prev
    return _result("cuda", f"torch {torch.__version__} / cuBLAS", size, threads, False, times)


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
