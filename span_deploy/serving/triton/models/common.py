"""What the Python-backend models share: the stub's utils module, config parameters, errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def pb():
    """``triton_python_backend_utils``: exists only inside Triton's Python-backend stub."""
    import triton_python_backend_utils

    return triton_python_backend_utils


class RequestError(ValueError):
    """A malformed request: answered with an error response; the model keeps serving."""


class ModelArgs:
    """``initialize(args)``: the model config, its parameters, version dir and instance kind."""

    def __init__(self, args: dict):
        self.config = json.loads(args["model_config"])
        self.name = self.config["name"]
        self.version_dir = Path(args["model_repository"]) / str(args["model_version"])
        self.kind = args.get("model_instance_kind", "CPU")
        self.device_id = int(args.get("model_instance_device_id", 0) or 0)

    def param(self, key: str, default: str | None = None) -> str | None:
        v = self.config.get("parameters", {}).get(key, {}).get("string_value")
        return default if v in (None, "") else v

    @property
    def device(self) -> str:
        return "cuda" if self.kind == "GPU" else "cpu"

    @property
    def threads(self) -> int | None:
        t = self.param("threads")
        return int(t) if t and int(t) > 0 else None


def error_response(message: str):
    u = pb()
    return u.InferenceResponse(output_tensors=[], error=u.TritonError(message))


def input_array(request, name: str) -> np.ndarray:
    t = pb().get_input_tensor_by_name(request, name)
    if t is None:
        raise RequestError(f"missing input {name}")
    return t.as_numpy()


def check_slide(feats_or_tiles: np.ndarray, coords: np.ndarray, what: str) -> None:
    """One slide: N > 0 rows, coords (N, 2), rows agree."""
    n = feats_or_tiles.shape[0]
    if n == 0:
        raise RequestError(f"empty slide: {what} has 0 rows")
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise RequestError(f"COORDS must be (N, 2), got {tuple(coords.shape)}")
    if coords.shape[0] != n:
        raise RequestError(f"{what} has {n} rows but COORDS has {coords.shape[0]}")


def result_tensors(r, task: str) -> list:
    """SpanResult -> the served outputs (names in the config)."""
    u = pb()
    out = [u.Tensor("LOGITS", np.asarray(r.logits, np.float32).reshape(-1)),
           u.Tensor("SLIDE_EMBEDDING", np.asarray(r.slide_embedding, np.float32).reshape(-1)),
           u.Tensor("PATCH_SCORES", np.asarray(r.patch_scores, np.float32).reshape(-1))]
    if task == "segmentation":
        out.append(u.Tensor("PATCH_PROBABILITIES", np.asarray(r.patch_scores, np.float32).reshape(-1)))
        out.append(u.Tensor("PATCH_LOGITS", np.asarray(r.patch_logits, np.float32).reshape(-1)))
    return out
