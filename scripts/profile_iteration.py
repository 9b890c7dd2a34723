"""Where one training iteration's time goes: the rollout and the update of PPO and of TRPO, timed apart.

The settings are those of ``scripts/benchmark_speed.py`` (PPO on CartPole-v1,
8 envs x 128 steps, 4 epochs x 4 minibatches; TRPO on Pendulum-v1, 8 envs x
256 steps, 15 CG iterations, critic 10 epochs x 16 minibatches), one seed.
For each algorithm the script compiles, ahead of time and apart,

- the rollout: the policy acting in the JAX port for ``num_steps`` steps of
  every env (one ``lax.scan``), and
- the update: episode bookkeeping, observation normalisation and the
  algorithm's update of actor and critic on that batch,

then runs ``--warmup`` untimed iterations and times ``--repeats`` more,
each call on its own (waiting for its result), carrying state and batch
from one to the next as training does. For comparison it also times the
training loop's own compiled block (``log_interval`` iterations in one
``lax.scan``, as ``pgrun`` runs them) per iteration: the difference to
rollout + update is what the separate calls cost and what compiling them
together saves. Compilation is never timed. ``--write`` puts the table,
with this command, the date and the machine, into its block of
``docs/benchmarks.md`` (or of ``--doc``)::

    python scripts/profile_iteration.py [--repeats 50] [--warmup 5] [--algos ppo trpo] [--write] [--doc PATH]
"""

from __future__ import annotations

import argparse
import math
import shlex
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

SCRIPTS = Path(__file__).resolve().parent
sys.path.insert(0, str(SCRIPTS))  # the sibling modules, also when imported from elsewhere

import jax  # noqa: E402

import bench_machine  # noqa: E402
from benchmark_speed import PPO_OVERRIDES, TRPO_OVERRIDES, pgrun_config  # noqa: E402
from docs_section import add_output_options, plural, publish  # noqa: E402
from pgrun.config import register_configs  # noqa: E402
from pgrun.rollout import make_rollout  # noqa: E402
from pgrun.train import JaxLoop, build, make_learn  # noqa: E402

BLOCK = "iteration-profile"
HEADING = "### Where the time goes"
ALGOS = {"ppo": ("PPO CartPole-v1", PPO_OVERRIDES), "trpo": ("TRPO Pendulum-v1", TRPO_OVERRIDES)}
# Sets the learning-rate schedule's length only; the timed programs are the same for any budget.
BUDGET = 1_000_000


@dataclass
class Timings:
    """Seconds per call of each timed part."""

    rollout: list[float]
    update: list[float]
    iteration: list[float]  # the training block's time per iteration


@dataclass
class Profile:
    task: str
    overrides: list[str]
    steps_per_iteration: int
    block_len: int
    timings: Timings


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    return out, time.perf_counter() - start


