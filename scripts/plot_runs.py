"""Learning curves of a sweep: one colour per configuration, mean over seeds with a 95% band.

The band is a Student-t confidence interval for the mean across seeds
(``mean ± t_{0.975, n-1} · s / sqrt(n)``): with few seeds it is honest about
how little they pin the mean down, where a normal quantile would not. With one
seed only the line is drawn. Seeds whose step grids differ are linearly
interpolated onto the union of their steps, within the range all of them cover
(seeds of one configuration log at the same steps, so normally nothing is
interpolated). Seeds, configurations and labels are those of ``pgrun-report``,
whose table is printed too.

    python scripts/plot_runs.py outputs/multirun/2025-01-01/12-00-00
    python scripts/plot_runs.py SWEEP_DIR --out curves.png --tag losses/entropy --group-by algo.name
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from pgrun.report import (
    Curve,
    ReportError,
    argument_parser,
    build_report,
    fail,
    learning_curve,
)

PROG = "plot_runs.py"


def plot(curves: Sequence[Curve], tag: str, out: Path) -> None:
    """Draw the curves to a PNG with the non-interactive Agg backend (works without a display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = plt.get_cmap("tab10" if len(curves) <= 10 else "tab20").colors
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    for i, curve in enumerate(curves):
        colour = colours[i % len(colours)]
        ax.plot(curve.steps, curve.mean, color=colour, marker="o" if curve.steps.size == 1 else None,
                label=f"{curve.label} (n={curve.num_seeds})")
        if curve.num_seeds > 1:
            ax.fill_between(curve.steps, curve.lower, curve.upper, color=colour, alpha=0.2, linewidth=0)
    ax.set_xlabel("environment steps (per seed)")
    ax.set_ylabel(tag)
    ax.set_title(f"{tag}: mean over seeds, 95% t-interval")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(out, format="png")
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argument_parser(PROG, "Plot a sweep's learning curves per configuration and print its report table.")
    parser.add_argument("--out", type=Path, help="PNG to write (default: SWEEP_DIR/curves.png)")
    args = parser.parse_args(argv)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        fail(PROG, "matplotlib is not installed: pip install 'pgrun[plot]'")
    try:
        report = build_report(args.sweep_dir, args.tag, args.group_by)
        table = report.markdown()
        curves = [c for c in (learning_curve(config, args.tag) for config in report.configurations) if c is not None]
    except ReportError as err:
        fail(PROG, str(err))
    print(table, end="", flush=True)
    if not curves:
        fail(PROG, f"no completed run under {args.sweep_dir} logged {args.tag!r}: nothing to plot")
    out = args.out or args.sweep_dir / "curves.png"
    try:
        plot(curves, args.tag, out)
    except OSError as err:
        fail(PROG, f"cannot write {out} ({err.strerror or err})")
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
