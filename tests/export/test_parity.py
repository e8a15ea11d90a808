"""Golden parity with the official model: logits, per-stage tensors, rulebook edge sets."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from span_deploy.features import read_features
from span_export.model import load_model
from span_deploy.rulebook import build_rulebook
from span_deploy.rulebook.windows import window_pairs
from tests.cases import ALL_CASES, ids

TOL = 1e-4


def run_case(case, record: list | None = None):
    """Model, rulebook, per-stage rows and globals, outputs; ``record`` (segmentation) receives
    each decoder block's output."""
    model = load_model(case / "checkpoint.pt", case / "config.yaml")
    sf = read_features(case / "slide.h5")
    rb = build_rulebook(sf.coords, model.cfg)
    inputs = rb.engine_inputs(model.cfg, sf.feats)
    args = [torch.from_numpy(np.ascontiguousarray(inputs[n])) for n in model.input_names]
    with torch.no_grad():
        feats, globals_, _ = model.encode(*args, every_local=True)
        outs = model(*args) if record is None else model(*args, record=record)
    return model, rb, feats, globals_, outs


@pytest.mark.parametrize("case", ALL_CASES, ids=ids(ALL_CASES))
def test_logits_and_stages(case):
    model, rb, feats, globals_, outs = run_case(case)
    exp = np.load(case / "expected.npz")
    assert rb.stage_sizes == exp["stage_sizes"].tolist()
    np.testing.assert_allclose(outs[0].numpy(), exp["logits"], rtol=0, atol=TOL)
    np.testing.assert_allclose(outs[1].numpy(), exp["head_input"], rtol=0, atol=TOL)
    for s in range(model.cfg.num_stages):
        np.testing.assert_allclose(feats[s].numpy(), exp[f"stage{s}_feats"], rtol=0, atol=TOL)
        np.testing.assert_allclose(globals_[s].numpy(), exp[f"stage{s}_global"], rtol=0, atol=TOL)


@pytest.mark.parametrize("case", ALL_CASES, ids=ids(ALL_CASES))
def test_rulebook_matches_official_graphs(case):
    """Coordinates equal, and the neighbour sets the window tables encode equal the official edges."""
    model, rb, *_ = run_case(case)
    cfg = model.cfg
    exp = np.load(case / "expected.npz")
    np.testing.assert_array_equal(rb.norm_coords, exp["norm_coords"])
    np.testing.assert_array_equal(rb.sort_index, exp["sort_index"])
    g = int(exp["num_globals"])
    for s, st in enumerate(rb.stages):
        np.testing.assert_array_equal(st.coords, exp[f"stage{s}_coords"])
        check_graphs(st, cfg.trans_type, g, exp, f"stage{s}")


def check_graphs(st, trans_type: str, g: int, exp, prefix: str) -> None:
    """The official g1 / g2 edge sets of one attention (``prefix``: stage{s} or dec{i}) equal the
    pairs the stage's window tables encode, plus SPAN's self-loop and relay rules."""
    n = st.size
    loops = {(i, i) for i in range(1, n - 1)}
    w = window_pairs(st.windows.unshifted)
    sh = window_pairs(st.windows.shifted)
    g1 = set(zip(exp[f"{prefix}_nbr_src"].tolist(), exp[f"{prefix}_nbr_dst"].tolist()))
    g2 = set(zip(exp[f"{prefix}_g2_src"].tolist(), exp[f"{prefix}_g2_dst"].tolist()))
    if trans_type == "swin":
        assert g1 == sh | loops
        assert g2 == w | loops
    else:
        assert g1 == (w | sh | loops if trans_type == "long" else w | loops)
        inner = range(1, n - 1)
        glob = range(n, n + g)
        relay = {(a, b) for a in glob for b in glob} | {(i, b) for i in inner for b in glob} | \
                {(b, i) for i in inner for b in glob}
        assert g2 == (relay if g else set())
