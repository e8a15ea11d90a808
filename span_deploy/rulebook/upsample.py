"""Decoder upsampling tables: from a coarse stage's rows back onto a finer stage's coordinates.

The official decoder pops the finer stage's coordinate list (the encoder recorded it before
downsampling) and keeps its row order, pads included, so a decoder block's rows are exactly
that encoder stage's rows. What the host computes is, per fine row, where its features come from:

* ``pixelshuffle`` (a Linear to s*s*C channels, then child (da, db) of a coarse site takes the
  channels ``c*s*s + da*s + db``): the parent row ``(a // s, b // s)`` and the slot
  ``(a % s) * s + b % s`` of every fine row. A fine row without a parent is dropped by the
  official model (it then returns fewer rows than patches): refused here.
* ``patchinvs`` / ``dwpatchinvs`` (a sparse ConvTranspose2d): per fine row and kernel tap
  t = ky*k + kx at offset (ky*d, kx*d), the coarse row at ((a - ky*d) / s, (b - kx*d) / s) when
  both divisions are exact, else -1 (a fine site sums all its parents; no normalisation).
"""
from __future__ import annotations

import numpy as np

from ..errors import RulebookError


def _lookup(coarse: np.ndarray, cells: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Row of each ``cells`` entry in ``coarse`` (-1 where absent or not ``valid``)."""
    width = int(max(coarse[:, 1].max(initial=0), cells[:, 1].max(initial=0))) + 1
    keys = coarse[:, 0].astype(np.int64) * width + coarse[:, 1].astype(np.int64)
    order = np.argsort(keys, kind="stable")
    skeys = keys[order]
    want = cells[:, 0].astype(np.int64) * width + cells[:, 1].astype(np.int64)
    j = np.minimum(np.searchsorted(skeys, want), max(len(skeys) - 1, 0))
    hit = valid & (len(skeys) > 0) & (skeys[j] == want) if len(skeys) else np.zeros(len(cells), bool)
    out = np.full(len(cells), -1, np.int64)
    out[hit] = order[j[hit]]
    return out


def pixelshuffle_tables(fine: np.ndarray, coarse: np.ndarray, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """(parent row, slot) int32 per fine row."""
    fine = np.asarray(fine, np.int64)
    parent = _lookup(coarse, fine // stride, np.ones(len(fine), bool))
    missing = np.flatnonzero(parent < 0)
    if len(missing):
        r = int(missing[0])
        raise RulebookError(
            f"pixelshuffle upsampling: {len(missing)} of {len(fine)} rows have no coarse parent (first: cell "
            f"{fine[r].tolist()}, parent {(fine[r] // stride).tolist()}); the official model drops them and returns "
            "fewer rows than patches. pixelshuffle restores every row only with kernel_size = stride and dilation 1; "
            "use a model with patchinvs / dwpatchinvs for this geometry")
    slot = (fine[:, 0] % stride) * stride + fine[:, 1] % stride
    return parent.astype(np.int32), slot.astype(np.int32)


def transpose_gather(fine: np.ndarray, coarse: np.ndarray, kernel: int, stride: int,
                     dilation: int) -> np.ndarray:
    """(n_fine, k*k) int32: the coarse row feeding each fine row through each tap, -1 = none."""
    fine = np.asarray(fine, np.int64)
    out = np.full((len(fine), kernel * kernel), -1, np.int32)
    for ky in range(kernel):
        for kx in range(kernel):
            delta = fine - np.array([ky * dilation, kx * dilation])
            valid = (delta >= 0).all(1) & (delta % stride == 0).all(1)
            out[:, ky * kernel + kx] = _lookup(coarse, np.where(valid[:, None], delta // stride, 0), valid)
    return out