def profile(task: str, overrides: list[str], repeats: int, warmup: int) -> Profile:
    """Time the rollout, the update and the training block of one seed of ``overrides``."""
    register_configs()
    cfg = pgrun_config(overrides, BUDGET, 1)  # the compilation cache off: nothing is left behind
    if cfg.get("eval") is not None:
        cfg.eval.every = 0  # the training block alone
    setup = build(cfg)
    loop = JaxLoop(setup)
    init, args = loop.initializer()
    state = jax.tree.map(lambda x: x[0], init(*args))  # the one member, without the member axis
    rollout = jax.jit(make_rollout(setup.env, setup.policy, setup.normalize, cfg.algo.num_steps))
    learn = jax.jit(make_learn(setup))
    train, env_state, obs, key = state.train, state.env_state, state.obs, state.key
    rollout_args = (train.params, train.obs_stats, env_state, obs, key)
    batch = jax.eval_shape(rollout, *rollout_args)[2]
    rollout = rollout.lower(*rollout_args).compile()
    learn = learn.lower(train, batch, key).compile()

    rollouts, updates = [], []
    for i in range(warmup + repeats):
        key, k_rollout, k_learn = jax.random.split(key, 3)
        (env_state, obs, batch), seconds_rollout = timed(
            lambda: rollout(train.params, train.obs_stats, env_state, obs, k_rollout))
        (train, _), seconds_update = timed(lambda: learn(train, batch, k_learn))
        if i >= warmup:
            rollouts.append(seconds_rollout)
            updates.append(seconds_update)

    runner = loop.start()  # compiles the training block
    blocks = max(2, -(-repeats // setup.block_len))
    per_iteration = []
    for i in range(1 + blocks):  # the first block is a warm-up
        (runner, _), seconds = timed(lambda: loop.run_block(runner))
        if i >= 1:
            per_iteration.append(seconds / setup.block_len)
    return Profile(task, overrides, setup.steps_per_iteration, setup.block_len,
                   Timings(rollouts, updates, per_iteration))


def ms(values: list[float]) -> str:
    """Median and, in brackets, fastest, in milliseconds."""
    return f"{1e3 * statistics.median(values):.2f} ({1e3 * min(values):.2f})"


def check(p: Profile) -> None:
    """A timing that is not a positive number means the measurement is broken."""
    t = p.timings
    for values in (t.rollout, t.update, t.iteration):
        if not values or not all(math.isfinite(v) and v > 0 for v in values):
            raise RuntimeError(f"implausible timings for {p.task}: {t}")


def render(profiles: list[Profile], command: str, repeats: int, warmup: int, date: str, machine: str,
           load_start: str, load_end: str) -> str:
    header = ["algorithm, task", "env steps per iteration", "rollout ms", "update ms", "rollout + update ms",
              "iteration inside the training block ms", "env-steps/s inside the training block"]
    lines = [f"Command: `{command}`. Date {date}; machine: {machine}; load average (1/5/15 min) {load_start} at "
             f"the start, {load_end} at the end.",
             "",
             f"One seed; each cell is the median over {plural(repeats, 'timed iteration')} (after "
             f"{warmup} untimed), the fastest in brackets; the training block's columns divide each block's "
             "time by its iterations (median over blocks, after one untimed block). Settings (those of "
             "`scripts/benchmark_speed.py`):",
             ""]
    lines += [f"- {p.task}: `pgrun {' '.join(p.overrides)}`, blocks of {p.block_len} iterations" for p in profiles]
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for p in profiles:
        t = p.timings
        both = [r + u for r, u in zip(t.rollout, t.update)]
        rate = p.steps_per_iteration / statistics.median(t.iteration)
        lines.append(f"| {p.task} | {p.steps_per_iteration:,} | {ms(t.rollout)} | {ms(t.update)} | {ms(both)} | "
                     f"{ms(t.iteration)} | {rate:,.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50, help="timed iterations per part")
    parser.add_argument("--warmup", type=int, default=5, help="untimed iterations before them")
    parser.add_argument("--algos", nargs="+", choices=sorted(ALGOS), default=sorted(ALGOS))
    add_output_options(parser, BLOCK)
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.warmup < 0:
        parser.error("--repeats must be at least 1 and --warmup at least 0")
    argv = sys.argv[1:] if argv is None else argv
    command = shlex.join(["python", "scripts/profile_iteration.py", *argv])

    register_configs()
    date, machine, load_start = bench_machine.now(), bench_machine.describe(), bench_machine.load_average()
    print(f"{date}; {machine}; load {load_start}", flush=True)
    profiles = []
    for name in args.algos:
        task, overrides = ALGOS[name]
        p = profile(task, overrides, args.repeats, args.warmup)
        check(p)
        print(f"  {task}: rollout {ms(p.timings.rollout)} ms, update {ms(p.timings.update)} ms, "
              f"iteration in the block {ms(p.timings.iteration)} ms", flush=True)
        profiles.append(p)
    text = render(profiles, command, args.repeats, args.warmup, date, machine, load_start,
                  bench_machine.load_average())
    publish(text, BLOCK, HEADING, args.write, args.doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
