"""Synthetic whole slides for benchmarks and tests: tissue-like token geometry on the 224-px grid.

``tissue_slide`` places exactly ``n`` tokens on grid cells so that the set looks like a real
tissue mask (a few irregular blobs, ragged edges, holes, small fragments, bounding-box occupancy of
roughly 35-60 %), because rulebook size, padding and neighbour counts depend on that geometry: a
full rectangle or uniform scatter would give misleading timings.

``describe_geometry`` measures a coordinate set (extent, occupancy, components, holes, 3x3
neighbours); ``describe_stages`` is the hook for the per-stage numbers only the rulebook knows.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

PATCH_PX = 224            # raw pixel coords are grid cell * PATCH_PX
_DIRECT_FEATURE_ELEMS = 1 << 23  # above this, features come from the two-pool mixture (speed)
_POOL_ROWS = 4096


def tissue_slide(n_tokens: int, seed: int = 0, feat_dim: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Exactly ``n_tokens`` unique grid cells with tissue-like geometry, and random features.

    Returns ``coords`` int64 (N, 2) raw pixel (x, y), multiples of 224, in raster order (y, then x),
    offset from the origin like a real slide; and ``feats`` float32 (N, feat_dim), standard normal
    per element. Deterministic in (n_tokens, seed, feat_dim).

    Features: up to 8M elements every element is drawn independently. Above that, row i is
    ``(A[a_i] + B[b_i]) / sqrt(2)`` for two pools of 4096 i.i.d. normal rows and distinct pairs
    (a_i, b_i): still exactly N(0, 1) per element and no two rows equal, at a third of the cost
    of drawing 100M normals (a benchmark needs realistic finite values, not independence).
    """
    n = int(n_tokens)
    if n < 1:
        raise ValueError(f"n_tokens must be >= 1, got {n_tokens}")
    if feat_dim < 1:
        raise ValueError(f"feat_dim must be >= 1, got {feat_dim}")
    rng = np.random.default_rng([seed, n])
    coords = _tissue_cells(n, rng) * PATCH_PX
    feats = _features(n, feat_dim, np.random.default_rng([seed, n, feat_dim, 1]))
    return coords, feats


# --------------------------------------------------------------------------- geometry

