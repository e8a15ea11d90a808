"""Click commands; each module exposes ``command`` (a click.Command) for the CLI to register."""
