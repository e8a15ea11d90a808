"""What every backend is and gives back: the Backend protocol and SpanResult (plain data)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from ..config import SpanConfig
from ..rulebook import SortedFeatures


@dataclass
class SpanResult:
    """What one slide gives, whatever the backend.

    Patch-level arrays are in the order of the *input* rows (the caller's order), not the
    model's sorted order.
    """
    logits: np.ndarray                  # (C,) float32: raw head outputs (segmentation: empty)
    slide_embedding: np.ndarray         # (E,) input of the head's last Linear
    stage_globals: list[np.ndarray]     # per stage (G, D_s): global tokens after that stage
    patch_features: np.ndarray          # (N, D): stage-0 output per input patch (pads removed)
    patch_scores: np.ndarray            # (N,) heatmap score per input patch (segmentation: probability)
    stage_sizes: list[int]              # local rows per stage, pads included
    task: str = "classification"
    timings: dict[str, float] = field(default_factory=dict)  # seconds: rulebook, compute, total, ...
    patch_logits: np.ndarray | None = None   # segmentation: (N,) float32 per input patch
    threshold: float | None = None           # segmentation: positive at probability >= threshold


@runtime_checkable
class Backend(Protocol):
    """One engine behind one call. ``open_backend`` returns these; the pipeline, predict, bench
    and validate use nothing else."""

    name: str                 # torch | ort | ort-portable | trt
    cfg: SpanConfig           # the model's config (from the checkpoint, or the export's metadata)
    max_tokens: int | None    # the largest slide (patches) it accepts; None: no fixed limit

    @property
    def feat_dim(self) -> int:
        """F, the patch-feature width the model takes."""
        ...

    def run(self, coords: np.ndarray, feats: np.ndarray | SortedFeatures) -> SpanResult:
        """coords: (N, 2) raw level-0 pixel coordinates on the 224-px grid; feats: (N, F) float32
        in the same order, or SortedFeatures already in the rulebook's order (built from these
        coords; then the backend makes no second copy of them)."""
        ...
