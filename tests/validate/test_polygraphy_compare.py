"""validate's polygraphy layer: the comparison rule on real RunResults, the runners on a real fixture
(torch reference, ORT plugin and portable graphs), the JSON report and polygraphy's file formats."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from polygraphy.comparator import RunResults
from polygraphy.comparator.struct import IterationResult
from polygraphy.json import load_json

from span_deploy.backends import open_backend
from span_deploy.backends.torch import export_cached
from span_deploy.features import read_features
from span_deploy.rulebook import build_rulebook, output_names
from span_deploy.validate import compare as C
from span_deploy.validate.runners import TorchRunner, ort_runner
from tests.cases import PUBLIC, ops_library_or_skip

TINY = PUBLIC / "cls_tiny_alltoall"


def results(**runners):
    """RunResults of one iteration per runner: name -> {output: array}."""
    rr = RunResults()
    for name, outs in runners.items():
        rr.append((name, [IterationResult({k: np.asarray(v) for k, v in outs.items()}, runner_name=name)]))
    return rr


def rows_by_output(rows):
    return {r.output: r for r in rows}


def test_elementwise_rule_vs_torch():
    ref = {"a": np.ones(4, np.float32), "b": np.full(3, 10.0, np.float32), "e": np.zeros((0, 4), np.float32)}
    other = {"a": np.ones(4, np.float32) + np.float32(2e-4), "b": np.full(3, 10.002, np.float32),
             "e": np.zeros((0, 4), np.float32)}
    rr = results(torch=ref, x=other)
    strict = rows_by_output(C.compare_runs(rr, ["a", "b", "e"], atol=1e-4, rtol=0))
    assert not strict["a"].ok and not strict["b"].ok and strict["e"].ok
    assert strict["a"].max_abs == pytest.approx(2e-4, rel=1e-3)
    assert strict["b"].max_rel == pytest.approx(2e-4, rel=1e-2)   # relative to |torch| = 10
    assert strict["e"].shape == "(0, 4)" and strict["e"].max_abs == 0
    loose = rows_by_output(C.compare_runs(rr, ["a", "b"], atol=1e-3, rtol=0))
    assert loose["a"].ok and not loose["b"].ok                     # |d| = 2e-3 on b
    # polygraphy's rule: an element fails only beyond both tolerances
    either = rows_by_output(C.compare_runs(rr, ["a", "b"], atol=1e-4, rtol=3e-4))
    assert either["a"].ok and either["b"].ok


def test_shape_mismatch_missing_output_and_nan_fail():
    ref = {"a": np.zeros(3, np.float32), "b": np.zeros(2, np.float32), "c": np.zeros(2, np.float32)}
    rr = results(torch=ref, x={"a": np.zeros(2, np.float32), "c": np.array([0, np.nan], np.float32)})
    rows = rows_by_output(C.compare_runs(rr, ["a", "b", "c"], atol=1e-4, rtol=0))
    assert not rows["a"].ok and rows["a"].shape == "(2,) vs (3,)" and math.isinf(rows["a"].max_abs)
    assert not rows["b"].ok and rows["b"].shape == "missing"
    assert not rows["c"].ok
    doc = C.report_doc(list(rows.values()), features=TINY / "slide.h5", num_patches=3, atol=1e-4, rtol=0,
                       models={"x": None})
    json.dumps(doc, allow_nan=False)                                # strict JSON: inf / nan become null
    assert doc["passed"] is False and doc["runners"]["x"]["outputs"]["a"]["max_abs"] is None
    assert doc["versions"]["polygraphy"] and doc["tolerances"]["check_error_stat"] == "elemwise"


@pytest.fixture(scope="module")
def tiny():
    be = open_backend("torch", checkpoint=TINY / "checkpoint.pt", config=TINY / "config.yaml")
    sf = read_features(TINY / "slide.h5", feat_dim=be.feat_dim)
    return be, sf, C.slide_feed(sf.coords, sf.feats, be.cfg)


def test_runners_give_the_graph_outputs(tiny, tmp_path_factory, monkeypatch):
    ops_library_or_skip()
    be, sf, feed = tiny
    monkeypatch.setenv("SPAN_DEPLOY_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    runners = [TorchRunner(be)] + [ort_runner(export_cached(TINY / "checkpoint.pt", TINY / "config.yaml", a), a)
                                   for a in ("plugin", "portable")]
    with C.polygraphy_errors():
        rr = C.run_runners(runners, [feed])
        rows = C.compare_runs(rr, output_names(be.cfg), atol=1e-4, rtol=0)
    assert list(rr.keys()) == ["torch", "ort", "ort-portable"]
    for name in rr.keys():
        assert list(rr[name][0].keys()) == output_names(be.cfg)
    assert len(rows) == 2 * len(output_names(be.cfg)) and all(r.ok for r in rows)
    # the torch runner's raw outputs are what the torch backend reports (patch rows back in input order)
    res = be.run(sf.coords, sf.feats)
    out = rr["torch"][0]
    rb = build_rulebook(sf.coords, be.cfg)
    np.testing.assert_array_equal(out["logits"].reshape(-1), res.logits)
    np.testing.assert_array_equal(out["stage0_features"][rb.patch_rows], res.patch_features)


def test_saved_files_are_polygraphy_formats(tiny, tmp_path):
    be, _, feed = tiny
    with C.polygraphy_errors():
        rr = C.run_runners([TorchRunner(be)], [feed])
        C.save_inputs([feed], tmp_path / "in.json")
        C.save_outputs(rr, tmp_path / "out.json")
    back = load_json(str(tmp_path / "in.json"))
    assert isinstance(back, list) and len(back) == 1 and list(back[0]) == list(feed)
    for k, v in feed.items():
        np.testing.assert_array_equal(back[0][k], v)
    loaded = RunResults.load(str(tmp_path / "out.json"))
    assert list(loaded.keys()) == ["torch"]
    np.testing.assert_array_equal(loaded["torch"][0]["logits"], rr["torch"][0]["logits"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.json", "out.json"]   # no temp files left
