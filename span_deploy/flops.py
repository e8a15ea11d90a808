"""FLOP count of one SPAN forward pass (numpy only, no torch).

Unit: 2 x multiply-adds ("FLOPs" as sgemm rates count them: an (m x k) @ (k x n) matmul is
2*m*k*n). Counted, for what the implementation *computes*:

* input projection (stage 0): every stage-0 row (pads included) through Linear F->D, or the
  MLP F->h->D (h = int(F * mlp_ratio)); the G global tokens through the stage-0 global path
  (identity/proj: Linear F->D, none if F == D for identity; kernel: the same block as locals).
* conv of stage s >= 1: per output row all k*k gathered taps, empty taps included (they are
  zero rows but the einsum multiplies them): dwpatchconv k*k*C_out MACs, patchconv
  k*k*C_in*C_out/groups, patchmerge 4*C_in*C_out; edge_mode 'partial' adds its (N x taps) @
  (taps x C_out) divisor matmul. Globals: identity (none when C_in == C_out) / proj Linear /
  kernel (one conv output per token).
* per transformer layer, locals (N_s rows) and globals (G rows) apart, as the model computes
  them: where the layer's local rows reach an output (span_deploy.liveness; e.g. not the last
  stage's last layer under a head that reads global tokens only, which the model skips), q1/k1/v1
  (swin also q2/k2/v2), fc_out and the FFN D->ff->D on the N_s rows, and the local window
  attention; fc_out and the FFN on the G rows always (G > 0). A stage's downsampling of the
  locals is counted where its output is read.
* local window attention: *useful* FLOPs only, 4*D per (query, key) pair (QK^T: D MACs, A.V:
  D MACs). The implementation evaluates dense S^2 x S^2 blocks per window (see
  :func:`dense_attention_pairs`); the padding slots of those blocks are not counted. Pairs come
  from (best first) a rulebook (:func:`attention_pairs`, exact), ``windows`` (per-stage window
  counts: an occupancy estimate) or a full-window upper bound.
* global relay (`long`, G > 0), see :func:`_relay_flops`: q2/k2/v2 of the globals, then their
  scores and value sums over all N_s rows through the weights (Wk^T q, Wv (sum a h)) instead of
  projecting the locals' keys and values; the locals' side only with G > 1 (G == 1: a copy).
* head: its Linear layers (and the multiattn attention MLPs and pooling over N_s rows).

Not counted: LayerNorms, softmax/exp, activations, residual adds, bias adds, RoPE rotations,
token statistics (max/mean/std), gathers, the patch-score norm -- elementwise work that is not
multiply-add dominated.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .config import SpanConfig
from .liveness import local_liveness

__all__ = ["model_flops", "flops_breakdown", "attention_pairs", "dense_attention_pairs",
           "window_counts", "estimate_attention_pairs"]

# Fraction of a shifted (B) window that lies outside the query's own A window: a B window of
# side S = 2w straddles four A windows in (S/2 x S/2) quadrants, one of which is the query's.
_B_OUTSIDE_A = 0.75


def _linear(rows: float, fin: int, fout: int) -> float:
    return 2.0 * rows * fin * fout


def _self_ok(n: int) -> np.ndarray:
    """SPAN's positional self-loop rule: rows 0 and N-1 may not attend to themselves."""
    rows = np.arange(n)
    return (rows > 0) & (rows < n - 1)


def _trans_type(cfg_or_type: SpanConfig | str) -> str:
    return cfg_or_type.trans_type if isinstance(cfg_or_type, SpanConfig) else str(cfg_or_type)


def _stage_pairs(win_a: np.ndarray, pos_a: np.ndarray, win_b: np.ndarray | None,
                 pos_b: np.ndarray | None, trans: str) -> int:
    s2 = win_a.shape[1]
    n = pos_a.shape[0]
    ok = _self_ok(n)
    wa = pos_a.astype(np.int64) // s2
    count_a = (win_a >= 0).sum(axis=1)
    keys_a = count_a[wa] - (~ok)                       # own A window, self only where allowed
    total = int(keys_a.sum())
    if trans == "long_noshift" or win_b is None:
        return total
    wb = pos_b.astype(np.int64) // s2
    count_b = (win_b >= 0).sum(axis=1)
    if trans == "swin":                                # two independent window attentions
        return total + int((count_b[wb] - (~ok)).sum())
    # long: B keys that already lie in the query's A window are masked (disjoint merge); the
    # query itself is one of them, so no self rule is needed here.
    key = wb * (int(wa.max()) + 1) + wa
    uniq, inv, cnt = np.unique(key, return_inverse=True, return_counts=True)
    same = cnt[inv]
    return total + int((count_b[wb] - same).sum())


