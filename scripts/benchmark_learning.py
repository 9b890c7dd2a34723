"""Learning benchmark: every algorithm's default config on the classic-control ports, on held-out seeds.

Each row trains one (algorithm, environment) pair for ``seeds`` seeds in one
vectorised program (``num_seeds``, seeds from ``--first-seed``, 1000 by
default: the defaults were tuned on seeds 0-9, never on these) and reports
what Agarwal et al. (2021) ask of a result: the mean and the interquartile
mean (IQM) over seeds with 95% stratified bootstrap confidence intervals, the
worst seed, and the fraction of seeds at or above the row's bar. A seed's
score is its final return: the mean return of the training episodes that
ended in the last logging block (10 iterations), as ``summary.json``'s
``returns_per_seed``; where the run evaluated its final policy
(``eval.every``), the evaluation's IQM stands beside it. Published figures of
other libraries sit beside each row with their source and budget.

Rows are appended to ``--results`` (JSON lines, per-seed returns included)
as they finish; with ``--resume`` a rerun skips the rows already there for
the same seeds, so a long run that was stopped continues where it was. ``--write`` puts the table into
docs/benchmarks.md.

    python scripts/benchmark_learning.py --write --resume           # every row, reusing finished ones
    python scripts/benchmark_learning.py --algos ppo --envs CartPole-v1 --seeds 8
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np

from docs_section import write_block
from results import interval, row_result
from pgrun.algos import algorithm_names
from pgrun.stats import summarize

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "learning_results.jsonl"


@dataclass(frozen=True)
class Bar:
    """What a row must reach: every given condition over the seeds' final returns."""

    mean: float | None = None  # mean at least this
    worst: float | None = None  # every seed at least this
    seed_level: float | None = None  # ... and at least `seeds_at_level` seeds at or above this
    seeds_at_level: int | None = None

    def describe(self, seeds: int) -> str:
        parts = []
        if self.mean is not None:
            parts.append(f"mean >= {self.mean:g}")
        if self.worst is not None:
            parts.append(f"worst >= {self.worst:g}")
        if self.seed_level is not None:
            parts.append(f">= {self.seeds_at_level} of {seeds} seeds >= {self.seed_level:g}")
        return ", ".join(parts) or "report as measured"

    def met(self, returns: np.ndarray) -> bool | None:
        if self.mean is None and self.worst is None and self.seed_level is None:
            return None
        ok = True
        if self.mean is not None:
            ok &= bool(returns.mean() >= self.mean)
        if self.worst is not None:
            ok &= bool(returns.min() >= self.worst)
        if self.seed_level is not None:
            ok &= int((returns >= self.seed_level).sum()) >= self.seeds_at_level
        return ok

    def for_seeds(self, planned: int, seeds: int) -> "Bar":
        """The same bar for another number of seeds (the share of seeds at the level kept)."""
        if self.seeds_at_level is None:
            return self
        return Bar(self.mean, self.worst, self.seed_level, math.ceil(self.seeds_at_level * seeds / planned))

    @property
    def level(self) -> float | None:
        """The score whose fraction of seeds the table shows."""
        return self.seed_level if self.seed_level is not None else self.worst if self.worst is not None else self.mean


@dataclass(frozen=True)
class Row:
    env: str
    algo: str
    steps: int
    seeds: int
    bar: Bar
    note: str = ""  # e.g. which conf/tuned entry applies


# Each environment's budget, seeds and bar, for every registered algorithm; BARS holds the rows whose
# target differs from the environment's (REINFORCE, and the tasks the defaults are not tuned for).
TASKS: dict[str, tuple[int, int, Bar]] = {
    "CartPole-v1": (500_000, 32, Bar(mean=480, seed_level=450, seeds_at_level=30)),
    "Acrobot-v1": (500_000, 16, Bar(mean=-90, worst=-120)),
    "Pendulum-v1": (1_000_000, 16, Bar(mean=-200)),
    "MountainCar-v0": (500_000, 8, Bar()),
    "MountainCarContinuous-v0": (500_000, 8, Bar()),
}
BARS: dict[tuple[str, str], Bar] = {
    ("reinforce", "CartPole-v1"): Bar(mean=450),
    ("reinforce", "Acrobot-v1"): Bar(),
    ("reinforce", "Pendulum-v1"): Bar(mean=-400),
    ("a2c", "Pendulum-v1"): Bar(mean=-250),
}


