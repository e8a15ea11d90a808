"""SPAN transformer layers (Longformer for long/long_noshift, Swin) with official key names."""
from __future__ import annotations

import torch
from torch import nn

from span_deploy.config import SpanConfig
from .attention import EAGER_WINDOW_CHUNK, relay_attention, window_attention
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

    def _qkv(self, h: torch.Tensor, set2: bool, pos: torch.Tensor | None, q_from: int | None = None):
        """q, k, v of ``h``; ``q_from``: project queries only for rows ``q_from:`` (the relay with
        one global token reads no local query)."""
        q, k, v = (self.q2, self.k2, self.v2) if set2 else (self.q1, self.k1, self.v1)
        hq = h if q_from is None else h[q_from:]
        q, k, v = q(hq), k(h), v(h)
        if self.pos_emb == "rope" and pos is not None:
            q = rope_rotate(q, pos if q_from is None else pos[q_from:], self.num_heads)
            k = rope_rotate(k, pos, self.num_heads)
        return q, k, v

    def forward(self, x: torch.Tensor, t: torch.Tensor, tab: StageTables, want_weights: bool = False):
        n = x.shape[0]
        z = torch.cat([x, t])
        h = self.norm1(z)
        pos = None
        if self.pos_emb == "rope":
            pos = torch.cat([tab.coords, tab.coords.new_zeros((t.shape[0], 2))])  # globals at (0, 0)
        bias = self.bias_table()
        weights = None
        q, k, v = self._qkv(h, False, pos)
        if self.kind == "long":
            local = self.window_op(q[:n], k[:n], v[:n], tab.win_u, tab.pos_u,
                                   tab.win_s if self.use_shift else None,
                                   tab.pos_s if self.use_shift else None,
                                   bias, self.num_heads, self.side, self.scale)
            if t.shape[0] > 0:
                # one global token: the relay never reads the locals' q2 (see relay_attention)
                q2, k2, v2 = self._qkv(h, True, pos, q_from=n if t.shape[0] == 1 else None)
                res = relay_attention(q2, k2, v2, n, self.num_heads, self.scale, want_weights)
                local = local + res[0]
                glob = res[1]
                if want_weights:
                    weights = res[2]
            else:
                glob = t.new_zeros(t.shape)
        else:  # swin: g1 = shifted windows, g2 = unshifted windows; globals see nothing
            local = self.window_op(q[:n], k[:n], v[:n], tab.win_s, tab.pos_s, None, None,
                                   bias, self.num_heads, self.side, self.scale)
            q2, k2, v2 = self._qkv(h, True, pos)
            local = local + self.window_op(q2[:n], k2[:n], v2[:n], tab.win_u, tab.pos_u, None, None,
                                           bias, self.num_heads, self.side, self.scale)
            glob = t.new_zeros(t.shape)
        z = z + self.fc_out(torch.cat([local, glob]))
        z = z + self.ffn(self.norm2(z))
        return z[:n], z[n:], weights


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
