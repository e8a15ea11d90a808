"""The graph's row-wise stem split off (backends/onnxruntime/stem.py) so a slide's features stream
through it: found where the features are read by row-wise ops only, refused otherwise, and the
streamed result equal to the whole graph's, on every fixture (both attention variants, real ORT
sessions, features read from the fixture files in chunks)."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from span_deploy import features
from span_deploy.backends.onnxruntime import OrtBackend
from span_deploy.backends.onnxruntime.stem import split_stem
from span_deploy.config import load_config
from span_deploy.features import FeatureFile
from span_deploy.quantize import quantize_int8
from span_deploy.rulebook import build_rulebook
from span_export.model import load_model
from span_export.onnx_export import export_onnx
from tests.cases import PUBLIC_CASES, SEG_CASES, ids, ops_library_or_skip

CASES = PUBLIC_CASES + SEG_CASES


def _reads_feature_statistics(cfg) -> bool:
    """max / mean / std global tokens are statistics over all the features: not row-wise."""
    return any(t.kind in ("max", "mean", "std") for t in cfg.tokens)


@pytest.mark.parametrize("attention", ["portable", "plugin"])
@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_streamed_stem_equals_the_whole_graph(case, attention, tmp_path, monkeypatch):
    if attention == "plugin":
        ops_library_or_skip()
    cfg = load_config(case / "config.yaml")
    path = export_onnx(load_model(case / "checkpoint.pt", case / "config.yaml"), tmp_path / "m.onnx",
                       attention=attention)
    split = split_stem(onnx.load(str(path)))
    assert (split is None) == _reads_feature_statistics(cfg), case.name
    one = OrtBackend(path, single_slide=True)
    assert (one.stem is None) == (split is None)
    if split is not None:
        assert split.nodes >= 1 and one.stem.output == split.output
        assert "feats" not in one.input_names and split.output in one.input_names
    whole = OrtBackend(path)
    monkeypatch.setattr(features, "READ_CHUNK_ROWS", 7)   # many chunks, chunk edges everywhere
    with FeatureFile(case / "slide.h5") as ff:
        rb = build_rulebook(ff.coords, cfg)
        got = one.run(ff.coords, ff.sorted_reader(rb))
        want = whole.run(ff.coords, ff.read_sorted(rb))
    for name in ("logits", "slide_embedding", "patch_features", "patch_scores", "patch_logits"):
        a, b = getattr(got, name, None), getattr(want, name, None)
        if b is not None and np.size(b):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=f"{case.name}: {name}")
    # in-memory features take the same path (the stem over row chunks)
    with FeatureFile(case / "slide.h5") as ff:
        mem = one.run(ff.coords, ff.read())
    np.testing.assert_array_equal(mem.slide_embedding, got.slide_embedding)


def test_dynamic_int8_is_not_split(tmp_path):
    """Dynamic int8 quantises the features with one scale over all rows: chunks would change it."""
    case = PUBLIC_CASES[0]
    path = export_onnx(load_model(case / "checkpoint.pt", case / "config.yaml"), tmp_path / "m.onnx",
                       attention="portable")
    quantize_int8(path, tmp_path / "q.onnx", None)
    assert split_stem(onnx.load(str(tmp_path / "q.onnx"))) is None


def _graph(nodes, inits, out="y"):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("feats", TensorProto.FLOAT, ["n", 4])],
                          [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


RNG = np.random.default_rng(0)
W1, W2, B = RNG.standard_normal((4, 6)), RNG.standard_normal((6, 3)), RNG.standard_normal(3)


@pytest.mark.parametrize("name, nodes, inits, split_at", [
    # projection, activation, projection + bias: the stem ends where rows start to mix
    ("mlp", [helper.make_node("MatMul", ["feats", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "w2"], ["p"]), helper.make_node("Add", ["p", "b"], ["x"]),
             helper.make_node("ReduceMean", ["x"], ["s"], axes=[0], keepdims=1),
             helper.make_node("Sub", ["x", "s"], ["y"])], {"w1": W1, "w2": W2, "b": B}, "x"),
    # the features themselves read by a statistic: no split
    ("feats_mean", [helper.make_node("MatMul", ["feats", "w1"], ["h"]),
                    helper.make_node("ReduceMean", ["feats"], ["m"], axes=[0], keepdims=1),
                    helper.make_node("MatMul", ["m", "w1"], ["hm"]), helper.make_node("Add", ["h", "hm"], ["y"])],
     {"w1": W1}, None),
    # a constant that is not one row (2 x 4) does not broadcast along rows only: not row-wise
    ("two_row_constant", [helper.make_node("Add", ["feats", "c"], ["a"]),
                          helper.make_node("ReduceMean", ["a"], ["y"], axes=[0], keepdims=1)],
     {"c": RNG.standard_normal((2, 4))}, None),
    # two tensors would cross (h feeds both the body and a row-wise op whose output does too)
    ("two_crossings", [helper.make_node("MatMul", ["feats", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
                       helper.make_node("ReduceMean", ["h"], ["m"], axes=[0], keepdims=1),
                       helper.make_node("Sub", ["r", "m"], ["y"])], {"w1": W1}, "h"),
])
def test_split_points_on_small_graphs(name, nodes, inits, split_at):
    model = _graph(nodes, inits)
    whole = ort.InferenceSession(model.SerializeToString())
    split = split_stem(onnx.load_from_string(model.SerializeToString()))
    assert (split and split.output) == split_at, name
    if split is None:
        return
    x = RNG.standard_normal((9, 4)).astype(np.float32)
    stem, body = ort.InferenceSession(split.stem), ort.InferenceSession(split.body)
    h = np.concatenate([stem.run(None, {"feats": x[a:a + 4]})[0] for a in range(0, 9, 4)])
    np.testing.assert_allclose(body.run(None, {split.output: h})[0], whole.run(None, {"feats": x})[0],
                               rtol=1e-6, atol=1e-6)
