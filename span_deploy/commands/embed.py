"""`span-deploy embed`: slides -> SPAN slide embeddings (<output>/<stem>.npy, float32 (E,))."""
from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from ..outputs.atomic import atomic_path
from .run import expand_slides, load_models, slide_options


@click.command("embed")
@click.argument("slides", nargs=-1, required=True)
@slide_options
def command(slides, model, encoder, output, batch_size, workers, device, mpp, target_mpp,
            tissue_threshold, skip_errors, config_path, threads, progress, resume) -> None:
    """Write the SPAN slide embedding of each of SLIDES. Exit status 1 if any slide failed."""
    from ..errors import SpanDeployError
    from ..pipeline import SlideOptions, embed_slide
    enc, backend = load_models(model, encoder, device, config_path, threads)
    opts = SlideOptions(target_mpp=target_mpp, mpp=mpp, tissue_threshold=tissue_threshold, progress=progress)
    failed = 0
    for path in expand_slides(slides):
        out = Path(output) / f"{path.stem}.npy"
        if resume and out.is_file():
            click.echo(f"{path}: {out} exists (--resume), skipped")
            continue
        try:
            emb = embed_slide(path, enc, backend, batch_size, workers, options=opts)
        except SpanDeployError as e:
            if not skip_errors:
                raise
            failed += 1
            click.echo(f"FAILED {path}: {e}", err=True)
            continue
        with atomic_path(out) as tmp:
            np.save(tmp, emb)
        click.echo(f"{path} -> {out} {emb.shape}")
    if failed:
        raise SystemExit(1)
