"""Latency summaries, defined the way trtexec reports them so numbers compare across tools.

* Percentiles (p90/p95/p99) use the **nearest-rank** method, as trtexec does: with the n samples
  sorted ascending, the p-th percentile is the sample at 1-based rank ``ceil(p/100 * n)``
  (rank 1 for p = 0). It is always an observed sample, never an interpolation, so p99 of 10
  samples is the maximum.
* The median is the usual one (mean of the two middle samples when n is even), as in trtexec.
* ``std`` is the population standard deviation (divide by n) and ``cov = std / mean``, the
  coefficient of variation trtexec prints as "coefficient of variance".
* Unstable: trtexec warns when GPU compute time has CoV > 1 %. Host wall-clock on a shared CPU
  is far noisier, so the default threshold here is 10 %; callers may pass their own.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

UNSTABLE_COV = 0.10


def percentile_nearest_rank(sorted_samples: Sequence[float], p: float) -> float:
    """p-th percentile (0 <= p <= 100) of ascending samples by nearest rank."""
    n = len(sorted_samples)
    if n == 0:
        raise ValueError("no samples")
    if not 0.0 <= p <= 100.0:
        raise ValueError(f"percentile must be in [0, 100], got {p}")
    # Round p/100*n first: 0.95*20 is 19.000000000000004 in binary and must stay rank 19.
    rank = max(1, math.ceil(round(p / 100.0 * n, 9)))
    return float(sorted_samples[rank - 1])


@dataclass(frozen=True)
class Summary:
    """Statistics of one quantity over the measured iterations, in the samples' unit (seconds)."""
    count: int
    total: float
    min: float
    max: float
    mean: float
    median: float
    p90: float
    p95: float
    p99: float
    std: float
    cov: float

    def unstable(self, threshold: float = UNSTABLE_COV) -> bool:
        return self.cov > threshold

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def summarize(samples: Sequence[float]) -> Summary:
    """Summary of a non-empty sequence of finite samples."""
    xs = sorted(float(x) for x in samples)
    n = len(xs)
    if n == 0:
        raise ValueError("no samples to summarise")
    if not all(math.isfinite(x) for x in xs):
        raise ValueError("samples must be finite")
    total = math.fsum(xs)
    mean = total / n
    mid = n // 2
    median = xs[mid] if n % 2 else (xs[mid - 1] + xs[mid]) / 2.0
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / n)
    return Summary(
        count=n, total=total, min=xs[0], max=xs[-1], mean=mean, median=median,
        p90=percentile_nearest_rank(xs, 90), p95=percentile_nearest_rank(xs, 95),
        p99=percentile_nearest_rank(xs, 99), std=std,
        cov=std / mean if mean > 0 else 0.0,
    )


def throughput(iterations: int, wall_seconds: float, items_per_iteration: float = 1.0) -> float:
    """Items per second over a timed loop (trtexec: queries / total host wall time)."""
    if wall_seconds <= 0:
        raise ValueError("wall_seconds must be > 0")
    return iterations * items_per_iteration / wall_seconds
