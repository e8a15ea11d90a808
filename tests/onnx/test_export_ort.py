"""Both ONNX variants of every public fixture in real ONNX Runtime sessions."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from span_deploy.backends.ort import OrtBackend
from span_deploy.features import read_features
from span_deploy.model import load_model
from span_deploy.model.attention import window_attention
from span_deploy.onnx.export import OP_DOMAIN, OP_TYPE, export_onnx
from span_deploy.rulebook import build_rulebook
from span_deploy.rulebook.windows import stage_windows
from span_deploy.synthetic import tissue_slide
from tests.cases import PUBLIC, PUBLIC_CASES, ids, ops_library_or_skip

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


@pytest.mark.parametrize("case", PUBLIC_CASES, ids=ids(PUBLIC_CASES))
def test_plugin_graph_structure(case, exported):
    model, path = exported(case, "plugin")
    proto = onnx.load(str(path))
    nodes = [n for n in proto.graph.node if n.op_type == OP_TYPE]
    layers = sum(model.cfg.layers_per_stage)
    assert len(nodes) == layers * (2 if model.cfg.trans_type == "swin" else 1)
    assert len(proto.functions) == 0
    for n in nodes:
        assert n.domain == OP_DOMAIN and len(n.input) == 8
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        assert attrs["plugin_version"] == b"1" and attrs["plugin_namespace"] == b"span_deploy"
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


@pytest.mark.parametrize("mode", [0, 1])
@pytest.mark.parametrize("seed", range(3))
def test_cpu_kernel_against_torch_reference(mode, seed):
    """One custom node vs the torch reference on real window tables: rows 0/N-1, empty rows."""
    import onnxruntime as ort

    lib = ops_library_or_skip()
    rng = np.random.default_rng(seed)
    cells = np.unique(rng.integers(0, 40, (300, 2)), axis=0)
    cells = np.concatenate([[[0, 0]], cells + 6, [[60, 61]]])   # isolated first/last rows: no keys
    sw = stage_windows(cells, 3)
    n, heads, dh, side = len(cells), 4, 16, 6
    q, k, v = (rng.standard_normal((n, heads * dh)).astype(np.float32) for _ in range(3))
    table = rng.standard_normal((heads, 2 * side - 1, 2 * side - 1)).astype(np.float32)
    a, b = sw.unshifted, sw.shifted
    names = ["q", "k", "v", "win_a", "pos_a", "win_b", "pos_b", "bias"]
    feeds = dict(zip(names, [q, k, v, a.win, a.pos, b.win, b.pos, table]))
    T, I32 = onnx.TensorProto.FLOAT, onnx.TensorProto.INT32
    types = [T, T, T, I32, I32, I32, I32, T]
    node = onnx.helper.make_node(OP_TYPE, names, ["out"], domain=OP_DOMAIN, num_heads=heads, head_dim=dh,
                                 window=side, scale=dh ** -0.5, mode=mode)
    graph = onnx.helper.make_graph([node], "swa", [onnx.helper.make_tensor_value_info(nm, t, None)
                                                   for nm, t in zip(names, types)],
                                   [onnx.helper.make_tensor_value_info("out", T, None)])
    proto = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17),
                                                         onnx.helper.make_opsetid(OP_DOMAIN, 1)])
    so = ort.SessionOptions()
    so.register_custom_ops_library(str(lib))
    got = ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    t = {k2: torch.from_numpy(v2) for k2, v2 in feeds.items()}
    ref = window_attention(t["q"], t["k"], t["v"], t["win_a"], t["pos_a"], t["win_b"] if mode else None,
                           t["pos_b"] if mode else None, t["bias"], heads, side, dh ** -0.5).numpy()
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5)
    assert np.all(got[0] == 0) and np.all(got[-1] == 0)
