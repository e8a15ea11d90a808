"""Host rulebook: all coordinate-dependent index work, numpy only (no torch).

``build_rulebook(raw_coords, config)`` returns a :class:`Rulebook`; ``Rulebook.engine_inputs``
gives the named tables that ONNX Runtime and TensorRT engines take as inputs. ``io`` is the
tensor contract (every engine input and output), TABLES.md its documentation.
"""
from .build import RULEBOOK_VERSION, Rulebook, SortedFeatures, StageRulebook, build_rulebook, rulebook_for
from .coords import normalise, sort_order
from .io import TensorSpec, engine_inputs, engine_outputs, input_names, output_names
from .windows import StageWindows, Windowing

__all__ = ["RULEBOOK_VERSION", "Rulebook", "SortedFeatures", "StageRulebook", "StageWindows", "TensorSpec", "Windowing",
           "build_rulebook", "engine_inputs", "rulebook_for", "engine_outputs", "input_names", "normalise",
           "output_names", "sort_order"]
