"""The span-deploy metadata of an exported ONNX model: made by the exporter, read by every runtime.

It carries what a deployed model needs instead of its checkpoint: the config, the rulebook version
the graph's inputs follow, the attention variant, the precision and the contract's names.
"""
from __future__ import annotations

import json
from pathlib import Path

from .config import SpanConfig
from .errors import SpanDeployError
from .rulebook import RULEBOOK_VERSION, input_names, output_names

METADATA_KEY = "span_deploy"
METADATA_FORMAT = 1
ATTENTIONS = ("plugin", "portable")


def make_metadata(cfg: SpanConfig, attention: str, precision: str) -> dict:
    """The metadata dict an export stores under METADATA_KEY (as JSON)."""
    if attention not in ATTENTIONS:
        raise SpanDeployError(f"--attention must be plugin or portable, not {attention!r}")
    return {
        "format": METADATA_FORMAT, "rulebook_version": RULEBOOK_VERSION, "attention": attention,
        "precision": precision, "config": cfg.to_dict(), "num_outputs": cfg.num_outputs,
        "input_names": input_names(cfg), "output_names": output_names(cfg),
    }


def read_metadata(path: str | Path) -> dict:
    """The span-deploy metadata of an exported model (config, rulebook version, names)."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - protobuf raises its own DecodeError types
        raise SpanDeployError(f"{path}: not a readable ONNX file ({type(e).__name__}); pass an .onnx "
                              "written by `span-deploy export`") from None
    for p in proto.metadata_props:
        if p.key == METADATA_KEY:
            try:
                meta = json.loads(p.value)
            except ValueError:
                meta = None
            if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict) or \
                    meta.get("attention") not in ATTENTIONS or not isinstance(meta.get("input_names"), list):
                raise SpanDeployError(f"{path}: its span-deploy metadata is damaged (not the JSON `span-deploy "
                                      "export` writes); re-export the model")
            return meta
    raise SpanDeployError(f"{path}: not a span-deploy export (no '{METADATA_KEY}' metadata); export it with "
                          "`span-deploy export`")


def check_rulebook_version(meta: dict, where: str | Path, rebuild: str = "re-export the model") -> None:
    if meta.get("rulebook_version") != RULEBOOK_VERSION:
        raise SpanDeployError(f"{where}: made for rulebook version {meta.get('rulebook_version')}, this "
                              f"span-deploy builds version {RULEBOOK_VERSION}; {rebuild}")


def config_from_metadata(meta: dict, where: str | Path) -> SpanConfig:
    """The SpanConfig an export carries; a damaged one is a clear error, not a TypeError."""
    try:
        return SpanConfig.from_dict(meta["config"])
    except (TypeError, KeyError, ValueError, AttributeError) as e:
        raise SpanDeployError(f"{where}: the model config in its metadata is damaged ({type(e).__name__}: "
                              f"{str(e)[:100]}); re-export the model") from None
