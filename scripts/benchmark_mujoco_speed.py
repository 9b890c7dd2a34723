"""MuJoCo speed: pgrun's PPO on Hopper against the simulator's own rate and Stable-Baselines3, in one process.

For every host backend (Gymnasium's synchronous vector env, its asynchronous
one with a worker process per environment, envpool when installed), at the
same number of environments (8):

- the *raw rate*: random actions, no policy, no learning -- the ceiling of
  any trainer on that backend (measured before and after the PPO run, the
  faster kept, as the load of a shared machine changes);
- pgrun's PPO end to end (the MuJoCo settings of conf/tuned/: 8 envs x 256
  steps, 10 epochs of 32 minibatches, observation normalisation and reward
  scaling on; evaluation off), with start-up and compilation included, and
  after compilation; its ratio to the raw rate of the same backend;
- Stable-Baselines3's PPO with the same batch layout (8 envs x 256 steps,
  minibatches of 64, 10 epochs, ``VecNormalize``, 64x64 tanh networks, one
  torch thread) on Gymnasium's synchronous vector env, when it is installed
  (the ``bench`` extra).

Every figure comes from this one run, so the ratios hold on any machine; the
absolute rates hold only for the machine named in the table's header::

    python scripts/benchmark_mujoco_speed.py [--steps 131072] [--raw-steps 2000] [--write]

The default budget, 64 updates, is long enough that compilation is a part of
the end-to-end figure rather than all of it, and short enough for SB3 to finish
in minutes; at the papers' 1M steps compilation weighs less still.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.util
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir

from docs_section import add_output_options, publish
from pgrun.config import register_configs
from pgrun.envs import make_env
from pgrun.paths import conf_dir
from pgrun.run import run_training
from pgrun.train import build, make_loop

BLOCK = "mujoco-speed"
HEADING = "## MuJoCo speed: host backends, the simulator's rate and Stable-Baselines3"
NUM_ENVS = 8
ENV_ID = "Hopper-v5"
BACKENDS = ("gymnasium", "gymnasium_async", "envpool")


@dataclass
class PgrunTiming:
    env_steps: int
    end_to_end_seconds: float  # run_training called to returned: environments, compilation, training
    compile_seconds: float
    train_seconds: float  # after compilation
    final_return: float

    @property
    def rate(self) -> float:
        return self.env_steps / self.end_to_end_seconds

    @property
    def rate_after_compile(self) -> float:
        return self.env_steps / self.train_seconds


def backend_available(backend: str) -> bool:
    return backend != "envpool" or importlib.util.find_spec("envpool") is not None


def raw_rate(backend: str, steps_per_env: int, seed: int = 0) -> float:
    """Env-steps per second with uniformly random actions (the environments built beforehand)."""
    envs, _ = make_env(ENV_ID, backend, NUM_ENVS)
    try:
        rng = np.random.default_rng(seed)
        low, high = envs.action_space.low, envs.action_space.high
        envs.reset(seed=seed)
        for _ in range(50):  # warm the workers and caches
            envs.step(rng.uniform(low, high, (NUM_ENVS, len(low))).astype(np.float32))
        start = time.perf_counter()
        for _ in range(steps_per_env):
            envs.step(rng.uniform(low, high, (NUM_ENVS, len(low))).astype(np.float32))
        return steps_per_env * NUM_ENVS / (time.perf_counter() - start)
    finally:
        envs.close()


def ppo_config(backend: str, steps: int):
    overrides = ["algo=ppo", f"env={ENV_ID}", f"env.backend={backend}", f"num_envs={NUM_ENVS}",
                 "algo.num_steps=256", f"total_timesteps={steps}", "eval.every=0", "quiet=true"]
    with initialize_config_dir(str(conf_dir()), version_base=None):
        cfg = compose("config", overrides=overrides)
    cfg.compile_cache_dir = ""  # a cold compile, as on a configuration's first run
    return cfg


def pgrun_ppo(backend: str, steps: int) -> PgrunTiming:
    cfg = ppo_config(backend, steps)
    with tempfile.TemporaryDirectory() as run_dir:
        start = time.perf_counter()
        summary = run_training(cfg, Path(run_dir))
        wall = time.perf_counter() - start
    train = summary["wall_seconds"] - summary["compile_seconds"]
    return PgrunTiming(summary["env_steps"], wall, summary["compile_seconds"], train, summary["final_return_mean"])


def time_by_part(backend: str, iterations: int) -> dict[str, float]:
    """Milliseconds per PPO iteration (2,048 env steps) in each part of pgrun's host loop -- stepping
    the simulator, acting (the policy call and the step's bookkeeping), learning -- after compilation."""
    loop = make_loop(build(ppo_config(backend, iterations * NUM_ENVS * 256)))
    runner = loop.start()
    loop.run_block(runner, 1)  # the first call of each program settles its buffers
    loop.seconds = dict.fromkeys(loop.seconds, 0.0)
    loop.run_block(runner, iterations)
    loop.envs.close()
    return {part: 1000 * seconds / iterations for part, seconds in loop.seconds.items()}


def sb3_ppo(steps: int, seed: int = 0) -> tuple[float, float] | None:
    """``(env-steps/s including start-up, final return)`` of Stable-Baselines3's PPO, or None without it."""
    if importlib.util.find_spec("stable_baselines3") is None:
        return None
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    torch.set_num_threads(1)
    start = time.perf_counter()
    envs = VecNormalize(make_vec_env(ENV_ID, n_envs=NUM_ENVS, seed=seed), gamma=0.99)
    policy = {"net_arch": {"pi": [64, 64], "vf": [64, 64]}, "activation_fn": torch.nn.Tanh}
    model = PPO("MlpPolicy", envs, learning_rate=lambda remaining: 3e-4 * remaining, n_steps=256, batch_size=64,
                n_epochs=10, gamma=0.99, gae_lambda=0.95, clip_range=0.2, ent_coef=0.0, vf_coef=0.5,
                max_grad_norm=0.5, policy_kwargs=policy, device="cpu", seed=seed, verbose=0)
    model.learn(total_timesteps=steps)
    wall = time.perf_counter() - start
    returns = [info["r"] for info in model.ep_info_buffer]
    return model.num_timesteps / wall, float(np.mean(returns)) if returns else float("nan")


def versions() -> str:
    found = []
    for dist in ("jax", "gymnasium", "mujoco", "envpool", "torch", "stable-baselines3"):
        try:
            found.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    return ", ".join(found)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=131072, help="env steps of every PPO run (whole 2048-step batches)")
    parser.add_argument("--raw-steps", type=int, default=2000, help="random-action steps per environment for the raw rate")
    parser.add_argument("--backends", nargs="*", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--no-sb3", action="store_true", help="leave Stable-Baselines3 out")
    parser.add_argument("--profile-iterations", type=int, default=8, help="PPO iterations timed part by part")
    add_output_options(parser, BLOCK)
    args = parser.parse_args()
    register_configs()
    backends = [b for b in args.backends if backend_available(b)]
    missing = [b for b in args.backends if b not in backends]

    rows, pgrun_rates, parts = [], {}, []
    for backend in backends:
        before = raw_rate(backend, args.raw_steps)
        ppo = pgrun_ppo(backend, args.steps)
        # the faster of two measurements around the PPO run: on a shared machine the load changes
        raw = max(before, raw_rate(backend, args.raw_steps, seed=1))
        print(f"  {backend}: raw {raw:,.0f} env-steps/s", flush=True)
        pgrun_rates[backend] = ppo.rate
        print(f"  {backend}: pgrun PPO {ppo.rate:,.0f} env-steps/s end to end, {ppo.rate_after_compile:,.0f} after "
              f"compile ({ppo.compile_seconds:.1f} s compile)", flush=True)
        rows.append(f"| {backend} | {raw:,.0f} | {ppo.rate:,.0f} | {ppo.rate_after_compile:,.0f} | "
                    f"{ppo.rate_after_compile / raw:.0%} | {ppo.compile_seconds:.1f} | {ppo.final_return:.1f} |")
        ms = time_by_part(backend, args.profile_iterations)
        raw_ms = 1000 * NUM_ENVS * 256 / raw
        parts.append(f"| {backend} | {raw_ms:.0f} | {ms['stepping']:.0f} | {ms['acting']:.0f} | {ms['learning']:.0f} "
                     f"| {raw_ms / (raw_ms + ms['learning']):.0%} |")
    sb3 = None if args.no_sb3 else sb3_ppo(args.steps)
    if sb3 is not None:
        print(f"  Stable-Baselines3 PPO: {sb3[0]:,.0f} env-steps/s", flush=True)

    command = " ".join(["python scripts/benchmark_mujoco_speed.py", *sys.argv[1:]]).strip()
    cores = os.cpu_count()
    lines = [f"Command: `{command}`; {datetime.date.today().isoformat()}; {platform.machine()}, {cores} CPU cores "
             f"shared with other jobs while it ran (absolute rates are this machine's, under that load; the "
             f"ratios are what carries over); {versions()}.", "",
             f"{ENV_ID}, {NUM_ENVS} environments; PPO {args.steps:,} env steps (8 x 256 per update, 10 epochs x 32 "
             f"minibatches); raw rate over {args.raw_steps:,} random-action steps per environment, the faster of "
             "two measurements (before and after the PPO run). "
             "*After compile*: training alone, over the raw rate in *share*; target: 80% or more.", "",
             "| backend | raw simulator, env-steps/s | pgrun PPO end to end | pgrun PPO after compile | share of raw "
             "| compile s | final return |",
             "|---|---:|---:|---:|---:|---:|---:|", *rows]
    lines += ["", f"Where an iteration's time goes (ms per PPO iteration of 2,048 env steps, mean of "
                  f"{args.profile_iterations} iterations after compilation): the raw simulator's time for the same "
                  "steps, pgrun's stepping, acting (the policy call per step and the step's bookkeeping) and "
                  "learning (10 epochs x 32 minibatches). On-policy PPO cannot step while it learns, so *raw share "
                  "at best* -- raw / (raw + learning), with acting free -- bounds the share of raw any trainer of "
                  "this layout reaches on this machine.", "",
              "| backend | raw simulator | stepping | acting | learning | raw share at best |",
              "|---|---:|---:|---:|---:|---:|", *parts]
    if missing:
        lines += ["", f"Not measured (not installed): {', '.join(missing)}."]
    if sb3 is not None:
        lines += ["", f"Stable-Baselines3 PPO, same layout on Gymnasium's synchronous vector env, one torch thread, "
                      f"start-up included: {sb3[0]:,.0f} env-steps/s (final return {sb3[1]:.1f}). pgrun end to end, "
                      "compile included, relative to it (target: 4x or more): "
                  + "; ".join(f"{b} {rate / sb3[0]:.1f}x" for b, rate in pgrun_rates.items()) + "."]
    publish("\n".join(lines), BLOCK, HEADING, args.write, args.doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
