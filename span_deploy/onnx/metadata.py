"""Read the span-deploy metadata of an exported ONNX model (no torch)."""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import SpanDeployError

METADATA_KEY = "span_deploy"


def read_metadata(path: str | Path) -> dict:
    """The span-deploy metadata of an exported model (config, rulebook version, names)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    for p in proto.metadata_props:
        if p.key == METADATA_KEY:
            return json.loads(p.value)
    raise SpanDeployError(f"{path}: not a span-deploy export (no '{METADATA_KEY}' metadata); export it with "
                          "`span-deploy export`")
