"""Conv layers of SPAN: the input projection and the sparse downsamplers, with official key names.

Each layer updates the local rows (through a host gather table) and the global tokens
(``global_strategy``; spec 2.3-2.6).
"""
from __future__ import annotations

import torch
from torch import nn

from span_deploy.config import SpanConfig


def activation(name: str) -> nn.Module:
    return getattr(nn, name)()


class LinearBlock(nn.Module):
    """The stage-0 input projection (official LinearLayer)."""

    def __init__(self, cfg: SpanConfig):
        super().__init__()
        p, fin, fout = cfg.input_projection, cfg.feat_dim, cfg.embed_dim
        if p.activation is not None:
            hidden = int(fin * p.mlp_ratio)
            self.linear = nn.Sequential(nn.Linear(fin, hidden, bias=p.bias), activation(p.activation),
                                        nn.Dropout(p.dropout), nn.Linear(hidden, fout, bias=p.bias))
        elif p.drop_first:
            self.linear = nn.Sequential(nn.Dropout(p.dropout), nn.Linear(fin, fout, p.bias))
        else:
            self.linear = nn.Sequential(nn.Linear(fin, fout, p.bias), nn.Dropout(p.dropout))
        self.prenorm = nn.LayerNorm(fin) if p.prenorm else nn.Identity()

    def forward(self, x: torch.Tensor, gather: torch.Tensor | None = None) -> torch.Tensor:
        return self.linear(self.prenorm(x))

    def global_forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.linear(self.prenorm(t))


def _gather_rows(x: torch.Tensor, gather: torch.Tensor) -> torch.Tensor:
    """(N_in, C), (N_out, T) with -1 -> (N_out, T, C); empty taps are exact zeros."""
    g = gather.long()
    idx = torch.where(g < 0, torch.full_like(g, x.shape[0]), g)
    return torch.cat([x, x.new_zeros((1, x.shape[1]))])[idx]


