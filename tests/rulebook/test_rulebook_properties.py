"""Property tests: the rulebook against brute-force readings of the spec (hypothesis)."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from span_deploy.rulebook.conv import downsample
from span_deploy.rulebook.coords import normalise, pad_amounts, sort_order
from span_deploy.rulebook.windows import stage_windows, window_pairs

cells_strategy = st.lists(st.tuples(st.integers(0, 25), st.integers(0, 25)), min_size=1, max_size=60, unique=True)


def brute_window_edges(cells: np.ndarray, w: int) -> tuple[set, set]:
    """Spec 3.2 read literally: unshifted and shifted co-membership of distinct nodes."""
    side = 2 * w
    xa, xb = cells[:, 0].max() + 1, cells[:, 1].max() + 1
    n = len(cells)
    if xa < side and xb < side:
        allp = {(j, i) for i in range(n) for j in range(n) if i != j}
        return allp, allp
    shift = not (xa % side == 0 and xb % side == 0)
    un, sh = set(), set()
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            a, b = cells[i], cells[j]
            if a[0] // side == b[0] // side and a[1] // side == b[1] // side:
                un.add((j, i))
            o = w if shift else 0
            if (a[0] + o) // side == (b[0] + o) // side and (a[1] + o) // side == (b[1] + o) // side:
                sh.add((j, i))
    return un, sh


@settings(max_examples=150, deadline=None)
@given(cells_strategy, st.integers(1, 4))
def test_window_tables_encode_the_spec_pairs(cells, w):
    c = np.array(cells, np.int64)
    sw = stage_windows(c, w)
    un, sh = brute_window_edges(c, w)
    assert window_pairs(sw.unshifted) == un
    assert window_pairs(sw.shifted) == sh
    # every node sits in exactly one slot of each windowing
    for wd in (sw.unshifted, sw.shifted):
        flat = wd.win.reshape(-1)
        np.testing.assert_array_equal(flat[wd.pos], np.arange(len(c)))
        assert (flat >= 0).sum() == len(c)


@settings(max_examples=150, deadline=None)
@given(cells_strategy, st.integers(1, 3), st.integers(1, 3), st.integers(1, 2))
def test_downsample_matches_brute_force(cells, k, s, d):
    c = np.array(cells, np.int64)
    grid = (int(c[:, 0].max()) + 1 + 2, int(c[:, 1].max()) + 1 + 1)
    out, gather, ogrid = downsample(c, grid, k, s, d)
    ea = (grid[0] - d * (k - 1) - 1) // s + 1
    eb = (grid[1] - d * (k - 1) - 1) // s + 1
    assert ogrid == (ea, eb)
    lookup = {tuple(x): i for i, x in enumerate(c.tolist())}
    sites = []
    for oa in range(max(ea, 0)):
        for ob in range(max(eb, 0)):
            taps = [lookup.get((oa * s + ky * d, ob * s + kx * d), -1) for ky in range(k) for kx in range(k)]
            if any(t >= 0 for t in taps):
                sites.append(((oa, ob), taps))
    assert out.tolist() == [list(p) for p, _ in sites]            # sorted row-major, unique
    assert gather.tolist() == [t for _, t in sites]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 400), st.integers(0, 400)), min_size=1, max_size=40, unique=True),
       st.tuples(st.integers(0, 5000), st.integers(0, 5000)), st.integers(0, 223))
def test_normalise_recovers_the_grid(cells, origin, jitter):
    c = np.array(cells, np.int64)
    raw = (c + np.array(origin)) * 224
    raw_j = raw + jitter
    raw_j[c[:, 0] == c[:, 0].min(), 0] -= jitter   # the minimum cell sits on the grid line
    raw_j[c[:, 1] == c[:, 1].min(), 1] -= jitter
    expect = c - c.min(axis=0)
    np.testing.assert_array_equal(normalise(raw), expect)
    np.testing.assert_array_equal(normalise(raw.astype(np.float64)), expect)
    order = sort_order(expect)
    keys = expect[order, 0] * (expect[:, 1].max() + 1) + expect[order, 1]
    assert np.all(np.diff(keys) > 0)


def test_normalise_uses_float32_steps():
    """Spec 1.2's own example: (100,100), (324,548), (772,1668) -> (0,0), (1,2), (3,7)."""
    got = normalise(np.array([[100, 100], [324, 548], [772, 1668]]))
    assert got.tolist() == [[0, 0], [1, 2], [3, 7]]


@given(st.integers(1, 3000))
def test_default_padding_table(extent):
    """Spec 1.4 table: E in 4m+1..4m+4 pads to 8+4m, left 2 or 3, right 2 to 4."""
    left, right = pad_amounts(extent, 2, 2, 1, 2)
    m = max(0, -(-(extent - 4) // 4))
    assert extent + left + right == 8 + 4 * m
    assert left in (2, 3) and 2 <= right <= 4 and left == (left + right) // 2
