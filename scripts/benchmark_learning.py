"""Learning benchmark: every algorithm's default config on the classic-control ports.

Each (algorithm, environment) pair trains ``--seeds`` seeds in one program
(``num_seeds``) and is scored by the median over seeds of the final mean
episodic return. Beside it stands what published baselines report for the
same algorithm and environment (``PUBLISHED``, with the source and that
source's own step budget), so a reader can tell whether a default is in the
usual range. The markdown table goes to stdout and, with ``--write``,
replaces the learning section of ``docs/benchmarks.md``.

    python scripts/benchmark_learning.py --write
    python scripts/benchmark_learning.py --algos ppo trpo --envs Pendulum-v1
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

import jax
from hydra import compose, initialize_config_dir

from docs_section import write_block
from pgrun.config import ALGOS, register_configs
from pgrun.paths import conf_dir
from pgrun.run import run_training

BUDGETS = {"CartPole-v1": 500_000, "Acrobot-v1": 500_000, "Pendulum-v1": 1_000_000,
           "MountainCarContinuous-v0": 500_000}
# (algo, env) -> minimum median final return required.
TARGETS = {
    ("ppo", "CartPole-v1"): 475, ("a2c", "CartPole-v1"): 475, ("trpo", "CartPole-v1"): 475,
    ("npg", "CartPole-v1"): 475, ("reinforce", "CartPole-v1"): 400,
    ("ppo", "Acrobot-v1"): -100, ("trpo", "Acrobot-v1"): -100,
    ("ppo", "Pendulum-v1"): -250, ("trpo", "Pendulum-v1"): -250,
}
# Published final returns: (algo, env) -> [(source key, mean, std, training steps)]. Only numbers read in
# the sources below; a pair neither source reports is "n/a".
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
NOT_FOUND_NOTE = ("n/a: no published number found. Searched: the zoo's table (no REINFORCE or NPG agents), "
                  "CleanRL's PPO page (classic-control results for CartPole-v1, Acrobot-v1 and MountainCar-v0 "
                  "only) and CleanRL's other algorithm pages (no REINFORCE, A2C, NPG or TRPO). CleanRL's only "
                  "Pendulum-v1 figure found is `ppo_continuous_action.py` at 8M steps with MuJoCo settings "
                  "(-1141.98 ± 135.55 over 10 seeds, <https://docs.cleanrl.dev/rl-algorithms/rpo/>), a different "
                  "budget and setup, so it is not in the column.")


def published(algo: str, env: str) -> str:
    """The published returns for a pair as one table cell, each with its source and training budget."""
    entries = PUBLISHED.get((algo, env))
    if not entries:
        return "n/a"
    return "; ".join(f"{mean:.1f} ± {std:.1f} ({source}, {steps})" for source, mean, std, steps in entries)


def sources_note() -> str:
    lines = ["Published column: mean ± std (source, that source's training steps per run); the sources' budgets "
             "and evaluation differ from this table's, so read it as the usual range, not a matched comparison."]
    lines += [f"- `{key}`: {text}; <{url}>" for key, (text, url) in SOURCES.items()]
    return "\n".join(lines + [f"- {NOT_FOUND_NOTE}"])


DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


@dataclass
class Result:
    algo: str
    env: str
    command: str
    median: float
    mean: float
    std: float
    env_steps: int
    wall_seconds: float
    target: float | None

    @property
    def verdict(self) -> str:
        if self.target is None:
            return "—"
        return "pass" if self.median >= self.target else "**short**"


def run_one(algo: str, env: str, seeds: int, steps: int) -> Result:
    overrides = [f"algo={algo}", f"env={env}", f"total_timesteps={steps}", f"num_seeds={seeds}"]
    with initialize_config_dir(str(conf_dir()), version_base=None):
        cfg = compose("config", overrides=overrides + ["quiet=true"])
    with tempfile.TemporaryDirectory() as run_dir:
        summary = run_training(cfg, Path(run_dir))
    returns = [r for r in summary["returns_per_seed"] if r is not None]
    return Result(algo, env, "pgrun " + " ".join(overrides), statistics.median(returns),
                  statistics.fmean(returns), statistics.pstdev(returns), summary["env_steps"],
                  summary["wall_seconds"], TARGETS.get((algo, env)))


def table(results: list[Result], seeds: int) -> str:
    lines = [
        f"Date {datetime.date.today().isoformat()}; machine: {platform.machine()}, "
        f"{jax.device_count()} x {jax.devices()[0].device_kind}, jax {jax.__version__}; "
        f"{seeds} seeds per row (`num_seeds={seeds}`, one compiled program).",
        "",
        "| env | algo | median final return | mean ± std | published | target | verdict | env steps/seed | wall s "
        "| command |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        target = "—" if r.target is None else f">= {r.target}"
        lines.append(f"| {r.env} | {r.algo} | {r.median:.1f} | {r.mean:.1f} ± {r.std:.1f} | "
                     f"{published(r.algo, r.env)} | {target} | {r.verdict} | {r.env_steps:,} | "
                     f"{r.wall_seconds:.0f} | `{r.command}` |")
    return "\n".join(lines + ["", sources_note()])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algos", nargs="+", default=list(ALGOS), choices=ALGOS)
    parser.add_argument("--envs", nargs="+", default=list(BUDGETS), choices=list(BUDGETS))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--write", action="store_true", help=f"replace the learning section of {DOC}")
    args = parser.parse_args()
    register_configs()
    results = []
    for env in args.envs:
        for algo in args.algos:
            result = run_one(algo, env, args.seeds, BUDGETS[env])
            print(f"{env:26s} {algo:10s} median {result.median:9.1f}  {result.verdict}  ({result.wall_seconds:.0f}s)",
                  flush=True)
            results.append(result)
    text = table(results, args.seeds)
    print(text)
    if args.write:
        write_block("learning-benchmark", text, "## Learning: default configs on the classic-control ports")


if __name__ == "__main__":
    main()
