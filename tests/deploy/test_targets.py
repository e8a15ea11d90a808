"""Deploy targets: every shipped YAML loads and round-trips; malformed ones get one clear line."""
from __future__ import annotations

import pytest
import yaml

from span_deploy.deploy.targets import Target, available_targets, load_target
from span_deploy.errors import ConfigError

SHIPPED = ("cpu-fp32", "server-fp16", "server-fp32", "jetson-orin-fp16")


def test_the_issue_s_four_targets_ship():
    assert set(SHIPPED) <= set(available_targets())


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_target_loads_and_round_trips(name):
    t = load_target(name)
    assert t.name == name
    assert Target.from_dict(t.to_dict(), "x") == t
    if t.backend == "trt":
        assert t.tensorrt is not None and t.tensorrt.precision == t.precision
        assert 1 <= t.tensorrt.min_tokens <= t.tensorrt.opt_tokens <= t.tensorrt.max_tokens


def test_jetson_target_is_orin():
    t = load_target("jetson-orin-fp16")
    assert (t.backend, t.precision, t.tensorrt.cuda_arch) == ("trt", "fp16", "87")


def test_cpu_target_runs_onnx_runtime_fp32():
    t = load_target("cpu-fp32")
    assert (t.backend, t.precision, t.tensorrt) == ("ort", "fp32", None)


GOOD = {"name": "x", "backend": "trt", "onnx": {"attention": "plugin", "precision": "fp16", "opset": 17},
        "tensorrt": {"precision": "fp16", "tokens": {"min": 1, "opt": 10, "max": 100}}}


def _with(path, value):
    import copy
    doc = copy.deepcopy(GOOD)
    d = doc
    for k in path[:-1]:
        d = d[k]
    if value is KeyError:
        del d[path[-1]]
    else:
        d[path[-1]] = value
    return doc


@pytest.mark.parametrize("path,value,needle", [
    (("backend",), "tensorflow", "'backend' must be one of"),
    (("onnx", "attention"), "dense", "onnx.attention"),
    (("onnx", "opset"), 9, "onnx.opset"),
    (("onnx", "opset"), "17", "onnx.opset"),
    (("tensorrt", "precision"), "fp32", "differs from onnx.precision"),
    (("tensorrt", "tokens"), {"min": 5, "opt": 2, "max": 100}, "min <= opt <= max"),
    (("tensorrt", "tokens"), {"min": 1, "max": 100}, "tensorrt.tokens"),
    (("tensorrt", "timing_cache"), "../x.cache", "plain file name"),
    (("tensorrt", "cuda_arch"), "sm_87", "cuda_arch"),
    (("tensorrt", "workspace_mb"), 0, "workspace_mb"),
    (("tensorrt", "fp8"), True, "unknown tensorrt key"),
    (("tensorrt",), KeyError, "needs a 'tensorrt' mapping"),
    (("colour",), "red", "unknown key"),
])
def test_malformed_target_is_one_clear_error(tmp_path, path, value, needle):
    f = tmp_path / "mine.yaml"
    f.write_text(yaml.safe_dump(_with(path, value)))
    with pytest.raises(ConfigError, match=needle) as e:
        load_target(f)
    assert str(f) in str(e.value)


def test_good_custom_target_by_path_and_by_search_folder(tmp_path, monkeypatch):
    f = tmp_path / "x.yaml"
    f.write_text(yaml.safe_dump(GOOD))
    assert load_target(f).tensorrt.max_tokens == 100
    monkeypatch.setenv("SPAN_DEPLOY_TARGETS", str(tmp_path))
    assert load_target("x").name == "x"


def test_unknown_target_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown deploy target 'nope'.*cpu-fp32"):
        load_target("nope")


def test_garbage_yaml_is_one_clear_error(tmp_path):
    f = tmp_path / "g.yaml"
    f.write_bytes(b"\xff\xfe: [")
    with pytest.raises(ConfigError, match="not a readable YAML"):
        load_target(f)
