"""Both ONNX variants of every public fixture in real ONNX Runtime sessions."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import yaml
import torch

from span_deploy.backends.onnxruntime import OrtBackend
from span_deploy.features import read_features
from span_export.model import load_model
from span_export.onnx_export import OP_DOMAIN, OP_TYPE, export_onnx
from span_deploy.rulebook import build_rulebook
from span_deploy.bench.tissue_tokens import tissue_slide
from tests.cases import PUBLIC, PUBLIC_CASES, REPO, ids, ops_library_or_skip

TOL = 1e-4


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx")
    cache = {}

    def get(case, attention):
        key = (case.name, attention)
        if key not in cache:
            model = load_model(case / "checkpoint.pt", case / "config.yaml")
            cache[key] = (model, export_onnx(model, root / f"{case.name}-{attention}.onnx", attention=attention))
        return cache[key]
    return get


@pytest.mark.parametrize("attention", ["portable", "plugin"])
@pytest.mark.parametrize("case", PUBLIC_CASES, ids=ids(PUBLIC_CASES))
def test_fixture_logits_in_ort(case, attention, exported):
    if attention == "plugin":
        ops_library_or_skip()
    _, path = exported(case, attention)
    sf = read_features(case / "slide.h5")
    r = OrtBackend(path).run(sf.coords, sf.feats)
    exp = np.load(case / "expected.npz")
    np.testing.assert_allclose(r.logits, exp["logits"][0], rtol=0, atol=TOL)
    np.testing.assert_allclose(r.slide_embedding, exp["head_input"][0], rtol=0, atol=TOL)


def _window_calls_reaching_outputs(model) -> tuple[int, int]:
    """(window attentions of the official computation whose output reaches a model output, window
    attentions the model's own forward runs). The first is found by perturbing each call of the
    full computation (every local row, as the official model) in turn: a change of its output changes
    some output, or leaves every output bit-identical (dead code)."""
    import functools

    from span_export.model.transformer import TransBlock

    # a slide with inner rows at every stage (on a one-patch slide even live layers can be idle)
    coords, feats = tissue_slide(600, seed=1, feat_dim=model.cfg.feat_dim)
    rb = build_rulebook(coords, model.cfg)
    inputs = rb.engine_inputs(model.cfg, feats)
    args = [torch.from_numpy(np.ascontiguousarray(inputs[n])) for n in model.input_names]
    saved = TransBlock.__dict__["window_op"]
    calls = {"n": 0, "bump": -1}

    def counting(*a):
        out = saved.__func__(*a)
        calls["n"] += 1
        if calls["n"] - 1 != calls["bump"]:
            return out
        # not a constant shift: a LayerNorm downstream would take that away
        return out * 1.5 + torch.linspace(0.0, 1.0, out.numel()).reshape(out.shape)

    def outputs(full: bool):
        calls["n"] = 0
        enc = model.encode
        if full:
            model.encode = functools.partial(enc, every_local=True)
        try:
            with torch.no_grad():
                return [o.clone() for o in model(*args)]
        finally:
            model.__dict__.pop("encode", None)

    TransBlock.window_op = staticmethod(counting)
    try:
        base = outputs(True)
        total = calls["n"]
        live = 0
        for k in range(total):
            calls["bump"] = k
            live += any(not torch.equal(a, b) for a, b in zip(outputs(True), base))
        calls["bump"] = -1
        outputs(False)
        run = calls["n"]
    finally:
        TransBlock.window_op = saved
    return live, run


@pytest.mark.parametrize("case", PUBLIC_CASES, ids=ids(PUBLIC_CASES))
def test_plugin_graph_structure(case, exported):
    model, path = exported(case, "plugin")
    proto = onnx.load(str(path))
    nodes = [n for n in proto.graph.node if n.op_type == OP_TYPE]
    layers = sum(model.cfg.layers_per_stage)
    # one node per window attention whose result reaches an output, no more (the official model
    # computes every layer's locals; those no output reads are left out) and none missing
    live, run = _window_calls_reaching_outputs(model)
    assert 1 <= live <= layers * (2 if model.cfg.trans_type == "swin" else 1)
    assert len(nodes) == live == run
    assert [i.name for i in proto.graph.input] == model.input_names   # unused tables stay inputs
    assert len(proto.functions) == 0
    op = yaml.safe_load((REPO / "plugins" / "sparse_window_attention" / "op.yaml").read_text())
    assert (OP_TYPE, OP_DOMAIN) == (op["identity"]["op_type"], op["identity"]["domain"])
    kinds = {"int": onnx.AttributeProto.INT, "float": onnx.AttributeProto.FLOAT}
    for n in nodes:  # every node as op.yaml says: its inputs, attributes and their types
        assert n.domain == OP_DOMAIN and len(n.input) == len(op["inputs"])
        types = {a.name: a.type for a in n.attribute}
        for a in op["attributes"]:
            assert types[a["name"]] == kinds[a["type"]], a["name"]
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        for k, v in op["identity"]["parser_attributes"].items():
            assert attrs[k] == v.encode()
        assert attrs["mode"] == (1 if model.cfg.trans_type == "long" else 0)
        assert attrs["window"] == 2 * model.cfg.window_size
    _, portable = exported(case, "portable")
    assert not any(n.domain == OP_DOMAIN for n in onnx.load(str(portable)).graph.node)


@pytest.mark.parametrize("attention", ["portable", "plugin"])
def test_one_file_serves_any_slide_size(attention, exported):
    """The same ONNX file runs slides of 1, 37 and 5,000 patches and matches torch."""
    if attention == "plugin":
        ops_library_or_skip()
    case = PUBLIC / "cls_default_r50"
    model, path = exported(case, attention)
    backend = OrtBackend(path)
    for n in (1, 37, 5000):
        coords, feats = tissue_slide(n, seed=n, feat_dim=1024)
        rb = build_rulebook(coords, model.cfg)
        inputs = rb.engine_inputs(model.cfg, feats)
        with torch.no_grad():
            ref = model(*[torch.from_numpy(np.ascontiguousarray(inputs[k])) for k in model.input_names])
        got = backend.run(coords, feats)
        np.testing.assert_allclose(got.logits, ref[0].numpy()[0], rtol=0, atol=TOL)
        np.testing.assert_allclose(got.patch_features, ref[2 + model.cfg.num_stages].numpy()[rb.patch_rows],
                                   rtol=0, atol=TOL)


def test_single_slide_session_has_no_arena_and_same_outputs(exported):
    """predict's one-slide session runs without ONNX Runtime's CPU arena (its peak at 200k patches
    drops by 0.5 GB, bench/predict_scaling.py) and gives the same golden outputs."""
    ops_library_or_skip()
    case = PUBLIC / "cls_default_r50"
    _, path = exported(case, "plugin")
    sf = read_features(case / "slide.h5")
    one = OrtBackend(path, single_slide=True)
    many = OrtBackend(path)
    r1, r2 = one.run(sf.coords, sf.feats), many.run(sf.coords, sf.feats)
    # the split body's session (a slide this small runs it whole) and the stem's
    assert one.session.last_path == "whole"
    assert one.session.whole_session().get_session_options().enable_cpu_mem_arena is False
    assert one.stem.session.get_session_options().enable_cpu_mem_arena is False
    assert many.session.get_session_options().enable_cpu_mem_arena is True
    exp = np.load(case / "expected.npz")
    np.testing.assert_allclose(r1.logits, exp["logits"][0], rtol=0, atol=TOL)
    np.testing.assert_array_equal(r1.logits, r2.logits)
    np.testing.assert_array_equal(r1.patch_features, r2.patch_features)
