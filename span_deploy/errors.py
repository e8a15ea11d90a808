"""Errors with messages a user can act on; the CLI prints them and exits non-zero."""


class SpanDeployError(Exception):
    """Base class: message says what was wrong, which file, and what to do."""

    exit_code = 2


class ConfigError(SpanDeployError):
    pass


class CheckpointError(SpanDeployError):
    pass


class FeatureFileError(SpanDeployError):
    pass


class RulebookError(SpanDeployError):
    pass


class BackendError(SpanDeployError):
    pass


class SlideError(SpanDeployError):
    pass


class OutputError(SpanDeployError):
    """An output location that cannot be written (a path part is a file, no permission)."""
