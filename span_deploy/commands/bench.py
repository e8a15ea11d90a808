"""``span-deploy bench``: latency, throughput, memory and scaling of each backend on one machine."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import numpy as np

from ..errors import SpanDeployError

DEFAULT_TOKENS = "1000,10000,100000"
MODEL_SUFFIXES = (".onnx", ".engine", ".plan", ".trt")


# Peak host memory per token of a forward, as measured (bench/onnx_backends.py): 2.8-5 GiB at 100k
# tokens and F = 1024, i.e. about 10x the float32 features. Below that a run cannot fit.
BYTES_PER_TOKEN_PER_FEATURE = 4 * 8


def check_memory(n_tokens: int, feat_dim: int) -> None:
    """Refuse a synthetic slide that cannot fit in memory before building it (not after 12 s)."""
    import psutil

    need = n_tokens * feat_dim * BYTES_PER_TOKEN_PER_FEATURE
    have = psutil.virtual_memory().available
    if need > have:
        raise click.BadParameter(
            f"{n_tokens:,} tokens x {feat_dim} features need at least ~{need / 2**30:.1f} GiB, this machine has "
            f"{have / 2**30:.1f} GiB available; use fewer --tokens", param_hint="--tokens")


def parse_tokens(text: str) -> list[int]:
    """'1000,10k,0.1m' -> [1000, 10000, 100000]; sorted, unique, each >= 1."""
    out = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        mult = {"k": 1_000, "m": 1_000_000}.get(part[-1].lower(), 1)
        num = part[:-1] if mult > 1 else part
        try:
            value = float(num) * mult
        except ValueError:
            raise click.BadParameter(f"{part!r} is not a token count (e.g. 1000, 10k)",
                                     param_hint="--tokens") from None
        if value < 1 or value != int(value):
            raise click.BadParameter(f"{part!r}: token counts must be whole numbers >= 1",
                                     param_hint="--tokens")
        out.append(int(value))
    if not out:
        raise click.BadParameter("no token counts given", param_hint="--tokens")
    return sorted(set(out))


def _requested_backends(values: tuple[str, ...], available: list[str], model: Path | None) -> list[str]:
    names = [n.strip() for v in values for n in v.split(",") if n.strip()]
    if not names:
        # Default: every available backend that can read what was given (an .onnx cannot feed
        # torch or TensorRT directly; an engine only TensorRT; a checkpoint all of them).
        usable = available
        if model is not None:   # a deployed model runs on its own backend only (its attention variant)
            from ..backends import backend_for_model
            own = backend_for_model(model) if model.is_file() or model.suffix.lower() != ".onnx" else None
            usable = [b for b in available if b == own] if own else []
        if not usable:
            raise click.UsageError(f"no available backend can run {model.name if model else 'this model'} "
                                   f"(available: {', '.join(available) or 'none'}; install onnxruntime, "
                                   "torch or tensorrt)")
        return list(usable)
    unknown = [n for n in names if n not in available]
    if unknown:
        raise click.BadParameter(
            f"{', '.join(map(repr, unknown))} not available here; available: "
            f"{', '.join(available) or 'none'}", param_hint="--backend")
    return list(dict.fromkeys(names))


# TensorRT timing: the settings TensorRT 11 changed in trtexec, pinned. trtexec prints them as
# "Data transfers", "Spin-wait" and "CUDA Graph"; its defaults (samples/common/sampleOptions.cpp,
# TensorRT OSS 10.16 vs 11.0): TensorRT <= 10 times the H2D/D2H copies, without CUDA graphs or
# spin-wait (--noDataTransfers, --useCudaGraph, --useSpinWait to change); TensorRT 11 does not time
# the copies and uses CUDA graphs and spin-wait (--includeDataTransfers, --noCudaGraph, --noSpinWait).
TRTEXEC_DEFAULTS = {10: {"data_transfers": True, "cuda_graph": False, "spin_wait": False},
                    11: {"data_transfers": False, "cuda_graph": True, "spin_wait": True}}
TRTEXEC_FLAGS = {10: {"data_transfers": ("", "--noDataTransfers"), "cuda_graph": ("--useCudaGraph", ""),
                      "spin_wait": ("--useSpinWait", "")},          # setting -> (flag for on, flag for off)
                 11: {"data_transfers": ("--includeDataTransfers", ""), "cuda_graph": ("", "--noCudaGraph"),
                      "spin_wait": ("", "--noSpinWait")}}
# What the trt backend's run() does: copies the inputs in and the outputs out inside its timed
# 'compute', one execute_async_v3 per slide (no CUDA graph), then cudaStreamSynchronize under CUDA's
# default scheduling ("auto": the host thread spins while the process has no more CUDA contexts than
# CPU cores, as in a one-engine bench, else yields) -- trtexec's spin-wait off is a blocking-sync
# event instead, so "auto" compares with trtexec's spin-wait on.
TRT_BACKEND_TIMING: dict[str, bool | str] = {"data_transfers": True, "cuda_graph": False, "spin_wait": "auto"}


def trt_timing(trt_version: str | None, settings: dict[str, bool | str] | None = None) -> dict[str, Any]:
    """The TensorRT timing settings of a bench run, trtexec's defaults for ``trt_version`` and the
    trtexec flags that time the same way (pure)."""
    from ..backends.tensorrt.build import version_tuple

    s = dict(TRT_BACKEND_TIMING if settings is None else settings)
    out: dict[str, Any] = {**s, "tensorrt": trt_version, "trtexec_defaults": None, "trtexec_flags": None}
    if trt_version:
        key = 11 if version_tuple(trt_version)[0] >= 11 else 10
        out["trtexec_defaults"] = dict(TRTEXEC_DEFAULTS[key])
        on = {k: v == "auto" or bool(v) for k, v in s.items()}
        flags = [TRTEXEC_FLAGS[key][k][0 if on[k] else 1] for k in TRTEXEC_FLAGS[key]]
        out["trtexec_flags"] = [f for f in flags if f]
    return out


def describe_trt_timing(t: dict[str, Any]) -> str:
    onoff = {True: "on", False: "off", "auto": "auto (CUDA's default scheduling: spins in a one-engine run)"}
    text = (f"trt timing (pinned): data transfers {'timed' if t['data_transfers'] else 'not timed'}, "
            f"CUDA graph {onoff[t['cuda_graph']]}, spin-wait {onoff[t['spin_wait']]}")
    if t["trtexec_flags"] is not None:
        flags = " ".join(t["trtexec_flags"]) or "(its defaults)"
        text += f"; trtexec {t['tensorrt']} times the same with: {flags}"
    return text


def _model_flops_fn() -> Any:
    try:
        from ..flops import model_flops  # type: ignore[import-not-found]
    except ImportError:
        return None
    return model_flops


@click.command("bench")
@click.option("--model", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Exported model: model.onnx or a TensorRT model.engine.")
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Official checkpoint (with --config) instead of --model.")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Official config YAML (needed with --checkpoint; with --model enables FLOP counts).")
@click.option("--backend", "backend_opts", multiple=True,
              help="Backend(s), repeatable or comma-separated; default: every available one.")
@click.option("--tokens", default=None, help=f"Synthetic slide sizes, comma-separated [{DEFAULT_TOKENS}].")
@click.option("--slide", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Benchmark a real slide's features (.h5) instead of synthetic sizes.")
@click.option("--warmup", type=click.IntRange(min=0), default=2, show_default=True,
              help="Untimed runs per size.")
@click.option("--iterations", type=click.IntRange(min=1), help="Timed runs per size [10].")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True),
              help="Time each size for at least this many seconds instead of --iterations.")
@click.option("--threads", type=click.IntRange(min=1), help="Intra-op threads (CPU).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the full report as JSON here.")
@click.option("--seed", type=int, default=0, show_default=True, help="Synthetic slide seed.")
@click.option("--feat-dim", type=click.IntRange(min=1),
              help="Feature width of synthetic slides [from the config or ONNX model, else 1024].")
@click.option("--no-gemm", is_flag=True, help="Skip the fp32 gemm reference measurement.")
def command(model: Path | None, checkpoint: Path | None, config_path: Path | None,
            backend_opts: tuple[str, ...], tokens: str | None, slide: Path | None, warmup: int,
            iterations: int | None, duration: float | None, threads: int | None, device: str,
            json_out: Path | None, seed: int, feat_dim: int | None, no_gemm: bool) -> None:
    """Benchmark backends: load time, per-stage latency, throughput, peak memory, FLOP/s, scaling."""
    if json_out is not None:   # before any work: a bad --json must not cost the whole benchmark
        from ..outputs.atomic import check_output
        check_output(json_out)
    # ---- options that contradict each other: usage errors (exit 2) before any work
    if model is not None and checkpoint is not None:
        raise click.UsageError("give either --model or --checkpoint/--config, not both")
    if model is None and checkpoint is None:
        raise click.UsageError("nothing to benchmark: give --model model.onnx|model.engine "
                               "or --checkpoint CKPT --config CFG")
    if checkpoint is not None and config_path is None:
        raise click.UsageError("--checkpoint needs --config (the official YAML it was trained with)")
    if model is not None and model.suffix.lower() not in MODEL_SUFFIXES:
        raise click.BadParameter(f"{model.name}: expected one of {', '.join(MODEL_SUFFIXES)}",
                                 param_hint="--model")
    if tokens is not None and slide is not None:
        raise click.UsageError("give either --tokens or --slide, not both")
    if iterations is not None and duration is not None:
        raise click.UsageError("give either --iterations or --duration, not both")
    sizes = parse_tokens(tokens or DEFAULT_TOKENS) if slide is None else None
    if sizes:
        check_memory(max(sizes), feat_dim or 1024)

    try:
        from .. import backends as B

        available = list(B.available_backends())
        open_backend = B.open_backend
    except (ImportError, AttributeError) as exc:
        raise click.ClickException(f"span_deploy.backends is not usable here: {exc}") from None
    names = _requested_backends(backend_opts, available, model)

    try:
        _run(names, open_backend, model, checkpoint, config_path, sizes, slide, warmup, iterations,
             duration, threads, device, json_out, seed, feat_dim, no_gemm)
    except SpanDeployError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)


def _run(names: list[str], open_backend: Any, model: Path | None, checkpoint: Path | None,
         config_path: Path | None, sizes: list[int] | None, slide: Path | None, warmup: int,
         iterations: int | None, duration: float | None, threads: int | None, device: str,
         json_out: Path | None, seed: int, feat_dim: int | None, no_gemm: bool) -> None:
    if json_out is not None:   # before any work: a bad --json must not cost the whole benchmark
        from ..outputs.atomic import check_output
        check_output(json_out)
    from rich.console import Console

    from ..bench.gemm import measure_gemm
    from ..bench.harness import BackendBench, Workload, bench_backend, synthetic_workloads
    from ..bench.machine import library_versions, machine_info
    from ..bench.report import build_report, print_report, write_json

    # Piped to a log, rich would wrap at 80 columns and truncate the tables.
    console = Console(width=None if sys.stdout.isatty() else 120)
    cfg = None
    if config_path is not None:
        from ..config import load_config

        cfg = load_config(config_path)      # ConfigError -> clear message, exit 2

    cache: dict[int, list[Any]] = {}
    if slide is not None:
        from ..features import read_features

        sf = read_features(slide, feat_dim=cfg.feat_dim if cfg else feat_dim)
        cache[int(sf.feats.shape[1])] = [Workload(slide.stem, np.asarray(sf.coords).astype(np.int64), sf.feats)]

    def workloads_for(backend: Any) -> list[Any]:
        """Synthetic slides sized to the model's feature width (backend.feat_dim when it has one)."""
        if slide is not None:
            return next(iter(cache.values()))
        fdim = feat_dim or (cfg.feat_dim if cfg else None) or getattr(backend, "feat_dim", None) or 1024
        if fdim not in cache:
            console.print(f"synthetic slides: {', '.join(f'{n:,}' for n in sizes or [])} tokens x "
                          f"{fdim} features (seed {seed})")
            cache[fdim] = synthetic_workloads(sizes or [], seed=seed, feat_dim=fdim)
        return cache[fdim]

    gemm = None
    warnings: list[str] = []
    if not no_gemm:
        try:
            gemm = measure_gemm(device=device, threads=threads).to_dict()
        except RuntimeError as exc:
            warnings.append(f"no gemm reference: {exc}")

    versions = library_versions()
    model_flops = _model_flops_fn()
    settings = {"device": device, "threads": threads, "seed": seed, "feat_dim": feat_dim,
                "source": "slide" if slide else "synthetic", "slide": slide,
                "tokens": sizes if slide is None else [cache[k][0].n_tokens for k in cache], "warmup": warmup,
                "iterations": iterations, "duration_s": duration, "model": model,
                "checkpoint": checkpoint, "config": config_path,
                "flops_counted": bool(model_flops)}
    benches = []
    for name in names:
        opened: dict[str, Any] = {}

        def factory(name: str = name) -> Any:
            opened["b"] = open_backend(name, model=model, checkpoint=checkpoint,
                                       config=config_path, device=device, threads=threads)
            return opened["b"]

        def flops(stage_sizes: list[int]) -> float | None:
            b = opened.get("b")
            c = cfg or getattr(b, "cfg", None) or getattr(b, "config", None)
            return model_flops(c, stage_sizes) if model_flops and c is not None else None

        console.print(f"[bold]{name}[/bold] ...")
        run_settings: dict[str, Any] = {"device": device, "threads": threads}
        if name == "trt":
            run_settings["tensorrt_timing"] = trt_timing(versions.get("tensorrt"))
        try:
            benches.append(bench_backend(
                factory, workloads_for, name=name, warmup=warmup, iterations=iterations,
                duration=duration, flops=flops, settings=run_settings,
                gemm_flops_per_s=gemm["flops_per_s"] if gemm and gemm["device"] == device else None))
        except SpanDeployError as exc:
            benches.append(BackendBench(name, run_settings, error=str(exc)))
        except Exception as exc:        # one broken backend must not lose the others' numbers
            benches.append(BackendBench(name, run_settings, error=f"{type(exc).__name__}: {exc}"))
        opened.clear()

    doc = build_report(benches, machine=machine_info(), versions=versions, settings=settings, gemm=gemm)
    doc["warnings"] = warnings + doc["warnings"]
    print_report(doc, console)
    for b in benches:
        if "tensorrt_timing" in b.settings:
            console.print(describe_trt_timing(b.settings["tensorrt_timing"]))
    if json_out is not None:
        write_json(doc, json_out)
        console.print(f"report written to {json_out}")
    failed = [b.backend for b in benches if b.error or any(s.error for s in b.sizes)]
    if failed:
        click.echo(f"error: benchmark failed for {', '.join(failed)} (see warnings above)", err=True)
        sys.exit(1)

