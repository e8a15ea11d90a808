"""A split body run as row passes and whole steps (backends/onnxruntime/row_plan.py, body.py):
planned for every fixture (both attention variants, real ORT sessions, 7-row chunks so chunk
edges fall everywhere), equal to the one-session body; stage 0 of the default config never holds
more than four (N0, 512) tensors; the attention writes over its q; the row-node rules refuse what
is not row-wise (hand-built graphs, each checked against a plain session)."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from span_deploy.backends.onnxruntime import OrtBackend
from span_deploy.backends.onnxruntime import body as body_mod
from span_deploy.backends.onnxruntime.row_plan import RowPlanError, build_plan
from span_deploy.config import load_config
from span_deploy.features import FeatureFile
from span_deploy.rulebook import build_rulebook
from span_export.model import load_model
from span_export.onnx_export import export_onnx
from tests.cases import PUBLIC, PUBLIC_CASES, SEG_CASES, ids, ops_library_or_skip

CASES = PUBLIC_CASES + SEG_CASES
DEFAULT = PUBLIC / "cls_default_r50"


class _Tracked(dict):
    """A feed that records the most bytes of (N0, ...) arrays it held at once."""

    def __init__(self, feed: dict, n0: int):
        super().__init__(feed)
        self.n0, self.peak, self.peak_names = n0, 0, []
        self._note()

    def _note(self) -> None:
        rows = {k: v for k, v in self.items() if np.ndim(v) >= 1 and np.shape(v)[0] == self.n0}
        total = sum(v.nbytes for v in {id(v): v for v in rows.values()}.values())   # a buffer once
        if total > self.peak:
            self.peak, self.peak_names = total, sorted(rows)

    def __setitem__(self, k, v):
        super().__setitem__(k, v)
        self._note()

    def update(self, *a, **kw):
        super().update(*a, **kw)
        self._note()


def _export(case, attention, tmp_path):
    if attention == "plugin":
        ops_library_or_skip()
    return export_onnx(load_model(case / "checkpoint.pt", case / "config.yaml"), tmp_path / "m.onnx",
                       attention=attention)


@pytest.mark.parametrize("attention", ["portable", "plugin"])
@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_row_passes_equal_the_one_session_body(case, attention, tmp_path, monkeypatch):
    path = _export(case, attention, tmp_path)
    cfg = load_config(case / "config.yaml")
    monkeypatch.setattr(body_mod, "ROW_PLAN_MIN_ROWS", 0)
    monkeypatch.setattr(body_mod, "ROW_CHUNK_ROWS", 7)
    planned = OrtBackend(path, single_slide=True)
    if planned.stem is None:        # features read whole (mean/max/std tokens): no split, no plan
        assert any(t.kind in ("max", "mean", "std") for t in cfg.tokens)
        return
    whole = OrtBackend(path)
    with FeatureFile(case / "slide.h5") as ff:
        rb = build_rulebook(ff.coords, cfg)
        got = planned.run(ff.coords, ff.sorted_reader(rb))
        want = whole.run(ff.coords, ff.read_sorted(rb))
    assert planned.session.plan_error is None and planned.session.last_path == "row passes", case.name
    for name in ("logits", "slide_embedding", "patch_features", "patch_scores", "patch_logits"):
        a, b = getattr(got, name, None), getattr(want, name, None)
        if b is not None and np.size(b):
            # chunks change the sums' order in a product: float32 rounding, ~1e-6 of values ~1
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5, err_msg=f"{case.name}: {name}")
    for a, b in zip(got.stage_globals, want.stage_globals, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5, err_msg=f"{case.name}: stage globals")


def test_default_config_holds_four_stage0_tensors_at_most(tmp_path, monkeypatch):
    """x, q, k, v: LayerNorm(x) is recomputed chunk by chunk, the attention's output takes q's
    buffer, and the FFN's hidden rows exist one chunk at a time (one session holds five and more)."""
    path = _export(DEFAULT, "plugin", tmp_path)
    cfg = load_config(DEFAULT / "config.yaml")
    monkeypatch.setattr(body_mod, "ROW_PLAN_MIN_ROWS", 0)
    be = OrtBackend(path, single_slide=True)
    plan_runner = be.session._planned(np.dtype(np.float32))
    assert plan_runner is not None
    inplace = [s for s in plan_runner.plan.steps if s.inplace]
    assert len(inplace) == 1, "stage 0's window attention writes over its q"
    whole = OrtBackend(path)
    with FeatureFile(DEFAULT / "slide.h5") as ff:
        rb = build_rulebook(ff.coords, cfg)
        inputs, _ = be._stem_inputs(rb, ff.read_sorted(rb))
        want = whole.session.run(None, {n: v for n, v in rb.engine_inputs(cfg, ff.read_sorted(rb)).items()
                                        if n in whole.input_names})
    n0 = rb.stage_sizes[0]
    feed = _Tracked({n: inputs.pop(n) for n in be.input_names}, n0)
    outs = plan_runner.run(feed, chunk_rows=64)
    unit = n0 * cfg.stage_dim(0) * 4
    assert 3 * unit < feed.peak <= 4 * unit + 16 * n0, (feed.peak / unit, feed.peak_names)
    for name, b in zip(whole.output_names, want):
        np.testing.assert_allclose(outs[name], b, rtol=1e-5, atol=1e-5, err_msg=name)


