"""Per-slide result JSON and the run's CSV summary (both written atomically)."""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_write_text

SUMMARY_FIELDS = ("slide", "status", "n_tiles", "feature_dim", "prediction", "seconds",
                  "result_json", "error_type", "error")


def _jsonable(o: Any) -> Any:
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def write_slide_json(path: str | os.PathLike, record: dict[str, Any]) -> Path:
    return atomic_write_text(path, json.dumps(record, indent=2, default=_jsonable) + "\n")


def read_slide_json(path: str | os.PathLike) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def _prediction_cell(rec: dict[str, Any]) -> str:
    pred = rec.get("prediction")
    if pred is None:
        return ""
    if isinstance(pred, dict):
        for k in ("label", "predicted_class", "risk"):
            if k in pred:
                return str(pred[k])
    return json.dumps(pred, default=_jsonable)[:200]


def write_summary_csv(path: str | os.PathLike, records: list[dict[str, Any]]) -> Path:
    """One row per slide: ok / skipped (resume) / failed, with the error and why."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=SUMMARY_FIELDS, extrasaction="ignore")
    w.writeheader()
    for r in records:
        row = {k: r.get(k, "") for k in SUMMARY_FIELDS}
        row["prediction"] = _prediction_cell(r)
        if isinstance(row["seconds"], float):
            row["seconds"] = f"{row['seconds']:.2f}"
        w.writerow(row)
    return atomic_write_text(path, buf.getvalue())
