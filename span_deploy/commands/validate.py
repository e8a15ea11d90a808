"""`span-deploy validate FEATURES.h5`: one slide through every backend, compared with torch (polygraphy)."""
from __future__ import annotations

import sys
from pathlib import Path

import click

REPLAY_HELP = (
    "Replay a saved slide with polygraphy's CLI on the portable graph: `polygraphy run model.onnx --onnxrt "
    "--load-inputs INPUTS.json --load-outputs OUTPUTS.json --atol 1e-4 --rtol 0`. polygraphy's CLI cannot "
    "register an ONNX Runtime custom-op library (its ONNX Runtime sessions take no session options, and "
    "--plugins only dlopens a library), so the plugin graph (ort) replays only through the Python API: "
    "span_deploy.validate.runners.ort_runner with polygraphy's Comparator.")


def _model_backend(path: Path) -> str:
    from ..backends import backend_for_model
    return backend_for_model(path)


def _check_outputs(paths: dict[str, Path | None]) -> None:
    """Every output path writable and distinct, before any work."""
    from ..outputs.atomic import check_output

    given = {k: v for k, v in paths.items() if v is not None}
    seen: dict[Path, str] = {}
    for opt, p in given.items():
        key = p.resolve()
        if key in seen:
            raise click.UsageError(f"{seen[key]} and {opt} name the same file {p}; give two paths")
        seen[key] = opt
        check_output(p)


@click.command("validate", epilog=REPLAY_HELP)
@click.argument("features", type=click.Path(path_type=Path))
@click.option("--checkpoint", required=True, type=click.Path(path_type=Path), help="The reference checkpoint.")
@click.option("--config", "config_path", required=True, type=click.Path(path_type=Path))
@click.option("--model", "models", multiple=True, type=click.Path(path_type=Path),
              help="Deployed model(s) to check: model.onnx (plugin -> ort, portable -> ort-portable) or "
                   "model.engine (trt). Repeatable. Backends without one export the checkpoint on the fly.")
@click.option("--backends", "--backend", "backends", default=None,
              help="Comma-separated: ort,ort-portable,trt (default: every available one; trt needs an engine).")
@click.option("--atol", default=1e-4, show_default=True, type=click.FloatRange(min=0),
              help="Absolute tolerance vs torch.")
@click.option("--rtol", default=0.0, show_default=True, type=click.FloatRange(min=0),
              help="Relative tolerance vs |torch|; an element fails only beyond both (polygraphy's rule).")
@click.option("--plugin-lib", type=click.Path(path_type=Path), help="TensorRT plugin library (trt).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the results as JSON (per backend and output: max abs/rel, ok, tolerances; versions).")
@click.option("--save-inputs", type=click.Path(dir_okay=False, path_type=Path),
              help="Save the slide's engine inputs in polygraphy's format (polygraphy run --load-inputs).")
@click.option("--save-outputs", type=click.Path(dir_okay=False, path_type=Path),
              help="Save every backend's outputs as polygraphy RunResults (polygraphy run --load-outputs).")
@click.option("--verbose", "-v", is_flag=True, help="Show polygraphy's log.")
def command(features: Path, checkpoint: Path, config_path: Path, models: tuple[Path, ...], backends: str | None,
            atol: float, rtol: float, plugin_lib: Path | None, json_out: Path | None, save_inputs: Path | None,
            save_outputs: Path | None, verbose: bool) -> None:
    """Run one slide through torch and every other backend (polygraphy's Comparator); print per-output
    differences vs torch, by the graph's output names.

    An element of an output fails when |x - torch| > --atol and |x - torch| / |torch| > --rtol (so with
    the default --rtol 0: |x - torch| <= atol everywhere), or when it is NaN. Exit status 1 when any
    output of any backend fails.
    """
    from rich.console import Console
    from rich.table import Table

    from ..backends import BACKENDS, available_backends
    from ..errors import BackendError

    _check_outputs({"--json": json_out, "--save-inputs": save_inputs, "--save-outputs": save_outputs})
    avail = available_backends()
    given: dict[str, Path] = {}
    for m in models:
        if not m.is_file():
            raise BackendError(f"model file not found: {m}")
        name = _model_backend(m)
        if name in given:
            raise click.UsageError(f"two --model files for {name}: {given[name]} and {m}")
        given[name] = m
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

    from ..backends import open_backend
    from ..backends.torch import export_cached
    from ..features import read_features
    from ..rulebook import output_names
    from ..validate import compare as C
    from ..validate.runners import TorchRunner, ort_runner, trt_runner

    ref_be = open_backend("torch", checkpoint=checkpoint, config=config_path)
    sf = read_features(features, feat_dim=ref_be.feat_dim)
    feed = C.slide_feed(sf.coords, sf.feats, ref_be.cfg)
    runners = [TorchRunner(ref_be)]
    used: dict[str, str | None] = {}
    for name in wanted:
        if name == "trt":
            path = given["trt"]
            runners.append(trt_runner(path, feed, len(sf.coords), plugin_lib))
        else:
            attention = "plugin" if name == "ort" else "portable"
            path = given.get(name) or export_cached(checkpoint, config_path, attention)
            runners.append(ort_runner(path, attention))
        used[name] = str(path)
    with C.polygraphy_errors(verbose):
        results = C.run_runners(runners, [feed])
        rows = C.compare_runs(results, output_names(ref_be.cfg), atol, rtol)

    console = Console(width=None if sys.stdout.isatty() else 120)   # piped: no truncated names
    table = Table(title=f"{features.name}: {len(sf.coords)} patches, vs torch (atol {atol:g}, rtol {rtol:g})")
    for col in ("backend", "output", "shape", "max abs", "max rel", "status"):
        table.add_column(col, justify="right" if col.startswith("max") else "left")
    failed = []
    for row in rows:
        status = "[green]PASS[/green]" if row.ok else "[red]FAIL[/red]"
        if not row.ok:
            failed.append(f"{row.runner}:{row.output}")
        table.add_row(row.runner, row.output, row.shape, f"{row.max_abs:.3e}", f"{row.max_rel:.3e}", status)
    console.print(table)
    for n in notes:
        console.print(f"note: {n}")
    with C.polygraphy_errors(verbose):
        if save_inputs is not None:
            console.print(f"inputs written to {C.save_inputs([feed], save_inputs)}")
        if save_outputs is not None:
            console.print(f"outputs written to {C.save_outputs(results, save_outputs)}")
    if json_out is not None:
        import json

        from ..outputs.atomic import atomic_write_text

        doc = C.report_doc(rows, features=features, num_patches=len(sf.coords), atol=atol, rtol=rtol,
                           models=used, notes=notes)
        atomic_write_text(json_out, json.dumps(doc, indent=1))
        console.print(f"results written to {json_out}")
    if failed:
        console.print(f"validate: FAILED ({len(failed)} outputs beyond tolerance: {', '.join(failed)})")
        sys.exit(1)     # not click's Exit: the entry point runs click with standalone_mode=False
    console.print(f"validate: PASSED ({', '.join(wanted)} vs torch)")
