"""Throughput of pgrun's PPO training loop on CartPole-v1, with a cold and a warm compilation cache.

PPO on CartPole-v1 with 4 envs x 128 steps, 4 epochs x 4 minibatches and
the default config otherwise (64x64 tanh actor and critic), ``--steps`` env
steps per seed (rounded up to whole iterations), with one seed and with
``--seeds`` seeds vmapped in one program. Every row is a fresh Python
process that starts JAX's backend before the timer, then trains:

- cold: the persistent compilation cache is a new, empty directory, as on
  the first run of a configuration;
- warm: a second process reuses the directory the cold run filled, as on
  every later run (the cache is on by default).

Wall and compile seconds are the run's own (``summary.json``: compile is
initialisation and XLA compilation up to the first block being ready);
env-steps/s are summed over seeds. ``--write`` puts the table, with this
command, the date and the machine, into its block of ``docs/benchmarks.md``
(or of ``--doc``)::

    python scripts/benchmark_throughput.py [--steps 500000] [--seeds 16] [--write] [--doc PATH]
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCRIPTS = Path(__file__).resolve().parent
sys.path.insert(0, str(SCRIPTS))  # the sibling modules, also when imported from elsewhere

import bench_machine  # noqa: E402
from docs_section import add_output_options, plural, publish  # noqa: E402

BLOCK = "throughput-benchmark"
HEADING = "## Training-loop throughput: PPO on CartPole-v1"
OVERRIDES = ["algo=ppo", "env=CartPole-v1", "num_envs=4", "algo.num_steps=128", "algo.update_epochs=4",
             "algo.num_minibatches=4"]


def compose_config(steps: int, seeds: int, cache_dir: str = "") -> Any:
    """The benchmark's config; ``cache_dir`` is the persistent compilation cache (``""``: off)."""
    from hydra import compose, initialize_config_dir

    from pgrun.config import register_configs
    from pgrun.paths import conf_dir

    register_configs()
    with initialize_config_dir(str(conf_dir()), version_base=None):
        cfg = compose("config", overrides=OVERRIDES + [f"total_timesteps={steps}", f"num_seeds={seeds}",
                                                       "quiet=true"])
    cfg.compile_cache_dir = cache_dir
    return cfg


def measure(steps: int, seeds: int, cache_dir: str) -> dict:
    """Train once in this process with ``cache_dir`` as the compilation cache; the summary's timings."""
    import jax
    import jax.numpy as jnp

    from pgrun.run import enable_compile_cache, run_training

    # JAX decides once per process whether to use the persistent cache, at its first compilation,
    # so the cache is set before the backend is started (outside the timer) with a trivial program.
    enable_compile_cache(cache_dir)
    jax.block_until_ready(jax.jit(lambda x: x + 1)(jnp.zeros(2)))
    cfg = compose_config(steps, seeds, cache_dir)
    with tempfile.TemporaryDirectory() as run_dir:
        summary = run_training(cfg, Path(run_dir))
    return {key: summary[key] for key in ("env_steps", "wall_seconds", "compile_seconds", "sps",
                                          "sps_after_compile")}


