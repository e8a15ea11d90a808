"""span_deploy.flops against hand counts on the tiny all-to-all fixture.

cls_tiny_alltoall: F=512 (CONCH), D=64, 1 head, ff=128, G=1 learnable token, long with shift,
dwpatchconv k=2 s=2, identity globals, multi_addition head with C=2. Stage sizes [11, 6, 4].
"""
from __future__ import annotations

import numpy as np
import pytest

from span_deploy.config import load_config
from span_deploy.flops import (attention_pairs, dense_attention_pairs, estimate_attention_pairs,
                               flops_breakdown, model_flops, window_counts)
from span_deploy.rulebook import build_rulebook
from tests.cases import PUBLIC

TINY = PUBLIC / "cls_tiny_alltoall"
DEFAULT = PUBLIC / "cls_default_r50"


@pytest.fixture(scope="module")
def tiny():
    import h5py

    cfg = load_config(TINY / "config.yaml")
    with h5py.File(TINY / "slide.h5") as f:
        coords = np.asarray(f["cords"])
        feats = np.asarray(f["feats"], np.float32)
    return cfg, build_rulebook(coords, cfg), coords, feats


def test_tiny_geometry(tiny):
    cfg, rb, _, _ = tiny
    assert (cfg.feat_dim, cfg.embed_dim, cfg.num_heads, cfg.num_globals, cfg.num_outputs) == (512, 64, 1, 1, 2)
    assert rb.stage_sizes == [11, 6, 4]


def test_attention_pairs_by_hand(tiny):
    """Stage 0 (11 rows): unshifted windows {0..9}, {10}; shifted {0,1}, {2,3}, {7}, {4,5,6,8,9,10}.
    Rows 0 and 10 may not attend to themselves.

    long: A keys: rows 1..9 -> 10 each (90), row 0 -> 9, row 10 -> 0 = 99; B keys outside the own
    A window: rows 4,5,6,8,9 see 10 (5), row 10 sees 4,5,6,8,9 (5) = 10. Total 109.
    Stages 1, 2 are all-to-all (one window, shift inactive): N(N-1) + (N-2) = 34, 14.
    """
    _, rb, _, _ = tiny
    assert attention_pairs(rb, "long") == [109, 34, 14]
    assert attention_pairs(rb, "long_noshift") == [99, 34, 14]
    # swin: A as above (99) plus B as its own attention: {0,1}: 1+2, {2,3}: 4, {7}: 1,
    # {4,5,6,8,9,10}: 5*6 + 5 -> 43; stages 1, 2: the same single window twice.
    assert attention_pairs(rb, "swin") == [99 + 43, 68, 28]
    assert dense_attention_pairs(rb, "long") == [(2 + 4) * 36 * 36, 2 * 36 * 36, 2 * 36 * 36]
    assert window_counts(rb) == [(2, 4), (1, 0), (1, 0)]


def test_attention_pairs_match_official_edge_sets():
    """The official g1 edge list (deduplicated, self loops included) of every `long` fixture."""
    import h5py

    checked = 0
    for case in sorted(PUBLIC.iterdir()):
        if not (case / "expected.npz").is_file():
            continue
        cfg = load_config(case / "config.yaml")
        if cfg.trans_type == "swin":
            continue
        with h5py.File(case / "slide.h5") as f:
            rb = build_rulebook(np.asarray(f["cords"]), cfg)
        e = np.load(case / "expected.npz")
        want = [len(e[f"stage{s}_nbr_src"]) for s in range(cfg.num_stages)]
        assert attention_pairs(rb, cfg) == want, case.name
        checked += 1
    assert checked >= 3


