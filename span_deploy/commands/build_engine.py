"""`span-deploy build-engine model.onnx -o model.engine`: a TensorRT engine with one shape profile,
built through polygraphy's TensorRT loaders (see backends/tensorrt/build.py). `build-engine DIR`
builds a model directory's engine with its deploy target's settings and records it in deploy.json."""
from __future__ import annotations

from pathlib import Path

import click


@click.command("build-engine")
@click.argument("onnx_model", type=click.Path(path_type=Path))
@click.option("--output", "-o", default=None, type=click.Path(path_type=Path),
              help="model.engine to write (plus model.engine.json with the metadata) [a model directory: "
                   "DIR/model.engine].")
@click.option("--target", default=None,
              help="Deploy target (export/targets/NAME.yaml or a YAML path) whose tensorrt settings (tokens, "
                   "precision, workspace, timing cache) to build with [a model directory: its own target].")
@click.option("--fp16", is_flag=True, help="fp16 engine (TensorRT >= 11 needs an fp16 export for this).")
@click.option("--min-tokens", type=int, default=None, help="Smallest slide (patches) [default 1].")
@click.option("--opt-tokens", type=int, default=None, help="Slide size to tune for [default 20000].")
@click.option("--max-tokens", type=int, default=None, help="Largest slide (patches) [default 200000].")
@click.option("--profile", "profile_file", type=click.Path(path_type=Path),
              help="YAML/JSON: input name -> [min, opt, max] rows or shapes (instead of --*-tokens).")
@click.option("--plugin-lib", type=click.Path(path_type=Path),
              help="TensorRT plugin library (default: the one built by tools/build_native.sh).")
@click.option("--timing-cache", type=click.Path(dir_okay=False, path_type=Path),
              help="Timing cache to read and update (polygraphy locks it and merges new timings in).")
@click.option("--workspace-mb", type=click.IntRange(1), default=None, help="Builder workspace limit (MiB).")
def command(onnx_model: Path, output: Path | None, target: str | None, fp16: bool, min_tokens: int | None,
            opt_tokens: int | None, max_tokens: int | None, profile_file: Path | None, plugin_lib: Path | None,
            timing_cache: Path | None, workspace_mb: int | None) -> None:
    """Build a TensorRT engine from an exported model.onnx or a model directory (needs TensorRT and a GPU)."""
    from ..backends.tensorrt.build import build_engine
    from ..backends.tensorrt.plugin import import_tensorrt
    from ..backends.tensorrt.profiles import build_profile, onnx_input_shapes, read_profile_file, resolve_tokens
    from ..backends.tensorrt.sidecar import sidecar_path
    from ..errors import BackendError
    from ..metadata import config_from_metadata, read_metadata
    from ..outputs.atomic import check_output

    if profile_file is not None and any(v is not None for v in (min_tokens, opt_tokens, max_tokens)):
        raise click.UsageError("give either --profile or --min/--opt/--max-tokens, not both")
    md = None
    if onnx_model.is_dir() or target is not None:
        from ..deploy.model_dir import ENGINE_FILE, read_model_dir
        from ..deploy.targets import load_target

        given = [n for n, v in (("--fp16", fp16), ("--min-tokens", min_tokens), ("--opt-tokens", opt_tokens),
                                ("--max-tokens", max_tokens), ("--profile", profile_file),
                                ("--workspace-mb", workspace_mb)) if v]
        if given:
            raise click.UsageError(f"a deploy target sets the engine's precision, tokens and workspace; drop "
                                   f"{', '.join(given)} (or write a target YAML of your own)")
        if onnx_model.is_dir():
            md = read_model_dir(onnx_model)
            t = load_target(target) if target is not None else md.target
            if output is None:
                output = md.path / ENGINE_FILE
            onnx_model = md.onnx
        else:
            t = load_target(target)
        if t.tensorrt is None:
            raise click.UsageError(f"deploy target {t.name} runs on {t.backend}, not TensorRT; choose a trt target "
                                   "(server-fp32, server-fp16, jetson-orin-fp16)")
        trt_t = t.tensorrt
        min_tokens, opt_tokens, max_tokens = trt_t.min_tokens, trt_t.opt_tokens, trt_t.max_tokens
        fp16, workspace_mb = trt_t.precision == "fp16", trt_t.workspace_mb
        if timing_cache is None and trt_t.timing_cache and md is not None:
            timing_cache = md.path / trt_t.timing_cache
        precision = read_metadata(onnx_model).get("precision", "fp32")
        if precision != trt_t.precision:
            raise click.UsageError(f"target {t.name} builds a {trt_t.precision} engine but {onnx_model} is a "
                                   f"{precision} export; export with --target {t.name}")
    if output is None:
        raise click.UsageError("give -o model.engine (or pass a model directory)")
    for p in (output, sidecar_path(output), timing_cache):   # before any work: a bad path is one line
        if p is not None:
            check_output(p)
    if not onnx_model.is_file():
        raise BackendError(f"ONNX model not found: {onnx_model}")
    meta = read_metadata(onnx_model)
    cfg = config_from_metadata(meta, onnx_model)
    if profile_file is not None:
        overrides, tokens = read_profile_file(profile_file)
    else:
        overrides, tokens = {}, resolve_tokens(min_tokens, opt_tokens, max_tokens)
    profile = build_profile(cfg, tokens, onnx_input_shapes(onnx_model), overrides)
    import_tensorrt()  # fail early and clearly, before any work, when TensorRT is missing
    path = build_engine(onnx_model, output, profile, fp16=fp16, plugin_lib=plugin_lib, timing_cache=timing_cache,
                        workspace_mb=workspace_mb, log=lambda m: click.echo(m, err=True))
    if md is not None and Path(path).parent.resolve() == md.path.resolve():
        from ..deploy.model_dir import record_engine
        record_engine(md, Path(path), import_tensorrt().__version__)
        click.echo(f"recorded {Path(path).name} in {md.path / 'deploy.json'}")
    click.echo(f"wrote {path} (max {profile.max_tokens} tokens)")

