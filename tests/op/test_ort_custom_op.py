"""span_deploy::SparseWindowAttention in real ONNX Runtime sessions (CPU EP) against an
independent brute-force numpy reference of the op contract (plugins/sparse_window_attention/README.md)."""
from __future__ import annotations

import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from span_deploy import native
from span_deploy.errors import BackendError

DOMAIN = "span_deploy"


@pytest.fixture(scope="module")
def ops_lib():
    try:
        return str(native.ort_ops_library())
    except BackendError as e:
        # CI builds the library first: there a missing library is a failure, not a skip.
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but the custom-op library is missing: {e}")
        pytest.skip(str(e))


# ---------------------------------------------------------------- reference (per query, brute force)
def reference_row(f, i, H, Dh, S, scale, mode):
    """Output row i, straight from the contract's semantics, in float64."""
    n, S2 = f["q"].shape[0], S * S
    q, k, v = (f[x].astype(np.float64) for x in ("q", "k", "v"))
    wa, sa = divmod(int(f["pos_a"][i]), S2)
    cands = [(int(j), t, sa) for t, j in enumerate(f["win_a"][wa])  # (key row, key slot, query slot)
             if j >= 0 and (j != i or 1 <= i <= n - 2)]
    if mode == 1:
        wb, sb = divmod(int(f["pos_b"][i]), S2)
        cands += [(int(j), t, sb) for t, j in enumerate(f["win_b"][wb])
                  if j >= 0 and int(f["pos_a"][j]) // S2 != wa]
    out = np.zeros(H * Dh)
    for h in range(H):
        sl = slice(h * Dh, (h + 1) * Dh)
        s = np.array([scale * (q[i, sl] @ k[j, sl]) + f["bias"][h, t // S - s // S + S - 1, t % S - s % S + S - 1]
                      for j, t, s in cands])
        if len(s):
            w = np.exp(s - s.max())
            out[sl] = (w / w.sum()) @ v[[j for j, _, _ in cands], sl]
    return out


def reference(f, H, Dh, S, scale, mode, rows=None):
    rows = range(f["q"].shape[0]) if rows is None else rows
    return np.stack([reference_row(f, int(i), H, Dh, S, scale, mode) for i in rows])


# ---------------------------------------------------------------- tables
def random_tables(rng, n, S, num_win):
    """Nodes scattered over num_win windows at random slots; most slots stay empty."""
    S2 = S * S
    assert num_win * S2 >= n
    pos = rng.choice(num_win * S2, size=n, replace=False).astype(np.int32)
    win = np.full(num_win * S2, -1, np.int32)
    win[pos] = np.arange(n, dtype=np.int32)
    return win.reshape(num_win, S2), pos


def grid_tables(rng, rows, cols, fill, S):
    """SPAN-like: nodes on a sparse grid (row-major ids), unshifted windows (A) and windows
    shifted by S/2 (B); only non-empty windows are kept."""
    cells = np.argwhere(rng.random((rows, cols)) < fill)
    out = []
    for shift in (0, S // 2):
        r, c = cells[:, 0] + shift, cells[:, 1] + shift
        wkey = (r // S) * (cols // S + 2) + (c // S)
        uniq, wid = np.unique(wkey, return_inverse=True)
        pos = (wid * S * S + (r % S) * S + (c % S)).astype(np.int32)
        win = np.full((len(uniq), S * S), -1, np.int32)
        win.reshape(-1)[pos] = np.arange(len(cells), dtype=np.int32)
        out += [win, pos]
    return out  # win_a, pos_a, win_b, pos_b


# ---------------------------------------------------------------- model / session
def make_model(H, Dh, S, scale, mode, dtype):
    elem = TensorProto.FLOAT16 if dtype == np.float16 else TensorProto.FLOAT
    C = H * Dh
    inputs = [
        helper.make_tensor_value_info("q", elem, ["N", C]),
        helper.make_tensor_value_info("k", elem, ["N", C]),
        helper.make_tensor_value_info("v", elem, ["N", C]),
        helper.make_tensor_value_info("win_a", TensorProto.INT32, ["Wa", S * S]),
        helper.make_tensor_value_info("pos_a", TensorProto.INT32, ["N"]),
        helper.make_tensor_value_info("win_b", TensorProto.INT32, ["Wb", S * S]),
        helper.make_tensor_value_info("pos_b", TensorProto.INT32, ["N"]),
        helper.make_tensor_value_info("bias", TensorProto.FLOAT, [H, 2 * S - 1, 2 * S - 1]),
    ]
    node = helper.make_node("SparseWindowAttention", [i.name for i in inputs], ["out"], domain=DOMAIN,
                            num_heads=H, head_dim=Dh, window=S, scale=float(scale), mode=mode)
    graph = helper.make_graph([node], "swa", inputs, [helper.make_tensor_value_info("out", elem, ["N", C])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(DOMAIN, 1)])
    model.ir_version = 9
    return model


def run(lib, feeds, H, Dh, S, scale, mode, threads=1):
    so = ort.SessionOptions()
    so.register_custom_ops_library(lib)
    so.intra_op_num_threads = threads
    model = make_model(H, Dh, S, scale, mode, feeds["q"].dtype.type)
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)[0]


def make_feeds(rng, n, H, Dh, S, tables, dtype, bias_scale=1.0):
    win_a, pos_a, win_b, pos_b = tables
    C = H * Dh
    qkv = [rng.standard_normal((n, C)).astype(dtype) for _ in range(3)]
    bias = (bias_scale * rng.standard_normal((H, 2 * S - 1, 2 * S - 1))).astype(np.float32)
    return dict(q=qkv[0], k=qkv[1], v=qkv[2], win_a=win_a, pos_a=pos_a, win_b=win_b, pos_b=pos_b, bias=bias)


def check(out, ref, dtype):
    assert out.dtype == dtype and out.shape == ref.shape
    assert np.isfinite(out).all()
    if dtype == np.float32:
        np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    else:
        peak = np.abs(ref).max()
        np.testing.assert_allclose(out.astype(np.float64), ref, rtol=5e-3, atol=5e-3 * peak)


# ---------------------------------------------------------------- tests
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("mode", [0, 1])
@pytest.mark.parametrize("threads", [1, 2])
def test_random_tables_match_reference(ops_lib, dtype, mode, threads):
    rng = np.random.default_rng(100 * mode + threads)
    n, H, Dh, S = 300, 3, 8, 4
    tables = (*random_tables(rng, n, S, 40), *random_tables(rng, n, S, 30))
    feeds = make_feeds(rng, n, H, Dh, S, tables, dtype)
    scale = Dh ** -0.5
    out = run(ops_lib, feeds, H, Dh, S, scale, mode, threads)
    ref = reference(feeds, H, Dh, S, scale, mode)
    assert np.abs(ref).max() > 0.1  # the data really attends somewhere
    check(out, ref, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("mode", [0, 1])
def test_grid_tables_match_reference(ops_lib, dtype, mode):
    rng = np.random.default_rng(7 + mode)
    H, Dh, S = 4, 16, 4
    tables = grid_tables(rng, 24, 20, 0.6, S)
    n = len(tables[1])
    feeds = make_feeds(rng, n, H, Dh, S, tables, dtype)
    out = run(ops_lib, feeds, H, Dh, S, Dh ** -0.5, mode, threads=2)
    check(out, reference(feeds, H, Dh, S, Dh ** -0.5, mode), dtype)


def test_mode1_adds_only_keys_outside_the_a_window(ops_lib):
    """With B = A every B key lies in the query's A-window, so mode 1 must equal mode 0."""
    rng = np.random.default_rng(3)
    n, H, Dh, S = 120, 2, 4, 4
    win, pos = random_tables(rng, n, S, 20)
    feeds = make_feeds(rng, n, H, Dh, S, (win, pos, win, pos), np.float32)
    out0 = run(ops_lib, feeds, H, Dh, S, 0.5, 0)
    out1 = run(ops_lib, feeds, H, Dh, S, 0.5, 1)
    np.testing.assert_array_equal(out0, out1)
    # and with other B windows the result changes (B keys really enter the softmax)
    win_b, pos_b = random_tables(rng, n, S, 10)
    feeds.update(win_b=win_b, pos_b=pos_b)
    out2 = run(ops_lib, feeds, H, Dh, S, 0.5, 1)
    assert np.abs(out2 - out0).max() > 1e-3
    check(out2, reference(feeds, H, Dh, S, 0.5, 1), np.float32)


def test_self_loop_rule_and_empty_queries(ops_lib):
    """Rows 0 and N-1 never attend to themselves; a query without keys gets exact zeros."""
    H, Dh, S, n = 2, 3, 2, 5
    # window 0: rows 0 and 1; window 1: row 2 alone (inner row: attends to itself only);
    # window 2: row 3; window 3: row 4 alone (last row: no key at all).
    win = np.array([[0, -1, 1, -1], [-1, 2, -1, -1], [3, -1, -1, -1], [-1, -1, -1, 4]], np.int32)
    pos = np.array([0, 2, 5, 8, 15], np.int32)
    rng = np.random.default_rng(0)
    feeds = make_feeds(rng, n, H, Dh, S, (win, pos, win, pos), np.float32)
    for dtype in (np.float32, np.float16):
        for key in ("q", "k", "v"):
            feeds[key] = feeds[key].astype(dtype)
        out = run(ops_lib, feeds, H, Dh, S, 0.7, 0)
        v = feeds["v"].astype(np.float32)
        np.testing.assert_allclose(out[0], v[1], rtol=1e-3)  # row 0: only key is row 1
        np.testing.assert_allclose(out[2], v[2], rtol=1e-3)  # inner row alone: itself
        np.testing.assert_allclose(out[3], v[3], rtol=1e-3)
        assert (out[4] == 0).all() and not np.signbit(out[4]).any()  # no key: exact +0
        check(out, reference(feeds, H, Dh, S, 0.7, 0), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_single_row(ops_lib, dtype):
    H, Dh, S = 2, 4, 2
    win = np.array([[-1, -1, 0, -1]], np.int32)
    pos = np.array([2], np.int32)
    rng = np.random.default_rng(1)
    feeds = make_feeds(rng, 1, H, Dh, S, (win, pos, win, pos), dtype)
    for mode in (0, 1):
        out = run(ops_lib, feeds, H, Dh, S, 0.5, mode)
        assert out.shape == (1, H * Dh) and out.dtype == dtype
        assert (out == 0).all()


def test_bias_indexing_asymmetric(ops_lib):
    """q = 0 makes the scores pure bias: out = softmax(bias[h, Δrow+S-1, Δcol+S-1]) · v.
    The table is asymmetric, so a transposed or sign-flipped index gives other weights."""
    H, Dh, S, n = 2, 2, 4, 4
    win = np.full((1, S * S), -1, np.int32)
    slots = [0, 5, 7, 14]  # cells (0,0), (1,1), (1,3), (3,2); the query is row 1 at (1,1)
    for row, slot in enumerate(slots):
        win[0, slot] = row
    pos = np.array(slots, np.int32)
    side = 2 * S - 1
    r, c = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    bias = np.stack([0.3 * r - 0.7 * c, 0.5 * c - 0.2 * r * r / side]).astype(np.float32)
    v = np.arange(n * H * Dh, dtype=np.float32).reshape(n, H * Dh)
    feeds = dict(q=np.zeros((n, H * Dh), np.float32), k=np.ones((n, H * Dh), np.float32), v=v,
                 win_a=win, pos_a=pos, win_b=win, pos_b=pos, bias=bias)
    out = run(ops_lib, feeds, H, Dh, S, 1.0, 0)
    i = 1  # inner row: keys are rows 0..3 including itself
    qs = divmod(slots[i], S)
    for h in range(H):
        b = np.array([bias[h, t // S - qs[0] + S - 1, t % S - qs[1] + S - 1] for t in slots])
        w = np.exp(b - b.max())
        w /= w.sum()
        np.testing.assert_allclose(out[i, h * Dh:(h + 1) * Dh], w @ v[:, h * Dh:(h + 1) * Dh], rtol=1e-6)
    feeds_t = dict(feeds, bias=np.ascontiguousarray(bias.transpose(0, 2, 1)))
    assert np.abs(run(ops_lib, feeds_t, H, Dh, S, 1.0, 0)[i] - out[i]).max() > 0.1
    check(out, reference(feeds, H, Dh, S, 1.0, 0), np.float32)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_large_grid_threads_agree(ops_lib, dtype):
    """~20k rows with realistic windows: sampled rows (incl. 0 and N-1) match the reference,
    and 1 vs 2 intra-op threads are bit-identical."""
    rng = np.random.default_rng(11)
    H, Dh, S = 4, 32, 8
    tables = grid_tables(rng, 200, 160, 0.65, S)
    n = len(tables[1])
    assert n > 20000
    feeds = make_feeds(rng, n, H, Dh, S, tables, dtype)
    scale = Dh ** -0.5
    out1 = run(ops_lib, feeds, H, Dh, S, scale, 1, threads=1)
    out2 = run(ops_lib, feeds, H, Dh, S, scale, 1, threads=2)
    np.testing.assert_array_equal(out1, out2)
    rows = np.unique(np.concatenate([[0, n - 1], rng.choice(n, 150, replace=False)]))
    check(out1[rows], reference(feeds, H, Dh, S, scale, 1, rows), dtype)


def test_bad_tables_fail_cleanly(ops_lib):
    rng = np.random.default_rng(5)
    n, H, Dh, S = 10, 1, 4, 2
    win, pos = random_tables(rng, n, S, 5)
    feeds = make_feeds(rng, n, H, Dh, S, (win, pos, win, pos), np.float32)
    feeds["pos_a"] = pos.copy()
    feeds["pos_a"][3] = 5 * S * S  # one past the table
    with pytest.raises(Exception, match="pos\\[3\\]"):
        run(ops_lib, feeds, H, Dh, S, 0.5, 0)
    feeds["bias"] = np.zeros((H + 1, 3, 3), np.float32)
    with pytest.raises(Exception, match="bias"):
        run(ops_lib, feeds, H, Dh, S, 0.5, 0)


def test_library_lookup_errors_name_the_build_command(monkeypatch, tmp_path):
    monkeypatch.setenv("SPAN_DEPLOY_OPS_LIB", str(tmp_path / "nope.so"))
    with pytest.raises(BackendError, match="SPAN_DEPLOY_OPS_LIB"):
        native.ort_ops_library()
    monkeypatch.delenv("SPAN_DEPLOY_OPS_LIB")
    monkeypatch.setattr(native, "_REPO_BUILD_LIB", tmp_path)
    monkeypatch.setattr(native, "_PACKAGE_DIR", tmp_path)
    with pytest.raises(BackendError, match="tools/build_native.sh"):
        native.ort_ops_library()
    with pytest.raises(BackendError, match="tools/build_native.sh"):
        native.trt_plugin_library()
    lib = tmp_path / "libspan_deploy_ops.so"
    lib.write_bytes(b"")
    assert native.ort_ops_library() == lib
