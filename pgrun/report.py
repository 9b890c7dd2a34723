"""Reports: final returns of a sweep, per configuration, across seeds (the library behind ``pgrun-report``).

A *configuration* is a run's config minus its seed. Seeds of one configuration
come from separate jobs (``pgrun -m seed=0,1,2``) and from seeds trained
together in one run (``num_seeds=N``, one event folder per seed); both count
alike, so a sweep can mix the two. Jobs that failed or never finished are
listed with their status and error rather than dropped, so a report never
looks better than the sweep was.

Across seeds the table gives what Agarwal et al. (2021, "Deep Reinforcement
Learning at the Edge of the Statistical Precipice") recommend for a handful of
runs: the interquartile mean and the mean, each with a 95% stratified
bootstrap confidence interval, the worst seed and, with ``--target``, the
fraction of seeds at or above a score (see :mod:`pgrun.stats`).

    build_report(Path("outputs/multirun/2025-01-01/12-00-00")).markdown()
    build_report(sweep_dir, group_by=["algo.name", "algo.lr"], target=475)

Runs are found and read through :class:`~pgrun.run_folder.RunFolder`. Bad
input (no such directory, no runs, an unknown ``group_by`` key, event files
without tensorboard installed) raises :class:`ReportError`; nothing here
prints or exits (:mod:`pgrun.commands.report` does). The learning-curve
helpers (:func:`learning_curve`, :func:`align_curves`) live here too, so
``scripts/plot_runs.py`` draws exactly the seeds this table counts.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pgrun import stats
from pgrun.errors import ConfigError, first_line
from pgrun.run_folder import CONFIG, SUMMARY, RunFolder

RETURN_TAG = "charts/episodic_return"
# Always part of the default configuration key: they name the problem being solved.
DEFAULT_KEYS = ("algo.name", "env.id")
# Overrides that do not change what is trained (or are the seed itself).
IGNORED_OVERRIDES = frozenset({"seed", "num_seeds", "quiet", "resume", "xla_cpu_threads", "compile_cache_dir"})
# Config-group overrides (``algo=ppo``) are already covered by DEFAULT_KEYS.
GROUP_OVERRIDES = frozenset({"algo", "env"})
REPORT_NAME = "report.md"
MISSING = "(unset)"


class ReportError(ConfigError):
    """A problem with the user's input: reported as one line, exit code 2."""


def _per_seed(summary: dict[str, Any] | None, key: str) -> list[float | None]:
    """A per-seed list of summary.json, anything but a finite number read as None."""
    values = (summary or {}).get(key)
    if not isinstance(values, list):
        return []
    return [float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None
            for v in values]


@dataclass
class Run:
    """One job's run directory: what it was asked to do and how it ended."""

    path: Path
    name: str  # path relative to the sweep directory, for display
    config: dict[str, Any] | None  # None when the run's config cannot be read
    overrides: list[str]
    summary: dict[str, Any] | None
    status: str  # completed | failed | interrupted | unfinished | unreadable
    error: str = ""
    seeds: list[int] = field(default_factory=list)

    @property
    def completed(self) -> bool:
        return self.status == "completed"

    @property
    def returns_per_seed(self) -> list[float | None]:
        """Final return of each seed (None where no episode finished), in ``seeds`` order."""
        return _per_seed(self.summary, "returns_per_seed")

    @property
    def eval_returns_per_seed(self) -> list[float | None]:
        """Return of each seed's last evaluation (None where it has none), in ``seeds`` order."""
        return _per_seed(self.summary, "eval_returns_per_seed")

    @property
    def env_steps(self) -> int | None:
        steps = (self.summary or {}).get("env_steps")
        return None if steps is None else int(steps)

    def event_dirs(self) -> dict[int, Path]:
        """Where each seed's event files are (the run directory itself for one seed)."""
        return dict(zip(self.seeds, RunFolder(self.path).seed_dirs(self.seeds)))


