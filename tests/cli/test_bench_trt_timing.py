"""bench --backend trt: the TensorRT timing settings trtexec changed in TensorRT 11, pinned and stated
(pure logic; running the trt backend needs TensorRT and a GPU)."""
from span_deploy.commands.bench import (TRT_BACKEND_TIMING, TRTEXEC_DEFAULTS, describe_trt_timing,
                                        trt_timing)


def test_trtexec_defaults_by_version():
    # samples/common/sampleOptions.cpp: TensorRT 10 vs the TensorRT 11.0 OSS release
    assert TRTEXEC_DEFAULTS[10] == {"data_transfers": True, "cuda_graph": False, "spin_wait": False}
    assert TRTEXEC_DEFAULTS[11] == {"data_transfers": False, "cuda_graph": True, "spin_wait": True}


def test_pinned_settings_and_the_trtexec_flags_that_match_them():
    # the trt backend: copies timed, no CUDA graph, cudaStreamSynchronize under CUDA's auto scheduling
    assert TRT_BACKEND_TIMING == {"data_transfers": True, "cuda_graph": False, "spin_wait": "auto"}
    t10 = trt_timing("10.13.0.35")
    assert {k: t10[k] for k in TRT_BACKEND_TIMING} == TRT_BACKEND_TIMING
    assert t10["trtexec_defaults"] == TRTEXEC_DEFAULTS[10] and t10["trtexec_flags"] == ["--useSpinWait"]
    assert trt_timing("8.6.1")["trtexec_flags"] == ["--useSpinWait"]
    t11 = trt_timing("11.1.0")
    assert t11["tensorrt"] == "11.1.0" and t11["trtexec_defaults"] == TRTEXEC_DEFAULTS[11]
    assert t11["trtexec_flags"] == ["--includeDataTransfers", "--noCudaGraph"]
    off = {"data_transfers": True, "cuda_graph": False, "spin_wait": False}    # trtexec 10's defaults
    assert trt_timing("10.13", off)["trtexec_flags"] == []
    assert trt_timing("11.0", off)["trtexec_flags"] == ["--includeDataTransfers", "--noCudaGraph", "--noSpinWait"]
    none = trt_timing(None)                            # TensorRT not installed: settings only
    assert none["trtexec_defaults"] is None and none["trtexec_flags"] is None


def test_flags_for_other_settings():
    trtexec11 = dict(TRTEXEC_DEFAULTS[11])
    assert trt_timing("11.0", trtexec11)["trtexec_flags"] == []
    assert trt_timing("10.5", trtexec11)["trtexec_flags"] == ["--noDataTransfers", "--useCudaGraph", "--useSpinWait"]


def test_report_line():
    line = describe_trt_timing(trt_timing("11.1.0"))
    assert line.startswith("trt timing (pinned): data transfers timed, CUDA graph off, spin-wait auto")
    assert line.endswith("trtexec 11.1.0 times the same with: --includeDataTransfers --noCudaGraph")
    off = {"data_transfers": True, "cuda_graph": False, "spin_wait": False}
    assert "(its defaults)" in describe_trt_timing(trt_timing("10.3.0", off))
    assert "trtexec" not in describe_trt_timing(trt_timing(None))


def test_bench_records_and_prints_them(monkeypatch, tmp_path):
    """The bench command with a stand-in for the trt backend (the real one needs a GPU): the pinned
    settings land in that backend's JSON settings and in the printed report."""
    import json

    import numpy as np
    from click.testing import CliRunner

    import span_deploy.backends as backends_pkg
    from span_deploy.backends.base import SpanResult
    from span_deploy.bench.report import validate
    from span_deploy.commands.bench import command

    class StandIn:
        name, max_tokens, feat_dim = "trt", None, 6

        def run(self, coords, feats):
            n = len(coords)
            return SpanResult(np.zeros(2, np.float32), np.zeros(4, np.float32), [], feats[:, :2],
                              np.zeros(n, np.float32), [n], timings={"compute": 1e-4})

    monkeypatch.setattr(backends_pkg, "available_backends", lambda: ["trt"], raising=False)
    monkeypatch.setattr(backends_pkg, "open_backend", lambda name, **kw: StandIn(), raising=False)
    model = tmp_path / "m.engine"
    model.write_bytes(b"")
    out = tmp_path / "b.json"
    r = CliRunner().invoke(command, ["--model", str(model), "--backend", "trt", "--tokens", "20", "--warmup", "0",
                                     "--iterations", "1", "--no-gemm", "--json", str(out)])
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    assert validate(doc) == []
    t = doc["backends"][0]["settings"]["tensorrt_timing"]
    assert (t["data_transfers"], t["cuda_graph"], t["spin_wait"]) == (True, False, "auto")
    assert t["tensorrt"] == doc["versions"]["tensorrt"]
    assert r.output.count("trt timing (pinned): data transfers timed, CUDA graph off, spin-wait auto") == 1
