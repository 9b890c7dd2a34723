"""Every error a user can meet, with the exit code each command gives it.

The bottom of the import graph: any module may raise these, and only the
command-line front ends turn them into exit codes.
"""

from __future__ import annotations

from typing import Any

EXIT_TRAINING_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # the shell's convention for a run stopped by SIGINT


class ConfigError(ValueError):
    """Bad user input: reported on one line, exit code 2."""


class TrainingError(RuntimeError):
    """Training could not go on (for example a non-finite loss): exit code 1."""


class TrainingInterrupted(RuntimeError):
    """SIGINT or SIGTERM stopped the run after saving a checkpoint."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


def require(condition: bool, message: str) -> None:
    """Raise :class:`ConfigError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(message)


def first_line(text: Any) -> str:
    """The first non-empty line of ``text`` (an exception's message, say), stripped."""
    return next((line.strip() for line in str(text).splitlines() if line.strip()), "")