@dataclass
class Configuration:
    """Runs that differ only in their seeds."""

    key: tuple[tuple[str, str], ...]
    runs: list[Run]
    label: str = ""

    @property
    def completed_runs(self) -> list[Run]:
        return [run for run in self.runs if run.completed]

    def final_returns(self) -> list[tuple[Run, int, float]]:
        """``(run, seed, final return)`` for every seed of a completed job that finished an episode."""
        return [(run, seed, ret) for run in self.completed_runs
                for seed, ret in zip(run.seeds, run.returns_per_seed) if ret is not None]

    def eval_returns(self) -> list[tuple[Run, int, float]]:
        """``(run, seed, last evaluation's return)`` for every seed of a completed job that has one."""
        return [(run, seed, ret) for run in self.completed_runs
                for seed, ret in zip(run.seeds, run.eval_returns_per_seed) if ret is not None]

    @property
    def seeds_without_return(self) -> int:
        return sum(ret is None for run in self.completed_runs for ret in run.returns_per_seed)

    @property
    def seeds_without_eval(self) -> int:
        return sum(ret is None for run in self.completed_runs for ret in run.eval_returns_per_seed)

    @property
    def envs(self) -> list[str]:
        """The environment ids of its runs (one, unless --group-by left env.id out)."""
        return list(dict.fromkeys(_value(run, "env.id") for run in self.runs if run.config is not None))


@dataclass
class Curve:
    """A configuration's learning curve: the IQM over seeds with a 95% bootstrap band.

    ``values`` holds every seed's curve on the common grid (``[seeds, steps]``).
    """

    label: str
    env: str
    steps: np.ndarray
    values: np.ndarray
    center: np.ndarray
    lower: np.ndarray
    upper: np.ndarray

    @property
    def num_seeds(self) -> int:
        return int(self.values.shape[0])


@dataclass
class Report:
    """Everything the table is made of, for callers that want more than the markdown."""

    root: Path
    runs: list[Run]
    configurations: list[Configuration]
    common: list[tuple[str, str]]  # key/value pairs shared by every configuration, left out of labels
    tag: str = RETURN_TAG
    target: float | None = None  # --target: the table gives the fraction of seeds at or above it

    def markdown(self) -> str:
        return markdown_report(self)


# ---------------------------------------------------------------- discovery


def _natural_key(name: str) -> list[Any]:
    """Sort ``2-...`` before ``10-...``, as Hydra numbers its jobs."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def find_run_dirs(root: Path) -> list[Path]:
    """Every run folder under ``root`` (``root`` included), in job order.

    A vectorised sweep (``sweep.vmap``) is one job whose points are sub-folders
    laid out like runs: the points are listed, not the job that holds them.
    """
    found: list[Path] = []
    for dirpath, dirnames, _ in os.walk(root):
        here = Path(dirpath)
        visible = sorted((d for d in dirnames if not d.startswith(".")), key=_natural_key)
        if RunFolder(here).is_run():
            points = [d for d in visible if RunFolder(here / d).is_run()]
            if points:
                dirnames[:] = points
                continue
            found.append(here)
            dirnames[:] = []  # a run's own sub-folders (seeds' event files, checkpoints) hold no further runs
            continue
        dirnames[:] = visible
    return found


def _read_config(folder: RunFolder) -> tuple[dict[str, Any] | None, str]:
    """The run's config as a plain dict, or None and why it cannot be read."""
    from omegaconf import OmegaConf

    try:
        loaded = OmegaConf.to_container(folder.load_config(), resolve=False)
    except Exception as err:  # noqa: BLE001 - any parse error: report the run, keep going
        return None, f"cannot read {CONFIG.as_posix()}: {first_line(err)}"
    if not isinstance(loaded, dict):
        return None, f"{CONFIG.as_posix()} is not a mapping"
    return loaded, ""