def measure_in_fresh_process(steps: int, seeds: int, cache_dir: str) -> dict:
    code = (f"import json, sys; sys.path.insert(0, {str(SCRIPTS)!r}); import benchmark_throughput as b; "
            f"print(json.dumps(b.measure({steps}, {seeds}, {cache_dir!r})))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the run with {seeds} seed(s) failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


@dataclass
class Row:
    seeds: int
    cache: str  # "cold" or "warm"
    env_steps: int  # per seed
    wall_seconds: float
    compile_seconds: float
    sps: float  # summed over seeds, compile included
    sps_after_compile: float

    def cells(self) -> list[str]:
        return [str(self.seeds), self.cache, f"{self.env_steps:,}", f"{self.wall_seconds:.2f}",
                f"{self.compile_seconds:.2f}", f"{self.sps:,.0f}", f"{self.sps_after_compile:,.0f}"]


def setting(steps: int, seeds: list[int]) -> str:
    """What was trained, from the composed config, so the text cannot drift from the runs."""
    from pgrun.config import schedule

    cfg = compose_config(steps, 1)
    run_schedule = schedule(cfg)
    algo = cfg.algo
    command = " ".join(["pgrun", *OVERRIDES, f"total_timesteps={steps}"])
    parts = [f"`{command}` with `num_seeds` {' and '.join(map(str, seeds))}: {algo.update_epochs} epochs x "
             f"{algo.num_minibatches} minibatches per iteration of {cfg.num_envs} envs x {algo.num_steps} steps, "
             f"{'x'.join(map(str, algo.hidden_sizes))} {algo.activation} actor and critic; "
             f"{plural(run_schedule.total, 'iteration')} in logging blocks of {run_schedule.block_len}, checkpoints every "
             f"{cfg.checkpoint.every} iterations"]
    if cfg.get("eval") is not None:  # evaluation during training, where this version has it
        parts.append(f"evaluation of {cfg.eval.episodes} episodes every {cfg.eval.every} iterations and after the "
                     "last block" if cfg.eval.every else "no evaluation")
    return "; ".join(parts)


def render(rows: list[Row], command: str, steps: int, seeds: list[int], date: str, machine: str,
           load_start: str, load_end: str) -> str:
    header = ["seeds", "compile cache", "env steps/seed", "wall s", "compile s", "env-steps/s incl. compile",
              "env-steps/s after compile"]
    lines = [f"Command: `{command}`. Date {date}; machine: {machine}; load average (1/5/15 min) {load_start} at "
             f"the start, {load_end} at the end.",
             "",
             f"Setting: {setting(steps, seeds)}. Each row is a fresh process; JAX's backend starts before the "
             "timer. Cold: a new, empty compilation cache directory; warm: the same directory again, as the "
             "cold run left it.",
             "",
             "| " + " | ".join(header) + " |",
             "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)


def check(row: Row) -> None:
    """A run that reports no steps or a non-finite rate is a broken benchmark, not a slow one."""
    values = [row.wall_seconds, row.compile_seconds, row.sps, row.sps_after_compile]
    if row.env_steps <= 0 or not all(math.isfinite(v) and v > 0 for v in values):
        raise RuntimeError(f"implausible measurement: {row}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500_000,
                        help="env steps per seed (rounded up to whole iterations); a few thousand for a "
                             "smoke test")
    parser.add_argument("--seeds", type=int, default=16, help="seeds of the vmapped rows (the other rows have one)")
    add_output_options(parser, BLOCK)
    args = parser.parse_args(argv)
    if args.steps < 1 or args.seeds < 1:
        parser.error("--steps and --seeds must be at least 1")
    argv = sys.argv[1:] if argv is None else argv
    command = shlex.join(["python", "scripts/benchmark_throughput.py", *argv])

    seeds = sorted({1, args.seeds})
    date, machine, load_start = bench_machine.now(), bench_machine.describe(), bench_machine.load_average()
    print(f"{date}; {machine}; load {load_start}", flush=True)
    rows = []
    for n in seeds:
        with tempfile.TemporaryDirectory(prefix="pgrun-xla-cache-") as cache:
            for state in ("cold", "warm"):
                row = Row(n, state, **measure_in_fresh_process(args.steps, n, cache))
                check(row)
                print(f"  seeds={n:<3d} {state}: {row.env_steps:,} steps/seed in {row.wall_seconds:.2f} s "
                      f"(compile {row.compile_seconds:.2f} s): {row.sps:,.0f} env-steps/s, "
                      f"{row.sps_after_compile:,.0f} after compile", flush=True)
                rows.append(row)
    text = render(rows, command, args.steps, seeds, date, machine, load_start, bench_machine.load_average())
    publish(text, BLOCK, HEADING, args.write, args.doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
