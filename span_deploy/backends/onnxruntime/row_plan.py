"""The body graph as row passes and whole steps, so that a slide's large tensors are not all alive at once.

ONNX Runtime keeps every tensor until its last reader has run and every fed input for the whole
run, and on the CPU it computes nothing in place (measured with 1.32: Relu -> Gemm with the Relu
as C holds both). At stage 0 of the default config that is the layer input x, LayerNorm(x), q, k
and v together (5 x N x 512 floats, 2.0 GB at 200k patches), and again around the FFN (x, its
residual sum, that sum's LayerNorm and the two-wide hidden layer).

Most of a layer treats each row on its own: LayerNorm, the projections, the FFN, residual adds,
activations. Such a node is a *row node* here: its output row i depends on row i of each input
that has the stage-0 rows (``N0``) and on whole tensors that broadcast along the rows. Row nodes
run in *row passes*: chunks of rows through a small session, so their intermediates exist for one
chunk only, and a pass materialises only what a later step reads whole. Cheap row tensors
(LayerNorm, elementwise ops) are recomputed where they are needed instead of being kept alive;
products (MatMul, Gemm) are computed once. Every other node (the window attention, gathers
between stages, reductions over rows, all of stage 1 and later) runs in a *whole step*: the
consecutive ones in one session. The window attention's output may take its q's buffer (the CPU
kernel reads a query row only before it writes that row: plugins/sparse_window_attention/README.md).

Which tensors have ``N0`` rows is read off one probe run of the body on a small synthetic slide
(shapes only; the values are never used). A graph this module cannot plan raises ``RowPlanError``
and then runs whole.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .constants import Constants, attr, graph_constants

# sizes of the probe's tissue-shaped slide, tried in turn until its N0 is no other dimension of the
# run (a weight's, another stage's, a table's): small, so the probe costs little
PROBE_PATCHES = (181, 233, 307, 401, 523, 641)
ATTENTION_OPS = {("span_deploy", "SparseWindowAttention")}

_UNARY = {"Relu", "Gelu", "Erf", "Sigmoid", "Tanh", "Sqrt", "Exp", "Log", "Neg", "Abs", "Cast", "Identity",
          "Softplus", "LeakyRelu", "Elu", "Selu", "HardSigmoid", "HardSwish", "Mish", "Reciprocal", "Not",
          "Sign", "Floor", "Ceil", "Round", "IsNaN", "IsInf", "Dropout", "Clip", "Celu", "ThresholdedRelu"}
_ELEMENTWISE = {"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "Where", "Equal", "Less",
                "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor", "Mod"}
_HEAVY = {"MatMul", "Gemm"}   # computed once: never recomputed in a later pass


class RowPlanError(Exception):
    """The body cannot be planned in row passes (it then runs as one session)."""


@dataclass
class Step:
    """One step of a plan. ``kind``: "row" (``model`` over row chunks: ``sliced`` inputs cut to
    the chunk, the others fed whole), "whole" (``model`` once), "shape" (``outputs[0]`` is the
    shape of an (N0, ...) tensor: ``shape_dims`` = its dims after the first, ``shape_range`` the
    Shape node's start/end)."""

    kind: str
    outputs: list[str]
    inputs: list[str] = field(default_factory=list)
    sliced: list[str] = field(default_factory=list)
    model: bytes | None = None
    free_after: list[str] = field(default_factory=list)
    inplace: tuple[str, str] | None = None          # (output, input): the output takes the input's buffer
    out_dims: dict[str, tuple[int, ...]] = field(default_factory=dict)   # row outputs' dims after N0
    out_dtypes: dict[str, np.dtype] = field(default_factory=dict)
    shape_dims: tuple[int, ...] = ()
    shape_range: tuple[int | None, int | None] = (None, None)
    nodes: int = 0                                  # ONNX nodes in the step's model
    graph_nodes: list = field(default_factory=list, repr=False)   # while planning only


@dataclass
class RowPlan:
    steps: list[Step]
    row_input: str                  # the (N0, D) input whose rows define N0
    outputs: list[str]              # the body's outputs, in order


def probe_rulebook(cfg, avoid: set[int]):
    """A small synthetic slide's rulebook and engine inputs whose N0 is in no other role: not a
    dimension in ``avoid``, another stage's size or a table's length."""
    from ...bench.tissue_tokens import tissue_slide  # noqa: PLC0415
    from ...rulebook import build_rulebook  # noqa: PLC0415

    for n in PROBE_PATCHES:
        coords, _ = tissue_slide(n, seed=0, feat_dim=1)
        rb = build_rulebook(coords, cfg)
        feed = rb.engine_inputs(cfg)
        n0 = rb.stage_sizes[0]
        others = set(avoid) | set(rb.stage_sizes[1:]) | {d for v in feed.values() for d in np.shape(v)[1:]}
        others |= {np.shape(v)[0] for v in feed.values() if np.ndim(v) and np.shape(v)[0] != n0}
        if n0 not in others:
            return rb, feed
    raise RowPlanError("no probe slide whose row count is unambiguous")


def probe_shapes(model, cfg, row_input: str, row_dtype: np.dtype, ops_library: str | None):
    """Every tensor's shape and dtype in one run of the body on a small synthetic slide, and its N0."""
    import onnx  # noqa: PLC0415
    import onnxruntime as ort  # noqa: PLC0415

    avoid = {int(d) for t in model.graph.initializer for d in t.dims}
    rb, feed = probe_rulebook(cfg, avoid)
    # every tensor an output, for the probe only (no copy of the model: the outputs are added to
    # it and taken off again)
    g = model.graph
    kept = len(g.output)
    have = {o.name for o in g.output}
    for n in g.node:
        for o in n.output:
            if o and o not in have:
                g.output.append(onnx.ValueInfoProto(name=o))
                have.add(o)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL   # every name kept
    so.enable_cpu_mem_arena = False
    if ops_library:
        so.register_custom_ops_library(ops_library)
    try:
        sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    finally:
        del g.output[kept:]
    n0 = rb.stage_sizes[0]
    width = next(i for i in sess.get_inputs() if i.name == row_input).shape[-1]
    feed[row_input] = np.random.default_rng(0).standard_normal((n0, int(width))).astype(row_dtype)
    names = [o.name for o in sess.get_outputs()]
    vals = sess.run(names, {i.name: feed[i.name] for i in sess.get_inputs()})
    shapes = {k: tuple(v.shape) for k, v in zip(names, vals)}
    dtypes = {k: np.asarray(v).dtype for k, v in zip(names, vals)}
    for k, v in feed.items():
        shapes[k], dtypes[k] = tuple(np.shape(v)), np.asarray(v).dtype
    return shapes, dtypes, n0


class _Rows:
    """Row-node rules over probe shapes."""

    def __init__(self, shapes: dict, n0: int, consts: Constants):
        self.shapes, self.n0, self.consts = shapes, n0, consts

    def rowsized(self, t: str) -> bool:
        s = self.shapes.get(t)
        return t not in self.consts and s is not None and len(s) >= 1 and s[0] == self.n0

    def rank(self, t: str) -> int:
        return len(self.shapes[t])

    def broadcasts(self, t: str, out_rank: int) -> bool:
        """A whole input that is the same for every row."""
        s = self.shapes.get(t)
        return s is not None and (len(s) < out_rank or s[0] == 1)

    def sliced_inputs(self, n) -> list[str] | None:
        """The inputs to cut per chunk if ``n`` is a row node, else None."""
        outs = [o for o in n.output if o]
        if not outs or not all(self.rowsized(o) for o in outs):
            return None
        ins = [i for i in n.input if i]
        r_out = self.rank(outs[0])
        op = n.op_type
        if n.domain not in ("", "ai.onnx"):
            return None
        x = n.input[0] if n.input else ""
        row_x = bool(x) and self.rowsized(x) and self.rank(x) == r_out
        if op in _UNARY:
            if op == "Dropout" and len(outs) > 1:
                return None
            others = ins[1:]
            return [x] if row_x and not any(self.rowsized(i) for i in others) else None
        if op in _ELEMENTWISE:
            sliced = []
            for i in ins:
                if self.rowsized(i) and self.rank(i) == r_out:
                    sliced.append(i)
                elif self.rowsized(i) or not self.broadcasts(i, r_out):   # N0 on another axis
                    return None
            return sliced or None
        if op == "Gemm":
            if attr(n, "transA", 0) or not row_x or r_out != 2 or self.rowsized(n.input[1]):
                return None
            sliced = [x]
            if len(n.input) > 2 and n.input[2]:
                c = n.input[2]
                if self.rowsized(c) and self.rank(c) == 2:
                    sliced.append(c)
                elif self.rowsized(c) or not self.broadcasts(c, 2):
                    return None
            return sliced
        if op == "MatMul":
            b = n.input[1]
            ok = row_x and r_out >= 2 and len(self.shapes.get(b, ())) == 2 and not self.rowsized(b)
            return [x] if ok else None
        if op == "LayerNormalization":
            axis = attr(n, "axis", -1) % r_out
            ok = row_x and axis >= 1 and len(outs) == 1 and not any(self.rowsized(i) for i in ins[1:])
            return [x] if ok else None
        if op in ("Softmax", "LogSoftmax"):
            return [x] if row_x and attr(n, "axis", -1) % r_out != 0 else None
        if op == "Transpose":
            perm = attr(n, "perm", None)
            return [x] if row_x and perm is not None and perm[0] == 0 else None
        if op in ("Reshape", "Unsqueeze", "Squeeze", "Flatten"):
            return [x] if self._keeps_rows(n, x) else None
        return None

    def _keeps_rows(self, n, x: str) -> bool:
        """A shape op that leaves axis 0 alone whatever the number of rows (constant arguments)."""
        if not self.rowsized(x):
            return False
        op = n.op_type
        if op == "Flatten":
            return attr(n, "axis", 1) % max(self.rank(x), 1) >= 1
        if op == "Reshape":
            shape = self.consts.values.get(n.input[1]) if len(n.input) > 1 else None
            return shape is not None and shape.size >= 1 and int(shape.reshape(-1)[0]) in (0, -1) \
                and not attr(n, "allowzero", 0)
        axes = self.consts.values.get(n.input[1]) if len(n.input) > 1 and n.input[1] else None
        if axes is None:
            axes = attr(n, "axes", None)
        if axes is None:
            return False
        rank = self.rank(n.output[0]) if op == "Unsqueeze" else self.rank(x)
        return all(int(a) % rank != 0 for a in np.asarray(axes).reshape(-1))


def _bypass_weight_identities(g) -> None:
    """Readers of ``Identity(initializer)`` (the exporter's shared weights) read the initializer."""
    inits = {t.name for t in g.initializer}
    alias = {n.output[0]: n.input[0] for n in g.node if n.op_type == "Identity" and n.input[0] in inits}
    keep_out = {o.name for o in g.output}
    alias = {k: v for k, v in alias.items() if k not in keep_out}
    if not alias:
        return
    for n in [n for n in g.node if n.op_type == "Identity" and n.output[0] in alias]:
        g.node.remove(n)
    for n in g.node:
        for k, i in enumerate(n.input):
            if i in alias:
                n.input[k] = alias[i]


def build_plan(model, cfg, row_input: str, row_dtype: np.dtype, ops_library: str | None) -> RowPlan:
    """The plan of a body ModelProto (its weights' Identity nodes are bypassed in place) whose input
    ``row_input`` has the stage-0 rows."""
    g = model.graph
    _bypass_weight_identities(g)
    try:
        shapes, dtypes, n0 = probe_shapes(model, cfg, row_input, row_dtype, ops_library)
    except Exception as e:  # noqa: BLE001 - any failure to probe: the graph runs whole
        raise RowPlanError(f"the probe run failed: {e}") from None
    consts = graph_constants(g)
    shapes.update(consts.shapes)
    dtypes.update(consts.dtypes)
    rules = _Rows(shapes, n0, consts)
    nodes = [n for n in g.node if n.op_type != "Constant"]
    index = {id(n): k for k, n in enumerate(nodes)}
    producer = {o: n for n in nodes for o in n.output if o}
    row_sliced = {id(n): s for n in nodes if (s := rules.sliced_inputs(n)) is not None}
    consumers: dict[str, list] = {}
    for n in nodes:
        for i in n.input:
            if i:
                consumers.setdefault(i, []).append(n)
    graph_inputs = {i.name for i in g.input}
    graph_outputs = [o.name for o in g.output]
    materialised = set(graph_inputs)

    def is_row_tensor(t: str) -> bool:
        p = producer.get(t)
        return p is not None and id(p) in row_sliced

    def is_source(t: str) -> bool:
        """Read as it is by a pass (not recomputed)."""
        if t in consts or t in graph_inputs or not is_row_tensor(t):
            return True
        return t in materialised and producer[t].op_type in _HEAVY

    steps: list[Step] = []
    segment: list = []

    def flush() -> None:
        if segment:
            steps.append(Step("whole", [], nodes=len(segment), graph_nodes=list(segment)))
            segment.clear()

    def row_pass(targets: list[str]) -> None:
        chosen, stack = {}, list(targets)
        while stack:
            t = stack.pop()
            if is_source(t):
                continue
            p = producer[t]
            if id(p) in chosen:
                continue
            chosen[id(p)] = p
            stack.extend(i for i in p.input if i)
        ordered = sorted(chosen.values(), key=lambda n: index[id(n)])
        ids = set(chosen)
        outs = list(dict.fromkeys(targets))
        for p in ordered:   # products that anything outside this pass reads: computed once, kept
            if p.op_type in _HEAVY:
                for o in p.output:
                    if o and o not in outs and (o in graph_outputs or
                                               any(id(c) not in ids for c in consumers.get(o, []))):
                        outs.append(o)
        steps.append(Step("row", outs, nodes=len(ordered), graph_nodes=ordered))
        materialised.update(outs)

    for n in nodes:
        if id(n) in row_sliced:
            continue
        if n.op_type in ("Shape", "Size") and is_row_tensor(n.input[0]) and n.input[0] not in materialised:
            dims = shapes[n.input[0]][1:]
            if n.op_type == "Size":
                raise RowPlanError("Size of a row tensor")
            steps.append(Step("shape", [n.output[0]], shape_dims=tuple(int(d) for d in dims),
                              shape_range=(attr(n, "start", None), attr(n, "end", None))))
            materialised.add(n.output[0])
            continue
        missing = [i for i in n.input if i and is_row_tensor(i) and i not in materialised]
        # a stage-0 window attention is a step of its own: its output may take q's buffer
        alone = (n.domain, n.op_type) in ATTENTION_OPS and is_row_tensor(n.input[0])
        if missing or alone:
            flush()
        if missing:
            row_pass(missing)
        segment.append(n)
        materialised.update(o for o in n.output if o)
        if alone:
            flush()
    flush()
    missing = [o for o in graph_outputs if is_row_tensor(o) and o not in materialised]
    if missing:
        row_pass(missing)

    steps = _finish(steps, model, rules, dtypes, graph_outputs, graph_inputs)
    return RowPlan(steps, row_input, graph_outputs)


def _finish(steps: list[Step], model, rules: _Rows, dtypes, graph_outputs: list[str],
            graph_inputs: set[str]) -> list[Step]:
    """Each step's inputs, outputs, session model and what it frees (steps whose outputs nothing
    reads are dropped)."""
    from onnx import helper  # noqa: PLC0415

    g = model.graph
    const_nodes = {n.output[0]: n for n in g.node if n.op_type == "Constant" and n.output}
    inits = {t.name: t for t in g.initializer}
    for st in steps:
        if st.kind != "shape":
            made = {o for n in st.graph_nodes for o in n.output if o}
            used = {i for n in st.graph_nodes for i in n.input if i}
            st.inputs = sorted(i for i in used if i not in made and i not in rules.consts)
    later: set[str] = set(graph_outputs)
    kept: list[Step] = []
    for st in reversed(steps):
        if st.kind == "whole":
            st.outputs = [o for n in st.graph_nodes for o in n.output if o and o in later]
        else:
            st.outputs = [o for o in st.outputs if o in later]
        if st.outputs:
            kept.append(st)
            later |= set(st.inputs)
    steps = kept[::-1]
    last_read: dict[str, int] = {}
    for k, st in enumerate(steps):
        for t in st.inputs:
            last_read[t] = k
        for o in st.outputs:
            last_read.setdefault(o, k)
    for t, k in last_read.items():
        if t not in graph_outputs:
            steps[k].free_after.append(t)

    def vi(t: str):   # the rank, no sizes (they change with the slide)
        return helper.make_tensor_value_info(t, helper.np_dtype_to_tensor_dtype(dtypes[t]),
                                             [None] * len(rules.shapes[t]))

    for k, st in enumerate(steps):
        st.out_dtypes = {o: dtypes[o] for o in st.outputs}
        if st.kind == "shape":
            continue
        nodes = st.graph_nodes
        used = {i for n in nodes for i in n.input if i}
        cnodes = [const_nodes[i] for i in sorted(used) if i in const_nodes]
        graph = helper.make_graph(cnodes + list(nodes), f"row_plan_{k}", [vi(t) for t in st.inputs],
                                  [vi(t) for t in st.outputs], [inits[i] for i in sorted(used) if i in inits])
        st.model = helper.make_model(graph, opset_imports=model.opset_import,
                                     ir_version=model.ir_version).SerializeToString()
        if st.kind == "row":
            st.sliced = [i for i in st.inputs if rules.rowsized(i)]
            st.out_dims = {o: tuple(int(d) for d in rules.shapes[o][1:]) for o in st.outputs}
        elif len(nodes) == 1 and (nodes[0].domain, nodes[0].op_type) in ATTENTION_OPS:
            q, out = nodes[0].input[0], nodes[0].output[0]
            made_by_pass = any(s.kind == "row" and q in s.outputs for s in steps[:k])
            if made_by_pass and q in st.free_after and q not in graph_outputs \
                    and rules.shapes[q] == rules.shapes[out] and dtypes[q] == dtypes[out]:
                st.inplace = (out, q)
        st.graph_nodes = []
    return steps