def attention_pairs(rulebook: Any, trans_type: SpanConfig | str = "long") -> list[int]:
    """Exact (query, key) pairs of the local window attention per stage, for ONE layer.

    ``rulebook``: a :class:`span_deploy.rulebook.Rulebook`. `long`: the union of the query's
    unshifted window and its shifted window (self only for rows 1..N-2; equals the official g1
    edge set); `long_noshift`: the unshifted window; `swin`: shifted and unshifted windows as
    two attentions (their common keys count twice, as computed).
    """
    trans = _trans_type(trans_type)
    out = []
    for st in rulebook.stages:
        w = st.windows
        b = w.shifted if trans != "long_noshift" else None
        out.append(_stage_pairs(w.unshifted.win, w.unshifted.pos, None if b is None else b.win,
                                None if b is None else b.pos, trans))
    return out


def dense_attention_pairs(rulebook: Any, trans_type: SpanConfig | str = "long") -> list[int]:
    """Pairs the dense per-window implementation evaluates: W x (S^2)^2 per windowing used."""
    trans = _trans_type(trans_type)
    out = []
    for st in rulebook.stages:
        w = st.windows
        s2 = int(w.unshifted.win.shape[1])
        n = w.unshifted.num_windows
        if trans != "long_noshift":
            n += w.shifted.num_windows
        out.append(n * s2 * s2)
    return out


def window_counts(rulebook: Any) -> list[tuple[int, int]]:
    """Per stage (unshifted windows, shifted windows), 0 shifted when the shift is inactive."""
    return [(st.windows.unshifted.num_windows,
             st.windows.shifted.num_windows if st.windows.shift_active else 0) for st in rulebook.stages]


def estimate_attention_pairs(cfg: SpanConfig, stage_sizes: Sequence[int],
                             windows: Sequence[tuple[int, int]] | None = None) -> list[float]:
    """Pairs per stage without a rulebook.

    With ``windows`` (per stage: unshifted window count, shifted window count or 0 when the shift
    is inactive): mean window occupancy n/W; `long` keys per query = occ_A + 0.75 * occ_B, less
    the self key on the two end rows. Without: every window full, keys per query =
    min(S^2 + 0.75 S^2, N) (63 for window 3) -- an upper bound for real, sparse tissue.
    """
    s2 = (2 * cfg.window_size) ** 2
    trans = cfg.trans_type
    out = []
    for s, n in enumerate(stage_sizes):
        n = int(n)
        if windows is not None:
            wa, wb = windows[s]
            occ_a = n / max(wa, 1)
            occ_b = n / wb if wb else 0.0
        else:
            occ_a, occ_b = float(min(s2, n)), float(min(s2, n))
        if trans == "long_noshift":
            per = occ_a
        elif trans == "swin":
            per = occ_a + (occ_b if occ_b else occ_a)
        else:
            per = min(occ_a + _B_OUTSIDE_A * occ_b, float(n))
        out.append(max(per * n - min(n, 2) * (2 if trans == "swin" else 1), 0.0))
    return out


def flops_breakdown(cfg: SpanConfig, stage_sizes: Sequence[int],
                    windows: Sequence[tuple[int, int]] | None = None, *,
                    rulebook: Any = None, pairs: Sequence[float] | None = None) -> dict[str, float]:
    """FLOPs of one forward pass by component (see the module docstring for what is counted).

    Attention pairs: ``pairs`` (per stage, one layer) if given, else exact from ``rulebook``,
    else :func:`estimate_attention_pairs` with ``windows``.
    """
    sizes = [int(n) for n in stage_sizes]
    if len(sizes) != cfg.num_stages:
        raise ValueError(f"{len(sizes)} stage sizes for a {cfg.num_stages}-stage model")
    if pairs is None:
        pairs = attention_pairs(rulebook, cfg) if rulebook is not None else \
            estimate_attention_pairs(cfg, sizes, windows)
    g = cfg.num_globals
    c = cfg.num_outputs or 1
    live = local_liveness(cfg)
    out = dict.fromkeys(("input_projection", "conv", "global_conv", "qkv", "window_attention",
                         "relay", "fc_out", "ffn", "head"), 0.0)

    # ---- stage 0: input projection (locals), stage-0 global path
    f, d0 = cfg.feat_dim, cfg.embed_dim
    p = cfg.input_projection
    if p.activation is not None:
        h = int(f * p.mlp_ratio)
        per_row = 2.0 * (f * h + h * d0)
    else:
        per_row = 2.0 * f * d0
    out["input_projection"] = sizes[0] * per_row
    if cfg.global_strategy == "kernel":
        out["global_conv"] += g * per_row
    elif cfg.global_strategy == "proj" or f != d0:
        out["global_conv"] += _linear(g, f, d0)

    for s, n in enumerate(sizes):
        d = cfg.stage_dim(s)
        if s > 0 and live.conv[s]:                      # ---- sparse downsampling conv
            if cfg.conv_type != "patchmerge" and cfg.edge_mode == "partial":
                out["conv"] += _linear(n, cfg.kernel_size ** 2, d)
            out["conv"] += n * _conv_per_out(cfg, cfg.stage_dim(s - 1), d)
        if s > 0:                                       # ---- the globals' downsampling
            cin = cfg.stage_dim(s - 1)
            if cfg.global_strategy == "kernel":
                out["global_conv"] += g * _conv_per_out(cfg, cin, d)
            elif cfg.global_strategy == "proj" or cin != d:
                out["global_conv"] += _linear(g, cin, d)
        ff = int(d * cfg.ff_ratio)               # ---- transformer layers
        heads = cfg.stage_heads(s)
        relay = cfg.trans_type != "swin" and g > 0
        rope = cfg.pos_emb == "rope"
        for layer in range(cfg.layers_per_stage[s]):
            local = live.out[s][layer]
            if local:                                   # the locals' window attention
                out["qkv"] += (6 if cfg.trans_type == "swin" else 3) * _linear(n, d, d)
                out["window_attention"] += 4.0 * d * float(pairs[s])
                out["fc_out"] += _linear(n, d, d)
                out["ffn"] += _linear(n, d, ff) + _linear(n, ff, d)
            if g > 0:                                   # globals: fc_out + FFN (swin: of zeros)
                out["fc_out"] += _linear(g, d, d)
                out["ffn"] += _linear(g, d, ff) + _linear(g, ff, d)
            if relay:
                out["relay"] += _relay_flops(n, g, d, heads, rope, local)
    out["head"] = _head_flops(cfg, sizes, c)
    return out


