"""SPAN transformer layers (Longformer for long/long_noshift, Swin) with official key names."""
from __future__ import annotations

import torch
from torch import nn

from span_deploy.config import SpanConfig
from .attention import EAGER_WINDOW_CHUNK, window_attention
from .convs import activation
from .posenc import alibi_slopes, rope_rotate


class StageTables:
    """The rulebook tables one stage's layers read (torch tensors)."""

    def __init__(self, win_u, pos_u, win_s=None, pos_s=None, coords=None):
        self.win_u, self.pos_u, self.win_s, self.pos_s, self.coords = win_u, pos_u, win_s, pos_s, coords


# The op used for the local window attention; the exporter swaps in the custom node.
def _default_window_op(q, k, v, win_a, pos_a, win_b, pos_b, bias_table, num_heads, side, scale):
    chunk = None if torch.jit.is_tracing() or torch.compiler.is_compiling() else EAGER_WINDOW_CHUNK
    return window_attention(q, k, v, win_a, pos_a, win_b, pos_b, bias_table, num_heads, side, scale, chunk)


class TransBlock(nn.Module):
    """Official BaseTransformerLayer + Longformer/Swin forward."""

    window_op = staticmethod(_default_window_op)

    def __init__(self, cfg: SpanConfig, dim: int, heads: int, trans_type: str | None = None):
        super().__init__()
        trans_type = trans_type or cfg.trans_type   # the decoder's layers use cfg.dtrans_type
        self.kind = "swin" if trans_type == "swin" else "long"
        self.use_shift = trans_type in ("long", "swin")
        self.num_heads, self.head_dim = heads, dim // heads
        self.scale = self.head_dim ** -0.5
        self.side = 2 * cfg.window_size
        self.pos_emb = cfg.pos_emb
        if self.pos_emb == "rpb":
            self.table_RPB = RelativePositionBias(heads, self.side)
        elif self.pos_emb == "alibi":
            self.pos_encoder = ALiBi(heads)
        for name in ("q1", "k1", "v1"):
            setattr(self, name, nn.Linear(dim, dim))
        if cfg.share_qkv:
            self.q2, self.k2, self.v2 = self.q1, self.k1, self.v1
        else:
            self.q2, self.k2, self.v2 = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.fc_out = nn.Linear(dim, dim)
        ff = int(dim * cfg.ff_ratio)
        self.ffn = nn.Sequential(nn.Linear(dim, ff), activation(cfg.activation), nn.Dropout(0.0),
                                 nn.Linear(ff, dim), nn.Dropout(0.0))
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)

    def bias_table(self) -> torch.Tensor:
        """(H, 2S-1, 2S-1) float32 bias over (delta a, delta b); zeros for rope/none."""
        if self.pos_emb == "rpb":
            return self.table_RPB.adjustment_tables
        n = 2 * self.side - 1
        if self.pos_emb == "alibi":
            d = torch.arange(n, dtype=torch.float32) - (self.side - 1)
            dist = torch.sqrt(d[:, None] ** 2 + d[None, :] ** 2)
            return -self.pos_encoder.slopes.reshape(-1, 1, 1) * dist
        return torch.zeros(self.num_heads, n, n)

    def _qkv(self, h: torch.Tensor, set2: bool, pos: torch.Tensor | None):
        """q, k, v of ``h`` (rows at positions ``pos`` for RoPE)."""
        q, k, v = (self.q2, self.k2, self.v2) if set2 else (self.q1, self.k1, self.v1)
        q, k, v = q(h), k(h), v(h)
        if self.pos_emb == "rope" and pos is not None:
            q = rope_rotate(q, pos, self.num_heads)
            k = rope_rotate(k, pos, self.num_heads)
        return q, k, v

    def forward(self, x: torch.Tensor | None, t: torch.Tensor, tab: StageTables, want_weights: bool = False,
                locals_out: bool = True):
        """Locals x (N, C) and globals t (G, C) in, the same out. The official layer runs on the
        concatenation [x; t]; every op of it but the attention is row-wise, so the two parts run
        apart here (no concatenation, no slicing back: each would copy N x C).

        ``locals_out`` False: no output reads this layer's locals (span_deploy.liveness), so only
        the globals are computed and x comes back None; x None: its input locals are not
        read either (the globals of `swin` see no local row).
        """
        g = t.shape[0]
        weights = None
        relay_reads = self.kind == "long" and g > 0
        hx = self.norm1(x) if x is not None and (locals_out or relay_reads) else None
        ht = self.norm1(t) if g > 0 else t
        pos = tab.coords if self.pos_emb == "rope" else None
        glob = None
        if relay_reads:
            # the globals' side first: with one global token nothing later reads hx, so its
            # N x C buffer is free before the attention's output is allocated
            relay = GlobalRelay(self, hx, ht, pos)
            glob, weights = relay.globals_out(want_weights)
        elif g > 0:   # swin: the globals attend to nothing
            glob = t.new_zeros(t.shape)
        if locals_out:
            local = self._local_attention(hx, tab, pos)
            if relay_reads:
                local = relay.add_to_locals(local)
            x = x + self.fc_out(local)
            x = x + self.ffn(self.norm2(x))
        if g > 0:
            t = t + self.fc_out(glob)
            t = t + self.ffn(self.norm2(t))
        return (x if locals_out else None), t, weights

    def _local_attention(self, hx: torch.Tensor, tab: StageTables, pos: torch.Tensor | None) -> torch.Tensor:
        """The local window attention g1 (and swin's g2) of the normed locals."""
        bias = self.bias_table()
        q, k, v = self._qkv(hx, False, pos)
        if self.kind == "long":
            return self.window_op(q, k, v, tab.win_u, tab.pos_u,
                                  tab.win_s if self.use_shift else None,
                                  tab.pos_s if self.use_shift else None,
                                  bias, self.num_heads, self.side, self.scale)
        # swin: g1 = shifted windows, g2 = unshifted windows
        local = self.window_op(q, k, v, tab.win_s, tab.pos_s, None, None,
                               bias, self.num_heads, self.side, self.scale)
        q2, k2, v2 = self._qkv(hx, True, pos)
        return local + self.window_op(q2, k2, v2, tab.win_u, tab.pos_u, None, None,
                                      bias, self.num_heads, self.side, self.scale)


