"""Classification and survival heads (spec 4, 5.1) with official key names.

Every head returns (logits (1, C), embedding (1, E)) where the embedding is the input of the
head's final Linear, and optionally per-row attention weights of stage 0 (multiattn).
"""
from __future__ import annotations

import torch
from torch import nn

from span_deploy.config import SpanConfig


def _tok0(globals_: list[torch.Tensor]) -> list[torch.Tensor]:
    return [g[0:1] for g in globals_]


class _Simple(nn.Module):
    """Official _SimpleAggregator: `module` is a Sequential whose last entry is the Linear."""

    def __init__(self, module: nn.Sequential, select):
        super().__init__()
        self.module = module
        self._select = select

    def forward(self, feats, globals_):
        z = self._select(feats, globals_)
        for layer in list(self.module)[:-1]:
            z = layer(z)
        return self.module[-1](z), z, None


class MultiAggregator(nn.Module):
    """multi_addition: sum of token 0 over stages, optional LN, then fc = [Dropout, Linear]."""

    def __init__(self, dim: int, classes: int, use_norm: bool, lastnorm: bool = True):
        super().__init__()
        self.lastnorm = lastnorm
        self.norm = nn.LayerNorm(dim) if use_norm else nn.Identity()
        self.fc = nn.Sequential(nn.Dropout(0.0), nn.Linear(dim, classes))

    def forward(self, feats, globals_):
        ctx = torch.cat(_tok0(globals_), dim=0)
        if not self.lastnorm:
            ctx = self.norm(ctx)
        z = ctx.sum(dim=0, keepdim=True)
        if self.lastnorm:
            z = self.norm(z)
        return self.fc(z), z, None


class _MultiAggWrap(nn.Module):
    def __init__(self, inner: MultiAggregator):
        super().__init__()
        self.module = inner

    def forward(self, feats, globals_):
        return self.module(feats, globals_)


class MLPAttention(nn.Module):
    def __init__(self, dim: int, act: str, dropout: float, head_div: int):
        super().__init__()
        hidden = max(dim // max(int(head_div), 1), 1)
        layers = [nn.Linear(dim, hidden), _head_activation(act)]
        if 0 < dropout < 1:
            layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(hidden, 1))
        self.attention_mechanism = nn.Sequential(*layers)

    def forward(self, x):
        w = torch.softmax(self.attention_mechanism(x).transpose(-1, -2), dim=-1)   # (1, N)
        return w @ x, w[0]


def _head_activation(name: str) -> nn.Module:
    key = str(name).strip()
    if hasattr(nn, key):
        return getattr(nn, key)()
    alias = {"relu": "ReLU", "gelu": "GELU", "hardswish": "Hardswish", "silu": "SiLU", "swish": "SiLU",
             "tanh": "Tanh", "leakyrelu": "LeakyReLU"}
    return getattr(nn, alias.get(key.lower(), "Tanh"))()


class MultiAttnAggregator(nn.Module):
    def __init__(self, dim: int, layers: int, classes: int, cfg: SpanConfig):
        super().__init__()
        self.aggregators = nn.ModuleList(MLPAttention(dim, cfg.head_act, cfg.cls_drop, cfg.head_div)
                                         for _ in range(layers))
        self.fc = nn.Linear(dim, classes)
        self.norm = nn.LayerNorm(dim)
        self.scale_logits = nn.Parameter(torch.zeros(layers))
        self.scale_router = nn.Linear(dim, 1, bias=False)
        self.context_alpha = nn.Parameter(torch.full((layers,), -2.0))
        self.context_router = nn.Linear(dim * 2, 1)

    def forward(self, feats, globals_):
        features, routed, stage0_w = [], [], None
        for i, agg in enumerate(self.aggregators):
            f, w = agg(feats[i])
            if i == 0:
                stage0_w = w
            if globals_[i].shape[0] > 0:
                ctx = globals_[i][0:1]
                alpha = torch.sigmoid(self.context_alpha[i] + self.context_router(torch.cat([f, ctx], dim=-1)).view(1, 1))
                f = (1.0 - alpha) * f + alpha * ctx
            features.append(f)
            routed.append(self.scale_router(f).view(1))
        beta = torch.softmax(self.scale_logits + torch.cat(routed), dim=0).view(-1, 1, 1)
        weighted = torch.stack(features) * beta
        z = weighted[0]
        for i in range(1, len(features)):
            z = z + weighted[i]
        z = self.norm(z)
        return self.fc(z), z, stage0_w


def _pool_addition(feats, _):
    last = feats[-1]
    return last.max(dim=0, keepdim=True)[0] + last.mean(dim=0, keepdim=True)


class SurvivalAggregator(nn.Module):
    def __init__(self, dim: int, classes: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(0.0)
        self.fc = nn.Linear(dim, classes)

    def forward(self, feats, globals_):
        z = self.norm(_pool_addition(feats, globals_))
        return self.fc(z), z, None


def build_head(cfg: SpanConfig, classes: int) -> dict[str, nn.Module]:
    """The head module(s) under their official attribute names; the first is the one used."""
    d, layers = cfg.stage_dim(cfg.num_stages - 1), cfg.num_stages
    if cfg.task == "survival":
        dim = cfg.embed_dim
        mods = {
            "aggregator": SurvivalAggregator(dim, classes),
            "multi_aggregator": MultiAggregator(dim, classes, use_norm=False, lastnorm=False),
            "classifier_1": nn.Sequential(nn.Dropout(0.0), nn.Linear(layers * dim, classes)),
        }
        return mods
    m = cfg.aggr_method
    if m == "concat":
        head = _Simple(nn.Sequential(nn.LayerNorm(layers * d), nn.Dropout(0.0), nn.Linear(layers * d, classes)),
                       lambda _, g: torch.cat(_tok0(g), dim=1))
    elif m == "mean":
        head = _Simple(nn.Sequential(nn.Dropout(0.0), nn.Linear(d, classes)),
                       lambda _, g: torch.cat(_tok0(g), dim=0).mean(dim=0, keepdim=True))
    elif m == "last":
        head = _Simple(nn.Sequential(nn.Dropout(0.0), nn.Linear(d, classes)), lambda _, g: g[-1][0:1])
    elif m == "addition":
        head = _Simple(nn.Sequential(nn.LayerNorm(d), nn.Dropout(0.0), nn.Linear(d, classes)), _pool_addition)
    elif m == "multi_addition":
        head = _MultiAggWrap(MultiAggregator(d, classes, use_norm=cfg.head_norm))
    else:
        head = MultiAttnAggregator(d, layers, classes, cfg)
    return {"aggregator": head}


def survival_forward(cfg: SpanConfig, mods: nn.ModuleDict, feats, globals_):
    if cfg.aggr_method == "addition":
        return mods["aggregator"](feats, globals_)
    if cfg.aggr_method == "concat":
        z = torch.cat(_tok0(globals_), dim=1)
        return mods["classifier_1"](z), z, None
    return mods["multi_aggregator"](feats, globals_)
