"""Benchmark one backend over several slide sizes.

Per backend: load (session/engine creation) time and memory. Per size: warm-up, then a timed loop
of ``backend.run(coords, feats)``; every iteration's harness wall clock ("end_to_end") and every
entry of ``SpanResult.timings`` ('rulebook', 'h2d', 'compute', 'total', ...) are summarised;
throughput (slides/s, tokens/s), peak host RSS and device memory, achieved FLOP/s against the
measured gemm rate, and how time per token grows with size.
"""
from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import BackendError
from .tissue_tokens import describe_geometry, describe_stages, tissue_slide
from .memory import DeviceMemoryHooks, PeakMemory
from .stats import UNSTABLE_COV, Summary, summarize, throughput

FlopsSpec = float | Callable[[list[int]], float | None] | None
DEFAULT_ITERATIONS = 10
SUPERLINEAR_RATIO = 1.5
# run() takes and returns host arrays, so the harness wall clock always includes these:
END_TO_END_INCLUDES = ["rulebook", "h2d", "compute", "d2h", "python overhead"]


@dataclass(frozen=True)
class Workload:
    name: str
    coords: np.ndarray            # (N, 2) int64 raw px
    feats: np.ndarray             # (N, F) float32

    @property
    def n_tokens(self) -> int:
        return int(self.coords.shape[0])


def synthetic_workloads(sizes: Sequence[int], seed: int = 0, feat_dim: int = 1024) -> list[Workload]:
    """One tissue-like synthetic slide per token count."""
    out = []
    for n in sizes:
        coords, feats = tissue_slide(int(n), seed=seed, feat_dim=feat_dim)
        out.append(Workload(f"synthetic-{int(n)}", coords, feats))
    return out


@dataclass
class SizeResult:
    workload: str
    n_tokens: int
    feat_dim: int = 0
    iterations: int = 0
    wall_s: float = 0.0
    timings: dict[str, Summary] = field(default_factory=dict)
    slides_per_s: float | None = None
    tokens_per_s: float | None = None
    stage_sizes: list[int] | None = None
    stages: list[dict[str, Any]] | None = None
    geometry: dict[str, Any] | None = None
    flops: float | None = None
    flops_time_basis: str | None = None     # which median the achieved rate divides by
    achieved_flops_per_s: float | None = None
    gemm_fraction: float | None = None
    memory: dict[str, Any] = field(default_factory=dict)
    outputs_finite: bool | None = None
    unstable: list[str] = field(default_factory=list)
    error: str | None = None

    def median(self, key: str = "end_to_end") -> float | None:
        s = self.timings.get(key)
        return s.median if s else None


@dataclass
class BackendBench:
    backend: str
    settings: dict[str, Any]
    load_s: float | None = None
    load_memory: dict[str, Any] = field(default_factory=dict)
    sizes: list[SizeResult] = field(default_factory=list)
    scaling: dict[str, Any] | None = None
    error: str | None = None


def bench_backend(backend_factory: Callable[[], Any],
                  workloads: Sequence[Workload] | Callable[[Any], Sequence[Workload]], *,
                  name: str | None = None, warmup: int = 2, iterations: int | None = None,
                  duration: float | None = None, flops: FlopsSpec = None,
                  gemm_flops_per_s: float | None = None, settings: dict[str, Any] | None = None,
                  device_memory: DeviceMemoryHooks | None = None,
                  unstable_cov: float = UNSTABLE_COV,
                  superlinear_ratio: float = SUPERLINEAR_RATIO) -> BackendBench:
    """Open a backend with ``backend_factory()`` and benchmark it on each workload.

    ``workloads`` may be a callable taking the opened backend (e.g. to size synthetic features
    by ``backend.feat_dim``).

    Stopping rule (trtexec's): run until at least ``iterations`` iterations *and* at least
    ``duration`` seconds have been timed; with neither given, 10 iterations.
    ``flops``: FLOPs of one slide, a constant or a callable on ``SpanResult.stage_sizes``.
    Optional backend attributes: ``max_tokens`` (checked first), ``settings`` (dict, recorded),
    ``device_memory`` (DeviceMemoryHooks, when ``device_memory`` is not given), ``close()``.
    Raises what the factory raises, BackendError if a workload exceeds ``backend.max_tokens``;
    an error inside ``run`` is recorded on that size and the other sizes still run.
    """
    if warmup < 0:
        raise ValueError("warmup must be >= 0")
    min_iters = iterations if iterations is not None else (1 if duration else DEFAULT_ITERATIONS)
    if min_iters < 1:
        raise ValueError("iterations must be >= 1")
    min_time = float(duration or 0.0)

    gc.collect()
    with PeakMemory(device=device_memory) as load_mem:
        t0 = time.perf_counter()
        backend = backend_factory()
        load_s = time.perf_counter() - t0
    bname = name or getattr(backend, "name", None) or type(backend).__name__
    rec = {"warmup": warmup, "iterations": iterations, "duration_s": duration,
           "end_to_end_includes": END_TO_END_INCLUDES}
    rec.update(settings or {})
    rec.update(_backend_settings(backend))
    out = BackendBench(bname, rec, load_s=load_s, load_memory=load_mem.to_dict())

    if callable(workloads):
        workloads = workloads(backend)
    # Device memory is only knowable by the backend (torch allocator, TensorRT, ORT arena).
    device_memory = device_memory or getattr(backend, "device_memory", None)
    max_tokens = getattr(backend, "max_tokens", None)
    too_big = [w.n_tokens for w in workloads if max_tokens is not None and w.n_tokens > max_tokens]
    if too_big:
        _close(backend)
        raise BackendError(
            f"backend {bname!r} accepts at most {max_tokens} tokens (its engine's optimisation "
            f"profile) but {max(too_big)} were requested; rebuild the engine with a larger max "
            f"profile or benchmark smaller --tokens")
    try:
        for w in workloads:
            out.sizes.append(_bench_size(backend, w, warmup, min_iters, min_time, flops,
                                         gemm_flops_per_s, device_memory, unstable_cov))
    finally:
        _close(backend)
    out.scaling = scaling_summary([(s.n_tokens, s.median()) for s in out.sizes
                                   if s.error is None and s.median()], superlinear_ratio)
    return out


