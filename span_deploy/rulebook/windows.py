"""Window tables for SPAN's sparse window attention (spec 3.2, 7.3-7.5, 8.3).

A *windowing* assigns every local node one window and one slot in it. It is stored as
``win`` (W, S*S) int32 -- the node row in each slot, -1 if empty -- and ``pos`` (N,) int32,
the flat position ``window*S*S + slot`` of each node. Only non-empty windows are stored.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Windowing:
    win: np.ndarray   # (W, S*S) int32
    pos: np.ndarray   # (N,) int32

    @property
    def num_windows(self) -> int:
        return int(self.win.shape[0])


@dataclass(frozen=True)
class StageWindows:
    unshifted: Windowing
    shifted: Windowing   # equals `unshifted` when the shift is inactive
    shift_active: bool
    small_grid: bool     # both sides < 2w: all-to-all
    extent: tuple[int, int]


def windowing(coords: np.ndarray, side: int, offset: int) -> Windowing:
    """Windows of side S whose origins sit at multiples of S minus `offset`."""
    a = coords[:, 0].astype(np.int64) + offset
    b = coords[:, 1].astype(np.int64) + offset
    wa, wb = a // side, b // side
    nb = int(wb.max()) + 1
    wkey = wa * nb + wb
    uniq, widx = np.unique(wkey, return_inverse=True)
    slot = (a % side) * side + (b % side)
    pos = widx.astype(np.int64) * side * side + slot
    win = np.full(len(uniq) * side * side, -1, np.int32)
    win[pos] = np.arange(len(coords), dtype=np.int32)
    return Windowing(win.reshape(len(uniq), side * side), pos.astype(np.int32))


def stage_windows(coords: np.ndarray, window_size: int) -> StageWindows:
    """Both windowings of one stage, with the official small-grid and no-shift rules."""
    side = 2 * window_size
    ext = (int(coords[:, 0].max()) + 1, int(coords[:, 1].max()) + 1)
    unshifted = windowing(coords, side, 0)
    small = ext[0] < side and ext[1] < side  # everyone in window (0, 0): all-to-all
    # The official code shifts only by padding, and pads only when a side is not a multiple of
    # 2w: with both sides multiples, the "shifted" windows are the unshifted ones (quirk 3).
    shift = not small and not (ext[0] % side == 0 and ext[1] % side == 0)
    shifted = windowing(coords, side, window_size) if shift else unshifted
    return StageWindows(unshifted, shifted, shift, small, ext)


def window_pairs(wnd: Windowing) -> set[tuple[int, int]]:
    """(src, dst) pairs of distinct nodes sharing a window (for tests and debugging)."""
    out: set[tuple[int, int]] = set()
    for row in wnd.win:
        nodes = row[row >= 0]
        for i in nodes:
            for j in nodes:
                if i != j:
                    out.add((int(j), int(i)))
    return out