def rows() -> list[Row]:
    """One row per registered algorithm and task: the learning targets of the classic-control
    tasks, with the conf/tuned entry named where one applies."""
    out = []
    for env, (steps, seeds, bar) in TASKS.items():
        for algo in algorithm_names():
            tuned = f"conf/tuned/{algo}_{env}.yaml"
            note = tuned if (ROOT / tuned).exists() else ""
            out.append(Row(env, algo, steps, seeds, BARS.get((algo, env), bar), note))
    return out


# Published final returns: (algo, env) -> [(source key, mean, std, training steps)], only numbers read in the
# sources below.
PUBLISHED: dict[tuple[str, str], list[tuple[str, float, float, str]]] = {
    ("a2c", "CartPole-v1"): [("zoo", 500.0, 0.0, "500k")],
    ("trpo", "CartPole-v1"): [("zoo", 500.0, 0.0, "100k")],
    ("ppo", "CartPole-v1"): [("zoo", 500.0, 0.0, "100k"), ("cleanrl", 490.04, 6.12, "500k")],
    ("a2c", "Acrobot-v1"): [("zoo", -83.353, 17.213, "500k")],
    ("trpo", "Acrobot-v1"): [("zoo", -83.114, 18.648, "100k")],
    ("ppo", "Acrobot-v1"): [("zoo", -73.506, 18.201, "1M"), ("cleanrl", -86.36, 1.32, "500k")],
    ("a2c", "Pendulum-v1"): [("zoo", -162.965, 103.210, "1M")],
    ("trpo", "Pendulum-v1"): [("zoo", -174.631, 127.577, "100k")],
    ("ppo", "Pendulum-v1"): [("zoo", -172.225, 104.159, "100k")],
    ("a2c", "MountainCarContinuous-v0"): [("zoo", 91.166, 0.255, "100k")],
    ("trpo", "MountainCarContinuous-v0"): [("zoo", 92.489, 0.355, "50k")],
    ("ppo", "MountainCarContinuous-v0"): [("zoo", 88.343, 2.572, "20k")],
}
SOURCES = {
    "zoo": ("rl-baselines3-zoo's benchmark table: Stable-Baselines3 with the zoo's tuned hyperparameters, one "
            "trained agent per row, deterministic policy, ± over the episodes of about 150k evaluation steps",
            "https://github.com/DLR-RM/rl-baselines3-zoo/blob/0088472b8cb622732bdbc4aa3d0d0abde86c67ed/benchmark.md"),
    "cleanrl": ("CleanRL's `ppo.py` results (average episodic return over training; 3 seeds, default "
                "500k steps, 4 envs x 128 steps)", "https://docs.cleanrl.dev/rl-algorithms/ppo/#experiment-results"),
}


def published(algo: str, env: str) -> str:
    entries = PUBLISHED.get((algo, env))
    if not entries:
        return "n/a"
    return "; ".join(f"{mean:.1f} ± {std:.1f} ({source}, {steps})" for source, mean, std, steps in entries)


def overrides(row: Row, first_seed: int) -> list[str]:
    return [f"algo={row.algo}", f"env={row.env}", f"total_timesteps={row.steps}", f"num_seeds={row.seeds}",
            f"seed={first_seed}"]


def run_row(row: Row, first_seed: int) -> dict:
    """Train one row and return what the table needs (and the raw per-seed figures)."""
    from hydra import compose, initialize_config_dir

    from pgrun.config import register_configs
    from pgrun.paths import conf_dir
    from pgrun.run import run_training

    register_configs()
    args = overrides(row, first_seed)
    with initialize_config_dir(str(conf_dir()), version_base=None):
        cfg = compose("config", overrides=args + ["quiet=true"])
    with tempfile.TemporaryDirectory() as run_dir:
        summary = run_training(cfg, Path(run_dir))
    return row_result(row.env, row.algo, args, summary)


def table_row(row: Row, result: dict) -> str:
    """A seed without a final return (it failed, or no episode ended) fails the bar and is
    left out of the statistics; the seeds column says how many there were."""
    returns = np.asarray([r for r in result["returns"] if r is not None], float)
    missing = len(result["returns"]) - returns.size
    if not returns.size:
        return f"| {row.env} | {row.algo} | no seed has a final return | | | | | | | | **short** | | `{result['command']}` |"
    level = row.bar.level
    stats = summarize(returns, target=level)
    met = row.bar.met(returns) if not missing else (None if row.bar.level is None else False)
    verdict = "—" if met is None else ("pass" if met else "**short**")
    total = len(result["returns"])
    at_level = "—" if level is None else f"{int(round(stats['fraction_at_or_above'] * stats['n']))}/{total} >= {level:g}"
    evals = result.get("eval_returns")
    eval_cell = "—"
    if evals and all(e is not None for e in evals):
        eval_cell = interval(summarize(np.asarray(evals, float)), "iqm")
    bar = row.bar.describe(row.seeds) + (f" ({row.note})" if row.note else "")
    seeds = result["seeds"]
    seeds_cell = f"{seeds[0]}-{seeds[-1]}" + (f" ({missing} without a final return)" if missing else "")
    return (f"| {row.env} | {row.algo} | {seeds_cell} | {interval(stats, 'iqm')} | {interval(stats, 'mean')} | "
            f"{stats['worst']:.1f} | {at_level} | {eval_cell} | {published(row.algo, row.env)} | {bar} | {verdict} | "
            f"{result['wall_seconds']:.0f} | `{result['command']}` |")


