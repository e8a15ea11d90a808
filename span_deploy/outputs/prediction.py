"""The JSON prediction of one slide: logits plus task outputs computed as the official evaluation does."""
from __future__ import annotations

import numpy as np

from ..backends.base import SpanResult


def survival_outputs(logits: np.ndarray) -> dict[str, object]:
    """hazards = sigmoid, survival = cumprod(1 - hazards), risk = -sum(survival); float32 like the trainer."""
    z = np.asarray(logits, np.float32)
    hazards = (np.float32(1) / (np.float32(1) + np.exp(-z))).astype(np.float32)
    surv = np.cumprod(np.float32(1) - hazards, dtype=np.float32)
    return {"hazards": hazards.tolist(), "survival": surv.tolist(), "risk": float(-surv.sum(dtype=np.float32))}


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, np.float64)
    e = np.exp(z - z.max())
    return e / e.sum()


def segmentation_outputs(r: SpanResult, threshold: float | None = None) -> dict[str, object]:
    """Per-patch logits, sigmoid probabilities and 0/1 labels at the threshold, input row order."""
    t = float(r.threshold if threshold is None else threshold)
    z = np.asarray(r.patch_logits, np.float32)
    p = np.asarray(r.patch_scores, np.float32)      # sigmoid(z), float32 as the official evaluation
    return {"patch_logits": z.tolist(), "patch_probabilities": p.tolist(),
            "patch_labels": (p >= np.float32(t)).astype(int).tolist(), "threshold": t,
            "num_positive": int((p >= np.float32(t)).sum()), "num_patches": int(z.shape[0])}


def prediction_dict(r: SpanResult, threshold: float | None = None) -> dict[str, object]:
    """The JSON of one slide. ``threshold`` overrides a segmentation model's own."""
    if r.task == "segmentation":
        out: dict[str, object] = {"task": r.task, **segmentation_outputs(r, threshold)}
        out["slide_embedding"] = [float(x) for x in r.slide_embedding]
        out["stage_sizes"] = [int(s) for s in r.stage_sizes]
        out["timings"] = {k: round(float(v), 6) for k, v in r.timings.items()}
        return out
    out = {"task": r.task, "logits": [float(x) for x in r.logits]}
    if r.task == "survival":
        out.update(survival_outputs(r.logits))
    else:
        p = softmax(r.logits)
        out["probabilities"] = p.tolist()
        out["predicted_class"] = int(np.argmax(p))
    out["slide_embedding"] = [float(x) for x in r.slide_embedding]
    out["num_patches"] = int(r.patch_scores.shape[0])
    out["stage_sizes"] = [int(s) for s in r.stage_sizes]    # rows per stage incl. the padder's pad rows
    out["stage_global_tokens"] = [g.astype(float).tolist() for g in r.stage_globals]
    out["timings"] = {k: round(float(v), 6) for k, v in r.timings.items()}
    return out
