"""SparseWindowAttention in standard torch ops: the reference and the portable ONNX graph.

Semantics are the op contract of plugins/sparse_window_attention/README.md. Every window is
attended Swin-style as a dense (S*S x S*S) block; each node then reads its own query slot's
softmax statistics (max, sum, weighted sum) through ``pos`` -- a gather, no scatter. For
``mode=1`` the keys of windowing B that already lie in the query's A-window are masked, so the
two key sets are disjoint and merge exactly with a shared max (spec 8.3). Memory is
O(windows x S^4 x heads) for scores, never O(N x K x channels).
"""
from __future__ import annotations

import torch

# Window chunk for eager execution: bounds the score tensor to a few hundred MB on huge slides.
EAGER_WINDOW_CHUNK = 2048


def slot_bias(table: torch.Tensor, side: int) -> torch.Tensor:
    """(H, 2S-1, 2S-1) relative-position table -> (H, S*S, S*S) bias[h, query slot, key slot]."""
    t = torch.arange(side * side)
    ra, rb = t // side, t % side
    da = ra[None, :] - ra[:, None] + side - 1   # key - query
    db = rb[None, :] - rb[:, None] + side - 1
    return table[:, da, db]


def _window_stats(q, k, v, win, bias, scale, self_ok, key_group=None):
    """Softmax statistics per (window, query slot): max m, sum l, weighted values acc.

    q, k, v: (N, H, Dh); win: (W, S2) int64 with -1; bias: (H, S2, S2);
    self_ok: (N+1,) bool, whether a node may attend to itself;
    key_group: (N+1,) int64 or None -- keys whose group equals the query's are masked.
    """
    n = q.shape[0]
    idx = torch.where(win < 0, torch.full_like(win, n), win)
    zero = q.new_zeros((1,) + tuple(q.shape[1:]))
    qw = torch.cat([q, zero])[idx]                       # (W, S2, H, Dh)
    kw = torch.cat([k, zero])[idx]
    vw = torch.cat([v, zero])[idx]
    s = torch.einsum("wqhd,wkhd->whqk", qw, kw) * scale + bias.unsqueeze(0)
    s2 = win.shape[1]
    slots = torch.arange(s2, device=win.device)
    eye = slots[:, None] == slots[None, :]   # not torch.eye: ORT has no bool EyeLike
    valid = (win >= 0)[:, None, :] & ~(eye[None] & ~self_ok[idx][:, :, None])  # (W, q, k)
    if key_group is not None:
        g = key_group[idx]
        valid = valid & (g[:, None, :] != g[:, :, None])
    valid = valid.unsqueeze(1)                                                  # (W, 1, q, k)
    s = torch.where(valid, s, torch.full_like(s, float("-inf")))
    m = s.amax(dim=-1)                                                          # (W, H, q)
    m_safe = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    e = torch.where(valid, torch.exp(s - m_safe.unsqueeze(-1)), torch.zeros_like(s))
    l = e.sum(dim=-1)
    acc = torch.einsum("whqk,wkhd->wqhd", e, vw)
    w = win.shape[0]
    return (m.permute(0, 2, 1).reshape(w * s2, -1), l.permute(0, 2, 1).reshape(w * s2, -1),
            acc.reshape(w * s2, acc.shape[2], acc.shape[3]))


def _stats_for_nodes(q, k, v, win, pos, bias, scale, self_ok, key_group, chunk):
    """Per-node (m, l, acc) for one windowing, processing windows in chunks when eager."""
    if chunk is None or win.shape[0] <= chunk:
        m, l, acc = _window_stats(q, k, v, win, bias, scale, self_ok, key_group)
        return m[pos], l[pos], acc[pos]
    parts = [_window_stats(q, k, v, win[i:i + chunk], bias, scale, self_ok, key_group)
             for i in range(0, win.shape[0], chunk)]
    m = torch.cat([p[0] for p in parts])
    l = torch.cat([p[1] for p in parts])
    acc = torch.cat([p[2] for p in parts])
    return m[pos], l[pos], acc[pos]


def window_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, win_a: torch.Tensor,
                     pos_a: torch.Tensor, win_b: torch.Tensor | None, pos_b: torch.Tensor | None,
                     bias_table: torch.Tensor, num_heads: int, side: int, scale: float,
                     chunk: int | None = None) -> torch.Tensor:
    """The op contract in torch: (N, C) q/k/v -> (N, C). mode = 1 when windowing B is given."""
    if q.dtype != torch.float32:  # fp16 export: scores and softmax statistics in fp32
        out = window_attention(q.float(), k.float(), v.float(), win_a, pos_a, win_b, pos_b, bias_table,
                               num_heads, side, scale, chunk)
        return out.to(q.dtype)
    n, c = q.shape
    dh = c // num_heads
    qh, kh, vh = (t.reshape(n, num_heads, dh) for t in (q, k, v))
    win_a, pos_a = win_a.long(), pos_a.long()
    rows = torch.arange(n + 1, device=q.device)
    self_ok = (rows > 0) & (rows < n - 1)        # SPAN's positional self-loop rule; row n = sentinel
    bias = slot_bias(bias_table.float(), side).to(q.dtype)
    m_a, l_a, acc_a = _stats_for_nodes(qh, kh, vh, win_a, pos_a, bias, scale, self_ok, None, chunk)
    if win_b is None:
        out = acc_a / torch.where(l_a > 0, l_a, torch.ones_like(l_a)).unsqueeze(-1)
        return out.reshape(n, c)
    group_a = torch.cat([pos_a // (side * side), pos_a.new_full((1,), -1)])
    m_b, l_b, acc_b = _stats_for_nodes(qh, kh, vh, win_b.long(), pos_b.long(), bias, scale, self_ok,
                                       group_a, chunk)
    mx = torch.maximum(m_a, m_b)
    mx = torch.where(torch.isinf(mx), torch.zeros_like(mx), mx)
    fa = torch.where(torch.isinf(m_a), torch.zeros_like(m_a), torch.exp(m_a - mx))
    fb = torch.where(torch.isinf(m_b), torch.zeros_like(m_b), torch.exp(m_b - mx))
    den = fa * l_a + fb * l_b
    num = fa.unsqueeze(-1) * acc_a + fb.unsqueeze(-1) * acc_b
    out = num / torch.where(den > 0, den, torch.ones_like(den)).unsqueeze(-1)
    return out.reshape(n, c)
