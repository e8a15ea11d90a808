"""UNI-style ViT (timm ``VisionTransformer`` parameter names) -> CLS token after the final norm.

Export side only (imports torch). UNI = ViT-L/16, 224 px, embed 1024, depth 24, 16 heads,
LayerScale (``blocks.i.ls1.gamma``), no head; ``vit_config_from_state_dict`` reads the size
from a timm state_dict (heads = embed_dim / 64 unless given), so a tiny config works for tests.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ViTConfig:
    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0
    patch_size: int = 16
    img_size: int = 224
    layer_scale: bool = True         # UNI: init_values=1e-5 -> ls1/ls2.gamma
    qkv_bias: bool = True
    eps: float = 1e-6

    @property
    def feature_dim(self) -> int:
        return self.embed_dim


UNI = ViTConfig()
TINY = ViTConfig(embed_dim=64, depth=2, num_heads=2, patch_size=16)


class LayerScale(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), 1e-5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, qkv_bias: bool):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(c // self.heads))
        x = attn.softmax(dim=-1) @ v
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        d = cfg.embed_dim
        self.norm1 = nn.LayerNorm(d, eps=cfg.eps)
        self.attn = Attention(d, cfg.num_heads, cfg.qkv_bias)
        self.ls1 = LayerScale(d) if cfg.layer_scale else nn.Identity()
        self.norm2 = nn.LayerNorm(d, eps=cfg.eps)
        self.mlp = Mlp(d, int(d * cfg.mlp_ratio))
        self.ls2 = LayerScale(d) if cfg.layer_scale else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.proj = nn.Conv2d(3, cfg.embed_dim, cfg.patch_size, stride=cfg.patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class VisionTransformer(nn.Module):
    """Input: float NCHW (img_size), ImageNet-normalised. Output: (B, embed_dim) CLS token."""

    def __init__(self, cfg: ViTConfig = UNI):
        super().__init__()
        self.cfg = cfg
        n = (cfg.img_size // cfg.patch_size) ** 2
        self.patch_embed = PatchEmbed(cfg)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim))
        self.pos_embed = nn.Parameter(torch.randn(1, n + 1, cfg.embed_dim) * 0.02)
        self.blocks = nn.Sequential(*[Block(cfg) for _ in range(cfg.depth)])
        self.norm = nn.LayerNorm(cfg.embed_dim, eps=cfg.eps)

    @property
    def feature_dim(self) -> int:
        return self.cfg.embed_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        return self.norm(self.blocks(x))[:, 0]


def vit_config_from_state_dict(sd: dict, num_heads: int | None = None, img_size: int = 224) -> ViTConfig:
    """Infer a ViTConfig from timm-named weights (heads default to embed_dim // 64)."""
    w = sd["patch_embed.proj.weight"]
    dim, patch = int(w.shape[0]), int(w.shape[-1])
    depth = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k)))
    hidden = int(sd["blocks.0.mlp.fc1.weight"].shape[0])
    return ViTConfig(embed_dim=dim, depth=depth, num_heads=num_heads or max(1, dim // 64),
                     mlp_ratio=hidden / dim, patch_size=patch, img_size=img_size,
                     layer_scale="blocks.0.ls1.gamma" in sd,
                     qkv_bias="blocks.0.attn.qkv.bias" in sd)
