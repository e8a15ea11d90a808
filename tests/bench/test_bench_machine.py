"""Machine description, gemm reference and peak-memory tracking."""
import numpy as np
import pytest

from span_deploy.bench import gemm as gemm_mod
from span_deploy.bench import machine
from span_deploy.bench.memory import DeviceMemoryHooks, PeakMemory


def test_nvidia_smi_parsing(monkeypatch):
    monkeypatch.setattr(machine.shutil, "which", lambda name: "/usr/bin/nvidia-smi")
    monkeypatch.setattr(machine, "_run", lambda cmd: "0, NVIDIA H100 80GB HBM3, 550.54.15, 81559\n"
                                                      "1, NVIDIA H100 80GB HBM3, 550.54.15, [N/A]\n")
    assert machine.gpu_info() == [
        {"index": 0, "name": "NVIDIA H100 80GB HBM3", "driver": "550.54.15", "memory_bytes": 81559 * 2**20},
        {"index": 1, "name": "NVIDIA H100 80GB HBM3", "driver": "550.54.15", "memory_bytes": None}]
    monkeypatch.setattr(machine.shutil, "which", lambda name: None)
    assert machine.gpu_info() == []


def test_machine_and_versions():
    m = machine.machine_info()
    assert m["cpu_logical"] >= m["cpu_usable"] >= 1 and m["ram_bytes"] > 2**28
    assert isinstance(m["cpu_model"], str) and m["cpu_model"]
    v = machine.library_versions()
    assert v["numpy"] == np.__version__
    assert v["python"].count(".") == 2
    assert "tensorrt" in v and "onnxruntime" in v


def test_cpu_gemm_rate_is_consistent():
    r = gemm_mod.measure_gemm("cpu", threads=1, size=128, min_time=0.01)
    assert (r.m, r.n, r.k, r.dtype, r.device) == (128, 128, 128, "float32", "cpu")
    assert r.repeats >= 3
    assert r.flops_per_s == pytest.approx(2 * 128**3 / r.median_s)
    assert r.best_flops_per_s >= r.flops_per_s > 0
    if r.threads_applied:                     # OpenBLAS/MKL found: the count really was 1
        assert r.threads == 1
    with pytest.raises(ValueError):
        gemm_mod.measure_gemm("tpu")


def test_blas_threads_restored():
    with gemm_mod.blas_threads(None) as (_, before):
        pass
    if before is None:
        pytest.skip("BLAS library not recognised")
    with gemm_mod.blas_threads(1) as (_, inside):
        assert inside == 1
    with gemm_mod.blas_threads(None) as (_, after):
        assert after == before


def test_peak_memory_sees_allocation_and_device_hook():
    calls = []
    hooks = DeviceMemoryHooks(reset=lambda: calls.append("reset"), peak=lambda: 12345)
    with PeakMemory(interval=0.001, device=hooks) as pm:
        a = np.ones(50_000_000, np.float32)              # 200 MB, touched
        a += 1
        del a
    assert calls == ["reset"]
    assert pm.peak_device_bytes == 12345
    assert pm.peak_rss_bytes - pm.start_rss_bytes > 150 * 2**20
    assert pm.to_dict()["peak_rss_bytes"] == pm.peak_rss_bytes
