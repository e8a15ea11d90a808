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
* per transformer layer on M = N_s + G rows (globals are concatenated to the locals):
  q1/k1/v1 on all M rows; `long` with G > 0 and `swin` also q2/k2/v2 on all M rows (computed
  again even with share_qkv) -- except q2 on the G rows only when `long` has G == 1; fc_out on M
  rows; FFN D->ff->D on M rows.
* local window attention: *useful* FLOPs only, 4*D per (query, key) pair (QK^T: D MACs, A.V:
  D MACs). The implementation evaluates dense S^2 x S^2 blocks per window (see
  :func:`dense_attention_pairs`); the padding slots of those blocks are not counted. Pairs come
  from (best first) a rulebook (:func:`attention_pairs`, exact), ``windows`` (per-stage window
  counts: an occupancy estimate) or a full-window upper bound.
* global relay (`long`, G > 0): inner locals (N_s - 2) x G keys (none when G == 1: a copy), and
  G queries x (G + N_s - 2) keys, 4*D per pair.
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
        if s > 0:                                       # ---- sparse downsampling conv
            cin, taps = cfg.stage_dim(s - 1), cfg.kernel_size ** 2
            if cfg.conv_type == "patchmerge":
                per_out = 2.0 * 4 * cin * d
            else:
                groups = cin if cfg.conv_type == "dwpatchconv" else cfg.groups
                per_out = 2.0 * taps * cin * d / groups
                if cfg.edge_mode == "partial":
                    out["conv"] += _linear(n, taps, d)
            out["conv"] += n * per_out
            if cfg.global_strategy == "kernel":
                out["global_conv"] += g * per_out
            elif cfg.global_strategy == "proj" or cin != d:
                out["global_conv"] += _linear(g, cin, d)
        m = n + g                                       # ---- transformer layers
        ff = int(d * cfg.ff_ratio)
        second_set = cfg.trans_type == "swin" or g > 0   # swin: g2 windows; long: relay
        inner = max(n - 2, 0)
        # `long` with one global token: the relay's softmax over one key is exactly 1, so the
        # locals' q2 is never projected and their relay is a copy of the global's value
        single = cfg.trans_type != "swin" and g == 1
        for _ in range(cfg.layers_per_stage[s]):
            if single:
                out["qkv"] += 5 * _linear(m, d, d) + _linear(g, d, d)
            else:
                out["qkv"] += (6 if second_set else 3) * _linear(m, d, d)
            out["window_attention"] += 4.0 * d * float(pairs[s])
            if cfg.trans_type != "swin" and g > 0:
                out["relay"] += 4.0 * d * ((0 if single else inner * g) + g * (g + inner))
            out["fc_out"] += _linear(m, d, d)
            out["ffn"] += _linear(m, d, ff) + _linear(m, ff, d)

    out["head"] = _head_flops(cfg, sizes, c)
    return out


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
