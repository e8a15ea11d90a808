"""Segmentation parity with the official model: per-patch logits, every encoder and decoder stage,
the decoder's coordinates and attention graphs; the two public cases and our held-out variants
(other upsamplers, skip orders and connections, global strategies, norms, geometries, wrappers)."""
from __future__ import annotations

import numpy as np
import pytest
import yaml

from span_deploy.config import load_config
from span_deploy.errors import ConfigError, RulebookError
from span_deploy.features import read_features
from span_deploy.rulebook import build_rulebook
from tests.cases import SEG_CASES, SEG_PUBLIC, ids
from tests.export.test_parity import check_graphs
from tests.export.test_parity import run_case as run_parity_case

TOL = 1e-4


def run_case(case):
    record: list = []
    return (*run_parity_case(case, record), record)


def test_public_cases_are_there():
    assert {c.name for c in SEG_CASES} >= {"seg_default", "seg_111_11_swin_dwpatchconv"}
    assert len(SEG_CASES) >= 13


@pytest.mark.parametrize("case", SEG_CASES, ids=ids(SEG_CASES))
def test_patch_logits_and_every_stage(case):
    model, rb, feats, globals_, outs, record = run_case(case)
    exp = np.load(case / "expected.npz")
    cfg = model.cfg
    assert rb.stage_sizes == exp["stage_sizes"].tolist()
    logits = outs[0].numpy()
    assert logits.shape == (rb.stages[0].size,)
    np.testing.assert_allclose(logits[1:-1], exp["patch_logits"], rtol=0, atol=TOL)   # official [1:-1]
    for s in range(cfg.num_stages):
        np.testing.assert_allclose(feats[s].numpy(), exp[f"stage{s}_feats"], rtol=0, atol=TOL)
        np.testing.assert_allclose(globals_[s].numpy(), exp[f"stage{s}_global"], rtol=0, atol=TOL)
    assert len(record) == cfg.num_decoder_stages
    for i, (x, t) in enumerate(record):
        np.testing.assert_allclose(x.numpy(), exp[f"dec{i}_feats"], rtol=0, atol=TOL)
        np.testing.assert_allclose(t.numpy(), exp[f"dec{i}_global"], rtol=0, atol=TOL)
    last = cfg.num_decoder_stages
    np.testing.assert_allclose(logits[:, None], exp[f"dec{last}_feats"], rtol=0, atol=TOL)   # pads included


@pytest.mark.parametrize("case", SEG_CASES, ids=ids(SEG_CASES))
def test_decoder_coordinates_and_graphs(case):
    """Decoder block i runs on encoder stage E-2-i's rows, in that order, with dtrans_type's graphs."""
    model, rb, *_ = run_case(case)
    cfg = model.cfg
    exp = np.load(case / "expected.npz")
    g = int(exp["num_globals"])
    sizes = []
    for i in range(cfg.num_decoder_stages):
        st = rb.stages[cfg.decoder_target_stage(i)]
        np.testing.assert_array_equal(st.coords, exp[f"dec{i}_coords"])
        check_graphs(st, cfg.dtrans_type, g, exp, f"dec{i}")
        sizes.append(st.size)
    assert sizes + [rb.stages[0].size] == exp["dec_stage_sizes"].tolist()


@pytest.mark.parametrize("case", SEG_CASES, ids=ids(SEG_CASES))
def test_torch_backend_gives_file_row_order(case):
    from span_deploy.backends import open_backend
    be = open_backend("torch", checkpoint=case / "checkpoint.pt", config=case / "config.yaml")
    sf = read_features(case / "slide.h5")
    r = be.run(sf.coords, sf.feats)
    exp = np.load(case / "expected.npz")
    want = np.empty(len(sf.coords))
    want[exp["sort_index"]] = exp["patch_logits"]           # sorted -> the h5's row order
    np.testing.assert_allclose(r.patch_logits, want, rtol=0, atol=TOL)
    np.testing.assert_allclose(r.patch_scores, 1 / (1 + np.exp(-want)), rtol=0, atol=TOL)
    assert r.threshold == load_config(case / "config.yaml").threshold and r.logits.size == 0


def _config(tmp_path, **model_changes):
    cfg = yaml.safe_load((SEG_PUBLIC / "seg_default" / "config.yaml").read_text())
    cfg["model"].update(model_changes)
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


@pytest.mark.parametrize("changes,message", [
    ({"slide_configs": "111-1"}, "needs exactly 2 decoder stages"),
    ({"slide_configs": "111-111"}, "needs exactly 2 decoder stages"),
    ({"slide_configs": "111"}, "needs a decoder part"),
    ({"dconvs_type": "d_pixelshuffle"}, "dconvs_type 'd_pixelshuffle' is not supported"),
    ({"dconvs_type": "dwpatchinvs"}, "cannot build"),                 # channel_factor 2: groups do not divide
    ({"connection": "mul"}, "connection 'mul' is not supported"),
    ({"dtrans_type": "tradswin"}, "dtrans_type 'tradswin' is not supported"),
])
def test_configs_the_official_model_cannot_run(tmp_path, changes, message):
    with pytest.raises(ConfigError, match=message):
        load_config(_config(tmp_path, **changes))


def test_threshold_range(tmp_path):
    cfg = yaml.safe_load((SEG_PUBLIC / "seg_default" / "config.yaml").read_text())
    cfg["segmentation"]["threshold"] = 1.5
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match="threshold 1.5 must lie strictly between 0 and 1"):
        load_config(p)


def test_pixelshuffle_that_would_drop_rows_is_refused(tmp_path):
    """kernel 3 / stride 2: fine cells at the far edge have no pixelshuffle parent; the official model
    returns fewer rows than patches, we refuse the slide with the reason."""
    cfg = load_config(_config(tmp_path, kernel_size=3))
    cells = np.array([[a, b] for a in range(9) for b in range(9)]) * 224
    with pytest.raises(RulebookError, match="pixelshuffle upsampling: .* have no coarse parent"):
        build_rulebook(cells, cfg)


def test_classification_config_with_a_decoder_is_refused(tmp_path):
    cfg = yaml.safe_load((SEG_PUBLIC / "seg_default" / "config.yaml").read_text())
    cfg["task"] = "classification"
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match="only the segmentation task builds"):
        load_config(p)
