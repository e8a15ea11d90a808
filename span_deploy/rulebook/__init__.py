"""Host rulebook: all coordinate-dependent index work, numpy only (no torch).

``build_rulebook(raw_coords, config)`` returns a :class:`Rulebook`; ``Rulebook.engine_inputs``
gives the named tables that ONNX Runtime and TensorRT engines take as inputs (TABLES.md).
"""
from .build import RULEBOOK_VERSION, Rulebook, StageRulebook, build_rulebook, input_names
from .coords import normalise, sort_order
from .windows import StageWindows, Windowing

__all__ = ["RULEBOOK_VERSION", "Rulebook", "StageRulebook", "StageWindows", "Windowing",
           "build_rulebook", "input_names", "normalise", "sort_order"]
