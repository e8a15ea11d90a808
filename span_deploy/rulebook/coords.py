"""Coordinate normalisation, sorting and padding, exactly as the official loaders and padder.

Spec sections 1.2-1.4. The float32 steps are reproduced bit for bit: the grid cell of a patch
comes from float32(c)/224 minus the float32 column minimum, truncated.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import RulebookError

GRID_STEP = np.float32(224.0)
MAX_COORD = 32767  # the official window builder casts stage coordinates to int16


def normalise(cords: np.ndarray) -> np.ndarray:
    """Raw pixel coordinates (N, 2) -> int32 grid cells (spec 1.2)."""
    c = np.asarray(cords)
    if c.ndim != 2 or c.shape[1] != 2:
        raise RulebookError(f"coordinates must have shape (N, 2), got {c.shape}")
    if c.shape[0] == 0:
        raise RulebookError("the slide has no patches (0 coordinates)")
    if not np.all(np.isfinite(c)):
        raise RulebookError("coordinates contain NaN or Inf")
    scaled = c.astype(np.float32) / GRID_STEP
    shifted = scaled - scaled.min(axis=0)  # float32 - float32 stays float32
    return shifted.astype(np.int32)  # truncation toward zero; values are >= 0


def sort_order(norm: np.ndarray) -> np.ndarray:
    """Row-major order by (a, b): key a*(max_b+1)+b in int32, ascending (spec 1.3)."""
    key = norm[:, 0].astype(np.int32) * (np.int32(norm[:, 1].max()) + np.int32(1)) + norm[:, 1].astype(np.int32)
    return np.argsort(key, kind="stable")


def check_unique(norm_sorted: np.ndarray, raw_sorted: np.ndarray) -> None:
    """Reject two patches in one grid cell: the official model silently corrupts them (spec 1.2)."""
    same = np.all(norm_sorted[1:] == norm_sorted[:-1], axis=1)
    if same.any():
        first = int(np.flatnonzero(same)[0])
        n_dup = int(same.sum())
        raise RulebookError(
            f"{n_dup} patch(es) fall into an already occupied grid cell after normalisation "
            f"(float32 c/224 minus the column minimum, truncated); first collision: raw "
            f"{raw_sorted[first].tolist()} and {raw_sorted[first + 1].tolist()} both map to cell "
            f"{norm_sorted[first].tolist()}. Coordinates must lie on one global 224-px grid "
            "(one patch per cell); re-extract the patches on that grid or drop the duplicates")


@dataclass(frozen=True)
class Padding:
    left: tuple[int, int]
    right: tuple[int, int]
    lead: bool   # a zero node was prepended (it sits at (0, 0))
    trail: bool  # a zero node was appended at the far corner

    @property
    def n_extra(self) -> int:
        return int(self.lead) + int(self.trail)


def pad_amounts(extent: int, kernel: int, stride: int, dilation: int, layers: int) -> tuple[int, int]:
    """(left, right) for one axis of extent E = max coordinate + 1 (spec 1.4)."""
    k_eff = (kernel - 1) * dilation + 1
    S = stride ** layers
    if stride == 1:
        rf = 1 + layers * (k_eff - 1)
    else:
        rf = 1 + (k_eff - 1) * (S - 1) // (stride - 1)
    # the official code divides in float32 on a 0-d tensor, then ceils
    m = max(0, int(np.ceil(np.float32(extent - rf) / np.float32(S))))
    total = 2 * rf + S * m - extent
    left = total // 2
    return left, total - left


def pad(norm_sorted: np.ndarray, kernel: int, stride: int, dilation: int, layers: int) -> tuple[np.ndarray, Padding]:
    """Stage-0 coordinates (N0, 2) int32 with the pad nodes, and what was added."""
    ext = norm_sorted.max(axis=0).astype(np.int64) + 1
    la, ra = pad_amounts(int(ext[0]), kernel, stride, dilation, layers)
    lb, rb = pad_amounts(int(ext[1]), kernel, stride, dilation, layers)
    lead = la > 0 or lb > 0
    trail = ra > 0 or rb > 0
    real = norm_sorted.astype(np.int64) + (np.array([la, lb]) if lead else 0)
    parts = []
    if lead:
        parts.append(np.zeros((1, 2), np.int64))
    parts.append(real)
    if trail:
        parts.append(np.array([[ext[0] - 1 + ra + la, ext[1] - 1 + rb + lb]], np.int64))
    coords = np.concatenate(parts, axis=0)
    if coords.max() > MAX_COORD:
        raise RulebookError(f"the padded grid reaches cell {int(coords.max())}; SPAN's window builder "
                            f"keeps coordinates below {MAX_COORD + 1} (int16). Is the 224-px grid right?")
    return coords.astype(np.int32), Padding((la, lb), (ra, rb), lead, trail)