class PatchConvBlock(nn.Module):
    """dwpatchconv / patchconv on the host gather table (official s_PatchConvBlock)."""

    def __init__(self, cin: int, cout: int, cfg: SpanConfig, depthwise: bool):
        super().__init__()
        pre = cfg.conv_norm_position == "pre"
        self.input_norm = nn.LayerNorm(cin) if pre else nn.Identity()
        self.output_norm = nn.Identity() if pre else nn.LayerNorm(cout)
        self.groups = cin if depthwise else cfg.groups
        self.dwconv = nn.Conv2d(cin, cout, cfg.kernel_size, stride=cfg.stride, dilation=cfg.dilation,
                                padding=0, bias=cfg.conv_bias, groups=self.groups)
        self.edge_mode, self.edge_eps = cfg.edge_mode, cfg.edge_eps

    def forward(self, x: torch.Tensor, gather: torch.Tensor) -> torch.Tensor:
        w = self.dwconv.weight                                      # (Cout, Cin/g, k, k)
        cout, cig = w.shape[0], w.shape[1]
        taps = w.shape[2] * w.shape[3]
        g = self.groups
        if cig == 1 and cout == g:
            y = self._depthwise(x, gather, w.reshape(cout, taps))
        else:
            neigh = _gather_rows(self.input_norm(x), gather)        # (N, T, Cin)
            wt = w.reshape(g, cout // g, cig, taps)
            y = torch.einsum("ntgi,goit->ngo", neigh.reshape(neigh.shape[0], taps, g, cig), wt)
            y = y.reshape(neigh.shape[0], cout)
        if self.dwconv.bias is not None:
            y = y + self.dwconv.bias                                # before the edge division
        if self.edge_mode != "none":
            present = (gather >= 0).to(y.dtype)
            if self.edge_mode == "count":
                y = y / present.sum(dim=1, keepdim=True).clamp(min=self.edge_eps)
            else:  # partial
                w_abs = w.abs().sum(dim=1).reshape(cout, -1)
                y = y / (present @ w_abs.t()).clamp(min=self.edge_eps)
        return self.output_norm(y)

    def _depthwise(self, x: torch.Tensor, gather: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """The depthwise conv one tap at a time: (N_in, C), (N_out, T), (C, T) -> (N_out, C).

        Each tap gathers its rows, norms them (the norm is row-wise, so norming after the gather
        is the same), and adds them weighted; an empty tap (-1) adds an exact zero. Nothing of
        N_in x C is built besides x (no padded copy, no normed copy, no (N_out, T, C) gather):
        at 200k patches that was 0.6 GB on top of the stage-0 peak.
        """
        g = gather.long()
        y = None
        for t in range(w.shape[1]):
            col = g[:, t]
            rows = self.input_norm(x[col.clamp(min=0)])                     # (N_out, C)
            term = rows * w[:, t] * (col >= 0).to(x.dtype).unsqueeze(1)
            y = term if y is None else y + term
        return y

    def global_forward(self, t: torch.Tensor) -> torch.Tensor:
        """`kernel` strategy: the token fills every tap of a k_eff x k_eff patch; mean-pooled."""
        t = self.input_norm(t)
        k = self.dwconv.kernel_size[0]
        d = self.dwconv.dilation[0]
        ke = k + (k - 1) * (d - 1)
        out = self.dwconv(t[:, :, None, None].expand(-1, -1, ke, ke)).mean(dim=[-1, -2])
        return self.output_norm(out)


class PatchMergeBlock(nn.Module):
    """patchmerge: 2x2 slots concatenated slot-major, LN(4C), Linear (official s_PatchMerge)."""

    def __init__(self, cin: int, cout: int, cfg: SpanConfig):
        super().__init__()
        pre = cfg.conv_norm_position == "pre"
        self.input_norm = nn.LayerNorm(4 * cin) if pre else nn.Identity()
        self.output_norm = nn.Identity() if pre else nn.LayerNorm(cout)
        self.pwconv = nn.Linear(4 * cin, cout, bias=cfg.conv_bias)
        self.edge_mode, self.edge_eps = cfg.edge_mode, cfg.edge_eps

    def forward(self, x: torch.Tensor, gather: torch.Tensor) -> torch.Tensor:
        y = _gather_rows(x, gather).reshape(gather.shape[0], -1)
        if self.edge_mode != "none":
            count = (gather >= 0).to(y.dtype).sum(dim=1, keepdim=True).clamp(min=1.0)
            y = y * (1.0 / count.clamp(min=self.edge_eps))
        return self.output_norm(self.pwconv(self.input_norm(y)))

    def global_forward(self, t: torch.Tensor) -> torch.Tensor:
        # The token is repeated per channel (interleaved), unlike the slot-major local layout.
        merged = t.unsqueeze(-1).expand(t.shape[0], t.shape[1], 4).reshape(t.shape[0], 4 * t.shape[1])
        return self.output_norm(self.pwconv(self.input_norm(merged)))


class ConvolutionLayer(nn.Module):
    """Official ConvolutionLayer: `conv_block` for the local rows (through a host table), and a
    global-token path per `global_strategy` (spec 2.5). Encoder and decoder layers share it."""

    def __init__(self, block: nn.Module, cin: int, cout: int, strategy: str, pre_norm: bool):
        super().__init__()
        self.conv_block = block
        self.global_strategy = strategy
        self.global_input_norm = nn.LayerNorm(cin) if pre_norm else nn.Identity()
        if strategy == "proj":
            self.g_proj = nn.Linear(cin, cout, bias=True)
        if strategy == "identity":
            self.identity_proj = nn.Linear(cin, cout) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, table=None) -> torch.Tensor:
        return self.conv_block(x, table)

    def global_forward(self, t: torch.Tensor) -> torch.Tensor:
        if self.global_strategy == "kernel":
            return self.conv_block.global_forward(t)
        if self.global_strategy == "identity":
            return self.identity_proj(self.global_input_norm(t))
        if self.global_strategy == "proj":
            return self.g_proj(self.global_input_norm(t))
        return t


class ConvLayer(ConvolutionLayer):
    """An encoder stage's conv layer: the input projection (stage 0) or the sparse downsampler."""

    def __init__(self, cfg: SpanConfig, stage: int):
        if stage == 0:
            cin, cout = cfg.feat_dim, cfg.embed_dim
            block: nn.Module = LinearBlock(cfg)
            pre = False  # the input projection is always built post-norm: no global input norm
        else:
            cin, cout = cfg.stage_dim(stage - 1), cfg.stage_dim(stage)
            if cfg.conv_type == "patchmerge":
                block = PatchMergeBlock(cin, cout, cfg)
            else:
                block = PatchConvBlock(cin, cout, cfg, depthwise=cfg.conv_type == "dwpatchconv")
            pre = cfg.conv_norm_position == "pre"
        super().__init__(block, cin, cout, cfg.global_strategy, pre)
