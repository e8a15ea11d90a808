"""One SparseWindowAttention, three implementations, one reference.

The torch reference (span_export.model.attention.window_attention, what the export traces), the
portable ONNX decomposition of it (run in ONNX Runtime) and the native ORT custom op are each
held against a plain-numpy reading of the op contract (plugins/sparse_window_attention/README.md,
"Semantics"), on real window tables of random tissue-like cells: rows 0 / N-1 without self loops,
isolated rows with no key (exact zeros), both modes.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from span_deploy.rulebook.windows import stage_windows
from tests.cases import ops_library_or_skip

torch = pytest.importorskip("torch")

HEADS, DH, W = 4, 8, 3
SIDE = 2 * W
SCALE = DH ** -0.5
NAMES = ["q", "k", "v", "win_a", "pos_a", "win_b", "pos_b", "bias"]


def contract_reference(q, k, v, win_a, pos_a, win_b, pos_b, bias, mode):
    """The README's semantics, query by query, in float64."""
    n, s2 = q.shape[0], SIDE * SIDE
    out = np.zeros((n, HEADS * DH))
    for i in range(n):
        wa, sa = divmod(int(pos_a[i]), s2)
        keys = []   # (j, query slot, key slot)
        for t in range(s2):
            j = int(win_a[wa, t])
            if j >= 0 and (j != i or 1 <= i <= n - 2):
                keys.append((j, sa, t))
        if mode == 1:
            wb, sb = divmod(int(pos_b[i]), s2)
            for t in range(s2):
                j = int(win_b[wb, t])
                if j >= 0 and int(pos_a[j]) // s2 != wa:
                    keys.append((j, sb, t))
        if not keys:
            continue
        for h in range(HEADS):
            sl = slice(h * DH, (h + 1) * DH)
            sc = np.array([SCALE * np.dot(q[i, sl].astype(np.float64), k[j, sl])
                           + bias[h, t // SIDE - s // SIDE + SIDE - 1, t % SIDE - s % SIDE + SIDE - 1]
                           for j, s, t in keys])
            p = np.exp(sc - sc.max())
            p /= p.sum()
            out[i, sl] = p @ np.stack([v[j, sl] for j, _, _ in keys]).astype(np.float64)
    return out


def make_inputs(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    cells = np.unique(rng.integers(0, 30, (160 + 40 * seed, 2)), axis=0)
    cells = np.concatenate([[[0, 0]], cells + 6, [[50, 51]]])    # isolated first / last rows: no keys
    cells = cells[np.lexsort((cells[:, 1], cells[:, 0]))]
    sw = stage_windows(cells.astype(np.int64), W)
    n = len(cells)
    q, k, v = (rng.standard_normal((n, HEADS * DH)).astype(np.float32) for _ in range(3))
    bias = rng.standard_normal((HEADS, 2 * SIDE - 1, 2 * SIDE - 1)).astype(np.float32)
    a, b = sw.unshifted, sw.shifted
    return dict(zip(NAMES, [q, k, v, a.win, a.pos, b.win, b.pos, bias]))


def run_torch(feeds, mode):
    from span_export.model.attention import window_attention

    t = {k: torch.from_numpy(v) for k, v in feeds.items()}
    return window_attention(t["q"], t["k"], t["v"], t["win_a"], t["pos_a"], t["win_b"] if mode else None,
                            t["pos_b"] if mode else None, t["bias"], HEADS, SIDE, SCALE).numpy()


_portable_cache: dict[int, bytes] = {}


def portable_graph(mode: int, tmp_dir) -> bytes:
    """window_attention traced to standard ONNX ops, exported once per mode with dynamic rows."""
    if mode not in _portable_cache:
        from span_export.model.attention import window_attention

        class Op(torch.nn.Module):
            def forward(self, q, k, v, win_a, pos_a, win_b, pos_b, bias):
                return window_attention(q, k, v, win_a, pos_a, win_b if mode else None, pos_b if mode else None,
                                        bias, HEADS, SIDE, SCALE, None)

        ex = make_inputs(99)
        axes = {"q": {0: "n"}, "k": {0: "n"}, "v": {0: "n"}, "win_a": {0: "wa"}, "pos_a": {0: "n"},
                "win_b": {0: "wb"}, "pos_b": {0: "n"}, "out": {0: "n"}}
        path = tmp_dir / f"portable{mode}.onnx"
        with torch.no_grad():
            torch.onnx.export(Op(), tuple(torch.from_numpy(ex[n]) for n in NAMES), str(path), dynamo=False,
                              input_names=NAMES, output_names=["out"], dynamic_axes=axes, opset_version=17)
        _portable_cache[mode] = path.read_bytes()
    return _portable_cache[mode]


def run_portable(feeds, mode, tmp_dir):
    import onnxruntime as ort

    sess = ort.InferenceSession(portable_graph(mode, tmp_dir), providers=["CPUExecutionProvider"])
    used = {i.name for i in sess.get_inputs()}
    return sess.run(None, {n: feeds[n] for n in NAMES if n in used})[0]


def run_custom_op(feeds, mode):
    import onnxruntime as ort

    lib = ops_library_or_skip()
    T, I32 = onnx.TensorProto.FLOAT, onnx.TensorProto.INT32
    types = [T, T, T, I32, I32, I32, I32, T]
    node = onnx.helper.make_node("SparseWindowAttention", NAMES, ["out"], domain="span_deploy", num_heads=HEADS,
                                 head_dim=DH, window=SIDE, scale=SCALE, mode=mode)
    graph = onnx.helper.make_graph([node], "swa", [onnx.helper.make_tensor_value_info(nm, t, None)
                                                   for nm, t in zip(NAMES, types)],
                                   [onnx.helper.make_tensor_value_info("out", T, None)])
    proto = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17),
                                                         onnx.helper.make_opsetid("span_deploy", 1)])
    so = ort.SessionOptions()
    so.register_custom_ops_library(str(lib))
    sess = ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)[0]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("mode", [0, 1])
@pytest.mark.parametrize("impl", ["torch", "portable", "ort-custom-op"])
def test_op_matches_contract(impl, mode, seed, tmp_path_factory):
    feeds = make_inputs(seed)
    if impl == "torch":
        got = run_torch(feeds, mode)
    elif impl == "portable":
        got = run_portable(feeds, mode, tmp_path_factory.mktemp("portable"))
    else:
        got = run_custom_op(feeds, mode)
    ref = contract_reference(*(feeds[n] for n in NAMES), mode)
    assert got.shape == ref.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, ref, rtol=0, atol=2e-5)
    assert np.all(got[0] == 0) and np.all(got[-1] == 0)        # rows with no candidate key: exact zeros
    assert np.abs(got[1:-1]).sum(1).min() > 0                  # every other row attended to something
