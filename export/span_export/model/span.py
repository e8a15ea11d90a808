"""The PyTorch SPAN: official checkpoints load unchanged; forward consumes the host rulebook.

``forward(feats, *tables)`` takes the engine inputs of ``span_deploy.rulebook.input_names`` in
order, so the same module is what the ONNX exporter traces.
"""
from __future__ import annotations

import torch
from torch import nn

from span_deploy.config import SpanConfig
from span_deploy.liveness import local_liveness
from span_deploy.rulebook import input_names, output_names
from .convs import ConvLayer
from .decoder import Decoder
from .heads import build_head, survival_forward
from .transformer import StageTables, TransLayer


class Block(nn.Module):
    """One stage: `modules_dict.convs_0` (the conv layer) and `modules_dict.trans_2` (its layers)."""

    def __init__(self, cfg: SpanConfig, stage: int):
        super().__init__()
        dim, heads = cfg.stage_dim(stage), cfg.stage_heads(stage)
        self.modules_dict = nn.ModuleDict({
            "convs_0": nn.ModuleList([ConvLayer(cfg, stage)]),
            "trans_2": nn.ModuleList([TransLayer(cfg, dim, heads) for _ in range(cfg.layers_per_stage[stage])]),
        })


class Encoder(nn.Module):
    def __init__(self, cfg: SpanConfig):
        super().__init__()
        self.blocks = nn.ModuleList(Block(cfg, s) for s in range(cfg.num_stages))
        kinds = [t.kind for t in cfg.tokens]
        f = cfg.feat_dim
        if kinds.count("rand"):
            self.register_buffer("random_tokens", torch.zeros(kinds.count("rand"), f))
        if kinds.count("fix"):
            self.register_buffer("fixed_tokens", torch.zeros(kinds.count("fix"), f))
        self.learnable_tokens = nn.ParameterList(nn.Parameter(torch.zeros(1, f)) for _ in range(kinds.count("lrn")))
        self.token_specs = cfg.tokens

    def init_tokens(self, x0: torch.Tensor) -> torch.Tensor:
        """(G, F) global tokens; statistics run over the padded stage-0 rows (pads included)."""
        toks = []
        for spec in self.token_specs:
            if spec.kind == "max":
                toks.append(x0.max(dim=0, keepdim=True)[0])
            elif spec.kind == "mean":
                toks.append(x0.mean(dim=0, keepdim=True))
            elif spec.kind == "std":
                toks.append(x0.std(dim=0, keepdim=True))
            elif spec.kind == "rand":
                toks.append(self.random_tokens[spec.index:spec.index + 1])
            elif spec.kind == "fix":
                toks.append(self.fixed_tokens[spec.index:spec.index + 1])
            else:
                toks.append(self.learnable_tokens[spec.index])
        return torch.cat(toks) if toks else x0.new_zeros((0, x0.shape[1]))


