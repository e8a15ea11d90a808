"""Freed heap memory back to the OS between the phases of a one-slide run.

glibc keeps freed blocks below its mmap threshold (which grows to 32 MB as large blocks are
freed) for reuse: after the model split it kept 36 MB, after the features' chunks had streamed
through the stem 0.2 GB at 200k patches, all of it counted in the process's peak.
"""
from __future__ import annotations

import ctypes
import ctypes.util

_libc = None


def return_freed_heap() -> None:
    """malloc_trim(0) where the C library has it (glibc); elsewhere nothing."""
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        _libc.malloc_trim(0)
    except (OSError, AttributeError):   # not glibc (macOS, musl): nothing to do
        pass
