"""``pgrun-report SWEEP_DIR``: the command line of :mod:`pgrun.report`.

Parses the options, builds the report, prints it and writes it to
``SWEEP_DIR/report.md``; :class:`~pgrun.report.ReportError` and a report that
cannot be written become one line on stderr with exit code 2.
``scripts/plot_runs.py`` takes the same arguments (:func:`argument_parser`).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from pgrun.commands import Parser
from pgrun.commands import fail
from pgrun.errors import ConfigError
from pgrun.report import REPORT_NAME, RETURN_TAG, build_report

PROG = "pgrun-report"


def argument_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The arguments every sweep-reading command takes: SWEEP_DIR, --tag, --group-by, --target."""
    parser = Parser(prog=prog, description=description, finite=("target",))
    parser.add_argument("sweep_dir", type=Path, metavar="SWEEP_DIR",
                        help="a sweep directory (outputs/multirun/<date>/<time>) or any directory above run dirs")
    parser.add_argument("--tag", default=RETURN_TAG,
                        help=f"scalar tag read from the event files (default: {RETURN_TAG})")
    parser.add_argument("--group-by", nargs="+", action="extend", metavar="KEY",
                        help="config keys that define a configuration (default: algo.name, env.id and every "
                             "overridden key except seed, num_seeds, quiet and hydra.*)")
    parser.add_argument("--target", type=float, metavar="X",
                        help="also give the fraction of seeds whose final (and evaluation) return is at or "
                             "above X, say 475 for CartPole-v1")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``pgrun-report``."""
    parser = argument_parser(PROG, "Final returns of a sweep per configuration, across seeds; "
                                   "printed and written to SWEEP_DIR/report.md.")
    args = parser.parse_args(argv)
    try:
        text = build_report(args.sweep_dir, args.tag, args.group_by, args.target).markdown()
    except ConfigError as err:
        fail(PROG, str(err))
    print(text, end="", flush=True)
    target = args.sweep_dir / REPORT_NAME
    try:
        target.write_text(text)
    except OSError as err:
        fail(PROG, f"cannot write {target} ({err.strerror or err})")


if __name__ == "__main__":
    main()
