"""The segmentation decoder (official SPAN_Decoder, spec 5.2) with official key names.

Block i restores encoder stage t = E - 2 - i: an upsampler (pixelshuffle, or a sparse transposed
conv for patchinvs / dwpatchinvs) onto stage t's rows through the host upsampling tables, the
global tokens through the same layer's global path, then attention on stage t's window tables
with ``dtrans_type`` and the skip connection with encoder stage t (``skip_first`` 1); or upsample,
skip, Linear, attention (any other ``skip_first``). A last block, Linear(C -> 1), gives one logit
per stage-0 row.
"""
from __future__ import annotations

import torch
from torch import nn

from span_deploy.config import SpanConfig
from .convs import ConvolutionLayer, _gather_rows
from .transformer import StageTables, TransLayer


class PixelShuffleUp(nn.Module):
    """Official s_PixelShuffle: Linear(C_in -> s*s*C_out); child (da, db) takes channels c*s*s + da*s + db."""

    def __init__(self, cin: int, cout: int, cfg: SpanConfig):
        super().__init__()
        pre = cfg.conv_norm_position == "pre"
        self.s, self.cout = cfg.stride, cout
        self.input_norm = nn.LayerNorm(cin) if pre else nn.Identity()
        self.output_norm = nn.Identity() if pre else nn.LayerNorm(cout)
        self.conv = nn.Linear(cin, cout * self.s * self.s, bias=cfg.conv_bias)

    def forward(self, x: torch.Tensor, up: dict[str, torch.Tensor]) -> torch.Tensor:
        y = self.conv(self.input_norm(x)).reshape(x.shape[0], self.cout, self.s * self.s)
        y = y[up["parent"].long()]                                       # (N_fine, C_out, s*s)
        slot = up["slot"].long().reshape(-1, 1, 1).expand(-1, self.cout, 1)
        return self.output_norm(torch.gather(y, 2, slot).squeeze(2))

    def global_forward(self, t: torch.Tensor) -> torch.Tensor:
        """`kernel` strategy: the mean over the s*s channel groups k*C_out + c (not the child layout)."""
        y = self.conv(self.input_norm(t)).reshape(t.shape[0], self.s * self.s, self.cout)
        return self.output_norm(y.mean(dim=1))