def test_small_slide_runs_one_session_and_a_failed_plan_falls_back(tmp_path, monkeypatch):
    path = _export(DEFAULT, "portable", tmp_path)
    cfg = load_config(DEFAULT / "config.yaml")
    with FeatureFile(DEFAULT / "slide.h5") as ff:
        rb = build_rulebook(ff.coords, cfg)
        small = OrtBackend(path, single_slide=True).run(ff.coords, ff.read_sorted(rb))
        be = OrtBackend(path, single_slide=True)
        assert be.session.last_path == ""
        monkeypatch.setattr(body_mod, "ROW_PLAN_MIN_ROWS", 0)

        def refuse(*a, **kw):
            raise RowPlanError("refused for the test")

        monkeypatch.setattr(body_mod, "build_plan", refuse)
        got = be.run(ff.coords, ff.read_sorted(rb))
    assert be.session.plan_error == "refused for the test" and be.session.last_path == "whole"
    np.testing.assert_array_equal(got.logits, small.logits)


# ------------------------------------------------------------------ the row-node rules, one by one

N0_INPUT = "x0"


def _probe_rows(inits: dict | None = None) -> int:
    """N0 of the probe slide for a graph with these weights: graphs that name N0 are valid there only."""
    from span_deploy.backends.onnxruntime.row_plan import probe_rulebook

    avoid = {int(d) for v in (inits or {}).values() for d in np.shape(v)}
    return probe_rulebook(load_config(DEFAULT / "config.yaml"), avoid)[0].stage_sizes[0]


def _graph_model(nodes, inits, outputs, width=6):
    g = helper.make_graph(nodes, "t", [helper.make_tensor_value_info(N0_INPUT, TensorProto.FLOAT, ["n0", width])],
                          [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
                          [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _plan_and_compare(model, n0: int) -> dict[str, str]:
    """Each step output's step kind, after checking the plan's result against a plain session."""
    cfg = load_config(DEFAULT / "config.yaml")
    plan = build_plan(onnx.ModelProto.FromString(model.SerializeToString()), cfg, N0_INPUT, np.float32, None)
    runner = body_mod.PlanRunner(plan, lambda m, chunked=False: ort.InferenceSession(m))
    width = model.graph.input[0].type.tensor_type.shape.dim[1].dim_value
    x = np.random.default_rng(1).standard_normal((n0, width)).astype(np.float32)
    want = ort.InferenceSession(model.SerializeToString()).run(None, {N0_INPUT: x})
    got = runner.run({N0_INPUT: x.copy()}, chunk_rows=5)
    for o, w in zip(plan.outputs, want):
        np.testing.assert_allclose(got[o], w, rtol=1e-6, atol=1e-6, err_msg=o)
    return {o: s.kind for s in plan.steps for o in s.outputs}


def test_layer_norm_gemm_and_residual_are_one_row_pass():
    w = np.random.default_rng(0).standard_normal((6, 6)).astype(np.float32)
    nodes = [helper.make_node("LayerNormalization", [N0_INPUT, "g", "b"], ["h"], axis=-1),
             helper.make_node("Gemm", ["h", "w", "b"], ["y"], transB=1),
             helper.make_node("Relu", ["y"], ["r"]),
             helper.make_node("Add", [N0_INPUT, "r"], ["out"])]
    inits = {"g": np.ones(6, np.float32), "b": np.zeros(6, np.float32), "w": w}
    assert _plan_and_compare(_graph_model(nodes, inits, ["out"]), 53) == {"out": "row"}


@pytest.mark.parametrize("node, want", [
    # softmax over the rows: whole; the Relu after it is row-wise again
    (helper.make_node("Softmax", [N0_INPUT], ["s"], axis=0), {"s": "whole", "out": "row"}),
    (helper.make_node("Softmax", [N0_INPUT], ["s"], axis=1), {"out": "row"}),
    (helper.make_node("ReduceSum", [N0_INPUT], ["s"], keepdims=1), {"out": "whole"}),       # over the rows
    (helper.make_node("Gemm", [N0_INPUT, N0_INPUT], ["s"], transA=1), {"out": "whole"}),     # x^T x
    (helper.make_node("MatMul", [N0_INPUT, "w"], ["s"]), {"out": "row"}),
    (helper.make_node("Transpose", [N0_INPUT], ["s"], perm=[1, 0]), {"out": "whole"}),
])
def test_ops_across_rows_are_whole_steps(node, want):
    inits = {"w": np.ones((6, 4), np.float32)} if "w" in node.input else {}
    nodes = [node, helper.make_node("Relu", ["s"], ["out"])]
    assert _plan_and_compare(_graph_model(nodes, inits, ["out"]), 53) == want


def test_reshape_by_a_literal_row_count_is_not_chunked():
    """Reshape to [N0, 3, 2] names N0 itself: cut into chunks it would fail; [0, 3, 2] keeps it."""
    n0 = _probe_rows({"shape": np.zeros(3)})
    nodes = [helper.make_node("Reshape", [N0_INPUT, "shape"], ["r"]),
             helper.make_node("Reshape", [N0_INPUT, "shape0"], ["r0"]),
             helper.make_node("Relu", ["r0"], ["out0"]),
             helper.make_node("Relu", ["r"], ["out"])]
    kinds = _plan_and_compare(_graph_model(nodes, {"shape": np.array([n0, 3, 2], np.int64),
                                                   "shape0": np.array([0, 3, 2], np.int64)}, ["out", "out0"]), n0)
    assert kinds == {"r": "whole", "out": "row", "out0": "row"}


def test_a_row_count_on_another_axis_is_not_chunked():
    """(N0,) + (N0, N0): broadcasting puts the first tensor's N0 on the last axis."""
    n0 = _probe_rows({"ax": np.zeros(1)})
    nodes = [helper.make_node("ReduceSum", [N0_INPUT, "ax"], ["s"], keepdims=0),   # (N0,), whole
             helper.make_node("Add", [N0_INPUT, "s"], ["out"])]
    kinds = _plan_and_compare(_graph_model(nodes, {"ax": np.array([1], np.int64)}, ["out"], width=n0), n0)
    assert kinds == {"out": "whole"}