def _conv_per_out(cfg: SpanConfig, cin: int, d: int) -> float:
    """FLOPs of one output row of a stage's downsampling conv (all k*k taps)."""
    if cfg.conv_type == "patchmerge":
        return 2.0 * 4 * cin * d
    groups = cin if cfg.conv_type == "dwpatchconv" else cfg.groups
    return 2.0 * cfg.kernel_size ** 2 * cin * d / groups


def _relay_flops(n: int, g: int, d: int, heads: int, rope: bool, local: bool) -> float:
    """One layer's global relay as the model computes it (transformer.GlobalRelay): q2/k2/v2 of
    the G globals; the globals' scores against all N rows through Wk^T q (or the N projected,
    rotated keys with RoPE) and their value sums through Wv (sum a h); with G > 1 and live
    locals, the locals' scores against the globals (Wq^T k, or projected queries with RoPE) and
    their weighted global values."""
    dh = d // heads
    total = 3 * _linear(g, d, d) + 4.0 * g * heads * g * dh          # projections, G x G part
    if rope:
        total += _linear(n, d, d) + 2.0 * n * d * g                  # k2 of every row, scores
    else:
        total += 2.0 * g * d * d + 2.0 * n * d * g * heads           # Wk^T q, h . u
    total += 2.0 * g * heads * n * d + 2.0 * g * d * d               # sum a h, Wv (sum a h)
    if local and g > 1:
        if rope:
            total += _linear(n, d, d) + 2.0 * n * d * g
        else:
            total += 2.0 * g * d * d + 2.0 * n * d * g * heads
        total += 2.0 * n * g * d                                     # a . v_g
    return total


def _head_flops(cfg: SpanConfig, sizes: list[int], c: int) -> float:
    layers = cfg.num_stages
    if cfg.task == "survival":
        dim = cfg.embed_dim
        return _linear(1, layers * dim if cfg.aggr_method == "concat" else dim, c)
    d = cfg.stage_dim(layers - 1)
    m = cfg.aggr_method
    if m == "concat":
        return _linear(1, layers * d, c)
    if m != "multiattn":
        return _linear(1, d, c)
    hidden = max(d // max(int(cfg.head_div), 1), 1)
    total = _linear(1, d, c)
    for n in sizes:
        total += _linear(n, d, hidden) + _linear(n, hidden, 1) + _linear(1, n, d)  # MLP, w @ x
        if cfg.num_globals > 0:
            total += _linear(1, 2 * d, 1)              # context router
        total += _linear(1, d, 1)                      # scale router
    return total


def model_flops(cfg: SpanConfig, stage_sizes: list[int],
                windows: list[tuple[int, int]] | None = None, *, rulebook: Any = None,
                pairs: Sequence[float] | None = None) -> float:
    """Total FLOPs (2 x multiply-adds) of one forward pass on a slide with these stage sizes.

    ``windows``: per stage (unshifted window count, shifted window count or 0), see
    :func:`window_counts`; ``rulebook``: exact attention pairs (:func:`attention_pairs`).
    With neither, window attention is an upper bound (full windows); it is a few per cent of
    the total for the default config, so the total is close either way.
    """
    return float(sum(flops_breakdown(cfg, stage_sizes, windows, rulebook=rulebook, pairs=pairs).values()))
