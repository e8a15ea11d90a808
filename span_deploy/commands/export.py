"""`span-deploy export`: checkpoint + config -> ONNX (plugin or portable attention), via the export side;
with `--target NAME`, a whole model directory (model.onnx, the encoder, deploy.json)."""
from __future__ import annotations

from pathlib import Path

import click


@click.command("export")
@click.option("--checkpoint", required=True, type=click.Path(path_type=Path))
@click.option("--config", "config_path", required=True, type=click.Path(path_type=Path))
@click.option("--output", "-o", required=True, type=click.Path(path_type=Path),
              help="model.onnx to write; with --target, the model directory to create.")
@click.option("--target", default=None,
              help="Deploy target (export/targets/NAME.yaml: cpu-fp32, server-fp32, server-fp16, jetson-orin-fp16; "
                   "or a target YAML's path): sets attention, precision and opset, and writes a model directory.")
@click.option("--encoder", type=click.Path(path_type=Path), default=None,
              help="With --target: the patch encoder ONNX to put in the model directory (run/embed use it).")
@click.option("--attention", default=None, type=click.Choice(["plugin", "portable"]),
              help="plugin: one SparseWindowAttention node per window attention; portable: standard ops only "
                   "[default: plugin].")
@click.option("--opset", default=None, type=click.IntRange(14, 23), help="ONNX opset [default: 17].")
@click.option("--fp16", is_flag=True, default=None, help="fp16 weights and activations (LayerNorm and softmax stay fp32).")
@click.option("--int8", is_flag=True, default=None,
              help="CPU int8: Gemm/MatMul weights int8 per channel (ONNX Runtime quantisation); activation scales "
                   "per call, or from --calibration.")
@click.option("--calibration", type=click.Path(path_type=Path), default=None,
              help="With --int8: a folder of feature .h5 files (the model's encoder) for static activation scales.")
def command(checkpoint: Path, config_path: Path, output: Path, target: str | None, encoder: Path | None,
            attention: str | None, opset: int | None, fp16: bool | None, int8: bool | None,
            calibration: Path | None) -> None:
    """Export a SPAN checkpoint to ONNX; rulebook tables become graph inputs."""
    from ..backends.torch import export_checkpoint
    from ..outputs.atomic import check_output

    if target is None:
        if encoder is not None:
            raise click.UsageError("--encoder goes with --target (it is copied into the model directory)")
        check_output(output)
        attention, opset = attention or "plugin", opset or 17
        if calibration is not None and not int8:
            raise click.UsageError("--calibration goes with --int8")
        if int8:
            if fp16:
                raise click.UsageError("--int8 and --fp16 exclude each other")
            return _export_int8(checkpoint, config_path, output, attention, opset, calibration)
        path = export_checkpoint(checkpoint, config_path, output, attention=attention, opset=opset, fp16=bool(fp16))
        click.echo(f"wrote {path} ({attention} attention, opset {opset}{', fp16' if fp16 else ''})")
        return

    from ..deploy.model_dir import write_model_dir
    from ..deploy.targets import load_target

    given = [n for n, v in (("--attention", attention), ("--opset", opset), ("--fp16", fp16), ("--int8", int8),
                            ("--calibration", calibration)) if v]
    if given:
        raise click.UsageError(f"--target sets attention, precision and opset; drop {', '.join(given)} (or write "
                               "a target YAML of your own and pass its path to --target)")
    t = load_target(target)
    for path, what in ((checkpoint, "checkpoint"), (config_path, "config")):
        if not path.is_file():
            raise click.UsageError(f"{what} not found: {path}")
    md = write_model_dir(output, t, lambda onnx: export_checkpoint(
        checkpoint, config_path, onnx, attention=t.attention, opset=t.opset, fp16=t.precision == "fp16"),
        encoder=encoder)
    click.echo(f"wrote model directory {md.path} (target {t.name}: {t.attention} attention, {t.precision}, "
               f"opset {t.opset}{', encoder' if md.encoder else ''})")
    if t.backend == "trt":
        click.echo(f"next, on the machine that will run it: span-deploy build-engine {md.path}")


def _export_int8(checkpoint: Path, config_path: Path, output: Path, attention: str, opset: int,
                 calibration: Path | None) -> None:
    """fp32 export into a temp folder, then quantised to ``output`` (atomically)."""
    import tempfile

    from ..backends.torch import export_checkpoint
    from ..quantize import calibration_files, quantize_int8

    if calibration is not None:
        calibration_files(calibration, 1)          # a bad folder fails before the export runs
    with tempfile.TemporaryDirectory() as d:
        fp32 = export_checkpoint(checkpoint, config_path, Path(d) / "fp32.onnx", attention=attention, opset=opset)
        quantize_int8(fp32, output, calibration)
    how = f"static, calibrated on {calibration}" if calibration else "dynamic activation scales"
    click.echo(f"wrote {output} ({attention} attention, opset {opset}, int8 weights, {how})")
