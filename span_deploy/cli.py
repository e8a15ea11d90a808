"""`span-deploy`: export, build-engine, predict, run, embed, bench, validate, triton."""
from __future__ import annotations

import importlib
import sys

import click

from .errors import SpanDeployError

COMMANDS = ("export", "build_engine", "predict", "run", "embed", "bench", "validate", "triton")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="span-deploy")
def cli() -> None:
    """Deploy SPAN whole-slide models: checkpoint -> ONNX -> ONNX Runtime / TensorRT, and run slides."""


for _name in COMMANDS:
    try:
        cli.add_command(importlib.import_module(f".commands.{_name}", __package__).command)
    except ModuleNotFoundError as _e:  # a command whose module is not in this build
        if _e.name != f"{__package__}.commands.{_name}":
            raise


def main() -> None:
    """Entry point: SpanDeployError -> one clear line on stderr and a non-zero exit."""
    try:
        # standalone_mode=False returns a command's exit code (ctx.exit(n), click's Exit) instead of
        # exiting: pass it on, or `validate`'s FAIL would exit 0.
        rc = cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except SpanDeployError as e:
        click.echo(f"span-deploy: error: {e}", err=True)
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":
    main()
