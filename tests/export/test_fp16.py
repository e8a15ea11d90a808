"""fp16 export: fp16 weights and feats, fp32 LayerNorm / softmax / outputs; the caller's model untouched."""
import numpy as np
import onnx

from span_deploy.backends.onnxruntime import OrtBackend
from span_deploy.features import read_features
from tests.cases import PUBLIC

TINY = PUBLIC / "cls_tiny_alltoall"


def test_fp16_portable_export(tiny_exports):
    proto = onnx.load(str(tiny_exports["fp16"]))
    f16, f32 = onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT
    types = {i.name: i.type.tensor_type.elem_type for i in proto.graph.input}
    assert types["feats"] == f16 and types["s0_win_u"] == onnx.TensorProto.INT32
    assert all(o.type.tensor_type.elem_type == f32 for o in proto.graph.output)  # outputs are float32
    inits = {i.name: i.data_type for i in proto.graph.initializer}
    assert sum(t == f16 for t in inits.values()) > 10             # encoder weights in fp16
    # LayerNorm and Softmax compute in fp32
    inferred = onnx.shape_inference.infer_shapes(proto)
    vt = {v.name: v.type.tensor_type.elem_type for v in list(inferred.graph.value_info) + list(inferred.graph.input)}
    vt.update({k: v for k, v in inits.items()})
    for n in inferred.graph.node:
        if n.op_type in ("LayerNormalization", "Softmax", "Exp", "ReduceMax"):
            assert vt.get(n.input[0]) == f32, (n.op_type, n.name)
    assert sum(n.op_type == "LayerNormalization" for n in proto.graph.node) > 0

    sf = read_features(TINY / "slide.h5")
    expected = np.load(TINY / "expected.npz")["logits"].reshape(-1)
    r32 = OrtBackend(tiny_exports["fp32"]).run(sf.coords, sf.feats)
    r16 = OrtBackend(tiny_exports["fp16"]).run(sf.coords, sf.feats)
    assert np.abs(r32.logits - expected).max() < 1e-5
    assert np.abs(r16.logits - expected).max() < 1e-2
    assert np.abs(r16.logits - r32.logits).max() > 0          # it really ran in reduced precision
    assert np.abs(r16.patch_features - r32.patch_features).max() < 5e-2


def test_fp16_export_leaves_model_fp32(tiny_exports):
    model = tiny_exports["model"]
    assert all(p.dtype.is_floating_point and str(p.dtype) == "torch.float32" for p in model.parameters())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_fp16_streamed_stem_equals_whole_graph(tiny_exports):
    """predict's one-slide session of an fp16 export: the features go through the split-off stem
    in fp16 chunks (stem.py) and give the whole fp16 graph's outputs."""
    from span_deploy.features import FeatureFile
    from span_deploy.rulebook import build_rulebook

    one, whole = OrtBackend(tiny_exports["fp16"], single_slide=True), OrtBackend(tiny_exports["fp16"])
    assert one.stem is not None and one.stem.feat_dtype == np.float16
    with FeatureFile(TINY / "slide.h5") as ff:
        rb = build_rulebook(ff.coords, one.cfg)
        got = one.run(ff.coords, ff.sorted_reader(rb))
        want = whole.run(ff.coords, ff.read_sorted(rb))
    np.testing.assert_allclose(got.logits, want.logits, rtol=0, atol=1e-3)
    np.testing.assert_allclose(got.patch_features, want.patch_features, rtol=0, atol=1e-2)
    assert np.abs(got.logits - np.load(TINY / "expected.npz")["logits"].reshape(-1)).max() < 1e-2
