"""Segmentation models exported (custom node and portable graph, fp16 too) and run in real ONNX
Runtime sessions: per-patch logits of every segmentation golden, in the h5's row order."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from span_deploy.backends.onnxruntime import OrtBackend
from span_deploy.features import read_features
from span_deploy.metadata import read_metadata
from span_deploy.rulebook import input_names, output_names
from span_export.model import load_model
from span_export.onnx_export import OP_TYPE, export_onnx
from tests.cases import SEG_CASES, SEG_PUBLIC, ids, ops_library_or_skip

TOL = 1e-4


def file_order(case) -> tuple[np.ndarray, object]:
    exp = np.load(case / "expected.npz")
    sf = read_features(case / "slide.h5")
    want = np.empty(len(sf.coords))
    want[exp["sort_index"]] = exp["patch_logits"]
    return want, sf


@pytest.mark.parametrize("attention", ["portable", "plugin"])
@pytest.mark.parametrize("case", SEG_CASES, ids=ids(SEG_CASES))
def test_segmentation_in_ort(case, attention, tmp_path):
    if attention == "plugin":
        ops_library_or_skip()
    model = load_model(case / "checkpoint.pt", case / "config.yaml")
    path = export_onnx(model, tmp_path / "m.onnx", attention=attention)
    meta = read_metadata(path)
    assert meta["config"]["task"] == "segmentation"
    assert meta["input_names"] == input_names(model.cfg) and meta["output_names"] == output_names(model.cfg)
    proto = onnx.load(str(path))
    custom = sum(n.op_type == OP_TYPE for n in proto.graph.node)
    layers = sum(model.cfg.layers_per_stage) * (2 if model.cfg.trans_type == "swin" else 1) + \
        sum(model.cfg.decoder_layers) * (2 if model.cfg.dtrans_type == "swin" else 1)
    assert custom == (layers if attention == "plugin" else 0)
    want, sf = file_order(case)
    r = OrtBackend(path).run(sf.coords, sf.feats)
    np.testing.assert_allclose(r.patch_logits, want, rtol=0, atol=TOL)
    assert r.patch_scores.shape == want.shape and np.all((r.patch_scores > 0) & (r.patch_scores < 1))


def test_fp16_segmentation_export(tmp_path):
    case = SEG_PUBLIC / "seg_default"
    model = load_model(case / "checkpoint.pt", case / "config.yaml")
    path = export_onnx(model, tmp_path / "m16.onnx", attention="portable", fp16=True)
    types = {i.name: i.type.tensor_type.elem_type for i in onnx.load(str(path)).graph.input}
    assert types["feats"] == onnx.TensorProto.FLOAT16
    want, sf = file_order(case)
    r = OrtBackend(path).run(sf.coords, sf.feats)
    d = np.abs(r.patch_logits - want)
    assert d.max() < 5e-2 and d.max() > 0          # reduced precision really ran, close to the golden
    thr = 0.2
    agree = ((1 / (1 + np.exp(-want))) >= thr) == (r.patch_scores >= thr)
    assert agree.mean() > 0.97
