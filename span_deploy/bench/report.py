"""The benchmark report: a JSON document (with its schema and a small validator) and a rich table.

All times in the JSON are seconds, memory in bytes, rates per second; the table shows ms / MiB.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .harness import BackendBench, SizeResult
from .stats import UNSTABLE_COV

SCHEMA_ID = "span-deploy/bench"
SCHEMA_VERSION = 1

_NUM = {"type": "number"}
_NUM_OR_NULL = {"type": ["number", "null"]}
_INT_OR_NULL = {"type": ["integer", "null"]}
_STR_OR_NULL = {"type": ["string", "null"]}

JSON_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://span-deploy/schemas/bench-1.json",
    "title": "span-deploy benchmark report",
    "type": "object",
    "required": ["schema", "schema_version", "created_utc", "machine", "versions", "settings",
                 "gemm", "backends", "warnings"],
    "additionalProperties": False,
    "properties": {
        "schema": {"const": SCHEMA_ID},
        "schema_version": {"const": SCHEMA_VERSION},
        "created_utc": {"type": "string"},
        "machine": {
            "type": "object",
            "required": ["cpu_model", "cpu_logical", "ram_bytes", "gpus"],
            "properties": {
                "cpu_model": {"type": "string"},
                "cpu_logical": _INT_OR_NULL,
                "cpu_usable": _INT_OR_NULL,
                "ram_bytes": {"type": "integer", "minimum": 0},
                "gpus": {"type": "array", "items": {
                    "type": "object", "required": ["name", "driver"],
                    "properties": {"name": {"type": "string"}, "driver": {"type": "string"}}}},
            },
        },
        "versions": {"type": "object", "required": ["python"],
                     "additionalProperties": _STR_OR_NULL},
        "settings": {"type": "object"},
        "gemm": {"type": ["object", "null"],
                 "required": ["device", "library", "dtype", "m", "n", "k", "flops_per_s"],
                 "properties": {"device": {"enum": ["cpu", "cuda"]}, "dtype": {"const": "float32"},
                                "flops_per_s": {"type": "number", "exclusiveMinimum": 0}}},
        "backends": {"type": "array", "items": {"$ref": "#/$defs/backend"}},
        "warnings": {"type": "array", "items": {"type": "string"}},
    },
    "$defs": {
        "summary": {
            "type": "object",
            "required": ["count", "total", "min", "max", "mean", "median", "p90", "p95", "p99",
                         "std", "cov"],
            "additionalProperties": False,
            "properties": {"count": {"type": "integer", "minimum": 1},
                           **{k: {"type": "number", "minimum": 0} for k in
                              ("total", "min", "max", "mean", "median", "p90", "p95", "p99",
                               "std", "cov")}},
        },
        "memory": {
            "type": "object",
            "required": ["start_rss_bytes", "peak_rss_bytes", "peak_device_bytes"],
            "properties": {"start_rss_bytes": {"type": "integer", "minimum": 0},
                           "peak_rss_bytes": {"type": "integer", "minimum": 0},
                           "peak_device_bytes": _INT_OR_NULL},
        },
        "size": {
            "type": "object",
            "required": ["workload", "n_tokens", "feat_dim", "iterations", "wall_s", "timings", "throughput",
                         "stage_sizes", "flops", "achieved_flops_per_s", "gemm_fraction",
                         "memory", "unstable", "error"],
            "additionalProperties": False,
            "properties": {
                "workload": {"type": "string"},
                "n_tokens": {"type": "integer", "minimum": 1},
                "feat_dim": {"type": "integer", "minimum": 1},
                "iterations": {"type": "integer", "minimum": 0},
                "wall_s": {"type": "number", "minimum": 0},
                "timings": {"type": "object", "additionalProperties": {"$ref": "#/$defs/summary"}},
                "throughput": {"type": "object", "required": ["slides_per_s", "tokens_per_s"],
                               "properties": {"slides_per_s": _NUM_OR_NULL,
                                              "tokens_per_s": _NUM_OR_NULL}},
                "stage_sizes": {"type": ["array", "null"], "items": {"type": "integer"}},
                "stages": {"type": ["array", "null"], "items": {"type": "object"}},
                "geometry": {"type": ["object", "null"]},
                "flops": _NUM_OR_NULL,
                "flops_time_basis": {"enum": ["compute", "end_to_end", None]},
                "achieved_flops_per_s": _NUM_OR_NULL,
                "gemm_fraction": _NUM_OR_NULL,
                "memory": {"$ref": "#/$defs/memory"},
                "outputs_finite": {"type": ["boolean", "null"]},
                "unstable": {"type": "array", "items": {"type": "string"}},
                "error": _STR_OR_NULL,
            },
        },
        "backend": {
            "type": "object",
            "required": ["name", "settings", "load_s", "load_memory", "results", "scaling", "error"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string"},
                "settings": {"type": "object"},
                "load_s": _NUM_OR_NULL,
                "load_memory": {"type": "object"},
                "results": {"type": "array", "items": {"$ref": "#/$defs/size"}},
                "scaling": {"type": ["object", "null"],
                            "required": ["per_token_s", "per_token_ratio", "exponent", "superlinear"],
                            "properties": {"per_token_ratio": _NUM, "exponent": _NUM,
                                           "superlinear": {"type": "boolean"},
                                           "per_token_s": {"type": "object",
                                                           "additionalProperties": _NUM}}},
                "error": _STR_OR_NULL,
            },
        },
    },
}


# --------------------------------------------------------------------------- document

def size_to_dict(s: SizeResult) -> dict[str, Any]:
    return {
        "workload": s.workload, "n_tokens": s.n_tokens, "feat_dim": s.feat_dim,
        "iterations": s.iterations,
        "wall_s": s.wall_s, "timings": {k: v.to_dict() for k, v in s.timings.items()},
        "throughput": {"slides_per_s": s.slides_per_s, "tokens_per_s": s.tokens_per_s},
        "stage_sizes": s.stage_sizes, "stages": s.stages, "geometry": s.geometry,
        "flops": s.flops, "flops_time_basis": s.flops_time_basis,
        "achieved_flops_per_s": s.achieved_flops_per_s, "gemm_fraction": s.gemm_fraction,
        "memory": s.memory or {"start_rss_bytes": 0, "peak_rss_bytes": 0, "peak_device_bytes": None},
        "outputs_finite": s.outputs_finite, "unstable": list(s.unstable), "error": s.error,
    }


def backend_to_dict(b: BackendBench) -> dict[str, Any]:
    return {"name": b.backend, "settings": _jsonable(b.settings), "load_s": b.load_s,
            "load_memory": b.load_memory, "results": [size_to_dict(s) for s in b.sizes],
            "scaling": b.scaling, "error": b.error}


def build_report(benches: Sequence[BackendBench], *, machine: dict[str, Any],
                 versions: dict[str, Any], settings: dict[str, Any],
                 gemm: dict[str, Any] | None = None,
                 unstable_cov: float = UNSTABLE_COV) -> dict[str, Any]:
    """The JSON document (a plain dict, valid against JSON_SCHEMA)."""
    doc = {
        "schema": SCHEMA_ID, "schema_version": SCHEMA_VERSION,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine, "versions": versions, "settings": _jsonable(settings),
        "gemm": gemm, "backends": [backend_to_dict(b) for b in benches], "warnings": [],
    }
    doc["warnings"] = report_warnings(doc, unstable_cov)
    return doc


def report_warnings(doc: dict[str, Any], unstable_cov: float = UNSTABLE_COV) -> list[str]:
    out = []
    g = doc.get("gemm")
    if g and g.get("device") == "cpu" and doc["settings"].get("threads") and not g.get("threads_applied"):
        out.append("could not set the BLAS thread count for the gemm reference; its rate uses "
                   f"{g.get('threads')} threads")
    for b in doc["backends"]:
        if b["error"]:
            out.append(f"{b['name']}: {b['error']}")
        for s in b["results"]:
            if s["error"]:
                out.append(f"{b['name']} @ {s['n_tokens']} tokens failed: {s['error']}")
            if s["unstable"]:
                covs = ", ".join(f"{k} {100 * s['timings'][k]['cov']:.1f}%" for k in s["unstable"])
                out.append(f"{b['name']} @ {s['n_tokens']} tokens: unstable timings (coefficient of "
                           f"variation > {100 * unstable_cov:.0f}%): {covs}; close other programs, "
                           "pin threads, or run longer (--duration)")
            if s["outputs_finite"] is False:
                out.append(f"{b['name']} @ {s['n_tokens']} tokens: non-finite logits")
        sc = b["scaling"]
        if sc and sc["superlinear"]:
            out.append(f"{b['name']}: time per token grows {sc['per_token_ratio']:.2f}x from "
                       f"{sc['smallest_tokens']} to {sc['largest_tokens']} tokens (super-linear, "
                       f"exponent {sc['exponent']:.2f})")
    return out


def write_json(doc: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Write atomically: a temp file in the same directory, then os.replace (never half a file)."""
    from ..outputs.atomic import check_output
    p = check_output(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    os.chmod(tmp, 0o644)                      # mkstemp makes 0600; a report is meant to be shared
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=2, allow_nan=False)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _jsonable(x: Any) -> Any:
    """Settings may hold tuples, paths, numpy scalars: make them JSON values."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    if hasattr(x, "item"):
        return x.item()
    return str(x)


# --------------------------------------------------------------------------- validator

def validate(doc: Any, schema: dict[str, Any] | None = None) -> list[str]:
    """Errors of ``doc`` against the subset of JSON Schema 2020-12 that JSON_SCHEMA uses
    (type, const, enum, required, properties, additionalProperties, items, minimum,
    exclusiveMinimum, $ref to #/$defs). Empty list = valid."""
    root = schema or JSON_SCHEMA
    errors: list[str] = []
    _check(doc, root, root, "$", errors)
    return errors


_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def _check(v: Any, s: dict[str, Any], root: dict[str, Any], path: str, errors: list[str]) -> None:
    if "$ref" in s:
        ref = s["$ref"]
        if not ref.startswith("#/$defs/"):
            raise ValueError(f"unsupported $ref {ref}")
        s = root["$defs"][ref.split("/")[-1]]
    if "type" in s:
        types = s["type"] if isinstance(s["type"], list) else [s["type"]]
        if not any(_TYPES[t](v) for t in types):
            errors.append(f"{path}: expected {'/'.join(types)}, got {type(v).__name__}")
            return
    if "const" in s and v != s["const"]:
        errors.append(f"{path}: expected {s['const']!r}, got {v!r}")
    if "enum" in s and v not in s["enum"]:
        errors.append(f"{path}: {v!r} not one of {s['enum']}")
    if _TYPES["number"](v):
        if "minimum" in s and v < s["minimum"]:
            errors.append(f"{path}: {v} < minimum {s['minimum']}")
        if "exclusiveMinimum" in s and v <= s["exclusiveMinimum"]:
            errors.append(f"{path}: {v} <= exclusiveMinimum {s['exclusiveMinimum']}")
    if isinstance(v, dict):
        for k in s.get("required", []):
            if k not in v:
                errors.append(f"{path}: missing required {k!r}")
        props = s.get("properties", {})
        extra = s.get("additionalProperties", True)
        for k, item in v.items():
            if k in props:
                _check(item, props[k], root, f"{path}.{k}", errors)
            elif extra is False:
                errors.append(f"{path}: unexpected property {k!r}")
            elif isinstance(extra, dict):
                _check(item, extra, root, f"{path}.{k}", errors)
    if isinstance(v, list) and "items" in s:
        for i, item in enumerate(v):
            _check(item, s["items"], root, f"{path}[{i}]", errors)


# --------------------------------------------------------------------------- terminal

def render_tables(doc: dict[str, Any]) -> list[Any]:
    """Two rich Tables (latency; throughput and resources), one row per backend and size,
    about 100 columns wide. Times in ms."""
    from rich.table import Table

    lat = Table(title="latency (ms; stage columns are medians)")
    for col in ("backend", "tokens", "iters", "e2e med", "p90", "p99", "CoV %", "rulebook",
                "h2d", "compute"):
        lat.add_column(col, justify="left" if col == "backend" else "right", no_wrap=True)
    thr = Table(title="throughput and resources")
    for col in ("backend", "tokens", "load s", "slides/s", "tokens/s", "peak RSS MiB",
                "+RSS MiB", "GFLOP/s", "% gemm"):
        thr.add_column(col, justify="left" if col == "backend" else "right", no_wrap=True)
    err = "[red]error[/red]"
    for b in doc["backends"]:
        if b["error"] and not b["results"]:
            lat.add_row(b["name"], "-", "-", err, *["-"] * 6)
            thr.add_row(b["name"], "-", "-", err, *["-"] * 5)
            continue
        for i, s in enumerate(b["results"]):
            load = _f(b["load_s"], "{:.2f}") if i == 0 else ""
            tokens = f"{s['n_tokens']:,}"
            if s["error"]:
                lat.add_row(b["name"], tokens, "0", err, *["-"] * 6)
                thr.add_row(b["name"], tokens, load, err, *["-"] * 5)
                continue
            tm = s["timings"]
            e2e = tm.get("end_to_end", {})
            cov = e2e.get("cov")
            cov_txt = _f(None if cov is None else 100 * cov, "{:.1f}")
            if "end_to_end" in s["unstable"]:
                cov_txt = f"[yellow]{cov_txt}[/yellow]"
            gf, frac, mem = s["achieved_flops_per_s"], s["gemm_fraction"], s["memory"]
            lat.add_row(b["name"], tokens, str(s["iterations"]), _ms(e2e.get("median")),
                        _ms(e2e.get("p90")), _ms(e2e.get("p99")), cov_txt,
                        _ms(tm.get("rulebook", {}).get("median")),
                        _ms(tm.get("h2d", {}).get("median")),
                        _ms(tm.get("compute", {}).get("median")))
            thr.add_row(b["name"], tokens, load, _f(s["throughput"]["slides_per_s"], "{:.3g}"),
                        _f(s["throughput"]["tokens_per_s"], "{:,.0f}"),
                        _f(mem["peak_rss_bytes"] / 2**20, "{:,.0f}"),
                        # growth over the RSS at the start of that size (inputs already resident)
                        _f((mem["peak_rss_bytes"] - mem["start_rss_bytes"]) / 2**20, "{:,.0f}"),
                        _f(None if gf is None else gf / 1e9, "{:.1f}"),
                        _f(None if frac is None else 100 * frac, "{:.1f}"))
    return [lat, thr]


def print_report(doc: dict[str, Any], console: Any = None) -> None:
    from rich.console import Console

    console = console or Console()
    m, g = doc["machine"], doc["gemm"]
    gpus = ", ".join(f"{x['name']} (driver {x['driver']})" for x in m.get("gpus") or []) or "none"
    console.print(f"[bold]{m.get('cpu_model')}[/bold], {m.get('cpu_usable') or m.get('cpu_logical')} "
                  f"usable cores, {m.get('ram_bytes', 0) / 2**30:.1f} GiB RAM; GPU: {gpus}")
    if g:
        console.print(f"fp32 gemm reference ({g['device']}, {g['library']}, {g.get('threads')} threads, "
                      f"{g['m']}^3): {g['flops_per_s'] / 1e9:.1f} GFLOP/s")
    for table in render_tables(doc):
        console.print(table)
    for w in doc["warnings"]:
        console.print(f"[yellow]warning:[/yellow] {w}")


def _ms(x: float | None) -> str:
    """Milliseconds with about 3-4 significant digits and a bounded width."""
    if x is None:
        return "-"
    ms = 1e3 * x
    return f"{ms:,.0f}" if ms >= 100 else f"{ms:.1f}" if ms >= 10 else f"{ms:.2f}"


def _f(x: float | None, fmt: str) -> str:
    return "-" if x is None else fmt.format(x)
