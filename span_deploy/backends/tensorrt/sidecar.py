"""model.engine.json: the span-deploy metadata of an engine (TensorRT engines carry none of ours)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import BackendError

if TYPE_CHECKING:
    from .build import BuildPlan
    from .profiles import Profile

SIDECAR_SUFFIX = ".json"
SIDECAR_FORMAT = 1


def sidecar_path(engine_path: str | Path) -> Path:
    p = Path(engine_path)
    return p.with_name(p.name + SIDECAR_SUFFIX)


def sidecar_doc(meta: dict, profile: "Profile", plan: "BuildPlan", trt_version: str, engine: bytes) -> dict:
    return {
        "format": SIDECAR_FORMAT, "span_deploy": meta, "profile": profile.to_dict(),
        "max_tokens": profile.max_tokens, "precision": plan.precision, "tensorrt": trt_version,
        "engine_sha256": hashlib.sha256(engine).hexdigest(),
    }


def read_sidecar(engine_path: str | Path, engine: bytes | None = None) -> dict:
    """The sidecar of an engine (metadata for the rulebook); checks it belongs to this engine."""
    side = sidecar_path(engine_path)
    if not side.is_file():
        raise BackendError(f"{engine_path}: its metadata file {side} is missing; build engines with "
                           "`span-deploy build-engine`, which writes both")
    try:
        doc = json.loads(side.read_text())
    except ValueError as e:
        raise BackendError(f"{side}: not valid JSON ({e})") from None
    if doc.get("format") != SIDECAR_FORMAT:
        raise BackendError(f"{side}: unknown sidecar format {doc.get('format')!r}; rebuild the engine")
    if engine is not None and doc.get("engine_sha256") != hashlib.sha256(engine).hexdigest():
        raise BackendError(f"{side} was written for another engine than {engine_path}; rebuild the engine")
    return doc