def _read_overrides(folder: RunFolder) -> list[str]:
    """The command-line overrides that made the run; none where they cannot be read."""
    from omegaconf import OmegaConf

    if not folder.overrides_path.is_file():
        return []
    try:
        listed = OmegaConf.to_container(OmegaConf.load(folder.overrides_path))
    except Exception:  # noqa: BLE001 - overrides only refine the grouping
        return []
    return [str(o) for o in listed] if isinstance(listed, list) else []


def _read_summary(folder: RunFolder) -> tuple[dict[str, Any] | None, str, str]:
    """``(summary, status, error)``: a run without a readable summary is unfinished or unreadable."""
    if not folder.summary_path.is_file():
        return None, "unfinished", f"no {SUMMARY} (still running, or killed)"
    try:
        loaded = folder.read_summary()
    except (OSError, ValueError) as err:
        return None, "unreadable", f"cannot read {SUMMARY}: {first_line(err)}"
    if not isinstance(loaded, dict):
        return None, "unreadable", f"cannot read {SUMMARY}: not a JSON object"
    return loaded, str(loaded.get("status", "unknown")), first_line(loaded.get("error", ""))


def load_run(path: Path, root: Path) -> Run:
    """Read one run directory; unreadable parts become a status, never an exception."""
    folder = RunFolder(path)
    name = str(path.relative_to(root)) if path != root else path.name
    config, error = _read_config(folder)
    overrides = _read_overrides(folder)
    if config is None:
        return Run(path, name, None, overrides, None, "unreadable", error)
    summary, status, error = _read_summary(folder)
    if summary and isinstance(summary.get("seeds"), list):
        seeds = [int(s) for s in summary["seeds"]]
    else:
        first, count = int(config.get("seed", 0) or 0), int(config.get("num_seeds", 1) or 1)
        seeds = list(range(first, first + count))
    return Run(path, name, config, overrides, summary, status, error, seeds)


def load_runs(root: Path) -> list[Run]:
    """All runs under ``root``; a missing directory or an empty one is a :class:`ReportError`."""
    if not root.is_dir():
        raise ReportError(f"{root}: no such directory: pass a sweep directory (outputs/multirun/<date>/<time>) "
                          f"or a run directory")
    runs = [load_run(path, root) for path in find_run_dirs(root)]
    if not runs:
        raise ReportError(f"{root} holds no runs (no directory with {CONFIG.as_posix()} under it): "
                          f"pass the directory a pgrun run or sweep wrote")
    return runs


# ---------------------------------------------------------------- grouping


def _override_key(override: str) -> tuple[str, str]:
    key, _, value = override.partition("=")
    return key.lstrip("+~").strip(), value.strip()


def _counted(key: str) -> bool:
    return key not in IGNORED_OVERRIDES and key != "hydra" and not key.startswith("hydra.")


def _lookup(config: dict[str, Any], key: str) -> tuple[bool, Any]:
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def format_value(value: Any) -> str:
    """A config value as one would type it in an override (``true``, ``[64,64]``, ``0.00025``)."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)


def _value(run: Run, key: str) -> str:
    """The run's value of ``key``: from its config, or the override text where the config holds a group."""
    assert run.config is not None
    found, value = _lookup(run.config, key)
    if isinstance(value, dict):
        given = dict(_override_key(o) for o in run.overrides)
        if key in given:
            return given[key]
    return format_value(value) if found else MISSING


def grouping_keys(runs: Sequence[Run], group_by: Sequence[str] | None = None) -> list[str]:
    """``group_by`` if given; else algo, env and every key some job overrode (seed and output keys aside)."""
    if group_by:
        keys = list(dict.fromkeys(group_by))
        readable = [run for run in runs if run.config is not None]
        for key in keys:
            if readable and not any(_lookup(run.config, key)[0] for run in readable):  # type: ignore[arg-type]
                raise ReportError(f"--group-by {key}: no run's config has this key "
                                  f"(see any run's {CONFIG.as_posix()} for the keys)")
        return keys
    overridden = {_override_key(override)[0] for run in runs for override in run.overrides}
    return list(DEFAULT_KEYS) + sorted(k for k in overridden
                                       if _counted(k) and k not in GROUP_OVERRIDES and k not in DEFAULT_KEYS)