def test_tiny_flops_by_hand(tiny):
    cfg, rb, _, _ = tiny
    F, D, FF, G, C = 512, 64, 128, 1, 2
    n = [11, 6, 4]
    want = {
        "input_projection": 11 * 2 * F * D,                           # 720,896
        "global_conv": 1 * 2 * F * D,                                 # identity_proj F->D
        "conv": (6 + 4) * 2 * 4 * D,                                  # depthwise, 4 taps
        # stage 2's layer: the multi_addition head reads its global token only, so its locals'
        # attention, fc_out and FFN are skipped (span_deploy.liveness); its input rows still feed
        # the relay. Locals and globals apart: q1k1v1 on the locals of stages 0 and 1
        "qkv": sum(3 * 2 * x * D * D for x in n[:2]),
        "window_attention": 4 * D * (109 + 34),
        # per stage: q2k2v2 of the global, its G x G scores and values, Wk^T q (D x D), the
        # scores h . u over all rows, sum a h over all rows, Wv (sum a h)
        "relay": sum(3 * 2 * G * D * D + 4 * G * G * D + 2 * G * D * D + 2 * x * D * G + 2 * G * x * D
                     + 2 * G * D * D for x in n),
        "fc_out": sum(2 * x * D * D for x in n[:2]) + 3 * 2 * G * D * D,
        "ffn": sum(2 * x * (D * FF + FF * D) for x in n[:2]) + 3 * 2 * G * (D * FF + FF * D),
        "head": 2 * D * C,
    }
    assert want == {'input_projection': 720896, 'global_conv': 65536, 'conv': 5120, 'qkv': 417792, 'window_attention': 36608, 'relay': 129024, 'fc_out': 163840, 'ffn': 655360, 'head': 256}
    got = flops_breakdown(cfg, n, rulebook=rb)
    assert got == pytest.approx(want, rel=0, abs=0)
    assert model_flops(cfg, n, rulebook=rb) == 2194432.0


def test_linear_flops_match_torch_linear_calls(tiny):
    """Every nn.Linear call in a real forward, counted by hooks: 2 * rows * in * out."""
    torch = pytest.importorskip("torch")
    from span_export.model import load_model

    cfg, rb, coords, feats = tiny
    model = load_model(TINY / "checkpoint.pt", TINY / "config.yaml")
    total = [0]

    def hook(mod, args, out):
        total[0] += 2 * args[0].numel() // mod.in_features * mod.in_features * mod.out_features

    hs = [mod.register_forward_hook(hook) for mod in model.modules() if isinstance(mod, torch.nn.Linear)]
    inputs = rb.engine_inputs(cfg, feats)
    with torch.no_grad():
        model(*(torch.from_numpy(inputs[k]) for k in model.input_names))
    for h in hs:
        h.remove()
    b = flops_breakdown(model.cfg, rb.stage_sizes, rulebook=rb)
    linear = b["input_projection"] + b["global_conv"] + b["qkv"] + b["fc_out"] + b["ffn"] + b["head"]
    assert total[0] == linear


def test_estimates_bound_the_exact_count():
    from span_deploy.bench.tissue_tokens import tissue_slide

    cfg = load_config(DEFAULT / "config.yaml")
    coords, _ = tissue_slide(3000, seed=0, feat_dim=8)
    rb = build_rulebook(coords, cfg)
    exact = attention_pairs(rb, cfg)
    upper = estimate_attention_pairs(cfg, rb.stage_sizes)
    est = estimate_attention_pairs(cfg, rb.stage_sizes, window_counts(rb))
    for e, u, w in zip(exact, upper, est):
        assert e <= u
        assert 0.5 * e <= w <= 2.0 * e
    f_exact = model_flops(cfg, rb.stage_sizes, rulebook=rb)
    f_upper = model_flops(cfg, rb.stage_sizes)
    # window attention is a small share of the total: the upper bound moves it by a few per cent
    assert f_exact <= f_upper <= 1.05 * f_exact


def test_rejects_wrong_stage_count(tiny):
    cfg, _, _, _ = tiny
    with pytest.raises(ValueError):
        model_flops(cfg, [11, 6])
