"""The command-line front ends, one thin module per command.

``train`` is ``pgrun`` (Hydra composes, :mod:`pgrun.run` trains), ``evaluate``
is ``pgrun-eval`` (:mod:`pgrun.evaluate`) and ``report`` is ``pgrun-report``
(:mod:`pgrun.report`). A front end parses arguments, calls its library and
turns the library's exceptions into one line on stderr and an exit code
(:mod:`pgrun.errors`); the libraries never print errors or exit, so scripts
and tests can call them directly.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from pgrun.errors import EXIT_BAD_INPUT


def fail(prog: str, message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    """Print ``prog: error: message`` on stderr and exit with ``code``: how every front end ends badly."""
    print(f"{prog}: error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


class Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line in the pgrun style (``PROG: error: ...``, exit 2).

    ``finite`` names float options that must be finite numbers: argparse's
    ``type=float`` accepts ``nan`` and ``inf``, which no threshold can mean.
    """

    def __init__(self, *args: Any, finite: Sequence[str] = (), **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.finite = tuple(finite)

    def error(self, message: str) -> NoReturn:
        fail(self.prog, f"{message} (see {self.prog} --help)")

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> argparse.Namespace:
        parsed = super().parse_args(args, namespace)
        for name in self.finite:
            value = getattr(parsed, name, None)
            if value is not None and not math.isfinite(value):
                self.error(f"argument --{name.replace('_', '-')}: {value} is not a finite number")
        return parsed


def quiet_backend_probing() -> None:
    """JAX logs each accelerator backend it fails to find (noise on a CPU machine), and each
    process of a multi-process job logs its connection to the job (noise before the run's first line)."""
    for name in ("jax._src.xla_bridge", "jax._src.distributed"):
        logging.getLogger(name).setLevel(logging.WARNING)
