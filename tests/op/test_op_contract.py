"""The machine-readable op contract (plugins/sparse_window_attention/op.yaml): it parses, agrees with
the README's tables and the kernels' limits, and drives the shape tests of the ONNX Runtime custom
op: for every shape constraint of every input a graph fed a wrong shape must fail with a message
naming that input (the shared check swa_check_shapes of kernels/)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import yaml
from onnx import TensorProto, helper

REPO = Path(__file__).resolve().parents[2]
OP_DIR = REPO / "plugins" / "sparse_window_attention"
CONTRACT = yaml.safe_load((OP_DIR / "op.yaml").read_text())
IDENTITY = CONTRACT["identity"]
INPUTS = CONTRACT["inputs"]
INPUT = {i["name"]: i for i in INPUTS}
DIMS = CONTRACT["dims"]
ATTRIBUTES = CONTRACT["attributes"]

ELEM = {"float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16, "int32": TensorProto.INT32}
NUMPY = {"float32": np.float32, "float16": np.float16, "int32": np.int32}

# A tiny valid instance: C = 8, S2 = 4, bias (2, 3, 3); the bound dims N, Wa, Wb are ours.
ATTRS = dict(num_heads=2, head_dim=4, window=2, scale=0.5, mode=1)
BOUND = dict(N=6, Wa=3, Wb=2)


def _eval(expr: str, attrs: dict) -> int:
    """An op.yaml dim expression (integer arithmetic over attribute names)."""
    assert re.fullmatch(r"[\w\s*+\-()]+", expr), expr
    return int(eval(expr, {"__builtins__": {}}, dict(attrs)))  # noqa: S307 (checked charset above)


def dim_value(sym: str, attrs: dict = ATTRS) -> int:
    spec = DIMS[sym]
    return BOUND[sym] if "bound_by" in spec else _eval(spec["expr"], attrs)


def shape_of(inp: dict, attrs: dict = ATTRS) -> tuple[int, ...]:
    return tuple(dim_value(s, attrs) for s in inp["shape"])


def resolve_dtype(dtype: str, T: str) -> str:
    return T if dtype in CONTRACT["type_constraints"] else dtype


def ignored(inp: dict, attrs: dict) -> bool:
    cond = inp.get("ignored_when")
    if cond is None:
        return False
    m = re.fullmatch(r"\s*(\w+)\s*==\s*(-?\d+)\s*", cond)
    assert m, f"unsupported ignored_when: {cond!r}"
    return attrs[m.group(1)] == int(m.group(2))


# ---------------------------------------------------------------- the YAML itself
def test_op_yaml_parses_and_is_complete():
    assert CONTRACT["schema_version"] == 1
    assert IDENTITY["op_type"] == "SparseWindowAttention" and IDENTITY["domain"] == "span_deploy"
    assert IDENTITY["tensorrt"]["plugin_namespace"] == IDENTITY["parser_attributes"]["plugin_namespace"]
    assert IDENTITY["tensorrt"]["plugin_version"] == IDENTITY["parser_attributes"]["plugin_version"]
    assert [i["index"] for i in INPUTS] == list(range(8))
    assert [i["name"] for i in INPUTS] == ["q", "k", "v", "win_a", "pos_a", "win_b", "pos_b", "bias"]
    types = set(CONTRACT["type_constraints"]) | set(ELEM)
    for io in INPUTS + CONTRACT["outputs"]:
        assert io["dtype"] in types, io
        for sym in io["shape"]:
            assert sym in DIMS, (io["name"], sym)
    for sym, spec in DIMS.items():
        assert ("bound_by" in spec) != ("expr" in spec), sym
        if "bound_by" in spec:  # the binding input really has that dim on that axis
            src = INPUT[spec["bound_by"]["input"]]
            assert src["shape"][spec["bound_by"]["axis"]] == sym
        else:
            assert _eval(spec["expr"], ATTRS) >= 1
    assert {a["name"] for a in ATTRIBUTES} == {"num_heads", "head_dim", "window", "scale", "mode"}
    assert all(t in NUMPY for t in CONTRACT["type_constraints"]["T"])


# ---------------------------------------------------------------- README agrees
def _readme_section(title: str) -> str:
    text = (OP_DIR / "README.md").read_text()
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", text, re.M | re.S)
    assert m, f"README has no '## {title}' section"
    return m.group(1)


def _table_rows(section: str) -> list[list[str]]:
    rows = [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in section.splitlines() if line.startswith("|")]
    return rows[2:]  # drop the header and |---|


def _readme_shape(cell: str) -> list[str]:
    """README '(H, 2S−1, 2S−1)' -> op.yaml symbols ['H', 'B', 'B']."""
    to_sym = {"S²": "S2", "2S−1": "B", "2S-1": "B"}
    return [to_sym.get(d.strip(), d.strip()) for d in cell.strip("()").split(",") if d.strip()]


def test_readme_input_table_matches_op_yaml():
    rows = _table_rows(_readme_section("Inputs"))
    assert len(rows) == len(INPUTS)
    for row, inp in zip(rows, INPUTS):
        index, name, dtype, shape, meaning = row
        assert int(index) == inp["index"]
        assert name.strip("`") == inp["name"]
        assert dtype == inp["dtype"]
        assert _readme_shape(shape) == inp["shape"], (name, shape)
        assert ("ignored when `mode = 0`" in meaning) == ("ignored_when" in inp), name


def test_readme_attributes_and_identity_match_op_yaml():
    rows = _table_rows(_readme_section("Attributes"))
    assert [r[0].strip("`") for r in rows] == [a["name"] for a in ATTRIBUTES]
    assert [r[1] for r in rows] == [a["type"] for a in ATTRIBUTES]
    identity = _readme_section("Identity")
    trt = IDENTITY["tensorrt"]
    assert f"`{IDENTITY['op_type']}`" in identity
    assert f"`{IDENTITY['domain']}` (opset version {IDENTITY['opset_version']})" in identity
    assert f"`{trt['plugin_name']}` / `{trt['plugin_version']}` / `{trt['plugin_namespace']}`" in identity
    parser = ", ".join(f'`{k}="{v}"`' for k, v in IDENTITY["parser_attributes"].items())
    assert parser in identity


def test_cuda_limits_match_kernels_and_readme():
    limits = CONTRACT["cuda_limits"]
    hd, w = limits["head_dim"]["max"], limits["window"]["max"]
    params = (OP_DIR / "kernels" / "swa_params.cpp").read_text()
    assert re.search(rf"kCudaMaxHeadDim = {hd};", params)
    assert f"window (S) <= {w}" in params
    # window <= 55 is what 2 * S^2 int32 slots in 48 KiB of shared memory allow
    assert 2 * w * w * 2 * 4 <= 48 * 1024 < 2 * (w + 1) ** 2 * 2 * 4
    header = (OP_DIR / "kernels" / "swa_kernels.h").read_text()
    assert f"head_dim <= {hd}" in header and f"S <= {w}" in header
    readme = (OP_DIR / "README.md").read_text()
    assert f"`head_dim` ≤ {hd} and `window` (S) ≤ {w}" in readme


# ---------------------------------------------------------------- ONNX Runtime op
@pytest.fixture(scope="module")
def ops_lib():
    from tests.cases import ops_library_or_skip

    return str(ops_library_or_skip())


def make_model(attrs: dict, T: str):
    """One span_deploy::SparseWindowAttention node. The graph inputs carry dtypes only (no shapes),
    so every shape check is the op's own, not ORT's graph-input check."""
    inputs = [helper.make_tensor_value_info(i["name"], ELEM[resolve_dtype(i["dtype"], T)], None) for i in INPUTS]
    (out,) = CONTRACT["outputs"]
    tp = IDENTITY["parser_attributes"]
    node = helper.make_node(IDENTITY["op_type"], [i["name"] for i in INPUTS], [out["name"]],
                            domain=IDENTITY["domain"], plugin_version=tp["plugin_version"],
                            plugin_namespace=tp["plugin_namespace"], **attrs)
    outputs = [helper.make_tensor_value_info(out["name"], ELEM[resolve_dtype(out["dtype"], T)],
                                             [f"out_{s}" for s in out["shape"]])]
    graph = helper.make_graph([node], "swa_contract", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid(IDENTITY["domain"], IDENTITY["opset_version"])])
    model.ir_version = 9
    return model


def session(lib: str, attrs: dict, T: str = "float32"):
    so = ort.SessionOptions()
    so.register_custom_ops_library(lib)
    so.intra_op_num_threads = 1
    so.log_severity_level = 4  # the expected failures would otherwise be logged too
    return ort.InferenceSession(make_model(attrs, T).SerializeToString(), so, providers=["CPUExecutionProvider"])


def valid_feeds(T: str = "float32") -> dict[str, np.ndarray]:
    """Shapes from op.yaml; tables: A puts the N rows two per window, B four per window."""
    rng = np.random.default_rng(0)
    feeds = {i["name"]: rng.standard_normal(shape_of(i)).astype(NUMPY[resolve_dtype(i["dtype"], T)])
             for i in INPUTS if i["dtype"] != "int32"}
    S2, N = dim_value("S2"), BOUND["N"]
    for win, pos, per_window in (("win_a", "pos_a", 2), ("win_b", "pos_b", 4)):
        p = np.array([(r // per_window) * S2 + r % per_window for r in range(N)], np.int32)
        w = np.full(shape_of(INPUT[win]), -1, np.int32)
        assert p.max() < w.size and shape_of(INPUT[pos]) == p.shape
        w.reshape(-1)[p] = np.arange(N, dtype=np.int32)
        feeds[win], feeds[pos] = w, p
    return feeds


def shape_cases():
    """(input, wrong shape, what) for every constraint in op.yaml: every dim fixed by the attributes
    or by a dim another input binds, off by one; and the rank one more and one less."""
    cases = []
    for inp in INPUTS:
        good = shape_of(inp)
        for axis, sym in enumerate(inp["shape"]):
            bound = DIMS[sym].get("bound_by")
            if bound == {"input": inp["name"], "axis": axis}:
                continue  # this input defines the dim: any value is consistent on its own
            bad = list(good)
            bad[axis] += 1
            cases.append(pytest.param(inp["name"], tuple(bad), id=f"{inp['name']}-axis{axis}-{sym}"))
        cases.append(pytest.param(inp["name"], good + (1,), id=f"{inp['name']}-rank+1"))
        cases.append(pytest.param(inp["name"], good[:-1], id=f"{inp['name']}-rank-1"))
    return cases


@pytest.mark.parametrize("T", CONTRACT["type_constraints"]["T"])
def test_valid_graph_runs(ops_lib, T):
    feeds = valid_feeds(T)
    out = session(ops_lib, ATTRS, T).run(None, feeds)[0]
    (spec,) = CONTRACT["outputs"]
    assert out.shape == shape_of(spec)
    assert out.dtype == NUMPY[resolve_dtype(spec["dtype"], T)]
    assert np.isfinite(out).all() and np.abs(out).max() > 0


@pytest.mark.parametrize("name, bad_shape", shape_cases())
def test_wrong_shape_names_the_input(ops_lib, name, bad_shape):
    inp = INPUT[name]
    attrs = dict(ATTRS, mode=1)  # mode 1: every input is read
    assert not ignored(inp, attrs)
    feeds = valid_feeds()
    feeds[name] = np.zeros(bad_shape, feeds[name].dtype)
    sess = session(ops_lib, attrs)
    with pytest.raises(Exception) as err:
        sess.run(None, feeds)
    msg = str(err.value)
    assert f"SparseWindowAttention: input '{name}' (#{inp['index']}) has shape" in msg, msg
    assert "expected" in msg


@pytest.mark.parametrize("name", [i["name"] for i in INPUTS if "ignored_when" in i])
def test_inputs_ignored_when_mode0_are_not_checked(ops_lib, name):
    attrs = dict(ATTRS, mode=0)
    inp = INPUT[name]
    assert ignored(inp, attrs)
    feeds = valid_feeds()
    ref = session(ops_lib, attrs).run(None, feeds)[0]
    feeds[name] = np.zeros(shape_of(inp) + (3,), np.int32)  # wrong rank and dims: ignored
    np.testing.assert_array_equal(session(ops_lib, attrs).run(None, feeds)[0], ref)


def attribute_cases():
    cases = []
    for a in ATTRIBUTES:
        c = a["constraints"]
        if "min" in c:
            cases.append(pytest.param(a["name"], c["min"] - 1, id=f"{a['name']}<min"))
        if "one_of" in c:
            cases.append(pytest.param(a["name"], max(c["one_of"]) + 1, id=f"{a['name']}-not-one-of"))
    return cases


@pytest.mark.parametrize("name, value", attribute_cases())
def test_attribute_constraints_are_enforced(ops_lib, name, value):
    attrs = dict(ATTRS, **{name: value})
    with pytest.raises(Exception, match=name):
        session(ops_lib, attrs).run(None, valid_feeds())


def test_unconstrained_scale_is_accepted_by_ort(ops_lib):
    (scale,) = [a for a in ATTRIBUTES if a["name"] == "scale"]
    assert scale["constraints"] == {} and scale["tensorrt_constraints"] == {"exclusive_min": 0.0}
    out = session(ops_lib, dict(ATTRS, scale=-0.5)).run(None, valid_feeds())[0]
    assert np.isfinite(out).all()
