"""What a benchmark ran on: CPU, cores, RAM, GPU + driver, and library versions.

Versions come from package metadata (``importlib.metadata``), so nothing heavy is imported:
torch and TensorRT are never imported here just to print a version.
"""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from typing import Any

# distribution names; the first installed one of each group is reported
_PACKAGES: dict[str, tuple[str, ...]] = {
    "span-deploy": ("span-deploy",),
    "numpy": ("numpy",),
    "onnx": ("onnx",),
    "onnxruntime": ("onnxruntime-gpu", "onnxruntime"),
    "torch": ("torch",),
    "tensorrt": ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt_cu12", "tensorrt-cu11"),
    "h5py": ("h5py",),
}


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if sys.platform == "darwin":
        out = _run(["sysctl", "-n", "machdep.cpu.brand_string"])
        if out:
            return out.strip()
    return platform.processor() or platform.machine()


def gpu_info() -> list[dict[str, Any]]:
    """One dict per GPU from nvidia-smi (name, driver, memory); empty without NVIDIA tools."""
    if not shutil.which("nvidia-smi"):
        return []
    out = _run(["nvidia-smi", "--query-gpu=index,name,driver_version,memory.total",
                "--format=csv,noheader,nounits"])
    gpus = []
    for line in (out or "").splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 4:
            continue
        mem = int(parts[3]) * 2**20 if parts[3].isdigit() else None
        gpus.append({"index": int(parts[0]) if parts[0].isdigit() else parts[0], "name": parts[1],
                     "driver": parts[2], "memory_bytes": mem})
    return gpus


def machine_info() -> dict[str, Any]:
    """Host description for the report."""
    import psutil

    try:
        usable = len(os.sched_getaffinity(0))       # what this process may run on (cgroups/taskset)
    except AttributeError:
        usable = os.cpu_count()
    return {
        "hostname": platform.node(),
        "os": f"{platform.system()} {platform.release()}",
        "arch": platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_logical": os.cpu_count(),
        "cpu_physical": psutil.cpu_count(logical=False),
        "cpu_usable": usable,
        "ram_bytes": int(psutil.virtual_memory().total),
        "gpus": gpu_info(),
    }


def library_versions() -> dict[str, str | None]:
    """Installed versions (None when absent), plus Python; CUDA of torch only if already imported."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for key, dists in _PACKAGES.items():
        versions[key] = None
        for dist in dists:
            try:
                versions[key] = metadata.version(dist)
                if key == "onnxruntime":        # -gpu and CPU wheels differ in providers
                    versions["onnxruntime_package"] = dist
                break
            except metadata.PackageNotFoundError:
                continue
    torch = sys.modules.get("torch")        # already paid for by a backend: cheap to ask
    if torch is not None:
        versions["torch_cuda"] = getattr(getattr(torch, "version", None), "cuda", None)
    return versions


def _run(cmd: list[str]) -> str | None:
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout if res.returncode == 0 else None
