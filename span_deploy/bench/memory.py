"""Peak memory during a block of work: host RSS (sampled) and device memory (hooks).

RSS is sampled in a daemon thread with psutil every ``interval`` seconds, so a spike shorter than
that can be missed; ``ru_maxrss`` (the kernel's lifetime high-water mark) catches it but only if
the process never peaked higher before. We report both and take the larger for the block when
ru_maxrss rose during it.
"""
from __future__ import annotations

import resource
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any


def ru_maxrss_bytes() -> int:
    """Lifetime peak RSS of this process in bytes (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


@dataclass
class DeviceMemoryHooks:
    """How to read peak device memory: ``reset()`` at block start, ``peak()`` bytes at block end.

    e.g. torch: ``DeviceMemoryHooks(torch.cuda.reset_peak_memory_stats, torch.cuda.max_memory_allocated)``;
    a TensorRT/ORT backend can expose its own (allocator stats, NVML used memory).
    """
    reset: Callable[[], None] | None
    peak: Callable[[], int]


def torch_cuda_hooks(device: int | None = None) -> DeviceMemoryHooks | None:
    """Hooks over torch's caching allocator, or None when torch is not already imported."""
    torch = sys.modules.get("torch")      # never import torch just for this
    if torch is None or not torch.cuda.is_available():
        return None
    return DeviceMemoryHooks(lambda: torch.cuda.reset_peak_memory_stats(device),
                             lambda: int(torch.cuda.max_memory_allocated(device)))


class PeakMemory:
    """Context manager: ``with PeakMemory() as pm: ...`` then ``pm.peak_rss_bytes`` etc."""

    def __init__(self, interval: float = 0.005, device: DeviceMemoryHooks | None = None) -> None:
        import psutil

        self._proc = psutil.Process()
        self._interval = interval
        self._device = device
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.start_rss_bytes = 0
        self.sampled_peak_rss_bytes = 0
        self.ru_maxrss_before = 0
        self.ru_maxrss_after = 0
        self.peak_device_bytes: int | None = None

    def _sample(self) -> None:
        while not self._stop.wait(self._interval):
            rss = self._proc.memory_info().rss
            if rss > self.sampled_peak_rss_bytes:
                self.sampled_peak_rss_bytes = rss

    def __enter__(self) -> "PeakMemory":
        if self._device is not None and self._device.reset is not None:
            self._device.reset()
        self.ru_maxrss_before = ru_maxrss_bytes()
        self.start_rss_bytes = self.sampled_peak_rss_bytes = self._proc.memory_info().rss
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, name="peak-rss", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sampled_peak_rss_bytes = max(self.sampled_peak_rss_bytes, self._proc.memory_info().rss)
        self.ru_maxrss_after = ru_maxrss_bytes()
        if self._device is not None:
            try:
                self.peak_device_bytes = int(self._device.peak())
            except Exception:             # a broken hook must not lose the timings
                self.peak_device_bytes = None

    @property
    def peak_rss_bytes(self) -> int:
        """Best estimate of this block's peak RSS."""
        rose = self.ru_maxrss_after > self.ru_maxrss_before
        return max(self.sampled_peak_rss_bytes, self.ru_maxrss_after if rose else 0)

    def to_dict(self) -> dict[str, Any]:
        return {"start_rss_bytes": self.start_rss_bytes, "peak_rss_bytes": self.peak_rss_bytes,
                "sampled_peak_rss_bytes": self.sampled_peak_rss_bytes,
                "ru_maxrss_bytes": self.ru_maxrss_after, "peak_device_bytes": self.peak_device_bytes}
