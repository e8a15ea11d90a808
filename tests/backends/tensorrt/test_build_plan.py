"""TensorRT decisions as pure logic, and clear failures while TensorRT is missing."""
import importlib.util
import json

import numpy as np
import pytest

from span_deploy.backends.tensorrt.build import BuildPlan, plan_build, version_tuple
from span_deploy.backends.tensorrt.plugin import import_tensorrt
from span_deploy.backends.tensorrt.runner import numpy_dtype_name, numpy_input
from span_deploy.backends.tensorrt.sidecar import read_sidecar, sidecar_doc, sidecar_path
from span_deploy.backends.tensorrt.profiles import Profile
from span_deploy.errors import BackendError

HAVE_TRT = importlib.util.find_spec("tensorrt") is not None


def test_version_tuple():
    assert version_tuple("10.13.0.35") == (10, 13)
    assert version_tuple("11.0") == (11, 0)
    assert version_tuple("8.6.1.post1") == (8, 6)


def test_fp32_builds_clear_tf32():
    assert plan_build("10.13.0", "fp32", False) == BuildPlan("fp32", (), (), ("TF32",))
    assert plan_build("8.6.1", "fp32", False) == BuildPlan("fp32", ("EXPLICIT_BATCH",), (), ("TF32",))
    assert plan_build("11.0.0", "fp32", False) == BuildPlan("fp32", ("STRONGLY_TYPED",), (), ("TF32",))


def test_fp16_onnx_is_strongly_typed():
    p = plan_build("10.13.0", "fp16", False)
    assert (p.precision, p.network_flags, p.builder_flags) == ("fp16", ("STRONGLY_TYPED",), ())
    p = plan_build("10.13.0", "fp16", True)  # --fp16 on an fp16 export: same
    assert (p.network_flags, p.builder_flags) == (("STRONGLY_TYPED",), ())
    p = plan_build("11.1", "fp16", True)
    assert (p.precision, p.network_flags, p.builder_flags) == ("fp16", ("STRONGLY_TYPED",), ())
    p = plan_build("8.6.1", "fp16", False, has_strongly_typed=False)
    assert p.builder_flags == ("FP16",) and p.notes


def test_fp16_flag_on_fp32_onnx():
    p = plan_build("10.5.0", "fp32", True)
    assert (p.precision, p.network_flags, p.builder_flags) == ("fp16", (), ("FP16",))
    assert "LayerNorm" in p.notes[0]
    with pytest.raises(BackendError, match=r"--fp16 asked for an fp32 ONNX.*TensorRT 11.0.*span-deploy export --fp16"):
        plan_build("11.0.0", "fp32", True)
    with pytest.raises(BackendError, match="unknown ONNX precision"):
        plan_build("10.0", "bf16", False)


def test_sidecar_roundtrip_and_mismatch(tmp_path):
    eng = tmp_path / "m.engine"
    eng.write_bytes(b"engine-bytes")
    prof = Profile({"feats": ((1, 8), (12, 8), (102, 8))})
    doc = sidecar_doc({"config": {}}, prof, plan_build("10.0", "fp32", False), "10.0", b"engine-bytes")
    assert sidecar_path(eng).name == "m.engine.json"
    with pytest.raises(BackendError, match="metadata file .*m.engine.json is missing"):
        read_sidecar(eng)
    sidecar_path(eng).write_text(json.dumps(doc))
    back = read_sidecar(eng, b"engine-bytes")
    assert back["max_tokens"] == 100 and back["precision"] == "fp32"
    assert back["profile"]["feats"] == [[1, 8], [12, 8], [102, 8]]
    with pytest.raises(BackendError, match="written for another engine"):
        read_sidecar(eng, b"other")


def test_dtype_mapping():
    class D:  # stands in for a trt.DataType member
        def __init__(self, name):
            self.name = name
    assert numpy_dtype_name(D("HALF")) == "float16"
    assert numpy_dtype_name(D("INT32")) == "int32"
    with pytest.raises(BackendError, match="FP8 is not supported"):
        numpy_dtype_name(D("FP8"))
    x = numpy_input(np.ones((3, 2), np.float32), "float16")
    assert x.dtype == np.float16 and x.flags.c_contiguous


def test_tensorrt_import():
    if HAVE_TRT:
        assert hasattr(import_tensorrt(), "Builder")
    else:
        with pytest.raises(BackendError, match="TensorRT Python package not found.*--backend ort"):
            import_tensorrt()


def test_trt_backend_without_tensorrt(tmp_path):
    from span_deploy.backends import available_backends, open_backend
    with pytest.raises(BackendError, match="needs --model model.engine"):
        open_backend("trt")
    if HAVE_TRT:
        assert "trt" in available_backends()
        with pytest.raises(BackendError, match="not found|metadata|CUDA"):
            open_backend("trt", model=tmp_path / "none.engine")
    else:
        assert "trt" not in available_backends()
        (tmp_path / "m.engine").write_bytes(b"x")
        with pytest.raises(BackendError, match="TensorRT Python package not found"):
            open_backend("trt", model=tmp_path / "m.engine")
