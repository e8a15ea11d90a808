"""TensorRT decisions as pure logic, and clear failures while TensorRT is missing."""
import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest

from span_deploy.backends.tensorrt.build import BuildPlan, plan_build, polygraphy_build_args, version_tuple
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


PROF = Profile({"feats": ((1, 8), (12, 8), (102, 8)), "s0_win_u": ((1, 16), (2, 16), (102, 16)),
                "s1_gather": ((1, 4), (3, 4), (26, 4))})
GRAPH = ["feats", "s0_win_u"]          # the ONNX graph's inputs (a contract input it lacks is left out)


def test_polygraphy_args_follow_the_plan():
    """BuildPlan -> NetworkFromOnnxPath / CreateConfig arguments, for TensorRT 8.6, 10 and 11."""
    def args(version, precision, fp16, **kw):
        return polygraphy_build_args(plan_build(version, precision, fp16, **kw), PROF, GRAPH)

    a = args("10.13.0", "fp32", False)
    assert a["network"] == {"strongly_typed": False}
    assert a["config"] == {"tf32": False, "fp16": False, "load_timing_cache": None}
    assert a["profile"] == {"feats": ((1, 8), (12, 8), (102, 8)), "s0_win_u": ((1, 16), (2, 16), (102, 16))}
    assert a["memory_pool_limits"] == {} and a["save_timing_cache"] is None
    # EXPLICIT_BATCH (TensorRT < 10): polygraphy's CreateNetwork sets it itself
    assert args("8.6.1", "fp32", False)["network"] == {"strongly_typed": False}
    # --fp16 on an fp32 ONNX, TensorRT 10: the weakly typed FP16 flag, TF32 cleared
    assert args("10.5.0", "fp32", True)["config"] == {"tf32": False, "fp16": True, "load_timing_cache": None}
    # an fp16 ONNX is strongly typed; its fp32 islands keep TensorRT's default TF32
    for version in ("10.13.0", "11.1"):
        a = args(version, "fp16", False)
        assert a["network"] == {"strongly_typed": True}
        assert a["config"] == {"tf32": True, "fp16": False, "load_timing_cache": None}
    assert args("8.6.1", "fp16", False, has_strongly_typed=False)["config"]["fp16"] is True
    # TensorRT 11, fp32: strongly typed (no weak typing), TF32 cleared
    a = args("11.0.0", "fp32", False)
    assert a["network"] == {"strongly_typed": True} and a["config"]["tf32"] is False and not a["config"]["fp16"]


def test_polygraphy_args_workspace_cache_and_errors(tmp_path):
    plan = plan_build("10.13.0", "fp32", False)
    a = polygraphy_build_args(plan, PROF, GRAPH, workspace_mb=512, timing_cache=tmp_path / "t.cache")
    assert a["memory_pool_limits"] == {"WORKSPACE": 512 << 20}
    assert a["config"]["load_timing_cache"] == a["save_timing_cache"] == str(tmp_path / "t.cache")
    with pytest.raises(BackendError, match=r"no shapes for network input\(s\) \['s2_coords'\]"):
        polygraphy_build_args(plan, PROF, GRAPH + ["s2_coords"])
    with pytest.raises(BackendError, match="no polygraphy argument for the builder flag"):
        polygraphy_build_args(BuildPlan("fp32", (), ("INT8",), ()), PROF, GRAPH)


LOADER_CODE = """
import sys
sys.modules["tensorrt"] = None           # any TensorRT import now fails
from span_deploy.backends.tensorrt.build import engine_loader, plan_build, polygraphy_build_args
from span_deploy.backends.tensorrt.profiles import Profile
from polygraphy.backend.trt import CreateConfig, EngineBytesFromNetwork, NetworkFromOnnxPath
prof = Profile({"feats": ((1, 8), (12, 8), (102, 8))})
args = polygraphy_build_args(plan_build("11.0", "fp32", False), prof, ["feats"], workspace_mb=64,
                             timing_cache="/tmp/t.cache")
eng = engine_loader("/tmp/m.onnx", args, pool_type=lambda name: "pool:" + name)
net, cfg = eng._network, eng._config
assert isinstance(eng, EngineBytesFromNetwork) and isinstance(net, NetworkFromOnnxPath)
assert isinstance(cfg, CreateConfig)
assert net.path == "/tmp/m.onnx" and net.strongly_typed is True
assert cfg.tf32 is False and cfg.fp16 is False and cfg.memory_pool_limits == {"pool:WORKSPACE": 64 << 20}
assert cfg.timing_cache_path == "/tmp/t.cache" and eng.timing_cache_path == "/tmp/t.cache"
(p,) = cfg.profiles
assert list(p) == ["feats"] and (p["feats"].min, p["feats"].opt, p["feats"].max) == ((1, 8), (12, 8), (102, 8))
args = polygraphy_build_args(plan_build("10.13", "fp16", False), prof, ["feats"])
cfg = engine_loader("/tmp/m.onnx", args)._config
assert cfg.memory_pool_limits is None and cfg.tf32 is True
print("ok")
"""


def test_engine_loader_builds_polygraphy_loaders_without_tensorrt():
    """Constructing polygraphy's loaders imports no TensorRT (only calling them does)."""
    r = subprocess.run([sys.executable, "-c", LOADER_CODE], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr
