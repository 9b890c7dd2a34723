"""Learning curves and a performance profile of a sweep, one colour per configuration.

Curves are the interquartile mean (IQM) over seeds at each logged step, with
a 95% bootstrap band that resamples seeds (Agarwal et al., 2021, "Deep
Reinforcement Learning at the Edge of the Statistical Precipice"). A
t-interval, mean ± t·s/sqrt(n), assumes normal errors that two or three seeds
cannot support: two seeds at 0 and 500 on a task bounded by 0..500 gave a
band of -200..690. The bootstrap band stays within what the seeds reached;
with one seed only the line is drawn. Seeds whose step grids differ are
linearly interpolated onto the union of their steps, within the range all of
them cover. One panel per environment, since returns of different
environments share no scale.

``--profile PATH`` also draws the performance profile: for each return
threshold, the fraction of seeds whose final return is at or above it, with a
95% stratified bootstrap band. It shows the whole distribution of seeds, so a
configuration that is good on average but sometimes fails does not hide
behind its mean.

The file format follows the extension of ``--out`` and ``--profile`` (.png,
.pdf, .svg, ...). Seeds, configurations and labels are those of
``pgrun-report``, whose table is printed too.

    python scripts/plot_runs.py outputs/multirun/2025-01-01/12-00-00
    python scripts/plot_runs.py SWEEP_DIR --out curves.pdf --profile profile.svg --target 475
    python scripts/plot_runs.py SWEEP_DIR --tag losses/entropy --group-by algo.name
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pgrun import stats
from pgrun.commands.report import argument_parser
from pgrun.commands import fail
from pgrun.report import RETURN_TAG, Configuration, Curve, ReportError, build_report, learning_curve

PROG = "plot_runs.py"
THRESHOLDS = 201  # points of a performance profile


def _pyplot() -> Any:
    """pyplot on the non-interactive Agg backend, which works without a display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def output_format(path: Path) -> str:
    """The format matplotlib is to write, from the extension, so that ``curves.pdf`` is a PDF.

    Checked before anything is read: a typo should not cost a sweep's worth of event files.
    """
    from matplotlib.backend_bases import FigureCanvasBase

    supported = FigureCanvasBase.get_supported_filetypes()
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in supported:
        raise ReportError(f"{path}: cannot tell the format from the extension "
                          f"(use one of {', '.join('.' + f for f in sorted(supported))})")
    return fmt


def _panels(envs: Sequence[str], ylabel: str) -> tuple[Any, dict[str, Any]]:
    """A figure with one axes per environment, side by side."""
    plt = _pyplot()
    order = list(dict.fromkeys(envs))
    fig, axes = plt.subplots(1, len(order), figsize=(7 * len(order), 5), squeeze=False)
    for env, ax in zip(order, axes[0]):
        ax.set_title(env or "(no env.id)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    return fig, dict(zip(order, axes[0]))


def _colours(n: int) -> Sequence[Any]:
    return _pyplot().get_cmap("tab10" if n <= 10 else "tab20").colors


def _save(fig: Any, out: Path, title: str) -> None:
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, format=output_format(out), dpi=120)
    _pyplot().close(fig)


def plot(curves: Sequence[Curve], tag: str, out: Path) -> None:
    """Draw each configuration's IQM curve and bootstrap band, in the format of ``out``'s extension."""
    ylabel = "episodic return" if tag == RETURN_TAG else tag
    fig, axes = _panels([curve.env for curve in curves], ylabel)
    colours = _colours(len(curves))
    for i, curve in enumerate(curves):
        ax, colour = axes[curve.env], colours[i % len(colours)]
        ax.plot(curve.steps, curve.center, color=colour, marker="o" if curve.steps.size == 1 else None,
                label=f"{curve.label} (n={curve.num_seeds})")
        if curve.num_seeds > 1:
            ax.fill_between(curve.steps, curve.lower, curve.upper, color=colour, alpha=0.2, linewidth=0)
    for ax in axes.values():
        ax.set_xlabel("environment steps")
        ax.legend(fontsize="small")
    _save(fig, out, f"{ylabel}: IQM over seeds, 95% bootstrap CI")


