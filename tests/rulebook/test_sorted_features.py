"""Features read straight into the rulebook's row order (FeatureFile.read_sorted) against the
two-step path (read in file order, then Rulebook.pad_features), on real fixture files and on
files that span several read chunks."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from span_deploy import features
from span_deploy.backends.onnxruntime import OrtBackend
from span_deploy.config import load_config
from span_deploy.errors import FeatureFileError, RulebookError
from span_deploy.features import FeatureFile, read_features
from span_deploy.rulebook import SortedFeatures, build_rulebook
from span_deploy.bench.tissue_tokens import tissue_slide
from tests.cases import PUBLIC, PUBLIC_CASES, ids


@pytest.mark.parametrize("case", PUBLIC_CASES, ids=ids(PUBLIC_CASES))
def test_sorted_read_equals_read_then_pad(case):
    cfg = load_config(case / "config.yaml")
    sf = read_features(case / "slide.h5")
    rb = build_rulebook(sf.coords, cfg)
    with FeatureFile(case / "slide.h5") as ff:
        np.testing.assert_array_equal(ff.coords, sf.coords)
        got = ff.read_sorted(rb)
    assert isinstance(got, SortedFeatures) and got.rulebook is rb
    np.testing.assert_array_equal(got.rows, rb.pad_features(sf.feats))
    np.testing.assert_array_equal(rb.engine_inputs(cfg, got)["feats"], rb.engine_inputs(cfg, sf.feats)["feats"])


def _write(path, feats, coords, batch_axis=False):
    with h5py.File(path, "w") as h:
        h["features"] = feats[None] if batch_axis else feats
        h["coords"] = coords[None] if batch_axis else coords


@pytest.mark.parametrize("batch_axis", [False, True])
def test_many_chunks_and_batch_axis(tmp_path, monkeypatch, batch_axis):
    monkeypatch.setattr(features, "READ_CHUNK_ROWS", 37)    # 1000 rows -> 28 chunks, a ragged last one
    cfg = load_config(PUBLIC / "cls_default_r50" / "config.yaml")
    coords, feats = tissue_slide(1000, seed=3, feat_dim=cfg.feat_dim)
    p = tmp_path / "s.h5"
    _write(p, feats.astype(np.float64), coords, batch_axis)   # float64 on disk: cast per chunk
    rb = build_rulebook(coords, cfg)
    with FeatureFile(p, feat_dim=cfg.feat_dim) as ff:
        got = ff.read_sorted(rb).rows
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, rb.pad_features(feats.astype(np.float64).astype(np.float32)))


def test_non_finite_rows_counted_over_every_chunk(tmp_path, monkeypatch):
    monkeypatch.setattr(features, "READ_CHUNK_ROWS", 10)
    cfg = load_config(PUBLIC / "cls_default_r50" / "config.yaml")
    coords, feats = tissue_slide(100, seed=4, feat_dim=cfg.feat_dim)
    feats[[13, 14, 57]] = np.nan     # chunks 1 and 5
    feats[88, 5] = np.inf
    p = tmp_path / "bad.h5"
    _write(p, feats, coords)
    rb = build_rulebook(coords, cfg)
    with FeatureFile(p) as ff, pytest.raises(FeatureFileError, match=r"bad\.h5: 4 patch\(es\) have NaN/Inf features \(first: row 13\)"):
        ff.read_sorted(rb)
    with pytest.raises(FeatureFileError, match=r"4 patch\(es\) have NaN/Inf features \(first: row 13\)"):
        read_features(p)


def test_other_rulebook_refused(tmp_path):
    cfg = load_config(PUBLIC / "cls_default_r50" / "config.yaml")
    coords, feats = tissue_slide(200, seed=5, feat_dim=cfg.feat_dim)
    p = tmp_path / "s.h5"
    _write(p, feats, coords)
    with FeatureFile(p) as ff:
        with pytest.raises(FeatureFileError, match="rulebook is for 50 patches, the file has 200"):
            ff.read_sorted(build_rulebook(coords[:50], cfg))
        sorted_feats = ff.read_sorted(build_rulebook(coords, cfg))
    with pytest.raises(RulebookError, match="another rulebook"):
        build_rulebook(coords, cfg).engine_inputs(cfg, sorted_feats)


def test_backend_takes_sorted_features(exported_default):
    """A real ORT session: SortedFeatures in, the same result as input-order features."""
    path, case = exported_default
    with FeatureFile(case / "slide.h5") as ff:
        coords = ff.coords
        be = OrtBackend(path)
        sorted_feats = ff.read_sorted(build_rulebook(coords, be.cfg))
    a = be.run(coords, sorted_feats)
    sf = read_features(case / "slide.h5")
    b = be.run(sf.coords, sf.feats)
    np.testing.assert_array_equal(a.logits, b.logits)
    np.testing.assert_array_equal(a.patch_features, b.patch_features)


@pytest.fixture(scope="module")
def exported_default(tmp_path_factory):
    from span_export.model import load_model
    from span_export.onnx_export import export_onnx

    case = PUBLIC / "cls_default_r50"
    out = tmp_path_factory.mktemp("sorted") / "m.onnx"
    return export_onnx(load_model(case / "checkpoint.pt", case / "config.yaml"), out, attention="portable"), case
