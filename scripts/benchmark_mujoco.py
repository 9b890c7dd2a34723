"""MuJoCo learning benchmark at the papers' budget: 1M steps, held-out seeds, published figures beside each row.

Rows: PPO and TRPO on Hopper-v5, HalfCheetah-v5 and Walker2d-v5; NPG and A2C
on Hopper-v5, each with the MuJoCo settings of conf/tuned/ (observation
normalisation and reward scaling from conf/env/). Each row is one ``pgrun``
process training all its seeds together (``num_seeds``), on seeds from
``--first-seed`` (1000: never the seeds anything was tuned on). A seed's score
is its final return (the training episodes that ended in the last logging
block, ``summary.json``'s ``returns_per_seed``); the final policy's
evaluation (deterministic, 10 episodes) stands beside it. Per row: IQM and
mean with 95% stratified bootstrap confidence intervals (pgrun.stats), the
worst seed, and the published figure with its source.

Finished rows are appended to ``--results`` (JSON lines); ``--resume`` skips
rows already there for the same seeds, so the table (hours on a small CPU)
can be built over several sittings::

    python scripts/benchmark_mujoco.py --write --resume
    python scripts/benchmark_mujoco.py --write --table-only     # the table from what has finished
    python scripts/benchmark_mujoco.py --rows ppo:Hopper-v5 --seeds 1 --steps 100000 --results /tmp/smoke.jsonl
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from docs_section import add_output_options, publish
from results import interval, row_result
from pgrun.stats import summarize

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "mujoco_results.jsonl"
BLOCK = "mujoco-learning"
HEADING = "## MuJoCo learning at 1M steps"


@dataclass(frozen=True)
class Row:
    algo: str
    env: str


ROWS = [Row("ppo", "Hopper-v5"), Row("ppo", "HalfCheetah-v5"), Row("ppo", "Walker2d-v5"),
        Row("trpo", "Hopper-v5"), Row("trpo", "HalfCheetah-v5"), Row("trpo", "Walker2d-v5"),
        Row("npg", "Hopper-v5"), Row("a2c", "Hopper-v5")]

# (algo, task without version) -> published figures at 1M steps, each tagged with its source in SOURCES
PUBLISHED = {
    ("ppo", "HalfCheetah"): "1442.6 ± 46.0 [cleanrl]",
    ("ppo", "Walker2d"): "2288.0 ± 571.8 [cleanrl]",
    ("ppo", "Hopper"): "2382.9 ± 271.7 [cleanrl]; 2609 [tianshou]",
    ("trpo", "Hopper"): "2046 [tianshou]",
    ("npg", "Hopper"): "1915 [tianshou]",
    ("a2c", "Hopper"): "1253 [tianshou]",
}
SOURCES = {
    "cleanrl": ("CleanRL `ppo_continuous_action.py`, MuJoCo v4, 1M steps, 3 seeds, mean ± std of the training "
                "episodic return", "https://docs.cleanrl.dev/rl-algorithms/ppo/#ppo_continuous_actionpy"),
    "tianshou": ("Tianshou's MuJoCo benchmark, 1M steps, mean over its seeds of the test return",
                 "https://github.com/thu-ml/tianshou/tree/master/examples/mujoco"),
}


def published(row: Row) -> str:
    return PUBLISHED.get((row.algo, row.env.split("-")[0]), "—")


def overrides(row: Row, steps: int, seeds: int, first_seed: int, backend: str) -> list[str]:
    return [f"algo={row.algo}", f"env={row.env}", f"env.backend={backend}", f"total_timesteps={steps}",
            f"num_seeds={seeds}", f"seed={first_seed}"]


def run_row(row: Row, steps: int, seeds: int, first_seed: int, backend: str) -> dict:
    """One ``pgrun`` process for the row (all seeds in it); what the table needs from its summary.json."""
    args = overrides(row, steps, seeds, first_seed, backend)
    with tempfile.TemporaryDirectory() as run_dir:
        pgrun = Path(sys.executable).with_name("pgrun")
        command = [str(pgrun), *args, f"hydra.run.dir={run_dir}"]
        subprocess.run(command, check=True, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        summary = json.loads((Path(run_dir) / "summary.json").read_text())
    return row_result(row.env, row.algo, args, summary)


def table_row(row: Row, result: dict | None) -> str:
    if result is None:
        return f"| {row.env} | {row.algo} | not run yet | | | | | {published(row)} | | |"
    returns = np.asarray([r for r in result["returns"] if r is not None], float)
    if not returns.size:
        return f"| {row.env} | {row.algo} | no seed has a final return | | | | | {published(row)} | | `{result['command']}` |"
    stats = summarize(returns)
    evals = result.get("eval_returns")
    eval_cell = interval(summarize(np.asarray(evals, float)), "iqm") if evals and None not in evals else "—"
    seeds = result["seeds"]
    seeds_cell = f"{seeds[0]}-{seeds[-1]}" if len(seeds) > 1 else str(seeds[0])
    missing = len(result["returns"]) - returns.size
    if missing:
        seeds_cell += f" ({missing} without a final return)"
    return (f"| {row.env} | {row.algo} | {seeds_cell} | {interval(stats, 'iqm')} | {interval(stats, 'mean')} | "
            f"{stats['worst']:.1f} | {eval_cell} | {published(row)} | {result['wall_seconds'] / 3600:.1f} | "
            f"`{result['command']}` |")


def table(rows: list[Row], results: dict[tuple[str, str], dict], command: str) -> str:
    lines = [
        f"Written by `{command}` on {datetime.date.today().isoformat()} ({platform.machine()}, {os.cpu_count()} "
        "CPU cores). Final return of a seed: the mean return of the training episodes that ended in its last 10 "
        "iterations; eval IQM: the final policy's own evaluation (deterministic, 10 episodes per seed). IQM and "
        "mean with 95% stratified bootstrap confidence intervals over seeds (pgrun.stats).",
        "",
        "| env | algo | seeds | IQM [95% CI] | mean [95% CI] | worst seed | eval IQM | published at 1M | wall h | command |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [table_row(row, results.get((row.env, row.algo))) for row in rows]
    lines += ["", "Published figures (their protocol, not this table's: read them as the usual level, not a matched "
              "comparison):"]
    lines += [f"- [{name}] {text}; <{url}>" for name, (text, url) in SOURCES.items()]
    return "\n".join(lines)


def load_results(path: Path) -> dict[tuple[str, str, int, int, int], dict]:
    """Finished rows by (env, algo, seeds, first seed, steps); a later line replaces an earlier one."""
    if not path.exists():
        return {}
    results = {}
    for line in path.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            results[(r["env"], r["algo"], len(r["seeds"]), r["seeds"][0], r["env_steps"])] = r
    return results


def parse_rows(names: list[str] | None) -> list[Row]:
    if not names:
        return ROWS
    chosen = []
    for name in names:
        algo, _, env = name.partition(":")
        if Row(algo, env) not in ROWS:
            raise SystemExit(f"no row {name}: choose from {', '.join(f'{r.algo}:{r.env}' for r in ROWS)}")
        chosen.append(Row(algo, env))
    return chosen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="*", help="algo:env rows, e.g. ppo:Hopper-v5 (default: all)")
    parser.add_argument("--steps", type=int, default=1_000_000, help="env steps per seed")
    parser.add_argument("--seeds", type=int, default=5, help="seeds per row, trained together")
    parser.add_argument("--first-seed", type=int, default=1000)
    parser.add_argument("--backend", default="gymnasium", help="env.backend of every row")
    parser.add_argument("--results", type=Path, default=RESULTS, help="JSON lines, one finished row each")
    parser.add_argument("--resume", action="store_true", help="skip rows already in --results")
    parser.add_argument("--table-only", action="store_true",
                        help="train nothing: the table from --results, rows without a result marked not run")
    add_output_options(parser, BLOCK)
    args = parser.parse_args()
    rows = parse_rows(args.rows)
    results = load_results(args.results)
    done: dict[tuple[str, str], dict] = {}
    for row in rows:
        # pgrun rounds the budget up to whole iterations: a finished row has at least --steps
        found = [r for (env, algo, n, first, steps), r in results.items()
                 if (env, algo, n, first) == (row.env, row.algo, args.seeds, args.first_seed) and steps >= args.steps]
        if (args.resume or args.table_only) and found:
            done[(row.env, row.algo)] = found[-1]
            continue
        if args.table_only:
            continue
        result = run_row(row, args.steps, args.seeds, args.first_seed, args.backend)
        done[(row.env, row.algo)] = result
        with args.results.open("a") as out:  # appended as each row ends: a stopped run loses one row at most
            out.write(json.dumps(result) + "\n")
        print(table_row(row, result), flush=True)
    command = " ".join(["python scripts/benchmark_mujoco.py", *sys.argv[1:]]).strip()
    publish(table(rows, done, command), BLOCK, HEADING, args.write, args.doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