class SpanModel(nn.Module):
    """Encoder + head. Outputs: logits (1, C), slide_embedding (1, E), then per stage the
    global tokens (G, D_s), then stage-0 rows (N0, D_0) and a stage-0 patch score (N0,)."""

    def __init__(self, cfg: SpanConfig, num_outputs: int):
        super().__init__()
        self.cfg = cfg
        self.num_outputs = num_outputs
        self.encoder = Encoder(cfg)
        self._build_head(cfg, num_outputs)
        self.input_names = input_names(cfg)

    def _build_head(self, cfg: SpanConfig, num_outputs: int) -> None:
        for name, mod in build_head(cfg, num_outputs).items():
            self.add_module(name, mod)

    @property
    def output_names(self) -> list[str]:
        """The contract's outputs (span_deploy.rulebook.io), in the order forward returns them."""
        return output_names(self.cfg)

    def _tables(self, named: dict[str, torch.Tensor], s: int) -> StageTables:
        return StageTables(named[f"s{s}_win_u"], named[f"s{s}_pos_u"], named.get(f"s{s}_win_s"),
                           named.get(f"s{s}_pos_s"), named.get(f"s{s}_coords"))

    def encode(self, feats: torch.Tensor, *tables: torch.Tensor, every_local: bool = False):
        """Per stage the local rows and the global tokens (and stage 0's relay weights).
        ``every_local``: compute the locals no output reads too (as the official model does),
        to compare every stage with it; otherwise those stages' entries are None."""
        named = dict(zip(self.input_names[1:], tables))
        cfg = self.cfg
        x = feats
        if x.dtype == torch.float32:
            t = self.encoder.init_tokens(x)
        else:  # fp16 export: row statistics over the whole slide in fp32
            t = self.encoder.init_tokens(x.float()).to(x.dtype)
        stage_feats, stage_globals = [], []
        relay_w = None
        # local rows no output reads are not computed (span_deploy.liveness): x is None where even
        # a stage's input locals are dead, and a layer with dead output locals updates its globals only
        live = local_liveness(cfg, every_local)
        for s, block in enumerate(self.encoder.blocks):
            conv = block.modules_dict["convs_0"][0]
            x = conv(x, named.get(f"s{s}_gather")) if live.conv[s] and x is not None else None
            t = conv.global_forward(t)
            tab = self._tables(named, s)
            for i, layer in enumerate(block.modules_dict["trans_2"]):
                x, t, w = layer.trans_block(x if live.inp[s][i] else None, t, tab, want_weights=(s == 0),
                                            locals_out=live.out[s][i])
                if s == 0 and w is not None:
                    relay_w = w
            stage_feats.append(x)
            stage_globals.append(t)
        return stage_feats, stage_globals, relay_w

    def forward(self, feats: torch.Tensor, *tables: torch.Tensor):
        stage_feats, stage_globals, relay_w = self.encode(feats, *tables)
        if feats.dtype != torch.float32:  # fp16 export: the head (pooling, softmax, LayerNorm) runs in fp32
            stage_feats = [None if f is None else f.float() for f in stage_feats]
            stage_globals = [g.float() for g in stage_globals]
            relay_w = None if relay_w is None else relay_w.float()
        if self.cfg.task == "survival":
            logits, emb, attn_w = survival_forward(self.cfg, self._modules, stage_feats, stage_globals)
        else:
            logits, emb, attn_w = self.aggregator(stage_feats, stage_globals)
        scores = _patch_scores(stage_feats[0], attn_w, relay_w)
        return (logits, emb, *stage_globals, stage_feats[0], scores)


def _patch_scores(x0: torch.Tensor, attn_w: torch.Tensor | None, relay_w: torch.Tensor | None) -> torch.Tensor:
    """A per-row heatmap score at stage 0 (rows in model order, pads included).

    multiattn: the head's stage-0 attention-pooling weights. `long` with globals: global token 0's
    relay attention over the inner rows (mean over heads; rows 0 and N-1 get 0). Otherwise the
    L2 norm of the stage-0 output row.
    """
    if attn_w is not None:
        return attn_w
    if relay_w is not None:
        z = relay_w.new_zeros((1,))
        return torch.cat([z, relay_w, z])
    return x0.norm(dim=-1)


class SpanSegModel(SpanModel):
    """Encoder + segmentation decoder (official SegmentationModel: `encoder.*`, `decoder.*`).

    Outputs (span_deploy.rulebook.io): patch_logits (N0,) per stage-0 row, pads included;
    slide_embedding (1, D_last): the bottleneck's global token 0 (mean of its rows when there is no
    global token); per encoder stage the global tokens; stage-0 rows (N0, D_0).
    """

    def _build_head(self, cfg: SpanConfig, num_outputs: int) -> None:
        self.decoder = Decoder(cfg)

    def forward(self, feats: torch.Tensor, *tables: torch.Tensor, record: list | None = None):
        named = dict(zip(self.input_names[1:], tables))
        stage_feats, stage_globals, _ = self.encode(feats, *tables)
        if feats.dtype != torch.float32:  # fp16 export: the decoder runs in fp32
            stage_feats = [None if f is None else f.float() for f in stage_feats]
            stage_globals = [g.float() for g in stage_globals]
        ups, tabs = [], []
        for i, block in enumerate(self.decoder.blocks[:-1]):
            ups.append({k: named[f"d{i}_{k}"] for k in ("parent", "slot", "gather") if f"d{i}_{k}" in named})
            tabs.append(self._tables(named, block.target))
        logits = self.decoder(stage_feats, stage_globals, ups, tabs, record)
        last_x, last_g = stage_feats[-1], stage_globals[-1]
        emb = last_g[0:1] if last_g.shape[0] > 0 else last_x.mean(dim=0, keepdim=True)
        return (logits, emb, *stage_globals, stage_feats[0])


def build_model(cfg: SpanConfig, num_outputs: int) -> SpanModel:
    """The model class for the config's task."""
    return SpanSegModel(cfg, 1) if cfg.task == "segmentation" else SpanModel(cfg, num_outputs)
