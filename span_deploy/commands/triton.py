"""`span-deploy triton export|serve`: a Triton Inference Server model repository, and the real server."""
from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

import click


@click.group("triton")
def command() -> None:
    """Serve SPAN with Triton Inference Server (model repository + server on loopback)."""


@command.command("export")
@click.option("--model", required=True, type=click.Path(path_type=Path), help="Exported SPAN model.onnx.")
@click.option("--encoder", type=click.Path(path_type=Path), default=None,
              help="Patch encoder ONNX: adds patch_encoder (tiles -> features) and span_slide (tiles -> SPAN).")
@click.option("--output", "-o", required=True, type=click.Path(path_type=Path), help="Repository folder.")
@click.option("--instances", type=click.IntRange(1), default=1, show_default=True,
              help="Instances per model (instance_group count).")
@click.option("--kind", type=click.Choice(["cpu", "gpu"]), default="cpu", show_default=True,
              help="Instance kind: KIND_CPU or KIND_GPU (ONNX Runtime's CUDA EP in the Python backend).")
@click.option("--threads", type=click.IntRange(0), default=0, show_default=True,
              help="ONNX Runtime intra-op threads per instance (0: the runtime's default).")
@click.option("--encoder-batch", type=click.IntRange(1), default=64, show_default=True,
              help="patch_encoder max_batch_size, and the chunk span_slide sends it.")
@click.option("--encoder-backend", type=click.Choice(["auto", "python", "onnxruntime"]), default="auto",
              show_default=True, help="patch_encoder on Triton's onnxruntime backend or the Python backend "
                                      "(auto: onnxruntime when the installed tritonserver ships it).")
@click.option("--overwrite", is_flag=True, help="Replace models already in the repository.")
def export_cmd(model: Path, encoder: Path | None, output: Path, instances: int, kind: str, threads: int,
               encoder_batch: int, encoder_backend: str, overwrite: bool) -> None:
    """Write a model repository: span_features (+ patch_encoder, span_slide with --encoder)."""
    from ..serving.triton.repository import write_repository

    for p in write_repository(model, output, encoder=encoder, instances=instances, kind=kind, threads=threads,
                              encoder_batch=encoder_batch, overwrite=overwrite,
                              encoder_backend=encoder_backend):
        click.echo(f"wrote {p}")


@command.command("serve")
@click.argument("repository", type=click.Path(path_type=Path))
@click.option("--http-port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--grpc-port", type=click.IntRange(1, 65535), default=8001, show_default=True)
@click.option("--timeout", type=float, default=300.0, show_default=True, help="Seconds to wait for readiness.")
@click.option("--log", "log_path", type=click.Path(path_type=Path), default=None,
              help="Server log file (default: a temporary file, its tail printed on failure).")
def serve_cmd(repository: Path, http_port: int, grpc_port: int, timeout: float, log_path: Path | None) -> None:
    """Run tritonserver on 127.0.0.1 for REPOSITORY until SIGINT / SIGTERM."""
    from ..serving.triton.server import TritonServer, require_tritonserver

    install = require_tritonserver()   # one clear error line when there is none
    server = TritonServer(repository, http_port, grpc_port, log_path=log_path, install=install)
    stop = threading.Event()

    def on_signal(signum, _frame):
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.start(timeout)
        click.echo(f"tritonserver ready: HTTP {server.http_url}, gRPC {server.grpc_url} "
                   f"(repository {server.repository}; log {server.log_path})", err=True)
        while not stop.is_set():
            if server.proc is None or server.proc.poll() is not None:
                rc = None if server.proc is None else server.proc.returncode
                click.echo(f"span-deploy: error: tritonserver exited ({rc}):\n{server.log_tail()}", err=True)
                sys.exit(1)
            stop.wait(0.5)
        click.echo("stopping tritonserver", err=True)
    finally:
        server.close()
        for s, h in old.items():
            signal.signal(s, h)
