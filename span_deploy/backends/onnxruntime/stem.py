"""The graph's row-wise stem, split off so a slide's features can stream through it.

A SPAN graph starts with the input projection: ops that treat each feature row on its own
(MatMul / Gemm by a weight, LayerNorm over the row, activations). Its input, the (N, F) features,
is the largest tensor a forward is fed (F = 1,024 against the model's 512), and ONNX Runtime keeps a
fed tensor for the whole run. Split at the stem's output, the features never need to exist whole:
a feature file is read in chunks, each chunk goes through the stem session, and only the (N, D)
stem output is fed to the rest of the graph (200k patches of the default config: 0.82 GB less at
the peak). The split is found from the graph itself; a graph whose features are read by anything
not row-wise (e.g. mean/max global tokens, dynamic int8's per-tensor scale) is not split.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
import numpy as np

from .constants import attr, graph_constants

FEATS = "feats"
_ELEMENTWISE = {"Relu", "Gelu", "Sigmoid", "Tanh", "Erf", "Identity", "Cast", "Neg", "Abs", "Sqrt", "Exp",
                "LeakyRelu", "Elu", "Selu", "Softplus", "HardSigmoid", "HardSwish", "Mish", "Dropout"}
_WITH_CONSTANT = {"Add", "Sub", "Mul", "Div", "Pow"}


@dataclass
class StemSplit:
    stem: bytes          # serialized ModelProto: feats -> output
    body: bytes          # serialized ModelProto: output (+ the other inputs) -> the graph's outputs
    output: str          # the tensor between them
    nodes: int           # how many nodes the stem has
    body_inputs: list[str]
    body_outputs: list[str]


def _row_wise(node, data: list[str], shapes: dict[str, tuple[int, ...]]) -> bool:
    """Whether ``node`` maps each row of its one data input to a row on its own (its other inputs
    are constants that broadcast along the last axis only)."""
    op, consts = node.op_type, [i for i in node.input if i and i not in data]

    def row_vector(name: str) -> bool:
        s = shapes.get(name)
        return s is not None and all(d == 1 for d in s[:-1])

    if len(data) != 1 or node.input[0] != data[0]:
        return False
    if op in _ELEMENTWISE:
        return True
    if op in _WITH_CONSTANT:
        return all(row_vector(c) for c in consts)
    if op == "MatMul":
        return len(shapes.get(node.input[1], ())) == 2
    if op == "Gemm":
        ok_c = len(node.input) < 3 or not node.input[2] or row_vector(node.input[2])
        return attr(node, "transA", 0) == 0 and len(shapes.get(node.input[1], ())) == 2 and ok_c
    if op == "LayerNormalization":
        return attr(node, "axis", -1) in (-1, 1) and all(row_vector(c) for c in consts)
    return False


def split_stem(model) -> StemSplit | None:
    """The stem and the body of an ONNX ModelProto, or None when the features are read by
    anything that is not a row-wise op (then the graph runs whole). The body is made by editing
    ``model`` in place: pass a model loaded for this."""
    import onnx  # noqa: PLC0415

    g = model.graph
    shapes = graph_constants(g).shapes
    stem_tensors, eligible = {FEATS}, []
    for n in g.node:
        data = [i for i in n.input if i and i not in shapes]
        if data and all(i in stem_tensors for i in data) and _row_wise(n, data, shapes):
            eligible.append(n)
            stem_tensors.update(n.output)
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(id(n))
    graph_outputs = {o.name for o in g.output}
    out, keep = None, []
    # the split point: the last row-wise tensor that is the only thing its ancestors pass on
    # (the features included: nothing outside the stem may read them)
    for cand in eligible:
        for t in cand.output:
            need, nodes = {t}, []
            for n in reversed(eligible):
                if need & set(n.output):
                    nodes.append(n)
                    need.update(i for i in n.input if i)
            ids = {id(n) for n in nodes}
            leaving = {x for n in nodes for x in n.output if x != t and
                       (x in graph_outputs or any(c not in ids for c in consumers.get(x, [])))}
            feats_read_outside = any(c not in ids for c in consumers.get(FEATS, []))
            if not leaving and not feats_read_outside and t not in graph_outputs:
                out, keep = t, nodes[::-1]
    if out is None:
        return None
    feats_in = next(i for i in g.input if i.name == FEATS)
    elem = feats_in.type.tensor_type.elem_type
    width = None
    for n in keep:   # the last projection's output width
        if n.op_type in ("MatMul", "Gemm"):
            w = shapes[n.input[1]]
            width = w[0] if n.op_type == "Gemm" and attr(n, "transB", 0) else w[1]
    if width is None:
        width = feats_in.type.tensor_type.shape.dim[1].dim_value
    out_vi = onnx.helper.make_tensor_value_info(out, _out_type(keep, elem), ["n0", width])

    # the stem: a new small model (its nodes, the constants they read)
    used = {i for n in keep for i in n.input}
    consts = [n for n in g.node if n.op_type == "Constant" and n.output and n.output[0] in used]
    stem = onnx.helper.make_model(
        onnx.helper.make_graph(consts + keep, "span_stem", [feats_in], [out_vi],
                               [t for t in g.initializer if t.name in used]),
        opset_imports=model.opset_import, ir_version=model.ir_version).SerializeToString()
    # the body: the model itself, edited in place (its weights are not copied: a copy of a
    # large model would be the load's peak)
    for n in keep:
        g.node.remove(n)
    still = {i for n in g.node for i in n.input}
    for t in [t for t in g.initializer if t.name in used and t.name not in still]:
        g.initializer.remove(t)
    g.input.remove(feats_in)
    g.input.append(out_vi)
    return StemSplit(stem, model.SerializeToString(), out, len(keep), [i.name for i in g.input],
                     [o.name for o in g.output])


def _out_type(nodes, elem: int) -> int:
    """The stem output's element type: the features' type unless a Cast on the way changes it."""
    for n in nodes:
        if n.op_type == "Cast":
            elem = attr(n, "to", elem)
    return elem


# the stem output's types as ONNX Runtime names them
_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


class StemRunner:
    """The stem session applied to row chunks (callable: (rows, F) -> (rows, D))."""

    def __init__(self, session, feat_dtype: np.dtype):
        self.session, self.feat_dtype = session, np.dtype(feat_dtype)
        out = session.get_outputs()[0]
        # split_stem declares the output (rows, width) with a static width
        self.output, self.width, self.dtype = out.name, int(out.shape[1]), np.dtype(_ORT_TYPES[out.type])
        self.seconds = 0.0      # time spent in the stem since the caller last reset it

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        t = time.perf_counter()
        y = self.session.run([self.output], {FEATS: np.ascontiguousarray(rows, self.feat_dtype)})[0]
        self.seconds += time.perf_counter() - t
        return y