def _tissue_cells(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 2) int64 grid cells (x, y): the n highest-scoring cells of a blob field."""
    occupancy = rng.uniform(0.30, 0.45)     # of the field; the tissue bbox ends up denser
    aspect = rng.uniform(1.2, 1.8)          # slides are wider than tall
    area = n / occupancy
    h = max(3, math.ceil(math.sqrt(area / aspect)))
    w = max(3, math.ceil(area / h))
    score = _blob_field(h, w, rng)
    # Top-n by score: every blob shrinks or grows by the same normalised radius, so shapes
    # (lobes, holes) survive whatever n is; ties broken by cell index (deterministic).
    flat = score.ravel()
    if n < flat.size:
        idx = np.argpartition(-flat, n - 1, kind="introselect")[:n]
    else:                                   # cannot happen with occupancy < 1; kept for safety
        idx = np.arange(flat.size)
    idx.sort()                              # raster order: y-major, then x
    y, x = np.divmod(idx.astype(np.int64), w)
    origin = rng.integers(8, 96, size=2)    # real slides never start at cell (0, 0)
    return np.stack([x + origin[0], y + origin[1]], axis=1)


def _blob_field(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Score per cell: 1 at piece centres, 0 on the (irregular) rims, negative outside and in holes.

    Pieces sit in separate slots of a layout grid (serial sections side by side, as on real
    slides) with lobed outlines, elongation, holes, a few small fragments and ragged edges.
    """
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    score = np.full((h, w), -np.inf, dtype=np.float32)
    n_pieces = int(rng.integers(1, 5))
    cols = max(1, min(n_pieces, round(math.sqrt(n_pieces * w / h))))
    rows = math.ceil(n_pieces / cols)
    slots = rng.permutation(rows * cols)[:n_pieces]
    sw, sh = w / cols, h / rows
    for slot in slots:
        r0, c0 = divmod(int(slot), cols)
        cx, cy = (c0 + rng.uniform(0.4, 0.6)) * sw, (r0 + rng.uniform(0.4, 0.6)) * sh
        r = min(sw, sh) * rng.uniform(0.32, 0.48)
        _add_piece(score, xx, yy, cx, cy, r, rng, holes=int(rng.integers(0, 4)))
    for _ in range(int(rng.integers(0, 4))):               # small fragments anywhere
        _add_piece(score, xx, yy, rng.uniform(0, w), rng.uniform(0, h),
                   min(h, w) * rng.uniform(0.02, 0.06), rng, holes=0)
    size = min(h, w)
    score += np.float32(0.15) * _value_noise(h, w, max(2, size // 6), rng)   # wavy outline
    score += np.float32(0.10) * _value_noise(h, w, max(2, size // 20), rng)  # ragged edge
    return score


def _add_piece(score: np.ndarray, xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, r: float,
               rng: np.random.Generator, holes: int) -> None:
    """max-in one lobed ellipse (1 - rho / R(phi)), then punch elliptical holes into it."""
    ratio = rng.uniform(0.45, 1.0)                          # elongated sections
    rot = rng.uniform(0, math.pi)
    # Work on the piece's bounding window only: cost follows the piece, not the field.
    ext = r * 1.8
    y0, y1 = max(0, int(cy - ext)), min(score.shape[0], int(cy + ext) + 1)
    x0, x1 = max(0, int(cx - ext)), min(score.shape[1], int(cx + ext) + 1)
    if y0 >= y1 or x0 >= x1:
        return
    win = score[y0:y1, x0:x1]
    dx, dy = xx[y0:y1, x0:x1] - np.float32(cx), yy[y0:y1, x0:x1] - np.float32(cy)
    c, s = np.float32(math.cos(rot)), np.float32(math.sin(rot))
    u, v = c * dx + s * dy, (-s * dx + c * dy) / np.float32(ratio)
    rho = np.hypot(u, v) / np.float32(r)
    phi = np.arctan2(v, u)
    lobes = np.ones_like(rho)                               # R(phi) = 1 + sum_m a_m cos(m phi + p_m)
    for m in range(2, 6):
        lobes += np.float32(rng.uniform(0.0, 0.4 / m)) * np.cos(m * phi + np.float32(rng.uniform(0, 6.3)))
    np.maximum(win, 1.0 - rho / np.maximum(lobes, 0.3), out=win)
    for _ in range(holes):                                  # lumens, tears, fat
        hu, hv = rng.uniform(-0.5, 0.5) * r, rng.uniform(-0.5, 0.5) * r
        hr, hratio = r * rng.uniform(0.07, 0.2), np.float32(rng.uniform(0.4, 1.0))
        inside = (u - np.float32(hu)) ** 2 + ((v - np.float32(hv)) / hratio) ** 2 < np.float32(hr * hr)
        win[inside] = -10.0


def _value_noise(h: int, w: int, cell: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth noise in [-1, 1]: random lattice values every ``cell`` cells, bilinear in between."""
    gh, gw = h // cell + 2, w // cell + 2
    lattice = rng.uniform(-1, 1, size=(gh, gw)).astype(np.float32)
    fy = np.arange(h, dtype=np.float32) / cell
    fx = np.arange(w, dtype=np.float32) / cell
    y0, x0 = fy.astype(np.int64), fx.astype(np.int64)
    ty, tx = (fy - y0)[:, None], (fx - x0)[None, :]
    a = lattice[y0][:, x0]
    b = lattice[y0][:, x0 + 1]
    c = lattice[y0 + 1][:, x0]
    d = lattice[y0 + 1][:, x0 + 1]
    return (a * (1 - tx) + b * tx) * (1 - ty) + (c * (1 - tx) + d * tx) * ty


def _features(n: int, f: int, rng: np.random.Generator) -> np.ndarray:
    if n * f <= _DIRECT_FEATURE_ELEMS:
        return rng.standard_normal((n, f), dtype=np.float32)
    scale = np.float32(1.0 / math.sqrt(2.0))
    pool_a = rng.standard_normal((_POOL_ROWS, f), dtype=np.float32) * scale
    pool_b = rng.standard_normal((_POOL_ROWS, f), dtype=np.float32) * scale
    # Distinct (a, b) pairs, so no two rows are equal (needs n <= 4096^2, far above 200k).
    ia, ib = np.divmod(rng.choice(_POOL_ROWS * _POOL_ROWS, n, replace=False), _POOL_ROWS)
    out = np.empty((n, f), dtype=np.float32)
    step = 1024                                  # chunks stay in cache: ~2x faster than whole-array ops
    for s in range(0, n, step):
        e = min(n, s + step)
        np.take(pool_a, ia[s:e], axis=0, out=out[s:e])
        out[s:e] += pool_b[ib[s:e]]
    return out


# --------------------------------------------------------------------------- descriptions

def describe_geometry(coords: np.ndarray, patch_px: int = PATCH_PX, components: bool = True) -> dict[str, Any]:
    """Grid extent, occupancy and shape statistics of a coordinate set (raw pixels).

    ``occupancy`` is tokens / bounding-box cells. ``components`` counts 8-connected tissue pieces,
    ``holes`` counts 4-connected background regions enclosed by tissue (the usual dual
    connectivities, so a diagonal gap does not count as both), ``hole_cells`` their area.
    ``mean_neighbours_3x3`` is the mean number of occupied cells among the 8 around a token.
    """
    c = np.asarray(coords)
    if c.ndim != 2 or c.shape[1] != 2:
        raise ValueError(f"coords must have shape (N, 2), got {c.shape}")
    n = int(c.shape[0])
    out: dict[str, Any] = {"n_tokens": n, "patch_px": patch_px}
    if n == 0:
        return out | {"unique_cells": 0, "off_grid": 0}
    c = c.astype(np.int64)
    cells = np.floor_divide(c, patch_px)
    off_grid = int(np.count_nonzero((c % patch_px).any(axis=1)))
    lo, hi = cells.min(axis=0), cells.max(axis=0)
    w, h = int(hi[0] - lo[0] + 1), int(hi[1] - lo[1] + 1)
    mask = np.zeros((h, w), dtype=bool)
    mask[cells[:, 1] - lo[1], cells[:, 0] - lo[0]] = True
    unique = int(mask.sum())
    padded = np.pad(mask, 1)
    neigh = sum(np.roll(np.roll(padded, dy, 0), dx, 1).astype(np.int16)
                for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx)[1:-1, 1:-1]
    out |= {
        "unique_cells": unique,
        "duplicates": n - unique,
        "off_grid": off_grid,
        "min_cell": [int(lo[0]), int(lo[1])],
        "max_cell": [int(hi[0]), int(hi[1])],
        "width_cells": w,
        "height_cells": h,
        "bbox_cells": w * h,
        "occupancy": unique / (w * h),
        "mean_neighbours_3x3": float(neigh[mask].mean()),
        "interior_fraction": float(np.count_nonzero(neigh[mask] == 8) / unique),
    }
    if components:
        n_tissue, _ = _components(mask, diagonal=True)
        n_bg, sizes = _components(~padded, diagonal=False)
        # The padding ring makes all outside background one component: the first run found.
        out |= {"components": n_tissue, "holes": n_bg - 1, "hole_cells": int(sizes.sum() - sizes[0])}
    return out


def describe_stages(stage_sizes: Sequence[int], neighbours_per_token: Sequence[Any] | None = None,
                    n_tokens: int | None = None) -> list[dict[str, Any]]:
    """Hook for rulebook data: rows per stage, shrink factor, and neighbour statistics.

    ``stage_sizes``: local rows per stage (pads included) as the rulebook/``SpanResult`` gives them.
    ``neighbours_per_token``: per stage, either an array of neighbour counts per row or a float
    mean (``None`` entries allowed). ``n_tokens``: the input count, for the stage-0 padding share.
    """
    nb = list(neighbours_per_token) if neighbours_per_token is not None else [None] * len(stage_sizes)
    if len(nb) != len(stage_sizes):
        raise ValueError(f"{len(nb)} neighbour entries for {len(stage_sizes)} stages")
    rows: list[dict[str, Any]] = []
    prev = n_tokens
    for s, (size, k) in enumerate(zip(stage_sizes, nb)):
        d: dict[str, Any] = {"stage": s, "rows": int(size),
                             "shrink": (prev / size) if prev and size else None}
        if s == 0 and n_tokens:
            d["pad_fraction"] = (size - n_tokens) / size if size else 0.0
        if k is not None:
            arr = np.asarray(k, dtype=np.float64)
            d["mean_neighbours"] = float(arr.mean()) if arr.size else 0.0
            if arr.ndim:
                d["max_neighbours"] = float(arr.max()) if arr.size else 0.0
        rows.append(d)
        prev = size
    return rows


def _components(mask: np.ndarray, diagonal: bool) -> tuple[int, np.ndarray]:
    """Connected components of a 2-D mask by row runs + union-find (runs, not cells, are the
    unit, so a 200k-cell slide is a few thousand unions). Returns (count, sizes by first run)."""
    h = mask.shape[0]
    pad = np.zeros((h, 1), dtype=np.int8)
    d = np.diff(np.concatenate([pad, mask.astype(np.int8), pad], axis=1), axis=1)
    sr, sc = np.nonzero(d == 1)
    _, ec = np.nonzero(d == -1)                 # same row-major order as the starts
    if sr.size == 0:
        return 0, np.zeros(0, dtype=np.int64)
    parent = list(range(sr.size))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    row_start = np.searchsorted(sr, np.arange(h + 1))
    slack = 1 if diagonal else 0
    starts, ends = sc.tolist(), ec.tolist()
    for r in range(h - 1):
        i, i_end = int(row_start[r]), int(row_start[r + 1])
        j, j_end = i_end, int(row_start[r + 2])
        while i < i_end and j < j_end:          # two-pointer sweep over overlapping runs
            if starts[i] < ends[j] + slack and starts[j] < ends[i] + slack:
                ri, rj = find(i), find(j)
                if ri != rj:
                    parent[max(ri, rj)] = min(ri, rj)   # the smaller id stays root: run 0 keeps id 0
            if ends[i] < ends[j]:
                i += 1
            else:
                j += 1
    roots = np.fromiter((find(i) for i in range(sr.size)), dtype=np.int64, count=sr.size)
    lengths = ec - sc
    uniq, inv = np.unique(roots, return_inverse=True)
    sizes = np.bincount(inv, weights=lengths).astype(np.int64)
    return int(uniq.size), sizes
