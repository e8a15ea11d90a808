"""Latency statistics on hand-computable samples."""
import math
import random

import numpy as np
import pytest

from span_deploy.bench.stats import percentile_nearest_rank, summarize, throughput


def shuffled(xs):
    xs = list(xs)
    random.Random(0).shuffle(xs)
    return xs


def test_nearest_rank_on_1_to_10():
    s = summarize(shuffled(range(1, 11)))
    assert (s.count, s.min, s.max) == (10, 1.0, 10.0)
    assert s.mean == 5.5 and s.median == 5.5          # even count: mean of 5 and 6
    assert s.p90 == 9.0                                # rank ceil(0.9*10) = 9
    assert s.p95 == 10.0 and s.p99 == 10.0             # ranks ceil(9.5) = ceil(9.9) = 10
    assert s.total == 55.0
    # population std of 1..n is sqrt((n^2 - 1) / 12)
    assert s.std == pytest.approx(math.sqrt(99 / 12), rel=1e-12)
    assert s.cov == pytest.approx(math.sqrt(99 / 12) / 5.5, rel=1e-12)


def test_nearest_rank_differs_from_numpy_linear():
    xs = np.arange(1, 11, dtype=float)
    assert np.percentile(xs, 90) == pytest.approx(9.1)  # linear interpolation
    assert percentile_nearest_rank(list(xs), 90) == 9.0  # always an observed sample


def test_nearest_rank_exact_ranks_survive_float_rounding():
    xs = list(map(float, range(1, 21)))
    assert percentile_nearest_rank(xs, 95) == 19.0     # 0.95*20 = 19.000000000000004 in binary
    assert percentile_nearest_rank(xs, 90) == 18.0
    assert percentile_nearest_rank(xs, 99) == 20.0
    ys = list(map(float, range(1, 101)))
    assert [percentile_nearest_rank(ys, p) for p in (0, 1, 50, 90, 95, 99, 100)] == \
        [1.0, 1.0, 50.0, 90.0, 95.0, 99.0, 100.0]


def test_odd_median_single_sample_and_cov():
    s = summarize([2, 4, 4, 4, 5, 5, 7, 9])               # textbook: mean 5, population std 2
    assert (s.mean, s.std, s.cov) == (5.0, 2.0, 0.4)
    assert s.median == 4.5
    assert summarize([3.0, 1.0, 2.0]).median == 2.0
    one = summarize([0.25])
    assert (one.p90, one.p99, one.std, one.cov) == (0.25, 0.25, 0.0, 0.0)


def test_unstable_threshold():
    s = summarize([2, 4, 4, 4, 5, 5, 7, 9])
    assert s.unstable() is True                 # 40 % > default 10 %
    assert s.unstable(threshold=0.5) is False
    steady = summarize([1.0, 1.01, 0.99, 1.0])
    assert steady.cov == pytest.approx(math.sqrt(0.00005) / 1.0)
    assert steady.unstable() is False


def test_throughput_and_errors():
    assert throughput(10, 2.0) == 5.0
    assert throughput(10, 2.0, items_per_iteration=1000) == 5000.0
    with pytest.raises(ValueError):
        summarize([])
    with pytest.raises(ValueError):
        summarize([1.0, float("nan")])
    with pytest.raises(ValueError):
        percentile_nearest_rank([1.0], 101)
    with pytest.raises(ValueError):
        throughput(1, 0.0)