def group_runs(runs: Sequence[Run], group_by: Sequence[str] | None = None
               ) -> tuple[list[Configuration], list[tuple[str, str]]]:
    """Configurations in order of first appearance, and the key/values they all share.

    Labels show only what tells configurations apart (plus algo and env,
    which name the problem); what they share is returned separately.
    """
    keys = grouping_keys(runs, group_by)
    groups: dict[tuple[tuple[str, str], ...], Configuration] = {}
    unreadable: list[Configuration] = []
    for run in runs:
        if run.config is None:
            unreadable.append(Configuration((("run", run.name),), [run], f"{run.name} (unreadable config)"))
            continue
        key = tuple((k, _value(run, k)) for k in keys)
        groups.setdefault(key, Configuration(key, [])).runs.append(run)
    configurations = list(groups.values())
    varying = {k for i, k in enumerate(keys) if len({c.key[i][1] for c in configurations}) > 1}
    shown = [k for k in keys if k in varying or (not group_by and k in DEFAULT_KEYS)] or keys
    common = [(k, v) for k, v in (configurations[0].key if configurations else ()) if k not in shown]
    for config in configurations:
        parts = [v if (k in DEFAULT_KEYS and not group_by) else f"{k}={v}" for k, v in config.key if k in shown]
        config.label = " ".join(parts)
    return configurations + unreadable, common


# ---------------------------------------------------------------- statistics


