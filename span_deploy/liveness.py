"""Which layers' local rows the model's outputs ever read (numpy-free, no torch).

The official SPAN computes every layer on every row, but some of that work never reaches an
output: with a head that reads only global tokens, the last stage's last layer updates its locals
for nothing, and with `swin` (whose globals read no local row) no stage after 0 needs its locals
at all. The PyTorch model skips that work, the ONNX graph therefore never contains it, and
``span_deploy.flops`` counts what is left; all three read these flags, so they agree.

Outputs that read locals: stage 0's rows (``stage0_features``, patch scores) always; every stage
for a segmentation decoder and the `multiattn` head; the last stage for an `addition` head
(classification or survival). A layer's *input* rows are read by its own relay (`long` with
global tokens: the globals attend to the locals) even when its output rows are not.
"""
from __future__ import annotations

from dataclasses import dataclass

from .config import SpanConfig


@dataclass(frozen=True)
class LocalLiveness:
    """Per stage, per layer: whether the layer's output locals (``out``) and its input locals
    (``inp``) are read; ``conv[s]``: whether stage s's downsampling of the locals is."""
    out: tuple[tuple[bool, ...], ...]
    inp: tuple[tuple[bool, ...], ...]
    conv: tuple[bool, ...]


def _head_reads(cfg: SpanConfig) -> list[bool]:
    """Per stage: whether an output reads that stage's local rows directly."""
    n = cfg.num_stages
    if cfg.task == "segmentation" or cfg.aggr_method == "multiattn":
        return [True] * n
    reads = [s == 0 for s in range(n)]
    if cfg.aggr_method == "addition":
        reads[-1] = True
    return reads


def local_liveness(cfg: SpanConfig, everything: bool = False) -> LocalLiveness:
    """The flags for ``cfg``; ``everything``: all True (the official model's full computation)."""
    if everything:
        return LocalLiveness(tuple((True,) * n for n in cfg.layers_per_stage),
                             tuple((True,) * n for n in cfg.layers_per_stage), (True,) * cfg.num_stages)
    relay_reads_locals = cfg.trans_type != "swin" and cfg.num_globals > 0
    head = _head_reads(cfg)
    out: list[tuple[bool, ...]] = [()] * cfg.num_stages
    inp: list[tuple[bool, ...]] = [()] * cfg.num_stages
    conv = [False] * cfg.num_stages
    next_in = False       # the next stage's first layer reads its input (our output, downsampled)
    for s in reversed(range(cfg.num_stages)):
        live = head[s] or next_in
        o, i = [], []
        for _ in range(cfg.layers_per_stage[s]):
            o.append(live)
            live = live or relay_reads_locals
            i.append(live)
        o.reverse()
        i.reverse()
        out[s], inp[s] = tuple(o), tuple(i)
        stage_in = i[0] if i else live
        conv[s] = stage_in
        next_in = stage_in
    return LocalLiveness(tuple(out), tuple(inp), tuple(conv))
