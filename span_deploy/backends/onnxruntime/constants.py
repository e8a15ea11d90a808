"""An ONNX graph's constant tensors (initializers, Constant nodes) and node attributes, as the
graph edits of this backend (stem.py, row_plan.py) read them: every constant's shape and dtype,
and the values of the small ones only (shapes, axes, scalars; a weight is never copied)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SMALL_ELEMENTS = 64


def attr(node, name: str, default):
    """A node attribute's value, or ``default``."""
    for a in node.attribute:
        if a.name == name:
            from onnx import helper  # noqa: PLC0415

            return helper.get_attribute_value(a)
    return default


@dataclass
class Constants:
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    dtypes: dict[str, np.dtype] = field(default_factory=dict)
    values: dict[str, np.ndarray] = field(default_factory=dict)   # the small ones

    def __contains__(self, name: str) -> bool:
        return name in self.shapes


def graph_constants(g) -> Constants:
    from onnx import helper, numpy_helper  # noqa: PLC0415

    c = Constants()
    for t in g.initializer:
        c.shapes[t.name] = tuple(int(d) for d in t.dims)
        c.dtypes[t.name] = np.dtype(helper.tensor_dtype_to_np_dtype(t.data_type))
        if int(np.prod(t.dims, dtype=np.int64)) <= SMALL_ELEMENTS:
            c.values[t.name] = numpy_helper.to_array(t)
    for n in g.node:
        if n.op_type == "Constant" and n.output:
            t = attr(n, "value", None)
            if t is not None:
                v = numpy_helper.to_array(t)
                c.shapes[n.output[0]], c.dtypes[n.output[0]] = tuple(v.shape), v.dtype
                if v.size <= SMALL_ELEMENTS:
                    c.values[n.output[0]] = v
    return c
