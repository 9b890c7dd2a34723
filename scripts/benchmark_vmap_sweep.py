"""What a vectorised sweep saves: one compiled program against one process per job.

Trains the same grid -- PPO on CartPole-v1, three learning rates x four seeds
-- three ways, each as a user would type it, and times the whole command:

1. one process, ``pgrun 'sweep.vmap={algo.lr: [...]}' num_seeds=4``;
2. twelve processes, ``pgrun algo.lr=X seed=S``, one after another, each with
   its compilation cache disabled (what twelve independent jobs cost);
3. the same twelve processes sharing a warm persistent compilation cache
   (pgrun's default: later jobs of the same shapes skip compilation).

    python scripts/benchmark_vmap_sweep.py                 # prints a markdown table
    python scripts/benchmark_vmap_sweep.py --write         # also updates docs/benchmarks.md (or --doc PATH)
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bench_machine
from docs_section import add_output_options, publish


def pgrun(args: list[str], cwd: Path) -> tuple[float, dict]:
    """Run one ``pgrun`` command; return its wall time and its summary.json."""
    run_dir = cwd / f"run-{time.monotonic_ns()}"
    command = [sys.executable, "-m", "pgrun", *args, "quiet=true", f"hydra.run.dir={run_dir}"]
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"benchmark_vmap_sweep: {' '.join(args)} failed:\n{result.stderr}")
    return seconds, json.loads((run_dir / "summary.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100_000, help="env steps per member (default 100000)")
    parser.add_argument("--lrs", type=float, nargs="+", default=[1e-4, 3e-4, 1e-3])
    parser.add_argument("--seeds", type=int, default=4)
    add_output_options(parser, "vmap-sweep-benchmark")
    args = parser.parse_args()
    command = shlex.join(["python", "scripts/benchmark_vmap_sweep.py", *sys.argv[1:]])
    date, machine = bench_machine.now(), bench_machine.describe()
    common = ["algo=ppo", "env=CartPole-v1", f"total_timesteps={args.steps}"]
    values = ",".join(f"{lr:g}" for lr in args.lrs)
    jobs = len(args.lrs) * args.seeds
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        seconds, summary = pgrun([*common, f"sweep.vmap={{algo.lr: [{values}]}}", f"num_seeds={args.seeds}",
                                  "compile_cache_dir="], work)
        rows.append(("one process, `sweep.vmap` x `num_seeds` (one compiled program)", seconds,
                     summary["compile_seconds"], summary["final_return_mean"]))
        for label, cache in (("separate processes, no compilation cache", ""),
                             ("separate processes, shared warm compilation cache", str(work / "xla-cache"))):
            total, compile_total, returns = 0.0, 0.0, []
            for lr in args.lrs:
                for seed in range(args.seeds):
                    seconds, summary = pgrun([*common, f"algo.lr={lr:g}", f"seed={seed}",
                                              f"compile_cache_dir={cache}"], work)
                    total += seconds
                    compile_total += summary["compile_seconds"]
                    returns.append(summary["final_return_mean"])
            rows.append((f"{jobs} {label}", total, compile_total, sum(returns) / len(returns)))
    one = rows[0][1]
    lines = [
        f"Date {date}; machine: {machine}; PPO on CartPole-v1, learning rates {values} x {args.seeds} seeds, "
        f"{args.steps:,d} env steps each.",
        "",
        f"Command: `{command}`",
        "",
        "| how | wall s (whole commands) | compile s | mean final return | cost vs one program |",
        "|---|---|---|---|---|",
    ]
    for label, seconds, compile_seconds, mean_return in rows:
        lines.append(f"| {label} | {seconds:.1f} | {compile_seconds:.1f} | {mean_return:.1f} | {seconds / one:.1f}x |")
    text = "\n".join(lines) + "\n"
    publish(text, "vmap-sweep-benchmark", "## Vectorised sweep against separate processes", args.write, args.doc)


if __name__ == "__main__":
    main()
