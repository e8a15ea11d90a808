"""`span-deploy predict FEATURES.h5`: one slide's prediction as JSON."""
from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("predict")
@click.argument("features", type=click.Path(path_type=Path))
@click.option("--checkpoint", type=click.Path(path_type=Path), help="Official SPAN checkpoint (.pt / .safetensors).")
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="Official composed config YAML.")
@click.option("--model", type=click.Path(path_type=Path), help="An exported model.onnx / model.engine instead.")
@click.option("--backend", default=None, type=click.Choice(["torch", "ort", "ort-portable", "trt"]),
              help="Default: from --model (engine -> trt, ONNX -> ort / ort-portable by its attention), "
                   "else torch.")
@click.option("--device", default="cpu", type=click.Choice(["cpu", "cuda"]), show_default=True)
@click.option("--threads", type=int, default=None, help="Intra-op threads (default: the runtime's).")
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Write the JSON here (default: stdout).")
@click.option("--plugin-lib", type=click.Path(path_type=Path), help="TensorRT plugin library (trt backend).")
@click.option("--threshold", type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True), default=None,
              help="Segmentation: a patch is positive at probability >= this [default: the config's "
                   "segmentation.threshold].")
def command(features: Path, checkpoint: Path | None, config_path: Path | None, model: Path | None,
            backend: str | None, device: str, threads: int | None, output: Path | None, plugin_lib: Path | None,
            threshold: float | None) -> None:
    """Predict one slide from its feature file (official feats/cords or TRIDENT features/coords h5)."""
    import time
    t_start = time.perf_counter()
    from ..backends import open_backend
    from ..features import FeatureFile
    from ..outputs.atomic import atomic_write_bytes
    from ..outputs.prediction import prediction_dict

    if backend is None and model is None:
        backend = "torch"
    if output is not None:
        from ..outputs.atomic import check_output
        check_output(output)
    if threshold is not None and checkpoint is None and model is None:
        raise click.UsageError("--threshold needs a segmentation model (--model or --checkpoint/--config)")
    t_imports = time.perf_counter()
    be = open_backend(backend, model=model, checkpoint=checkpoint, config=config_path, device=device,
                      threads=threads, plugin_lib=plugin_lib, single_slide=True)
    t_open = time.perf_counter()
    if threshold is not None and be.cfg.task != "segmentation":
        raise click.UsageError(f"--threshold applies to segmentation models; this one is {be.cfg.task}")
    from ..errors import RulebookError
    from ..rulebook import build_rulebook
    # coordinates first, then the features read straight into the rulebook's row order when the
    # backend runs: the slide's features are in memory once (not a file-order copy beside the
    # model's input), or, where the graph's stem is split off (ORT on the CPU), never whole
    with FeatureFile(features, feat_dim=be.feat_dim) as ff:
        t_coords = time.perf_counter()
        try:
            rb = build_rulebook(ff.coords, be.cfg)
        except RulebookError as e:   # e.g. two patches in one grid cell: say which file
            raise RulebookError(f"{features}: {e}") from None
        t_rulebook = time.perf_counter()
        streamed = getattr(be, "stem", None) is not None
        coords, sorted_feats = ff.coords, (ff.sorted_reader(rb) if streamed else ff.read_sorted(rb))
        t_read = time.perf_counter()
        result = be.run(coords, sorted_feats)
        del sorted_feats
    result.timings["rulebook"] = round(result.timings.get("rulebook", 0.0) + t_rulebook - t_coords, 6)
    # reading happens inside run (streamed): the backend says how long it took
    t_read += result.timings.pop("read_features", 0.0)
    doc = {"slide": str(features), "backend": be.name, **prediction_dict(result, threshold)}
    # The whole command's phases (seconds), so what is not compute shows: the interpreter's own
    # start-up is not included (time it with `time span-deploy ...`).
    doc["timings"].update({"imports": round(t_imports - t_start, 6), "open_model": round(t_open - t_imports, 6),
                           "read_features": round(t_read - t_open - (t_rulebook - t_coords), 6)})
    text = json.dumps(doc, indent=1)
    if output is None:
        click.echo(text)
    else:
        atomic_write_bytes(output, text.encode())