def _bench_size(backend: Any, w: Workload, warmup: int, min_iters: int, min_time: float,
                flops: FlopsSpec, gemm_rate: float | None, device_memory: DeviceMemoryHooks | None,
                unstable_cov: float) -> SizeResult:
    res = SizeResult(w.name, w.n_tokens, int(w.feats.shape[1]))
    res.geometry = describe_geometry(w.coords)
    samples: dict[str, list[float]] = {}
    first = None
    gc.collect()
    mem = PeakMemory(device=device_memory)
    try:
        with mem:
            for _ in range(warmup):
                first = backend.run(w.coords, w.feats)
            loop0 = time.perf_counter()
            while True:
                t0 = time.perf_counter()
                r = backend.run(w.coords, w.feats)
                t1 = time.perf_counter()
                samples.setdefault("end_to_end", []).append(t1 - t0)
                for k, v in (getattr(r, "timings", None) or {}).items():
                    samples.setdefault(k, []).append(float(v))
                if first is None:
                    first = r
                res.iterations += 1
                if res.iterations >= min_iters and t1 - loop0 >= min_time:
                    break
            res.wall_s = time.perf_counter() - loop0
    except Exception as exc:        # keep the other sizes' results; say what failed and where
        res.error = f"{type(exc).__name__}: {exc}"
        return res
    finally:
        res.memory = mem.to_dict()

    res.timings = {k: summarize(v) for k, v in samples.items()}
    res.unstable = [k for k, s in res.timings.items() if s.count > 1 and s.unstable(unstable_cov)]
    res.slides_per_s = throughput(res.iterations, res.wall_s)
    res.tokens_per_s = res.slides_per_s * w.n_tokens
    res.outputs_finite = bool(np.all(np.isfinite(np.asarray(first.logits)))) \
        if getattr(first, "logits", None) is not None else None
    sizes = getattr(first, "stage_sizes", None)
    if sizes is not None:
        res.stage_sizes = [int(x) for x in sizes]
        res.stages = describe_stages(res.stage_sizes, None, w.n_tokens)
    res.flops = _flops(flops, res.stage_sizes)
    if res.flops:
        res.flops_time_basis = "compute" if "compute" in res.timings else "end_to_end"
        res.achieved_flops_per_s = res.flops / res.timings[res.flops_time_basis].median
        if gemm_rate:
            res.gemm_fraction = res.achieved_flops_per_s / gemm_rate
    return res


def scaling_summary(points: Sequence[tuple[int, float | None]],
                    superlinear_ratio: float = SUPERLINEAR_RATIO) -> dict[str, Any] | None:
    """Time per token at each size; flags super-linear growth.

    ``points``: (n_tokens, median seconds). ``per_token_ratio`` = per-token time at the largest
    size / at the smallest; ``superlinear`` when it exceeds ``superlinear_ratio`` (fixed
    overheads inflate the smallest size's per-token time, so a ratio > 1 is real growth).
    ``exponent``: slope of log time vs log tokens between those two sizes (1 = linear).
    None when fewer than two distinct sizes.
    """
    pts = sorted((int(n), float(t)) for n, t in points if t is not None and t > 0 and n > 0)
    if len({n for n, _ in pts}) < 2:
        return None
    (n0, t0), (n1, t1) = pts[0], pts[-1]
    ratio = (t1 / n1) / (t0 / n0)
    return {
        "per_token_s": {str(n): t / n for n, t in pts},
        "smallest_tokens": n0, "largest_tokens": n1,
        "per_token_ratio": ratio,
        "exponent": math.log(t1 / t0) / math.log(n1 / n0),
        "superlinear": ratio > superlinear_ratio,
        "threshold": superlinear_ratio,
    }


def _flops(spec: FlopsSpec, stage_sizes: list[int] | None) -> float | None:
    if spec is None:
        return None
    if callable(spec):
        if stage_sizes is None:
            return None
        v = spec(stage_sizes)
        return float(v) if v else None
    return float(spec)


def _backend_settings(backend: Any) -> dict[str, Any]:
    """Optional ``backend.settings`` (dict): cuda graphs, io binding, providers, precision ..."""
    s = getattr(backend, "settings", None)
    s = s() if callable(s) else s
    return dict(s) if isinstance(s, dict) else {}


def _close(backend: Any) -> None:
    close = getattr(backend, "close", None)
    if callable(close):
        close()