def table(selected: list[Row], results: dict[tuple[str, str], dict], command: str) -> str:
    lines = [
        f"Written by `{command}` on {datetime.date.today().isoformat()} ({platform.machine()}, "
        f"{jax.device_count()} x {jax.devices()[0].device_kind}, jax {jax.__version__}). Final return of a seed: "
        "the mean return of the training episodes that ended in its last 10 iterations. IQM and mean with 95% "
        "stratified bootstrap confidence intervals over seeds (pgrun.stats, checked against rliable); eval IQM: "
        "the final policy's own evaluation (deterministic, 10 episodes per seed) where the run made one.",
        "",
        "| env | algo | seeds | IQM [95% CI] | mean [95% CI] | worst seed | seeds at the bar | eval IQM | published "
        "| bar | verdict | wall s | command |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [table_row(row, results[(row.env, row.algo)]) if (row.env, row.algo) in results else
              f"| {row.env} | {row.algo} | not run yet | | | | | | {published(row.algo, row.env)} | "
              f"{row.bar.describe(row.seeds)} | | | |" for row in selected]
    lines += ["", "Published column: mean ± std (source, that source's training steps per run); the sources' budgets "
              "and evaluation differ from this table's, so read it as the usual range, not a matched comparison."]
    lines += [f"- `{key}`: {text}; <{url}>" for key, (text, url) in SOURCES.items()]
    return "\n".join(lines)


def load_results(path: Path) -> dict[tuple[str, str, int, int], dict]:
    """Finished rows by (env, algo, number of seeds, first seed); a later line replaces an earlier one."""
    if not path.exists():
        return {}
    results = {}
    for line in path.read_text().splitlines():
        if line.strip():
            result = json.loads(line)
            results[key(result["env"], result["algo"], result["seeds"])] = result
    return results


def key(env: str, algo: str, seeds: list[int]) -> tuple[str, str, int, int]:
    return env, algo, len(seeds), seeds[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algos", nargs="+", default=algorithm_names(), choices=algorithm_names())
    parser.add_argument("--envs", nargs="+", default=None, help="default: every environment with a row")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per row (default: the row's own)")
    parser.add_argument("--first-seed", type=int, default=1000)
    parser.add_argument("--results", type=Path, default=RESULTS, help="JSON lines, one finished row each")
    parser.add_argument("--resume", action="store_true", help="skip rows already in --results")
    parser.add_argument("--write", action="store_true", help="replace the learning section of docs/benchmarks.md")
    parser.add_argument("--table-only", action="store_true",
                        help="train nothing: the table from --results, rows without a result listed as not run")
    args = parser.parse_args()
    selected = [r for r in rows() if r.algo in args.algos and (args.envs is None or r.env in args.envs)]
    if args.seeds is not None:
        selected = [Row(r.env, r.algo, r.steps, args.seeds, r.bar.for_seeds(r.seeds, args.seeds), r.note)
                    for r in selected]
    results = load_results(args.results)
    done = {}
    for row in selected:
        row_key = key(row.env, row.algo, list(range(args.first_seed, args.first_seed + row.seeds)))
        if (args.resume or args.table_only) and row_key in results:
            done[(row.env, row.algo)] = results[row_key]
            continue
        if args.table_only:
            continue
        result = run_row(row, args.first_seed)
        done[(row.env, row.algo)] = result
        with args.results.open("a") as out:  # appended: a rerun row's newer line wins on --resume
            out.write(json.dumps(result) + "\n")
        print(table_row(row, result), flush=True)
    command = "python scripts/benchmark_learning.py " + " ".join(sys.argv[1:])
    text = table(selected, done, command.strip())
    print(text)
    if args.write:
        write_block("learning-benchmark", text, "## Learning: default configs on the classic-control ports")


if __name__ == "__main__":
    main()
