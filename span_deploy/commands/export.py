"""`span-deploy export`: checkpoint + config -> ONNX (plugin or portable attention), via the export side."""
from __future__ import annotations

from pathlib import Path

import click


@click.command("export")
@click.option("--checkpoint", required=True, type=click.Path(path_type=Path))
@click.option("--config", "config_path", required=True, type=click.Path(path_type=Path))
@click.option("--output", "-o", required=True, type=click.Path(path_type=Path), help="model.onnx to write.")
@click.option("--attention", default="plugin", type=click.Choice(["plugin", "portable"]), show_default=True,
              help="plugin: one SparseWindowAttention node per window attention; portable: standard ops only.")
@click.option("--opset", default=17, show_default=True, type=click.IntRange(14, 23))
@click.option("--fp16", is_flag=True, help="fp16 weights and activations (LayerNorm and softmax stay fp32).")
def command(checkpoint: Path, config_path: Path, output: Path, attention: str, opset: int, fp16: bool) -> None:
    """Export a SPAN checkpoint to ONNX; rulebook tables become graph inputs."""
    from ..backends.torch import export_checkpoint
    from ..outputs.atomic import check_output

    check_output(output)

    path = export_checkpoint(checkpoint, config_path, output, attention=attention, opset=opset, fp16=fp16)
    click.echo(f"wrote {path} ({attention} attention, opset {opset}{', fp16' if fp16 else ''})")
