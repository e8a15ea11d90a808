"""The window decomposition (torch reference, portable graph) against dense neighbour-form attention."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from span_export.model.attention import window_attention
from span_deploy.rulebook.windows import stage_windows, window_pairs


def neighbour_attention(q, k, v, edges, heads, bias_fn, scale):
    """out_i = softmax over the incoming edges j->i, per head; no edges -> 0 (spec 3.4)."""
    n, c = q.shape
    dh = c // heads
    out = torch.zeros(n, c, dtype=torch.float64)
    inc = {i: [] for i in range(n)}
    for j, i in edges:
        inc[i].append(j)
    for i in range(n):
        if not inc[i]:
            continue
        js = torch.tensor(sorted(inc[i]))
        for h in range(heads):
            sl = slice(h * dh, (h + 1) * dh)
            s = (k[js, sl].double() @ q[i, sl].double()) * scale + torch.tensor([bias_fn(h, int(j), i) for j in js])
            out[i, sl] = torch.softmax(s, 0) @ v[js, sl].double()
    return out


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("mode", ["long", "noshift", "single_shifted"])
def test_decomposition_equals_neighbour_form(seed, mode):
    rng = np.random.default_rng(seed)
    w = int(rng.integers(1, 4))
    extent = int(rng.integers(2, 20))
    n_cells = int(rng.integers(1, min(60, extent * extent) + 1))
    flat = rng.choice(extent * extent, n_cells, replace=False)
    cells = np.stack([np.sort(flat) // extent, np.sort(flat) % extent], 1).astype(np.int64)  # row-major
    sw = stage_windows(cells, w)
    n, heads, dh = len(cells), 2, 4
    q, k, v = (torch.randn(n, heads * dh, generator=torch.Generator().manual_seed(seed * 3 + i)) for i in range(3))
    side = 2 * w
    table = torch.randn(heads, 2 * side - 1, 2 * side - 1, generator=torch.Generator().manual_seed(99 + seed))
    scale = dh ** -0.5
    loops = {(i, i) for i in range(1, n - 1)}
    if mode == "long":
        edges = window_pairs(sw.unshifted) | window_pairs(sw.shifted) | loops
        out = window_attention(q, k, v, torch.from_numpy(sw.unshifted.win), torch.from_numpy(sw.unshifted.pos),
                               torch.from_numpy(sw.shifted.win), torch.from_numpy(sw.shifted.pos), table, heads, side, scale)
    elif mode == "noshift":
        edges = window_pairs(sw.unshifted) | loops
        out = window_attention(q, k, v, torch.from_numpy(sw.unshifted.win), torch.from_numpy(sw.unshifted.pos),
                               None, None, table, heads, side, scale)
    else:
        edges = window_pairs(sw.shifted) | loops
        out = window_attention(q, k, v, torch.from_numpy(sw.shifted.win), torch.from_numpy(sw.shifted.pos),
                               None, None, table, heads, side, scale, chunk=1)

    def bias(h, j, i):  # key minus query, on the stage coordinates (spec 7.7)
        return float(table[h, cells[j, 0] - cells[i, 0] + side - 1, cells[j, 1] - cells[i, 1] + side - 1])

    ref = neighbour_attention(q, k, v, edges, heads, bias, scale)
    assert torch.isfinite(out).all()
    np.testing.assert_allclose(out.double().numpy(), ref.numpy(), atol=2e-6, rtol=0)
    if n <= 2 and not (edges - loops):
        assert torch.count_nonzero(out) == 0   # rows 0 and N-1 without neighbours: exact zeros
