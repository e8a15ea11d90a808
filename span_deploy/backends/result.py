"""Graph outputs (by name, from the tensor contract) + the rulebook -> SpanResult."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..config import SpanConfig
from ..errors import BackendError
from ..rulebook import Rulebook, output_names
from .base import SpanResult


def sigmoid(z: np.ndarray) -> np.ndarray:
    """float32 sigmoid, as torch.sigmoid on the official float32 logits."""
    z = np.asarray(z, np.float32)
    return (np.float32(1) / (np.float32(1) + np.exp(-z))).astype(np.float32)


def named_outputs(values: list[np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
    """Pair a runtime's output list with the output names it reported."""
    if len(values) != len(names):
        raise BackendError(f"the engine returned {len(values)} outputs for {len(names)} names")
    return dict(zip(names, values))


def to_result(outs: Mapping[str, np.ndarray], rb: Rulebook, cfg: SpanConfig,
              timings: dict[str, float]) -> SpanResult:
    """Read every contract output by name; patch rows are put back into the input order."""
    missing = [n for n in output_names(cfg) if n not in outs]
    if missing:
        raise BackendError(f"the model has no output(s) {missing}; was it exported by this span-deploy "
                           "for this config? Re-export it with `span-deploy export`")
    rows = rb.patch_rows
    if cfg.task == "segmentation":
        z = np.asarray(outs["patch_logits"], np.float32).reshape(-1)[rows]
        return SpanResult(
            logits=np.zeros(0, np.float32),
            slide_embedding=np.asarray(outs["slide_embedding"], np.float32).reshape(-1),
            stage_globals=[np.asarray(outs[f"stage{s}_globals"], np.float32) for s in range(cfg.num_stages)],
            patch_features=np.asarray(outs["stage0_features"], np.float32)[rows],
            patch_scores=sigmoid(z), stage_sizes=rb.stage_sizes, task=cfg.task, timings=timings,
            patch_logits=z, threshold=cfg.threshold)
    return SpanResult(
        logits=np.asarray(outs["logits"], np.float32).reshape(-1),
        slide_embedding=np.asarray(outs["slide_embedding"], np.float32).reshape(-1),
        stage_globals=[np.asarray(outs[f"stage{s}_globals"], np.float32) for s in range(cfg.num_stages)],
        patch_features=np.asarray(outs["stage0_features"], np.float32)[rows],
        patch_scores=np.asarray(outs["patch_scores"], np.float32)[rows],
        stage_sizes=rb.stage_sizes,
        task=cfg.task,
        timings=timings,
    )
