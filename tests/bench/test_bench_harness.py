"""Harness arithmetic and the JSON report, with trivial backends defined here."""
import json
import math
import time

import numpy as np
import pytest

from span_deploy.backends.base import SpanResult
from span_deploy.bench.harness import Workload, bench_backend, scaling_summary, synthetic_workloads
from span_deploy.bench.report import (JSON_SCHEMA, build_report, print_report, render_tables,
                                      validate, write_json)
from span_deploy.errors import BackendError


def result(feats, timings):
    n = feats.shape[0]
    return SpanResult(logits=np.zeros(2, np.float32), slide_embedding=feats.mean(0),
                      stage_globals=[], patch_features=feats[:, :2], patch_scores=np.zeros(n, np.float32),
                      stage_sizes=[n + 2, (n + 2) // 4], timings=timings)


class FixedTimings:
    """Reports the same stage times every run: summaries are exactly known."""
    name = "fixed"
    settings = {"cuda_graphs": False, "io_binding": True}

    def __init__(self):
        self.calls = 0
        self.closed = False

    def run(self, coords, feats):
        self.calls += 1
        return result(feats, {"rulebook": 0.002, "h2d": 0.001, "compute": 0.5, "total": 0.503})

    def close(self):
        self.closed = True


class Sleeper:
    """Sleeps a * n**power seconds: linear or quadratic in tokens."""

    def __init__(self, a, power, max_tokens=None, fail_at=None):
        self.name = f"sleep-n{power}"
        self.a, self.power, self.max_tokens, self.fail_at = a, power, max_tokens, fail_at

    def run(self, coords, feats):
        n = coords.shape[0]
        if n == self.fail_at:
            raise MemoryError(f"out of memory at {n}")
        time.sleep(self.a * n ** self.power)
        return result(feats, {})


@pytest.fixture(scope="module")
def small_workloads():
    return synthetic_workloads([50, 400], seed=1, feat_dim=8)


def test_fixed_timings_summaries_flops_and_gemm_fraction(small_workloads):
    backend = FixedTimings()
    flops_seen = []

    def flops(stage_sizes):
        flops_seen.append(list(stage_sizes))
        return 1e9 * stage_sizes[0]

    b = bench_backend(lambda: backend, small_workloads, warmup=2, iterations=4, flops=flops,
                      gemm_flops_per_s=1e12, settings={"threads": 2, "device": "cpu"})
    assert backend.calls == 2 * (2 + 4) and backend.closed
    assert b.backend == "fixed" and b.load_s >= 0
    assert b.settings["cuda_graphs"] is False and b.settings["threads"] == 2
    assert b.settings["end_to_end_includes"][:3] == ["rulebook", "h2d", "compute"]
    assert flops_seen == [[52, 13], [402, 100]]
    for s, n in zip(b.sizes, (50, 400)):
        assert (s.n_tokens, s.feat_dim, s.iterations, s.error) == (n, 8, 4, None)
        assert set(s.timings) == {"end_to_end", "rulebook", "h2d", "compute", "total"}
        c = s.timings["compute"]
        assert (c.count, c.median, c.p99, c.std, c.cov) == (4, 0.5, 0.5, 0.0, 0.0)
        assert s.timings["rulebook"].mean == pytest.approx(0.002)
        assert s.flops == 1e9 * (n + 2) and s.flops_time_basis == "compute"
        assert s.achieved_flops_per_s == pytest.approx(2e9 * (n + 2))     # flops / 0.5 s
        assert s.gemm_fraction == pytest.approx(2e9 * (n + 2) / 1e12)
        assert s.slides_per_s == pytest.approx(4 / s.wall_s)
        assert s.tokens_per_s == pytest.approx(4 * n / s.wall_s)
        assert s.stage_sizes == [n + 2, (n + 2) // 4]
        assert s.stages[0]["pad_fraction"] == pytest.approx(2 / (n + 2))
        assert s.geometry["unique_cells"] == n
        assert s.outputs_finite is True
        assert "compute" not in s.unstable
        assert s.memory["peak_rss_bytes"] >= s.memory["start_rss_bytes"] > 0


def test_constant_flops_without_compute_uses_end_to_end(small_workloads):
    b = bench_backend(lambda: Sleeper(0.0, 1), small_workloads[:1], warmup=0, iterations=3, flops=6.0)
    s = b.sizes[0]
    assert s.flops == 6.0 and s.flops_time_basis == "end_to_end"
    assert s.achieved_flops_per_s == pytest.approx(6.0 / s.timings["end_to_end"].median)
    assert s.gemm_fraction is None


def test_duration_mode_runs_at_least_that_long(small_workloads):
    b = bench_backend(lambda: Sleeper(0.01, 0), small_workloads[:1], warmup=0, duration=0.06)
    s = b.sizes[0]
    assert s.wall_s >= 0.06 and 2 <= s.iterations <= 7
    b = bench_backend(lambda: Sleeper(0.0, 0), small_workloads[:1], warmup=0, iterations=5, duration=0.0)
    assert b.sizes[0].iterations == 5


def test_scaling_summary_arithmetic():
    lin = scaling_summary([(10_000, 10.0), (1000, 1.0)])
    assert lin["per_token_ratio"] == pytest.approx(1.0) and lin["exponent"] == pytest.approx(1.0)
    assert lin["superlinear"] is False and lin["per_token_s"] == {"1000": 1e-3, "10000": 1e-3}
    quad_ish = scaling_summary([(1000, 1.0), (5000, 4.0), (10_000, 20.0)])
    assert quad_ish["per_token_ratio"] == pytest.approx(2.0)
    assert quad_ish["exponent"] == pytest.approx(math.log10(20.0))
    assert quad_ish["superlinear"] is True
    assert scaling_summary([(1000, 1.0), (10_000, 20.0)], superlinear_ratio=2.5)["superlinear"] is False
    assert scaling_summary([(1000, 1.0)]) is None
    assert scaling_summary([(1000, 1.0), (1000, 2.0)]) is None


def test_superlinear_flag_from_real_timing():
    ws = synthetic_workloads([200, 2000], seed=0, feat_dim=2)
    quad = bench_backend(lambda: Sleeper(1e-9, 2), ws, warmup=1, iterations=3)
    assert quad.scaling["superlinear"] is True            # expected ratio ~4
    lin = bench_backend(lambda: Sleeper(1e-6, 1), ws, warmup=1, iterations=3)
    assert lin.scaling["superlinear"] is False            # fixed overhead only lowers the ratio


def test_max_tokens_is_a_clear_error(small_workloads):
    backend = Sleeper(0.0, 1, max_tokens=100)
    with pytest.raises(BackendError, match=r"at most 100 tokens .* 400 were requested"):
        bench_backend(lambda: backend, small_workloads, iterations=1)


def test_run_error_recorded_other_sizes_kept(small_workloads):
    b = bench_backend(lambda: Sleeper(0.0, 1, fail_at=400), small_workloads, warmup=0, iterations=2)
    ok, bad = b.sizes
    assert ok.error is None and ok.iterations == 2
    assert bad.error == "MemoryError: out of memory at 400" and bad.timings == {}
    assert b.scaling is None                               # one good size only


def make_doc(small_workloads):
    good = bench_backend(FixedTimings, small_workloads, warmup=0, iterations=3,
                         flops=lambda ss: 1e6 * ss[0], gemm_flops_per_s=5e10)
    failing = bench_backend(lambda: Sleeper(0.0, 1, fail_at=400), small_workloads, warmup=0, iterations=2)
    machine = {"cpu_model": "Test CPU", "cpu_logical": 2, "cpu_usable": 2, "ram_bytes": 8 << 30,
               "gpus": [{"index": 0, "name": "Fake GPU", "driver": "999.1", "memory_bytes": 1 << 34}]}
    versions = {"python": "3.11.0", "onnxruntime": "1.22.0", "tensorrt": None}
    gemm = {"device": "cpu", "library": "openblas", "dtype": "float32", "m": 64, "n": 64, "k": 64,
            "threads": 2, "threads_applied": True, "flops_per_s": 5e10}
    return build_report([good, failing], machine=machine, versions=versions,
                        settings={"device": "cpu", "threads": 2, "model": None, "tokens": (50, 400)},
                        gemm=gemm)


def test_report_validates_and_round_trips(small_workloads, tmp_path):
    doc = make_doc(small_workloads)
    assert validate(doc) == []
    assert doc["settings"]["tokens"] == [50, 400]
    good, failing = doc["backends"]
    assert good["results"][1]["timings"]["compute"]["median"] == 0.5
    assert good["results"][1]["gemm_fraction"] == pytest.approx(1e6 * 402 / 0.5 / 5e10)
    assert good["scaling"]["largest_tokens"] == 400
    assert failing["results"][1]["error"].startswith("MemoryError")
    assert any("failed: MemoryError" in w for w in doc["warnings"])
    out = tmp_path / "sub" / "bench.json"
    write_json(doc, out)
    assert json.loads(out.read_text()) == doc
    assert [p.name for p in out.parent.iterdir()] == ["bench.json"]      # no temp file left


def test_validator_catches_violations(small_workloads):
    doc = make_doc(small_workloads)
    bad = json.loads(json.dumps(doc))
    del bad["machine"]
    bad["schema_version"] = 2
    bad["backends"][0]["results"][0]["n_tokens"] = "50"
    bad["backends"][0]["results"][0]["timings"]["compute"]["p99"] = -1.0
    bad["backends"][0]["surprise"] = 1
    errors = validate(bad)
    assert "$: missing required 'machine'" in errors
    assert "$.schema_version: expected 1, got 2" in errors
    assert "$.backends[0].results[0].n_tokens: expected integer, got str" in errors
    assert "$.backends[0].results[0].timings.compute.p99: -1.0 < minimum 0" in errors
    assert "$.backends[0]: unexpected property 'surprise'" in errors
    assert len(errors) == 5
    assert JSON_SCHEMA["$schema"].endswith("2020-12/schema")


def test_tables_render(small_workloads):
    from rich.console import Console

    doc = make_doc(small_workloads)
    lat, thr = render_tables(doc)
    assert lat.row_count == 4 and thr.row_count == 4
    console = Console(record=True, width=120)
    print_report(doc, console)
    text = console.export_text()
    assert "Test CPU" in text and "Fake GPU (driver 999.1)" in text
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in text.splitlines() if "│" in line]
    latency = [c for c in cells if len(c) == 10 and c[0] == "fixed"]
    assert [c[1:3] for c in latency] == [["50", "3"], ["400", "3"]]
    for c in latency:                                      # rulebook 2 ms, h2d 1 ms, compute 0.5 s
        assert c[-3:] == ["2.00", "1.00", "500"]
    assert "error" in text


def test_workloads_callable_sees_backend():
    seen = []

    def workloads(backend):
        seen.append(backend.name)
        return [Workload("tiny", np.array([[0, 0], [224, 0]]), np.ones((2, 3), np.float32))]

    b = bench_backend(FixedTimings, workloads, warmup=0, iterations=1)
    assert seen == ["fixed"] and b.sizes[0].n_tokens == 2 and b.sizes[0].feat_dim == 3