class TransposeConvUp(nn.Module):
    """Official s_PatchInverseBlock: a sparse ConvTranspose2d onto the fine rows, then LayerNorm(C_out)
    whatever conv_norm_position says; a fine row sums all its coarse parents."""

    def __init__(self, cin: int, cout: int, cfg: SpanConfig, depthwise: bool):
        super().__init__()
        self.groups = cin if depthwise else cfg.groups
        self.norm = nn.LayerNorm(cout)
        self.upconv = nn.ConvTranspose2d(cin, cout, cfg.kernel_size, stride=cfg.stride, dilation=cfg.dilation,
                                         bias=cfg.conv_bias, groups=self.groups)
        self.pwconv = nn.Identity()

    def forward(self, x: torch.Tensor, up: dict[str, torch.Tensor]) -> torch.Tensor:
        gather = up["gather"]
        neigh = _gather_rows(x, gather)                                   # (N_fine, T, C_in)
        w = self.upconv.weight                                            # (C_in, C_out/g, k, k)
        cin, og = w.shape[0], w.shape[1]
        taps = w.shape[2] * w.shape[3]
        g = self.groups
        wt = w.reshape(g, cin // g, og, taps)
        y = torch.einsum("ntgc,gcot->ngo", neigh.reshape(neigh.shape[0], taps, g, cin // g), wt)
        y = y.reshape(neigh.shape[0], g * og)
        if self.upconv.bias is not None:
            y = y + self.upconv.bias
        return self.norm(self.pwconv(y))

    def global_forward(self, t: torch.Tensor) -> torch.Tensor:
        """`kernel` strategy: the transposed conv of the token as a 1x1 image, mean-pooled."""
        out = self.upconv(t[:, :, None, None]).mean(dim=[-1, -2])
        return self.norm(self.pwconv(out))


class PlainLinear(nn.Module):
    """Official LinearLayer without activation: Sequential(Linear, Dropout) or (Dropout, Linear)."""

    def __init__(self, cin: int, cout: int, bias: bool, drop_first: bool):
        super().__init__()
        lin = nn.Linear(cin, cout, bias)
        self.linear = nn.Sequential(nn.Dropout(0.0), lin) if drop_first else nn.Sequential(lin, nn.Dropout(0.0))
        self.prenorm = nn.Identity()

    def forward(self, x: torch.Tensor, up=None) -> torch.Tensor:
        return self.linear(x)

    def global_forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.linear(t)


class DecoderBlock(nn.Module):
    """One official SPAN_Block of the decoder; module names follow its execution order."""

    def __init__(self, cfg: SpanConfig, i: int):
        super().__init__()
        cin, cout, heads = cfg.decoder_in_dim(i), cfg.decoder_dim(i), cfg.decoder_heads(i)
        if cfg.dconv_type == "pixelshuffle":
            up = PixelShuffleUp(cin, cout, cfg)
        else:
            up = TransposeConvUp(cin, cout, cfg, depthwise=cfg.dconv_type == "dwpatchinvs")
        self.skip = cfg.connection
        self.skip_first = cfg.skip_first == 1
        self.target = cfg.decoder_target_stage(i)
        layers = nn.ModuleList(TransLayer(cfg, cout, heads, cfg.dtrans_type) for _ in range(cfg.decoder_layers[i]))
        convs = {"convs_0": nn.ModuleList([ConvolutionLayer(up, cin, cout, cfg.global_strategy,
                                                       cfg.conv_norm_position == "pre")])}
        if self.skip_first:
            mods = {**convs, "trans_2": layers}
        else:  # upsample, [skip], Linear, attention: the step positions name the modules
            lin_in = 2 * cout if cfg.connection == "concat" else cout
            lin_block = PlainLinear(lin_in, cout, bias=False, drop_first=False)
            lin = nn.ModuleList([ConvolutionLayer(lin_block, lin_in, cout, cfg.global_strategy, pre_norm=False)])
            if cfg.connection == "none":
                mods = {**convs, "convs_1": lin, "trans_3": layers}
            else:
                mods = {**convs, "convs_2": lin, "trans_4": layers}
        self.modules_dict = nn.ModuleDict(mods)
        self._trans = [k for k in mods if k.startswith("trans_")][0]
        self._linear = None if self.skip_first else [k for k in mods if k in ("convs_1", "convs_2")][0]

    def _skip(self, x, t, skip_x, skip_t):
        if self.skip == "concat":
            return torch.cat([x, skip_x], dim=1), torch.cat([t, skip_t], dim=1)
        if self.skip == "add":
            return x + skip_x, t + skip_t
        return x, t

    def forward(self, x, t, up, tab: StageTables, skip_x, skip_t):
        conv = self.modules_dict["convs_0"][0]
        x, t = conv(x, up), conv.global_forward(t)
        if not self.skip_first:
            x, t = self._skip(x, t, skip_x, skip_t)
            lin = self.modules_dict[self._linear][0]
            x, t = lin(x), lin.global_forward(t)
        for layer in self.modules_dict[self._trans]:
            x, t, _ = layer.trans_block(x, t, tab)
        if self.skip_first:
            x, t = self._skip(x, t, skip_x, skip_t)
        return x, t


class FinalBlock(nn.Module):
    """The last decoder block: Dropout + Linear(C -> 1, bias) per row (global path built, unused)."""

    def __init__(self, cfg: SpanConfig):
        super().__init__()
        i = cfg.num_decoder_stages
        cin = cfg.decoder_in_dim(i)
        self.modules_dict = nn.ModuleDict({"convs_0": nn.ModuleList([
            ConvolutionLayer(PlainLinear(cin, 1, bias=True, drop_first=True), cin, 1, cfg.global_strategy,
                             pre_norm=False)])})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.modules_dict["convs_0"][0](x)[:, 0]


class Decoder(nn.Module):
    def __init__(self, cfg: SpanConfig):
        super().__init__()
        self.blocks = nn.ModuleList([DecoderBlock(cfg, i) for i in range(cfg.num_decoder_stages)] + [FinalBlock(cfg)])

    def forward(self, stage_feats, stage_globals, ups, tables, record: list | None = None):
        """(N0,) logits; ``ups[i]`` and ``tables[i]`` are block i's upsampling and window tables.
        ``record`` (debugging, parity tests) receives each block's (rows, globals) output."""
        x, t = stage_feats[-1], stage_globals[-1]
        for i, block in enumerate(self.blocks[:-1]):
            s = block.target
            x, t = block(x, t, ups[i], tables[i], stage_feats[s], stage_globals[s])
            if record is not None:
                record.append((x, t))
        return self.blocks[-1](x)
