"""Throughput of the PPO training loop on CartPole-v1 (the foundation's target).

500k env steps per seed, 4 envs x 128 steps, 4 epochs x 4 minibatches,
64x64 tanh MLPs; one seed and ``--seeds`` vmapped seeds. Prints wall time,
compile time and env-steps/s (aggregate over seeds) as a markdown table.

    python scripts/benchmark_throughput.py [--steps 500000] [--seeds 16]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from pathlib import Path


import jax
from hydra import compose, initialize_config_dir

from pgrun.config import register_configs
from pgrun.paths import conf_dir
from pgrun.run import run_training


def measure(num_seeds: int, steps: int) -> dict:
    register_configs()
    overrides = ["algo=ppo", "env=CartPole-v1", f"total_timesteps={steps}", "num_envs=4", "algo.num_steps=128",
                 "algo.update_epochs=4", "algo.num_minibatches=4", f"num_seeds={num_seeds}", "quiet=true"]
    with initialize_config_dir(str(conf_dir()), version_base=None):
        cfg = compose("config", overrides=overrides)
    with tempfile.TemporaryDirectory() as run_dir:
        return run_training(cfg, Path(run_dir))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500_000)
    parser.add_argument("--seeds", type=int, default=16)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {jax.device_count()} x {jax.devices()[0].device_kind}, "
          f"jax {jax.__version__}")
    print("| seeds | env steps/seed | wall s | compile s | env-steps/s (aggregate) | after compile | final return |")
    print("|---|---|---|---|---|---|---|")
    for seeds in (1, args.seeds):
        s = measure(seeds, args.steps)
        print(f"| {seeds} | {s['env_steps']:,} | {s['wall_seconds']:.2f} | {s['compile_seconds']:.2f} | "
              f"{s['sps']:,.0f} | {s['sps_after_compile']:,.0f} | {s['final_return_mean']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
