"""`span-deploy run`: slides -> features, SPAN prediction, heatmap, GeoJSON, JSON + CSV summary."""
from __future__ import annotations

from pathlib import Path

import click

from ..errors import ConfigError
from ..resolution import DEFAULT_TARGET_MPP, MPP_PLAUSIBLE

class FiniteRange(click.FloatRange):
    """click.FloatRange that also refuses nan / inf (a nan passes every comparison)."""

    def convert(self, value, param, ctx):
        import math
        v = super().convert(value, param, ctx)
        if not math.isfinite(v):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return v


SLIDE_SUFFIXES = {".svs", ".ndpi", ".vms", ".vmu", ".scn", ".mrxs", ".tif", ".tiff", ".bif",
                  ".svslide", ".qptiff"}


def expand_slides(items: tuple[str, ...]) -> list[Path]:
    """Files as given; a directory contributes its slide files (sorted, not recursive). Existing
    files that are not slides by their extension (a README caught by a glob) are left out with
    one line on stderr; no slide at all is an error."""
    out: list[Path] = []
    ignored: list[Path] = []
    for s in items:
        p = Path(s)
        if p.is_dir():
            out += sorted(q for q in p.iterdir() if q.suffix.lower() in SLIDE_SUFFIXES)
        elif p.is_file() and p.suffix.lower() not in SLIDE_SUFFIXES:
            ignored.append(p)
        else:
            out.append(p)       # missing files fail per slide, with a clear SlideError
    if ignored:
        click.echo(f"note: {len(ignored)} file(s) are not slides by their extension and are left out: "
                   + ", ".join(str(p) for p in ignored[:5]) + (" ..." if len(ignored) > 5 else ""), err=True)
    if not out:
        raise ConfigError(f"no slide files in {', '.join(items)} (slide extensions: "
                          f"{', '.join(sorted(SLIDE_SUFFIXES))})")
    return out


def resolve_encoder(encoder: str | None, model: str) -> Path:
    """--encoder, else the model directory's encoder, else encoder.onnx next to the model file."""
    from ..deploy.model_dir import default_encoder
    if encoder:
        return Path(encoder)
    found = default_encoder(model)
    if found is not None:
        return found
    if Path(model).is_dir():
        raise ConfigError(f"no --encoder given and the model directory {model} holds none (export it with "
                          "`span-deploy export --target T --encoder E.onnx`, or pass --encoder E.onnx)")
    raise ConfigError(f"no --encoder given and no encoder.onnx next to {model}. Export the patch "
                      "encoder the model was trained with: python -m span_export.encoders.export "
                      "--arch resnet50_trunc --weights W --out encoder.onnx")


def slide_options(f):
    """Options shared by run and embed."""
    opts = [
        click.option("--model", required=True, type=click.Path(exists=True),
                     help="SPAN model: a model directory (`export --target`), an exported model.onnx / "
                          "model.engine, or a checkpoint with --config."),
        click.option("--encoder", type=click.Path(exists=True, dir_okay=False), default=None,
                     help="Patch encoder ONNX (default: the model directory's, or encoder.onnx next to --model)."),
        click.option("--output", "-o", required=True, type=click.Path(file_okay=False)),
        click.option("--batch-size", default=64, show_default=True, type=click.IntRange(1)),
        click.option("--workers", default=2, show_default=True, type=click.IntRange(0),
                     help="Tile-reading threads."),
        click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True),
        click.option("--mpp", type=FiniteRange(*MPP_PLAUSIBLE), default=None,
                     help=f"Level-0 µm/px for slides without resolution metadata ({MPP_PLAUSIBLE[0]:g}-"
                          f"{MPP_PLAUSIBLE[1]:g})."),
        click.option("--target-mpp", type=FiniteRange(*MPP_PLAUSIBLE), default=DEFAULT_TARGET_MPP, show_default=True,
                     help=f"Tile resolution in µm/px (0.5 = 20x; {MPP_PLAUSIBLE[0]:g}-{MPP_PLAUSIBLE[1]:g})."),
        click.option("--tissue-threshold", type=click.FloatRange(0, 1), default=0.25, show_default=True,
                     help="Fraction of a tile's area (0-1) that must be tissue for the tile to be used."),
        click.option("--threads", type=click.IntRange(1), default=None,
                     help="Intra-op threads of the encoder and SPAN sessions [default: the runtime's]."),
        click.option("--progress/--no-progress", default=True, show_default=True),
        click.option("--resume", is_flag=True, help="Skip slides already done with the same settings."),
        click.option("--skip-errors", is_flag=True, help="Record a failing slide and go on."),
        click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), default=None,
                     help="The official config YAML, when --model is a checkpoint (exported on the fly)."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors")


def load_models(model: str, encoder: str | None, device: str, config: str | None = None,
                threads: int | None = None):
    """The patch encoder and the SPAN backend. A checkpoint (with --config) is exported once to the
    cache and run on ONNX Runtime: the custom-op variant when its library is built, else portable."""
    from ..backends import available_backends, open_backend          # lazy: backends may pull heavier deps
    from ..encoders.runner import OnnxEncoder
    enc = OnnxEncoder(resolve_encoder(encoder, model), device=device, threads=threads)
    if Path(model).suffix.lower() in CHECKPOINT_SUFFIXES:
        if config is None:
            raise click.UsageError(f"{model} is a checkpoint: give its official config with --config "
                                   "(or pass an exported model.onnx / model.engine)")
        name = "ort" if "ort" in available_backends() else "ort-portable"
        return enc, open_backend(name, checkpoint=model, config=config, device=device, threads=threads)
    if config is not None:
        raise click.UsageError("--config is only for a checkpoint --model; an exported model carries its config")
    return enc, open_backend(model, device=device, threads=threads)


@click.command("run")
@click.argument("slides", nargs=-1, required=True)
@slide_options
@click.option("--threshold", type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True), default=None,
              help="Segmentation models: tile positive at probability >= this [default: the model's].")
def command(slides, model, encoder, output, batch_size, workers, device, mpp, target_mpp,
            tissue_threshold, skip_errors, config_path, threads, progress, resume, threshold) -> None:
    """Run SPAN on SLIDES (files or directories). Exit status 1 if any slide failed."""
    from ..pipeline import SlideOptions, run_slides
    enc, backend = load_models(model, encoder, device, config_path, threads)
    if threshold is not None and backend.cfg.task != "segmentation":
        raise click.UsageError(f"--threshold applies to segmentation models; {model} is {backend.cfg.task}")
    opts = SlideOptions(target_mpp=target_mpp, mpp=mpp, tissue_threshold=tissue_threshold,
                        progress=progress, threshold=threshold)
    records = run_slides(expand_slides(slides), enc, backend, output, batch_size, workers,
                         skip_errors=skip_errors, resume=resume, options=opts)
    counts = {s: sum(r["status"] == s for r in records) for s in ("ok", "skipped", "failed")}
    click.echo(f"{counts['ok']} ok, {counts['skipped']} skipped (resume), {counts['failed']} failed; "
               f"summary: {Path(output) / 'summary.csv'}")
    for r in records:
        if r["status"] == "failed":
            click.echo(f"FAILED {r['slide']}: {r['error']}", err=True)
    if counts["failed"]:
        raise SystemExit(1)
