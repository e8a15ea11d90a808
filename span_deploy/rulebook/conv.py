"""Sparse strided-conv rulebooks: output sites and gather tables (spec 2.4, 2.6, quirk 10)."""
from __future__ import annotations

import numpy as np


def out_extent(extent: int, kernel: int, stride: int, dilation: int) -> int:
    return (extent - dilation * (kernel - 1) - 1) // stride + 1


def _cell_lookup(coords: np.ndarray, grid_b: int):
    """Sorted flat keys of the input cells, for membership and row lookup by searchsorted."""
    keys = coords[:, 0].astype(np.int64) * grid_b + coords[:, 1].astype(np.int64)
    order = np.argsort(keys, kind="stable")
    return keys[order], order


def downsample(coords: np.ndarray, grid: tuple[int, int], kernel: int, stride: int,
               dilation: int) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Output coordinates (N_out, 2), gather table (N_out, k*k) int32 (-1 = empty) and output grid.

    Taps are t = ky*k + kx at offset (ky*d, kx*d), ky along axis a (the Conv2d weight layout).
    Output sites are every cell some tap of which holds an input node, unique and row-major.
    """
    ga, gb = int(grid[0]), int(grid[1])
    oa_n, ob_n = out_extent(ga, kernel, stride, dilation), out_extent(gb, kernel, stride, dilation)
    a = coords[:, 0].astype(np.int64)
    b = coords[:, 1].astype(np.int64)
    site_keys = []
    for ky in range(kernel):
        ra = a - ky * dilation
        oka = (ra >= 0) & (ra % stride == 0) & (ra // stride < oa_n)
        for kx in range(kernel):
            rb = b - kx * dilation
            ok = oka & (rb >= 0) & (rb % stride == 0) & (rb // stride < ob_n)
            site_keys.append((ra[ok] // stride) * ob_n + rb[ok] // stride)
    sites = np.unique(np.concatenate(site_keys)) if site_keys else np.zeros(0, np.int64)
    out = np.stack([sites // ob_n, sites % ob_n], axis=1)
    keys, order = _cell_lookup(coords, gb)
    gather = np.full((len(sites), kernel * kernel), -1, np.int32)
    for ky in range(kernel):
        for kx in range(kernel):
            ta = out[:, 0] * stride + ky * dilation
            tb = out[:, 1] * stride + kx * dilation
            tk = ta * gb + tb
            j = np.searchsorted(keys, tk)
            j = np.minimum(j, len(keys) - 1)
            hit = (keys[j] == tk) & (ta < ga) & (tb < gb)
            gather[hit, ky * kernel + kx] = order[j[hit]]
    return out.astype(np.int64), gather, (oa_n, ob_n)


def merge2x2(coords: np.ndarray, grid: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """patchmerge: sites are the unique (a//2, b//2) inside the floor(E/2) grid, slot (a%2)*2 + b%2.

    Nodes whose site falls outside the output grid (odd extents) are dropped, as officially.
    """
    oa_n, ob_n = int(grid[0]) // 2, int(grid[1]) // 2
    a = coords[:, 0].astype(np.int64)
    b = coords[:, 1].astype(np.int64)
    rows = np.flatnonzero((a // 2 < oa_n) & (b // 2 < ob_n))
    a, b = a[rows], b[rows]
    keys = (a // 2) * ob_n + b // 2
    sites, inverse = np.unique(keys, return_inverse=True)
    gather = np.full((len(sites), 4), -1, np.int32)
    gather[inverse, (a % 2) * 2 + b % 2] = rows.astype(np.int32)
    out = np.stack([sites // ob_n, sites % ob_n], axis=1)
    return out, gather, (oa_n, ob_n)
