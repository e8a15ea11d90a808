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


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _metadata_props(path: str | Path) -> list[tuple[str, str]]:
    """ModelProto.metadata_props (field 14) straight from the protobuf wire format, skipping the
    graph's bytes: a 40 MB export costs a file read instead of a full parse of every weight
    (``onnx.load`` took ~0.1 s per call here, and a model is opened with two reads)."""
    buf = Path(path).read_bytes()
    i, n, props = 0, len(buf), []
    while i < n:
        key, i = _varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            _, i = _varint(buf, i)
        elif wire == 2:
            size, i = _varint(buf, i)
            if i + size > n:
                raise ValueError("truncated field")
            if field == 14:
                props.append(_string_pair(buf[i:i + size]))
            i += size
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            raise ValueError(f"wire type {wire}")
    if i != n or not buf:
        raise ValueError("truncated")
    return props


def _string_pair(entry: bytes) -> tuple[str, str]:
    i, kv = 0, {1: "", 2: ""}
    while i < len(entry):
        key, i = _varint(entry, i)
        if key & 7 != 2:
            raise ValueError("metadata entry")
        size, i = _varint(entry, i)
        kv[key >> 3] = entry[i:i + size].decode("utf-8")
        i += size
    return kv[1], kv[2]


def read_metadata(path: str | Path) -> dict:
    """The span-deploy metadata of an exported model (config, rulebook version, names)."""
    try:
        props = _metadata_props(path)
    except (OSError, ValueError, IndexError, UnicodeDecodeError) as e:
        if isinstance(e, OSError) and not Path(path).is_file():
            raise SpanDeployError(f"model file not found: {path}") from None
        raise SpanDeployError(f"{path}: not a readable ONNX file ({type(e).__name__}); pass an .onnx "
                              "written by `span-deploy export`") from None
    for key, value in props:
        if key == METADATA_KEY:
            try:
                meta = json.loads(value)
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
