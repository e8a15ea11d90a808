"""The engine's tensor contract, written once: every input and output of an exported SPAN graph.

The rulebook fills the inputs (``Rulebook.engine_inputs``), the exporter names and marks the
dynamic axes from it, the TensorRT profiles size it, and results are read from the outputs by
name (``backends.result``). TABLES.md documents the same list (a test keeps the two equal).

Only axis 0 of any tensor is dynamic; its symbol (``rows``) is shared by tensors whose row counts
must agree, e.g. ``feats``, ``s0_pos_u`` and ``stage0_features`` all have ``n0`` rows. Trailing
dims are static and known from the config, except where the checkpoint decides them (the class
count, the embedding width): those are ``None``.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..config import SpanConfig

# kinds of inputs, in their per-stage graph order
WINDOW_KINDS = ("win_u", "pos_u", "win_s", "pos_s")


@dataclass(frozen=True)
class TensorSpec:
    name: str                         # graph name
    kind: str                         # feats | win_u | pos_u | win_s | pos_s | gather | coords | <output kind>
    stage: int | None                 # the pyramid stage it belongs to (None: slide level)
    dtype: str                        # numpy dtype name; feats is float16 in fp16 exports
    rows: str | int                   # axis 0: a symbol (dynamic) or a fixed size
    dims: tuple[int | None, ...]      # trailing dims (static); None: set by the checkpoint
    block: int | None = None          # segmentation decoder block (its upsampling tables)

    @property
    def dynamic(self) -> bool:
        return isinstance(self.rows, str)

    def shape(self, rows: int | None = None) -> tuple[int | str | None, ...]:
        """Full shape with the row symbol (or ``rows`` when given)."""
        return ((self.rows if rows is None else rows),) + self.dims


def window_side(cfg: SpanConfig) -> int:
    """S = 2 * window_size cells; a window has S * S slots."""
    return 2 * cfg.window_size


def gather_taps(cfg: SpanConfig) -> int:
    return 4 if cfg.conv_type == "patchmerge" else cfg.kernel_size ** 2


def engine_inputs(cfg: SpanConfig, precision: str = "fp32") -> list[TensorSpec]:
    """Inputs in graph order: feats, then per stage the window tables, gather, coords."""
    s2 = window_side(cfg) ** 2
    feats_dtype = "float16" if precision == "fp16" else "float32"
    out = [TensorSpec("feats", "feats", 0, feats_dtype, "n0", (cfg.feat_dim,))]
    for s in range(cfg.num_stages):
        for kind in WINDOW_KINDS:
            if kind.endswith("_s") and not cfg.has_shift(s):
                continue
            if kind.startswith("win_"):
                out.append(TensorSpec(f"s{s}_{kind}", kind, s, "int32", f"windows{s}_{kind[-1]}", (s2,)))
            else:
                out.append(TensorSpec(f"s{s}_{kind}", kind, s, "int32", f"n{s}", ()))
        if s > 0:
            out.append(TensorSpec(f"s{s}_gather", "gather", s, "int32", f"n{s}", (gather_taps(cfg),)))
        if cfg.pos_emb == "rope":
            out.append(TensorSpec(f"s{s}_coords", "coords", s, "float32", f"n{s}", (2,)))
    for i in range(cfg.num_decoder_stages):   # segmentation: upsampling onto stage t's rows
        t = cfg.decoder_target_stage(i)
        if cfg.dconv_type == "pixelshuffle":
            out.append(TensorSpec(f"d{i}_parent", "up_parent", t, "int32", f"n{t}", (), i))
            out.append(TensorSpec(f"d{i}_slot", "up_slot", t, "int32", f"n{t}", (), i))
        else:
            out.append(TensorSpec(f"d{i}_gather", "up_gather", t, "int32", f"n{t}", (cfg.kernel_size ** 2,), i))
    return out


def engine_outputs(cfg: SpanConfig) -> list[TensorSpec]:
    """Outputs in graph order (all float32, fp16 exports included).

    Classification / survival: the head's logits first. Segmentation: one logit per stage-0 row
    (``patch_logits``, pads included, rulebook order) instead, and as slide embedding the
    bottleneck's global token 0 (the mean of its rows when the model has no global token).
    """
    if cfg.task == "segmentation":
        out = [TensorSpec("patch_logits", "patch_logits", 0, "float32", "n0", ()),
               TensorSpec("slide_embedding", "slide_embedding", None, "float32", 1,
                          (cfg.stage_dim(cfg.num_stages - 1),))]
    else:
        out = [TensorSpec("logits", "logits", None, "float32", 1, (cfg.num_outputs,)),
               TensorSpec("slide_embedding", "slide_embedding", None, "float32", 1, (None,))]
    g = cfg.num_globals
    for s in range(cfg.num_stages):
        out.append(TensorSpec(f"stage{s}_globals", "globals", s, "float32", g, (cfg.stage_dim(s),)))
    out.append(TensorSpec("stage0_features", "features", 0, "float32", "n0", (cfg.stage_dim(0),)))
    if cfg.task != "segmentation":  # segmentation: the score is sigmoid(patch_logits), on the host
        out.append(TensorSpec("patch_scores", "patch_scores", 0, "float32", "n0", ()))
    return out


def input_names(cfg: SpanConfig) -> list[str]:
    return [t.name for t in engine_inputs(cfg)]


def output_names(cfg: SpanConfig) -> list[str]:
    return [t.name for t in engine_outputs(cfg)]


def dynamic_axes(cfg: SpanConfig) -> dict[str, dict[int, str]]:
    """torch.onnx.export's dynamic_axes: axis 0 of every tensor with a row symbol."""
    return {t.name: {0: t.rows} for t in engine_inputs(cfg) + engine_outputs(cfg) if t.dynamic}
