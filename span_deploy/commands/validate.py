"""`span-deploy validate FEATURES.h5`: one slide through every backend, compared with torch."""
from __future__ import annotations

from pathlib import Path

import click

OUTPUTS = ("logits", "slide_embedding", "stage_globals", "patch_features", "patch_scores")


def compare(ref, other, atol: float, rtol: float = 0.0) -> list[dict]:
    """Rows of (output, shape, max abs, max rel, ok) for two SpanResults; ok iff every element has
    |a - b| <= atol + rtol * |ref| (numpy.allclose semantics) and the shapes agree."""
    import numpy as np

    if ref.task == "segmentation":
        pairs = [("patch_logits", ref.patch_logits, other.patch_logits)]
    else:
        pairs = [("logits", ref.logits, other.logits)]
    pairs += [("slide_embedding", ref.slide_embedding, other.slide_embedding)]
    pairs += [(f"stage{s}_globals", a, b) for s, (a, b) in enumerate(zip(ref.stage_globals, other.stage_globals))]
    pairs += [("patch_features", ref.patch_features, other.patch_features),
              ("patch_scores", ref.patch_scores, other.patch_scores)]
    rows = []
    for name, a, b in pairs:
        a = np.asarray(a, np.float64)
        b = np.asarray(b, np.float64)
        if a.shape != b.shape:
            rows.append({"output": name, "shape": f"{a.shape} vs {b.shape}", "max_abs": float("inf"),
                         "max_rel": float("inf"), "ok": False})
            continue
        if a.size == 0:
            rows.append({"output": name, "shape": str(a.shape), "max_abs": 0.0, "max_rel": 0.0, "ok": True})
            continue
        d = np.abs(b - a)
        rel = d / np.maximum(np.abs(a), 1e-12)
        finite = bool(np.isfinite(b).all())
        ok = finite and bool((d <= atol + rtol * np.abs(a)).all())
        rows.append({"output": name, "shape": str(tuple(a.shape)), "max_abs": float(d.max()),
                     "max_rel": float(rel.max()), "ok": ok})
    return rows


def _model_backend(path: Path) -> str:
    from ..backends import backend_for_model
    return backend_for_model(path)


@click.command("validate")
@click.argument("features", type=click.Path(path_type=Path))
@click.option("--checkpoint", required=True, type=click.Path(path_type=Path), help="The reference checkpoint.")
@click.option("--config", "config_path", required=True, type=click.Path(path_type=Path))
@click.option("--model", "models", multiple=True, type=click.Path(path_type=Path),
              help="Deployed model(s) to check: model.onnx (plugin -> ort, portable -> ort-portable) or "
                   "model.engine (trt). Repeatable. Backends without one export the checkpoint on the fly.")
@click.option("--backends", "--backend", "backends", default=None,
              help="Comma-separated: ort,ort-portable,trt (default: every available one; trt needs an engine).")
@click.option("--atol", default=1e-4, show_default=True, type=float)
@click.option("--rtol", default=0.0, show_default=True, type=float)
@click.option("--plugin-lib", type=click.Path(path_type=Path), help="TensorRT plugin library (trt).")
def command(features: Path, checkpoint: Path, config_path: Path, models: tuple[Path, ...], backends: str | None,
            atol: float, rtol: float, plugin_lib: Path | None) -> None:
    """Run one slide through torch and every other backend; print per-output differences vs torch.

    Exit status 1 when any output of any backend differs beyond --atol (+ --rtol * |torch|).
    """
    from rich.console import Console
    from rich.table import Table

    from ..backends import BACKENDS, available_backends, open_backend
    from ..errors import BackendError
    from ..features import read_features

    avail = available_backends()
    given: dict[str, Path] = {}
    for m in models:
        if not m.is_file():
            raise BackendError(f"model file not found: {m}")
        given[_model_backend(m)] = m
    if backends:
        wanted = [b.strip() for b in backends.split(",") if b.strip()]
        bad = [b for b in wanted if b not in BACKENDS or b == "torch"]
        if bad:
            raise click.UsageError(f"--backends: unknown {bad}; choose from ort, ort-portable, trt")
        missing = [b for b in wanted if b not in avail]
        if missing:
            raise BackendError(f"backends not available here: {', '.join(missing)} (available: {', '.join(avail)})")
    else:
        wanted = [b for b in avail if b != "torch"]
    notes = []
    if "trt" in wanted and "trt" not in given:
        if backends:
            raise BackendError("--backends trt needs an engine: --model model.engine")
        wanted.remove("trt")
        notes.append("trt skipped: no --model model.engine given")
    if not wanted:
        raise BackendError("no backend to compare with torch (available: " + ", ".join(avail) + ")")

    console = Console()
    ref_be = open_backend("torch", checkpoint=checkpoint, config=config_path)
    sf = read_features(features, feat_dim=ref_be.feat_dim)
    ref = ref_be.run(sf.coords, sf.feats)
    table = Table(title=f"{features.name}: {len(sf.coords)} patches, vs torch (atol {atol:g}, rtol {rtol:g})")
    for col in ("backend", "output", "shape", "max abs", "max rel", "status"):
        table.add_column(col, justify="right" if col.startswith("max") else "left")
    failed = []
    for name in wanted:
        be = open_backend(name, model=given.get(name), checkpoint=checkpoint, config=config_path,
                          plugin_lib=plugin_lib)
        res = be.run(sf.coords, sf.feats)
        for row in compare(ref, res, atol, rtol):
            status = "[green]PASS[/green]" if row["ok"] else "[red]FAIL[/red]"
            if not row["ok"]:
                failed.append(f"{name}:{row['output']}")
            table.add_row(name, row["output"], row["shape"], f"{row['max_abs']:.3e}", f"{row['max_rel']:.3e}", status)
    console.print(table)
    for n in notes:
        console.print(f"note: {n}")
    if failed:
        console.print(f"validate: FAILED ({len(failed)} outputs beyond tolerance: {', '.join(failed)})")
        raise click.exceptions.Exit(1)
    console.print(f"validate: PASSED ({', '.join(wanted)} vs torch)")
