"""build-engine CLI, validate CLI and the fp16 portable export (ONNX Runtime CPU)."""
import importlib.util
import re

import numpy as np
import onnx
from click.testing import CliRunner

from span_deploy.backends import available_backends
from span_deploy.backends.ort import OrtBackend
from span_deploy.cli import cli
from span_deploy.features import read_features

from pathlib import Path

TINY = Path("/work/shared/fixtures/cls_tiny_alltoall")

HAVE_TRT = importlib.util.find_spec("tensorrt") is not None


def test_build_engine_needs_tensorrt(tiny_exports, tmp_path):
    out = tmp_path / "m.engine"
    r = CliRunner().invoke(cli, ["build-engine", str(tiny_exports["fp32"]), "-o", str(out), "--max-tokens", "5000"])
    if HAVE_TRT:  # a real build (needs a GPU): engine + sidecar with the profile
        assert r.exit_code == 0, r.output
        assert out.stat().st_size > 0 and (tmp_path / "m.engine.json").is_file()
        assert "max 5000 tokens" in r.output
    else:
        assert r.exit_code != 0
        assert "TensorRT Python package not found" in str(r.exception)
        assert not out.exists()


def test_build_engine_validates_profile_first(tiny_exports, tmp_path):
    r = CliRunner().invoke(cli, ["build-engine", str(tiny_exports["fp32"]), "-o", str(tmp_path / "m.engine"),
                                 "--min-tokens", "50", "--max-tokens", "10"])
    assert r.exit_code != 0 and "larger than --max-tokens" in str(r.exception)
    r = CliRunner().invoke(cli, ["build-engine", str(tiny_exports["fp32"]), "-o", str(tmp_path / "m.engine"),
                                 "--profile", str(tmp_path / "p.yaml"), "--max-tokens", "10"])
    assert r.exit_code == 2 and "not both" in r.output


def test_validate_tiny_fixture():
    args = ["validate", str(TINY / "slide.h5"), "--checkpoint", str(TINY / "checkpoint.pt"),
            "--config", str(TINY / "config.yaml")]
    r = CliRunner().invoke(cli, args, terminal_width=150)
    assert r.exit_code == 0, r.output
    want = ["ort-portable"] + (["ort"] if "ort" in available_backends() else [])
    for be in want:
        for out in ("logits", "slide_embedding", "stage0_globals", "stage2_globals", "patch_features"):
            m = re.search(rf"{re.escape(be)}\s+│\s+{out}\s+│[^│]+│\s+(\S+)\s+│\s+(\S+)\s+│\s+PASS", r.output)
            assert m, f"{be} {out} row missing:\n{r.output}"
            assert float(m.group(1)) < 1e-5
    assert "validate: PASSED" in r.output
    # a tolerance nobody meets -> a FAIL row and exit 1
    r = CliRunner().invoke(cli, args + ["--backends", "ort-portable", "--atol", "1e-12"], terminal_width=150)
    assert r.exit_code == 1
    assert "FAIL" in r.output and "validate: FAILED" in r.output


def test_validate_given_model_and_bad_backend(tiny_exports):
    base = ["validate", str(TINY / "slide.h5"), "--checkpoint", str(TINY / "checkpoint.pt"),
            "--config", str(TINY / "config.yaml")]
    r = CliRunner().invoke(cli, base + ["--model", str(tiny_exports["fp16"]), "--backends", "ort-portable",
                                        "--atol", "2e-2"], terminal_width=150)
    assert r.exit_code == 0, r.output
    assert "ort-portable" in r.output and "validate: PASSED" in r.output
    r = CliRunner().invoke(cli, base + ["--backends", "trt"])
    assert r.exit_code != 0


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
