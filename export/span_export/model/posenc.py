"""ALiBi slopes and 2-D RoPE, computed with the same float32 ops as the official code."""
from __future__ import annotations

import math

import torch


def alibi_slopes(n: int) -> list[float]:
    def pow2(k: int) -> list[float]:
        start = 2 ** (-2 ** -(math.log2(k) - 3))
        return [start * start ** i for i in range(k)]
    if math.log2(n).is_integer():
        return pow2(n)
    p = 2 ** math.floor(math.log2(n))
    return pow2(p) + alibi_slopes(2 * p)[0::2][:n - p]


def rope_inv_freq(axis_dim: int, base: float = 10000.0) -> torch.Tensor:
    idx = torch.arange(0, axis_dim, 2, dtype=torch.float32)
    return 1.0 / (base ** (idx / axis_dim))


def rope_rotate(x: torch.Tensor, pos: torch.Tensor, heads: int) -> torch.Tensor:
    """Rotate (M, H*Dh) by 2-D positions (M, 2): the first 4*floor(Dh/4) dims of every head."""
    m, c = x.shape
    dh = c // heads
    rot = (dh // 4) * 4
    if rot <= 0:
        return x
    xh = x.reshape(m, heads, dh)
    xr, xp = xh[..., :rot], xh[..., rot:]
    inv = rope_inv_freq(rot // 2).to(x.device)
    pf = pos.to(torch.float32)
    fa = torch.repeat_interleave(pf[:, 0:1] * inv[None, :], 2, dim=1)
    fb = torch.repeat_interleave(pf[:, 1:2] * inv[None, :], 2, dim=1)
    freqs = torch.cat([fa, fb], dim=1)
    cos = freqs.cos().to(x.dtype).unsqueeze(1)
    sin = freqs.sin().to(x.dtype).unsqueeze(1)
    pairs = xr.reshape(m, heads, rot // 2, 2)
    rotated = torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).reshape(m, heads, rot)
    out = xr * cos + rotated * sin
    return torch.cat([out, xp], dim=-1).reshape(m, c)
