"""One slide's feed through polygraphy's Comparator; per-runner, per-output rows vs the reference.

The rule is polygraphy's simple comparison (``SimpleCompareFunc``, formerly
``CompareFunc.simple``) with its elementwise check, each runner against torch (torch is the second
of every pair, so relative differences are relative to |torch|): an element fails when
|x - torch| > atol *and* |x - torch| / |torch| > rtol, or when the difference is NaN (so a NaN or
an infinity in either fails). With the default rtol 0 that is |x - torch| <= atol everywhere.
Shapes must agree; an output a runner lacks fails. Outputs are matched by exact name.

Inputs are saved as ``polygraphy.json.save_json([feed])`` and outputs as ``RunResults.save``
(both atomically), so ``polygraphy run model.onnx --onnxrt --load-inputs inputs.json
--load-outputs outputs.json`` replays the slide.
"""
from __future__ import annotations

import math
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polygraphy
from polygraphy import comparator
from polygraphy.comparator import Comparator, CompareFunc, RunResults
from polygraphy.exception import PolygraphyException
from polygraphy.json import save_json
from polygraphy.logger import G_LOGGER

from ..config import SpanConfig
from ..errors import BackendError
from ..outputs.atomic import atomic_path
from ..rulebook import build_rulebook

REFERENCE = "torch"
CHECK = "elemwise"
REPORT_SCHEMA = "span-deploy.validate"
REPORT_VERSION = 1


def slide_feed(coords: np.ndarray, feats: np.ndarray, cfg: SpanConfig) -> OrderedDict[str, np.ndarray]:
    """The engine inputs of one slide, built on the host exactly as every backend builds them
    (``Rulebook.engine_inputs``; float32 feats: polygraphy casts them for an fp16 model)."""
    return OrderedDict(build_rulebook(coords, cfg).engine_inputs(cfg, feats))


@contextmanager
def polygraphy_errors(verbose: bool = False) -> Iterator[None]:
    """polygraphy's log silenced (our table reports the result) unless ``verbose``; an error it
    raises becomes one BackendError line."""
    try:
        with G_LOGGER.verbosity(G_LOGGER.INFO if verbose else 100):
            yield
    except PolygraphyException as e:
        raise BackendError(f"polygraphy: {' '.join(str(e).split())[:500] or type(e).__name__}") from None


def run_runners(runners: Sequence[Any], feeds: Sequence[dict[str, np.ndarray]]) -> RunResults:
    """``Comparator.run``: every runner over every feed (one feed per slide)."""
    try:
        return Comparator.run(list(runners), data_loader=list(feeds))
    except RuntimeError as e:   # onnxruntime's run-time failures (a bad table, a custom-op error)
        raise BackendError(f"inference failed: {' '.join(str(e).split())[:500] or type(e).__name__}") from None


@dataclass(frozen=True)
class Row:
    runner: str
    output: str
    shape: str
    max_abs: float
    max_rel: float
    ok: bool
    mean_abs: float | None = None


def _exact(name: str, index: int, iter_result) -> list[str] | None:
    """Compare outputs by exact name only (polygraphy's default also matches by position)."""
    return [name] if name in iter_result else None


def compare_func(atol: float, rtol: float):
    """polygraphy's simple comparison (``SimpleCompareFunc``; ``CompareFunc.simple`` before 0.53)."""
    simple = getattr(comparator, "SimpleCompareFunc", None) or CompareFunc.simple
    return simple(atol=atol, rtol=rtol, check_error_stat=CHECK, find_output_func=_exact)


def compare_runs(results: RunResults, expected: Sequence[str], atol: float, rtol: float,
                 reference: str = REFERENCE) -> list[Row]:
    """``Comparator.compare_accuracy`` of every runner against ``reference``; one row per runner
    and expected output (first iteration: validate runs one slide)."""
    names = list(results.keys())
    if reference not in names:
        raise BackendError(f"no {reference} results to compare with")
    ref = names.index(reference)
    others = [i for i in range(len(names)) if i != ref]
    if not others:
        return []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)    # numpy's mean of an empty output
        acc = Comparator.compare_accuracy(results, comparisons=[(i, ref) for i in others],
                                          compare_func=compare_func(atol, rtol))[0]
    ref_out = results[reference][0]
    rows: list[Row] = []
    for i in others:
        name = names[i]
        out = results[name][0]
        verdicts = acc[(name, reference)][0]
        for o in expected:
            if o not in out or o not in ref_out:
                rows.append(Row(name, o, "missing" if o not in out else f"not in {reference}",
                                math.inf, math.inf, False))
                continue
            shape = tuple(np.shape(out[o]))
            v = verdicts.get(o, False)
            if isinstance(v, bool):           # polygraphy refuses to compare different shapes
                rows.append(Row(name, o, f"{shape} vs {tuple(np.shape(ref_out[o]))}", math.inf, math.inf, False))
                continue
            rows.append(Row(name, o, str(shape), _num(v.max_absdiff), _num(v.max_reldiff), bool(v),
                            _num(v.mean_absdiff)))
    return rows


def _num(x: float | None) -> float:
    return math.nan if x is None else float(x)


def _json_num(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def versions() -> dict[str, Any]:
    from ..bench.machine import library_versions

    return {**library_versions(), "polygraphy": polygraphy.__version__}


def report_doc(rows: Sequence[Row], *, features: Path, num_patches: int, atol: float, rtol: float,
               models: dict[str, str | None], notes: Sequence[str] = ()) -> dict[str, Any]:
    """The --json document: per runner and output max_abs, max_rel, ok and the tolerances."""
    runners: dict[str, Any] = {}
    for name, model in models.items():
        runners[name] = {"model": model, "passed": True, "outputs": {}}
    for r in rows:
        d = runners.setdefault(r.runner, {"model": None, "passed": True, "outputs": {}})
        d["outputs"][r.output] = {"shape": r.shape, "max_abs": _json_num(r.max_abs),
                                  "max_rel": _json_num(r.max_rel), "mean_abs": _json_num(r.mean_abs),
                                  "ok": r.ok, "atol": atol, "rtol": rtol}
        d["passed"] = d["passed"] and r.ok
    return {
        "schema": REPORT_SCHEMA, "schema_version": REPORT_VERSION, "features": str(features),
        "patches": int(num_patches), "reference": REFERENCE,
        "tolerances": {"atol": atol, "rtol": rtol, "check_error_stat": CHECK,
                       "rule": "fail where |x - torch| > atol and |x - torch| / |torch| > rtol (or NaN)"},
        "passed": all(r.ok for r in rows), "runners": runners, "notes": list(notes), "versions": versions(),
    }


def save_inputs(feeds: Sequence[dict[str, np.ndarray]], path: str | Path) -> Path:
    """polygraphy's input format (a JSON list of feed dicts), written atomically."""
    with atomic_path(path) as tmp:
        save_json(list(feeds), str(tmp), description="inference inputs")
    return Path(path)


def save_outputs(results: RunResults, path: str | Path) -> Path:
    """polygraphy's ``RunResults`` JSON, written atomically."""
    with atomic_path(path) as tmp:
        results.save(str(tmp))
    return Path(path)