def align_curves(curves: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Put seeds with (slightly) different step grids on one grid: ``(steps, values[seed, step])``.

    Linear interpolation onto the union of all seeds' steps, restricted to
    the range every seed covers (never extrapolated). Where the grids agree,
    as they do for seeds of one configuration, this returns exactly the
    logged values; a seed whose first episode ended later only trims the start.
    """
    if not curves:
        return np.zeros(0), np.zeros((0, 0))
    start = max(float(steps[0]) for steps, _ in curves)
    stop = min(float(steps[-1]) for steps, _ in curves)
    grid = np.unique(np.concatenate([steps for steps, _ in curves]))
    grid = grid[(grid >= start) & (grid <= stop)]
    return grid, np.stack([np.interp(grid, steps, values) for steps, values in curves])


# ---------------------------------------------------------------- event files


def read_scalars(event_dir: Path, tag: str) -> tuple[np.ndarray, np.ndarray]:
    """All points of one scalar tag in a directory's event files, by step (nothing subsampled).

    A step logged twice (a resumed run) keeps its latest value.
    """
    try:
        from tensorboard.backend.event_processing import event_accumulator
    except ImportError as err:
        raise ReportError("reading event files needs the tensorboard package: pip install 'pgrun[plot]'") from err
    if not event_dir.is_dir():
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    accumulator = event_accumulator.EventAccumulator(str(event_dir), size_guidance={event_accumulator.SCALARS: 0})
    accumulator.Reload()
    if tag not in accumulator.Tags().get("scalars", []):
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    by_step = {event.step: event.value for event in accumulator.Scalars(tag)}
    steps = np.array(sorted(by_step), dtype=np.int64)
    return steps, np.array([by_step[s] for s in steps], dtype=float)


def seed_curves(config: Configuration, tag: str = RETURN_TAG) -> list[tuple[np.ndarray, np.ndarray]]:
    """One ``(steps, values)`` per seed of the configuration's completed jobs that logged ``tag``."""
    curves = []
    for run in config.completed_runs:
        for event_dir in run.event_dirs().values():
            steps, values = read_scalars(event_dir, tag)
            if steps.size:
                curves.append((steps, values))
    return curves


def learning_curve(config: Configuration, tag: str = RETURN_TAG, level: float = stats.CONFIDENCE) -> Curve | None:
    """The configuration's IQM curve over seeds and its bootstrap band; None when no completed seed logged ``tag``.

    The band resamples seeds (:func:`pgrun.stats.bootstrap_band`), so unlike
    a t-interval it never leaves the range the seeds span: two seeds at 0 and
    500 on a task bounded by 0..500 give a band of 0..500, not -200..690.
    With one seed it collapses onto the curve.
    """
    steps, values = align_curves(seed_curves(config, tag))
    if steps.size == 0:
        return None
    lower, upper = stats.bootstrap_band(values, confidence=level)
    return Curve(config.label, ", ".join(config.envs), steps, values, stats.iqm(values, axis=0), lower, upper)


# ---------------------------------------------------------------- the report


def build_report(root: Path, tag: str = RETURN_TAG, group_by: Sequence[str] | None = None,
                 target: float | None = None) -> Report:
    """Every run under ``root``, grouped into configurations (by ``group_by``, or by what
    differs between runs), with each configuration's statistics of ``tag``."""
    runs = load_runs(Path(root))
    configurations, common = group_runs(runs, group_by)
    return Report(Path(root), runs, configurations, common, tag, target)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _steps_text(steps: Sequence[int]) -> str:
    if not steps:
        return "—"
    low, high = min(steps), max(steps)
    return f"{low:,d}" if low == high else f"{low:,d}–{high:,d}"


def _last_logged_step(run: Run, tag: str) -> int | None:
    """How far a job without a summary got, from its event files (None if unknown)."""
    try:
        steps = [read_scalars(d, tag)[0] for d in run.event_dirs().values()]
    except ReportError:  # no tensorboard: the status alone still says enough
        return None
    last = [int(s[-1]) for s in steps if s.size]
    return max(last) if last else None


def _job_outcome(run: Run, tag: str) -> str:
    """One line, starting with the status: how a job that did not complete ended."""
    if run.status == "failed":
        where = f" at {run.env_steps:,d} env steps" if run.env_steps is not None else ""
        return f"failed{where}: {run.error or 'no error recorded'}"
    if run.status == "unfinished":
        step = _last_logged_step(run, tag)
        where = f"; last logged at {step:,d} env steps" if step is not None else ""
        return f"unfinished (no {SUMMARY}: still running, or killed{where})"
    return f"{run.status}: {run.error}" if run.error else run.status


def _jobs_cell(config: Configuration, tag: str) -> str:
    """``3 completed; 1 failed at 1,024 env steps: <error>``: every job counted, none hidden."""
    completed = len(config.completed_runs)
    outcomes = Counter(_job_outcome(run, tag) for run in config.runs if not run.completed)
    parts = ([f"{completed} completed"] if completed else []) + [f"{n} {text}" for text, n in outcomes.items()]
    return "; ".join(parts)


def format_number(value: float) -> str:
    """Four significant digits (returns and losses live on very different scales), no exponent above 1000."""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def _estimate_text(value: float, interval: tuple[float, float] | None) -> str:
    """``487.3 [451.2, 500]``; the bare value where there is no interval (one seed)."""
    if interval is None:
        return format_number(value)
    return f"{format_number(value)} [{format_number(interval[0])}, {format_number(interval[1])}]"


def _fraction_text(values: Sequence[float], target: float) -> str:
    """``75% (3/4)``: seeds at or above the target."""
    hits = sum(v >= target for v in values)
    return f"{100 * hits / len(values):.0f}% ({hits}/{len(values)})"


def _seeds_text(n: int, without: int, what: str) -> str:
    return f"{n} (+{without} without {what})" if without else f"{n}"


def _group_header(prefix: str, target: float | None) -> list[str]:
    header = [f"{prefix}IQM [95% CI]", f"{prefix}mean [95% CI]", f"{prefix}worst", f"{prefix}std"]
    return header + ([f"{prefix}≥ {format_number(target)}"] if target is not None else [])


def _group_cells(values: Sequence[float], target: float | None) -> list[str]:
    """IQM and mean with their intervals, worst seed, sample std and the fraction at the target."""
    width = 4 + (target is not None)
    if not values:
        return ["—"] * width
    summary = stats.summarize(values)
    cells = [_estimate_text(summary["iqm"], summary["iqm_ci"]), _estimate_text(summary["mean"], summary["mean_ci"]),
             format_number(summary["worst"]), "—" if summary["std"] is None else format_number(summary["std"])]
    return cells + ([_fraction_text(values, target)] if target is not None else [])


def markdown_report(report: Report) -> str:
    """The sweep's table of final returns per configuration, with notes and the jobs that did not complete.

    Evaluation returns get a column group of their own when some completed
    seed has one (``eval_returns_per_seed`` in its summary.json).
    """
    extra_tag = report.tag != RETURN_TAG
    with_eval = any(config.eval_returns() for config in report.configurations)
    header = ["configuration", "seeds", *_group_header("", report.target)]
    if with_eval:
        header += ["eval seeds", *_group_header("eval ", report.target)]
    header.append("env steps")
    if extra_tag:
        header.append(f"last {report.tag} (IQM [95% CI])")
    header.append("jobs")
    align = ["---"] + ["---:"] * (len(header) - 2) + ["---"]
    lines = [f"# pgrun report: {report.root}", ""]
    if report.common:
        lines += ["Common to every configuration: " + ", ".join(f"`{k}={v}`" for k, v in report.common), ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    notes: list[str] = []
    for config in report.configurations:
        finals = config.final_returns()
        row = [_cell(config.label), _seeds_text(len(finals), config.seeds_without_return, "a finished episode"),
               *_group_cells([ret for _, _, ret in finals], report.target)]
        if with_eval:
            evals = config.eval_returns()
            row += [_seeds_text(len(evals), config.seeds_without_eval, "an evaluation"),
                    *_group_cells([ret for _, _, ret in evals], report.target)]
        row.append(_steps_text([run.env_steps for run in config.completed_runs if run.env_steps is not None]))
        if extra_tag:
            lasts = [float(values[-1]) for _, values in seed_curves(config, report.tag)]
            row.append(_group_cells(lasts, None)[0])
        row.append(_cell(_jobs_cell(config, report.tag)))
        lines.append("| " + " | ".join(row) + " |")
        repeated = [seed for seed, count in Counter(seed for _, seed, _ in finals).items() if count > 1]
        if repeated:
            notes.append(f"`{config.label}` has seed(s) {', '.join(map(str, sorted(repeated)))} from more than one "
                         f"job: each copy is counted")
    lines += ["", f"Final return: each seed's last logged `{RETURN_TAG}` (its summary.json), completed jobs only."]
    if with_eval:
        lines.append("Eval: each seed's last periodic evaluation (`eval_returns_per_seed` in its summary.json).")
    target = (f"; ≥ {format_number(report.target)}: the share of seeds at or above it"
              if report.target is not None else "")
    lines.append(f"Across seeds: IQM, the interquartile mean (the mean of the middle 50% of seeds; below 4 seeds, "
                 f"the mean); [low, high], a 95% stratified bootstrap confidence interval (percentile, "
                 f"{stats.REPS:,d} resamples of the seeds, fixed seed), from 2 seeds on; worst, the lowest seed; "
                 f"std, the sample standard deviation (n−1){target}. Following Agarwal et al. (2021), "
                 f"\"Deep Reinforcement Learning at the Edge of the Statistical Precipice\".")
    lines += [f"Note: {note}" for note in notes]
    not_completed = [run for run in report.runs if not run.completed]
    if not_completed:
        lines += ["", "## Jobs that did not complete", ""]
        for run in not_completed:
            seeds = ",".join(map(str, run.seeds)) or "?"
            lines.append(f"- `{run.name}` (seeds {seeds}): {_cell(_job_outcome(run, report.tag))}")
    return "\n".join(lines) + "\n"
