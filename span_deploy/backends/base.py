"""One interface over several engines: torch, ort, ort-portable, trt."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass
class SpanResult:
    """What one slide gives, whatever the backend.

    Patch-level arrays are in the order of the *input* rows (the caller's order), not the
    model's sorted order.
    """
    logits: np.ndarray                  # (C,) float32: raw head outputs
    slide_embedding: np.ndarray         # (E,) input of the head's last Linear
    stage_globals: list[np.ndarray]     # per stage (G, D_s): global tokens after that stage
    patch_features: np.ndarray          # (N, D): stage-0 output per input patch (pads removed)
    patch_scores: np.ndarray            # (N,) heatmap score per input patch
    stage_sizes: list[int]              # local rows per stage, pads included
    task: str = "classification"
    timings: dict[str, float] = field(default_factory=dict)  # seconds: rulebook, inference, ...

    def summary(self) -> dict:
        """The JSON-ready prediction (probabilities or survival outputs derived from logits)."""
        from ..outputs.prediction import prediction_dict
        return prediction_dict(self)


class Backend(Protocol):
    name: str

    def run(self, coords: np.ndarray, feats: np.ndarray) -> SpanResult:
        """coords: (N, 2) raw pixel coordinates on the 224-px grid; feats: (N, F) float32."""
        ...
