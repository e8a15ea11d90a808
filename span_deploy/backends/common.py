"""Turn raw graph outputs + the rulebook into a SpanResult (shared by every backend)."""
from __future__ import annotations

import numpy as np

from ..config import SpanConfig
from ..rulebook import Rulebook
from .base import SpanResult


def to_result(outs: list[np.ndarray], rb: Rulebook, cfg: SpanConfig, timings: dict[str, float]) -> SpanResult:
    s = cfg.num_stages
    rows = rb.patch_rows
    return SpanResult(
        logits=np.asarray(outs[0], np.float32).reshape(-1),
        slide_embedding=np.asarray(outs[1], np.float32).reshape(-1),
        stage_globals=[np.asarray(o, np.float32) for o in outs[2:2 + s]],
        patch_features=np.asarray(outs[2 + s], np.float32)[rows],
        patch_scores=np.asarray(outs[3 + s], np.float32)[rows],
        stage_sizes=rb.stage_sizes,
        task=cfg.task,
        timings=timings,
    )
