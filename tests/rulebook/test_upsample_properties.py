"""Property tests: the decoder's upsampling tables against brute-force readings of the official
s_PixelShuffle and sparse ConvTranspose2d (hypothesis)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from span_deploy.errors import RulebookError
from span_deploy.rulebook.conv import downsample
from span_deploy.rulebook.upsample import pixelshuffle_tables, transpose_gather

cells_strategy = st.lists(st.tuples(st.integers(0, 20), st.integers(0, 20)), min_size=1, max_size=50, unique=True)


def rowmajor(cells) -> np.ndarray:
    c = np.array(sorted(cells), np.int64)
    return c


@settings(max_examples=150, deadline=None)
@given(cells_strategy, st.integers(1, 3), st.integers(1, 3), st.integers(1, 2))
def test_transpose_gather_matches_brute_force(cells, k, s, d):
    """Fine row r, tap t = ky*k + kx: the coarse row c with c*s + (ky*d, kx*d) == fine[r], else -1."""
    fine = rowmajor(cells)
    grid = (int(fine[:, 0].max()) + 3, int(fine[:, 1].max()) + 3)
    coarse, _, _ = downsample(fine, grid, k, s, d)
    if len(coarse) == 0:
        return
    got = transpose_gather(fine, coarse, k, s, d)
    where = {tuple(c): i for i, c in enumerate(coarse.tolist())}
    for r, (a, b) in enumerate(fine.tolist()):
        for ky in range(k):
            for kx in range(k):
                pa, pb = a - ky * d, b - kx * d
                want = -1
                if pa >= 0 and pb >= 0 and pa % s == 0 and pb % s == 0:
                    want = where.get((pa // s, pb // s), -1)
                assert got[r, ky * k + kx] == want


@settings(max_examples=150, deadline=None)
@given(cells_strategy, st.integers(2, 3))
def test_pixelshuffle_parent_and_slot(cells, s):
    """With kernel = stride every fine row has its parent (a // s, b // s) among the coarse rows;
    the slot is (a % s) * s + b % s (official child channel layout)."""
    fine = rowmajor(cells)
    grid = (int(fine[:, 0].max()) + 1 + s, int(fine[:, 1].max()) + 1 + s)
    grid = (grid[0] - grid[0] % s, grid[1] - grid[1] % s)
    coarse, _, _ = downsample(fine, grid, s, s, 1)
    parent, slot = pixelshuffle_tables(fine, coarse, s)
    assert parent.dtype == np.int32 and slot.dtype == np.int32
    np.testing.assert_array_equal(coarse[parent], fine // s)
    np.testing.assert_array_equal(slot, (fine[:, 0] % s) * s + fine[:, 1] % s)
    # children of one parent get distinct slots
    pairs = set(zip(parent.tolist(), slot.tolist()))
    assert len(pairs) == len(fine)


def test_pixelshuffle_missing_parent_is_an_error():
    fine = np.array([[0, 0], [5, 5]])
    coarse = np.array([[0, 0]])
    with pytest.raises(RulebookError, match="1 of 2 rows have no coarse parent.*cell \\[5, 5\\]"):
        pixelshuffle_tables(fine, coarse, 2)