def profile_thresholds(finals: Sequence[np.ndarray]) -> np.ndarray:
    """Evenly spaced thresholds a little beyond the lowest and highest final return, so every profile
    is seen to start at 1 and fall to 0."""
    pooled = np.concatenate([np.asarray(f, dtype=float) for f in finals])
    low, high = float(pooled.min()), float(pooled.max())
    margin = 0.05 * (high - low) or 0.5
    return np.linspace(low - margin, high + margin, THRESHOLDS)


def plot_profile(configurations: Sequence[Configuration], out: Path, target: float | None = None) -> None:
    """Performance profile of final returns: the share of seeds at or above each threshold, with its band."""
    with_returns = [(c, np.array([r for _, _, r in c.final_returns()])) for c in configurations]
    with_returns = [(c, finals) for c, finals in with_returns if finals.size]
    envs = [", ".join(c.envs) for c, _ in with_returns]
    fig, axes = _panels(envs, "fraction of seeds with final return ≥ τ")
    colours = _colours(len(with_returns))
    for env in axes:
        taus = profile_thresholds([finals for (_, finals), e in zip(with_returns, envs) if e == env])
        for i, ((config, finals), config_env) in enumerate(zip(with_returns, envs)):
            if config_env != env:
                continue
            colour = colours[i % len(colours)]
            axes[env].plot(taus, stats.performance_profile(finals, taus), color=colour,
                           label=f"{config.label} (n={finals.size})")
            if finals.size > 1:
                lower, upper = stats.performance_profile_band(finals, taus)
                axes[env].fill_between(taus, lower, upper, color=colour, alpha=0.2, linewidth=0)
        if target is not None:
            axes[env].axvline(target, color="grey", linestyle=":", label=f"target {target:g}")
        axes[env].set_xlabel("final episodic return threshold τ")
        axes[env].set_ylim(-0.02, 1.02)
        axes[env].legend(fontsize="small")
    _save(fig, out, "performance profile: seeds at or above each return, 95% stratified bootstrap CI")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argument_parser(PROG, "Plot a sweep's learning curves (IQM over seeds, 95% bootstrap band) and "
                                   "optionally its performance profile; print its report table.")
    parser.add_argument("--out", type=Path,
                        help="learning curves; the extension picks the format: .png, .pdf, .svg, ... "
                             "(default: SWEEP_DIR/curves.png)")
    parser.add_argument("--profile", type=Path, metavar="PATH",
                        help="also draw the performance profile of final returns to PATH (.png, .pdf, .svg, ...)")
    args = parser.parse_args(argv)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        fail(PROG, "matplotlib is not installed: pip install 'pgrun[plot]'")
    out = args.out or args.sweep_dir / "curves.png"
    try:
        for path in (out, args.profile):
            if path is not None:
                output_format(path)
        report = build_report(args.sweep_dir, args.tag, args.group_by, args.target)
        table = report.markdown()
        curves = [c for c in (learning_curve(config, args.tag) for config in report.configurations) if c is not None]
    except ReportError as err:
        fail(PROG, str(err))
    print(table, end="", flush=True)
    if not curves:
        fail(PROG, f"no completed run under {args.sweep_dir} logged {args.tag!r}: nothing to plot")
    try:
        plot(curves, args.tag, out)
        print(f"wrote {out}", file=sys.stderr)
        if args.profile is not None:
            if not any(config.final_returns() for config in report.configurations):
                fail(PROG, "no completed seed has a final return: no performance profile to draw")
            plot_profile(report.configurations, args.profile, args.target)
            print(f"wrote {args.profile}", file=sys.stderr)
    except OSError as err:
        fail(PROG, f"cannot write {err.filename or out} ({err.strerror or err})")


if __name__ == "__main__":
    main()