class GlobalRelay:
    """The `long` global relay g2 (dense, no position bias) of one layer, without the locals' k2/v2.

    Inner locals (rows 1..N-2) attend to the G globals; globals attend to the globals and the
    inner locals; rows 0 and N-1 get nothing from it. A projection is linear, so a global's score
    against a local key is <q_g, Wk h_n + bk> = h_n . (Wk^T q_g) + <q_g, bk> (one (C)-vector per
    global and head instead of the N x C keys), and its weighted sum of local values is
    Wv (sum_n a_n h_n) + bv sum_n a_n. That takes the relay from 2-3 N x C x C projections to
    N x C x (G*H). With RoPE the keys depend on each row's position, so they are projected.
    Float32 throughout (an fp16 export casts h once).
    """

    def __init__(self, blk: "TransBlock", hx: torch.Tensor, ht: torch.Tensor, pos: torch.Tensor | None):
        self.dtype = hx.dtype
        self.hx, ht = hx.float(), ht.float()
        self.heads, self.dh, self.scale = blk.num_heads, blk.head_dim, blk.scale
        self.n, self.g = hx.shape[0], ht.shape[0]
        self.rope = blk.pos_emb == "rope" and pos is not None
        self.pos = pos
        self.lin = {name: (getattr(blk, name).weight.float(), getattr(blk, name).bias.float())
                    for name in ("q2", "k2", "v2")}
        qg, kg, vg = (self._proj(name, ht) for name in ("q2", "k2", "v2"))
        if self.rope:   # globals sit at (0, 0)
            zpos = torch.zeros((self.g, 2), dtype=pos.dtype, device=pos.device)
            qg, kg = rope_rotate(qg, zpos, self.heads), rope_rotate(kg, zpos, self.heads)
        self.qg, self.kg, self.vg = (u.reshape(self.g, self.heads, self.dh) for u in (qg, kg, vg))

    def _proj(self, name: str, h: torch.Tensor) -> torch.Tensor:
        w, b = self.lin[name]
        return torch.nn.functional.linear(h, w, b)

    def _w_heads(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight (H, Dh, C_in) and bias (H, Dh) of a projection, by output head."""
        w, b = self.lin[name]
        return w.reshape(self.heads, self.dh, -1), b.reshape(self.heads, self.dh)

    def _inner_mask(self) -> torch.Tensor:
        """(N, 1): 1 for the inner rows 1..N-2, 0 for rows 0 and N-1."""
        r = torch.arange(self.n, device=self.hx.device).unsqueeze(1)
        return ((r > 0) & (r < self.n - 1)).to(torch.float32)

    def add_to_locals(self, local: torch.Tensor) -> torch.Tensor:
        """local + the relay's output of the locals, as one Gemm whose C input is `local`.

        The relay term (N x C) then never exists apart, and the graph cannot compute it before
        the attention runs: as a separate product it was alive across the attention, 0.4 GB at
        200k patches of the default config.
        """
        mask = self._inner_mask()                                    # (N, 1): rows 0, N-1 get nothing
        if self.g == 1:
            # a softmax over one key is exactly 1: every inner local receives the global's value
            a2, b2 = mask, self.vg.reshape(1, -1)
        else:
            if self.rope:
                ql = rope_rotate(self._proj("q2", self.hx), self.pos, self.heads)
                s = torch.einsum("nhd,ghd->nhg", ql.reshape(self.n, self.heads, self.dh), self.kg)
            else:   # <Wq h_n + bq, k_g> = h_n . (Wq^T k_g) + <bq, k_g>, per head
                wq, bq = self._w_heads("q2")
                u = torch.einsum("ghd,hdc->hgc", self.kg, wq).reshape(self.heads * self.g, -1)
                s = (self.hx @ u.t()).reshape(self.n, self.heads, self.g) \
                    + torch.einsum("hd,ghd->hg", bq, self.kg).unsqueeze(0)
            a = torch.softmax(s * self.scale, dim=-1) * mask.unsqueeze(-1)      # (N, H, G)
            a2 = a.reshape(self.n, self.heads * self.g)
            # (H*G, C) block diagonal: row (h, g) holds global g's value in head h's columns
            eye = torch.eye(self.heads, dtype=self.vg.dtype, device=self.vg.device)
            b2 = torch.einsum("ghd,hk->hgkd", self.vg, eye).reshape(self.heads * self.g, -1)
        if local.dtype == a2.dtype:
            return torch.addmm(local, a2, b2)
        return local + (a2 @ b2).to(local.dtype)      # fp16 export: the product in fp32, as before

    def globals_out(self, want_weights: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """((G, C) globals' output, global 0's weights over the inner locals (N-2,) or None)."""
        heads, g, n = self.heads, self.g, self.n
        s_gg = torch.einsum("ghd,khd->ghk", self.qg, self.kg)                  # (G, H, G)
        if self.rope:
            kl = rope_rotate(self._proj("k2", self.hx), self.pos, heads).reshape(n, heads, self.dh)
            s_gl = torch.einsum("ghd,nhd->ghn", self.qg, kl)
        else:
            wk, bk = self._w_heads("k2")
            u = torch.einsum("ghd,hdc->ghc", self.qg, wk).reshape(g * heads, -1)
            s_gl = (self.hx @ u.t()).t().reshape(g, heads, n) \
                + torch.einsum("ghd,hd->gh", self.qg, bk).unsqueeze(-1)
        # rows 0 and N-1 are no keys of the relay: -inf scores, so their weights are exact zeros
        inner = self._inner_mask().reshape(1, 1, n) > 0
        s_gl = torch.where(inner, s_gl, torch.full_like(s_gl, float("-inf")))
        a = torch.softmax(torch.cat([s_gg, s_gl], dim=-1) * self.scale, dim=-1)  # (G, H, G + N)
        a_l = a[:, :, g:]
        # locals' values: Wv (sum_n a_n h_n) + bv sum_n a_n
        wsum = (a_l.reshape(g * heads, n) @ self.hx).reshape(g, heads, -1)     # (G, H, C_in)
        wv, bv = self._w_heads("v2")
        out = torch.einsum("ghk,khd->ghd", a[:, :, :g], self.vg) \
            + torch.einsum("ghc,hdc->ghd", wsum, wv) + a_l.sum(dim=-1, keepdim=True) * bv.unsqueeze(0)
        weights = a_l[0, :, 1:n - 1].mean(dim=0) if want_weights else None
        return out.reshape(g, -1).to(self.dtype), (None if weights is None else weights.to(self.dtype))


class RelativePositionBias(nn.Module):
    def __init__(self, heads: int, side: int):
        super().__init__()
        self.adjustment_tables = nn.Parameter(torch.zeros(heads, 2 * side - 1, 2 * side - 1))


class ALiBi(nn.Module):
    def __init__(self, heads: int):
        super().__init__()
        self.register_buffer("slopes", torch.tensor(alibi_slopes(heads), dtype=torch.float32).view(heads, 1, 1))


class TransLayer(nn.Module):
    """Official TransformerLayer wrapper: the block lives under `.trans_block`."""

    def __init__(self, cfg: SpanConfig, dim: int, heads: int, trans_type: str | None = None):
        super().__init__()
        self.trans_block = TransBlock(cfg, dim, heads, trans_type)


__all__ = ["TransLayer", "TransBlock", "StageTables"]
