"""Speed against the libraries a user would pick instead, and against this machine's limits.

In one process, on one machine, with the same env-step budget and comparable
hyperparameters:

- PPO on CartPole-v1 (8 envs x 128 steps, 4 epochs x 4 minibatches, 64x64
  tanh actor and critic, lr 2.5e-4 annealed, clip 0.2, GAE 0.95, entropy
  0.01): pgrun (1 seed, and ``--seeds`` vmapped seeds), Stable-Baselines3
  (torch, 8 Gymnasium envs in a DummyVecEnv) and rejax (pure JAX on gymnax's
  CartPole; 1 seed, and ``--seeds`` seeds vmapped);
- TRPO on Pendulum-v1 (8 envs x 256 steps = sb3-contrib's default 2048
  samples per update, 15 CG iterations, damping 0.1, KL 0.01, backtracking
  0.8 x 10, critic 10 epochs of 128-sample minibatches at lr 1e-3, GAE 0.95):
  pgrun and sb3-contrib;
- two ceilings for pgrun's PPO: the raw simulator rate (a random policy
  stepping the JAX CartPole port with auto-reset in one jitted ``lax.scan``)
  and the compute bound (matmul FLOPs of one training iteration divided by
  the measured float32 matmul throughput).

Every timing includes start-up: model construction for the torch libraries,
initialisation and XLA compilation for the JAX ones. pgrun's plain rows compile
cold (its persistent compilation cache off, as on a configuration's first run);
its "warm compile cache" rows rerun in a fresh process whose cache an identical
run filled, as on every later run. torch gets one intra-op thread by default
(for networks this small, by far the faster on a busy machine). ``--repeats`` keeps the fastest
of several runs per row, for a busy machine. A library that is not installed
is skipped with a one-line note. The comparison libraries live in the
``bench`` extra; it needs a CPU build of torch installed first, or pip pulls
the multi-GB CUDA one::

    pip install torch --index-url https://download.pytorch.org/whl/cpu
    pip install -e ".[bench]"
    python scripts/benchmark_speed.py [--steps 200000] [--seeds 16] [--repeats 3] [--write]
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.util
import json
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from hydra import compose, initialize_config_dir

from docs_section import write_block
from pgrun.config import register_configs, schedule
from pgrun.envs.classic import make_jax_env
from pgrun.envs.core import Discrete
from pgrun.envs.wrappers import auto_reset_step
from pgrun.paths import conf_dir
from pgrun.run import run_training

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
INSTALL_HINT = "install the bench extra (a CPU torch first): pip install -e '.[bench]'"

# The shared settings, in pgrun's override syntax; the other libraries get the same values below.
PPO_OVERRIDES = ["algo=ppo", "env=CartPole-v1", "num_envs=8", "algo.num_steps=128", "algo.update_epochs=4",
                 "algo.num_minibatches=4", "algo.lr=2.5e-4", "algo.anneal_lr=true", "algo.gamma=0.99",
                 "algo.gae_lambda=0.95", "algo.clip_eps=0.2", "algo.ent_coef=0.01", "algo.vf_coef=0.5",
                 "algo.max_grad_norm=0.5", "algo.hidden_sizes=[64,64]", "algo.activation=tanh",
                 # as the compared libraries train: raw rewards, an unclipped value loss
                 "env.normalize_reward=false", "algo.clip_vloss=false"]
TRPO_OVERRIDES = ["algo=trpo", "env=Pendulum-v1", "env.normalize_obs=false", "env.normalize_reward=false", "num_envs=8", "algo.num_steps=256",
                  "algo.cg_iters=15", "algo.damping=0.1", "algo.delta=0.01", "algo.backtrack_coef=0.8",
                  "algo.max_backtracks=10", "algo.vf_iters=10", "algo.vf_minibatches=16", "algo.lr=1e-3",
                  "algo.gamma=0.99", "algo.gae_lambda=0.95", "algo.hidden_sizes=[64,64]", "algo.activation=tanh"]


@dataclass
class Row:
    """One measured training run; ``sps`` sums over seeds."""

    name: str
    task: str
    seeds: int
    env_steps: int  # per seed
    wall: float
    compile: float | None
    final_return: float | None

    @property
    def sps(self) -> float:
        return self.env_steps * self.seeds / self.wall

    @property
    def sps_after_compile(self) -> float | None:
        if self.compile is None:
            return None
        return self.env_steps * self.seeds / max(self.wall - self.compile, 1e-9)


def best_of(repeats: int, run: Callable[[], Row]) -> Row:
    """The fastest of ``repeats`` runs: on a shared machine the slower ones measure the neighbours."""
    return min((run() for _ in range(max(repeats, 1))), key=lambda row: row.wall)


def warm_up() -> None:
    """Pay JAX's one-off process costs (backend, first compile) before any timed run,
    so they are charged to none of the libraries."""
    x = jnp.ones((8, 8))
    jax.block_until_ready(jax.jit(lambda a: jnp.tanh(a @ a))(x))


def available(module: str) -> bool:
    if importlib.util.find_spec(module) is None:
        print(f"skipping: {module} is not installed; {INSTALL_HINT}", flush=True)
        return False
    return True


# ------------------------------------------------------------------------------------------ pgrun


def pgrun_config(overrides: list[str], steps: int, seeds: int, cache_dir: str = "") -> Any:
    """The composed config; ``cache_dir=""`` turns pgrun's persistent compilation cache off,
    so every compile is cold."""
    with initialize_config_dir(str(conf_dir()), version_base=None):
        cfg = compose("config", overrides=overrides + [f"total_timesteps={steps}", f"num_seeds={seeds}",
                                                       "quiet=true"])
    cfg.compile_cache_dir = cache_dir
    return cfg


def rounded_steps(overrides: list[str], steps: int) -> int:
    """The budget pgrun actually runs (whole iterations), which every library then gets."""
    cfg = pgrun_config(overrides, steps, 1)
    return schedule(cfg).total * cfg.num_envs * cfg.algo.num_steps


def pgrun_summary(overrides: list[str], steps: int, seeds: int, cache_dir: str = "") -> dict:
    register_configs()
    cfg = pgrun_config(overrides, steps, seeds, cache_dir)
    with tempfile.TemporaryDirectory() as run_dir:
        return run_training(cfg, Path(run_dir))


def summary_row(name: str, task: str, seeds: int, s: dict) -> Row:
    return Row(name, task, seeds, s["env_steps"], s["wall_seconds"], s["compile_seconds"], s["final_return_mean"])


def run_pgrun(task: str, overrides: list[str], steps: int, seeds: int) -> Row:
    return summary_row("pgrun", task, seeds, pgrun_summary(overrides, steps, seeds))


def run_pgrun_warm(task: str, overrides: list[str], steps: int, seeds: int) -> Row:
    """The same run with pgrun's persistent compilation cache warm, as on a user's second run
    of a configuration: two fresh processes share a new cache directory, the second is timed."""
    child = ("import json, sys; sys.path.insert(0, {dir!r}); import benchmark_speed as b; "
             "print(json.dumps(b.pgrun_summary({args})))")
    with tempfile.TemporaryDirectory() as cache:
        args = ", ".join(map(repr, (overrides, steps, seeds, cache)))
        code = child.format(dir=str(Path(__file__).resolve().parent), args=args)
        for _ in range(2):
            done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return summary_row("pgrun, warm compile cache", task, seeds, json.loads(done.stdout.strip().splitlines()[-1]))


# ---------------------------------------------------------------------------------- Stable-Baselines3


def torch_net_kwargs() -> dict:
    import torch

    return {"net_arch": {"pi": [64, 64], "vf": [64, 64]}, "activation_fn": torch.nn.Tanh, "ortho_init": True}


def sb3_final_return(model: Any) -> float | None:
    """Mean return of the last (up to 100) finished training episodes, SB3's own monitor window."""
    returns = [info["r"] for info in model.ep_info_buffer]
    return float(np.mean(returns)) if returns else None


def run_sb3_ppo(steps: int, seed: int = 0) -> Row:
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    start = time.perf_counter()
    env = make_vec_env("CartPole-v1", n_envs=8, seed=seed)
    model = PPO("MlpPolicy", env, learning_rate=lambda progress_remaining: 2.5e-4 * progress_remaining,
                n_steps=128, batch_size=8 * 128 // 4, n_epochs=4, gamma=0.99, gae_lambda=0.95, clip_range=0.2,
                ent_coef=0.01, vf_coef=0.5, max_grad_norm=0.5, policy_kwargs=torch_net_kwargs(), device="cpu",
                seed=seed, verbose=0)
    model.learn(total_timesteps=steps)
    wall = time.perf_counter() - start
    return Row("Stable-Baselines3", "PPO CartPole-v1", 1, int(model.num_timesteps), wall, None,
               sb3_final_return(model))


def run_sb3_trpo(steps: int, seed: int = 0) -> Row:
    from sb3_contrib import TRPO
    from stable_baselines3.common.env_util import make_vec_env

    start = time.perf_counter()
    env = make_vec_env("Pendulum-v1", n_envs=8, seed=seed)
    model = TRPO("MlpPolicy", env, learning_rate=1e-3, n_steps=256, batch_size=128, gamma=0.99, cg_max_steps=15,
                 cg_damping=0.1, line_search_shrinking_factor=0.8, line_search_max_iter=10, n_critic_updates=10,
                 gae_lambda=0.95, normalize_advantage=True, target_kl=0.01, policy_kwargs=torch_net_kwargs(),
                 device="cpu", seed=seed, verbose=0)
    model.learn(total_timesteps=steps)
    wall = time.perf_counter() - start
    return Row("sb3-contrib", "TRPO Pendulum-v1", 1, int(model.num_timesteps), wall, None, sb3_final_return(model))


# -------------------------------------------------------------------------------------------- rejax


def run_rejax_ppo(steps: int, seeds: int) -> Row:
    """rejax's PPO, jitted whole; its periodic evaluation is replaced by a no-op while timing
    (pgrun does not evaluate either) and run once, untimed, afterwards for the final return."""
    from rejax import PPO

    algo = PPO.create(env="CartPole-v1", num_envs=8, num_steps=128, num_epochs=4, num_minibatches=4,
                      learning_rate=2.5e-4, max_grad_norm=0.5, gamma=0.99, gae_lambda=0.95, clip_eps=0.2,
                      ent_coef=0.01, vf_coef=0.5, total_timesteps=steps, eval_freq=steps,
                      skip_initial_evaluation=True,
                      agent_kwargs={"activation": "tanh", "hidden_layer_sizes": (64, 64)})
    evaluate = algo.eval_callback
    algo = algo.replace(eval_callback=lambda algo, ts, rng: jnp.zeros(()))
    keys = jax.random.split(jax.random.PRNGKey(0), seeds)
    train = jax.jit(jax.vmap(algo.train) if seeds > 1 else lambda k: algo.train(k[0]))
    start = time.perf_counter()
    compiled = train.lower(keys).compile()
    compile_seconds = time.perf_counter() - start
    ts, _ = jax.block_until_ready(compiled(keys))
    wall = time.perf_counter() - start
    score = jax.jit(lambda ts, key: evaluate(algo, ts, key)[1].mean())
    if seeds > 1:
        final = float(jnp.mean(jax.vmap(score)(ts, keys)))
    else:
        final = float(score(ts, keys[0]))
    iteration = 8 * 128
    env_steps = -(-steps // iteration) * iteration
    return Row("rejax", "PPO CartPole-v1", seeds, env_steps, wall, compile_seconds, final)


# ------------------------------------------------------------------------------------------ ceilings


def simulator_rate(env_id: str, num_envs: int, steps_per_env: int) -> tuple[float, float]:
    """(env-steps/s after compile, compile s) of a uniformly random policy stepping the
    JAX port with auto-reset, keys drawn the way the training rollout draws them."""
    env = make_jax_env(env_id)
    space = env.action_space
    batched = jax.vmap(auto_reset_step, in_axes=(None, 0, 0, 0, 0))

    def random_actions(key):
        if isinstance(space, Discrete):
            return jax.random.randint(key, (num_envs,), 0, space.n)
        return jax.random.uniform(key, (num_envs,) + space.shape, minval=space.low, maxval=space.high)

    def run(key):
        obs, state = jax.vmap(env.reset)(jax.random.split(key, num_envs))

        def step(carry, keys):
            state, total = carry
            obs, state, reward, _, _, _ = batched(env, keys[1:1 + num_envs], keys[1 + num_envs:], state,
                                                  random_actions(keys[0]))
            return (state, total + reward.sum() + obs.sum() * 0.0), None

        keys = jax.random.split(key, (steps_per_env, 1 + 2 * num_envs))
        (state, total), _ = jax.lax.scan(step, (state, jnp.zeros(())), keys)
        return total

    fn = jax.jit(run)
    key = jax.random.PRNGKey(0)
    start = time.perf_counter()
    compiled = fn.lower(key).compile()
    compile_seconds = time.perf_counter() - start
    jax.block_until_ready(compiled(key))  # warm-up
    best = min(timed(lambda: compiled(key)) for _ in range(5))
    return num_envs * steps_per_env / best, compile_seconds


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


def matmul_flops_per_second(m: int, k: int, n: int, repeats: int, trials: int) -> float:
    """float32 FLOP/s of ``repeats`` chained [m,k]x[k,n] products inside one jitted loop
    (k == n, orthogonal weights keep the values from over- or underflowing); the best of
    ``trials``, since on a shared machine only the fastest trial approaches the hardware."""
    x = jax.random.normal(jax.random.PRNGKey(0), (m, k), jnp.float32)
    w = jnp.linalg.qr(jax.random.normal(jax.random.PRNGKey(1), (k, n), jnp.float32))[0]
    fn = jax.jit(lambda x, w: jax.lax.fori_loop(0, repeats, lambda _, y: y @ w, x))
    compiled = fn.lower(x, w).compile()
    jax.block_until_ready(compiled(x, w))
    best = min(timed(lambda: compiled(x, w)) for _ in range(trials))
    return 2.0 * m * k * n * repeats / best


def mlp_forward_flops(sizes: list[int]) -> int:
    """Multiply-add FLOPs (2 per weight) of one sample through dense layers of these widths."""
    return sum(2 * a * b for a, b in zip(sizes[:-1], sizes[1:]))


def ppo_flops_per_env_step(obs_dim: int, num_actions: int, hidden: list[int], epochs: int) -> float:
    """Matmul FLOPs per env step of one PPO iteration: every sample goes forward through
    actor and critic once in the rollout and ``epochs`` times forward+backward (about 3
    forward passes) in the update; biases, activations and the optimiser are not counted."""
    forward = mlp_forward_flops([obs_dim, *hidden, num_actions]) + mlp_forward_flops([obs_dim, *hidden, 1])
    return forward * (1 + 3 * epochs)


def ceilings(ours: dict[str, Row], seeds: int, ppo_steps: int, trpo_steps: int) -> list[str]:
    """Measure both ceilings and tabulate the fraction of each that pgrun's runs reached."""
    small = matmul_flops_per_second(256, 64, 64, 2000, trials=10)
    large = matmul_flops_per_second(2048, 2048, 2048, 4, trials=3)
    flops = ppo_flops_per_env_step(4, 2, [64, 64], 4)
    sim = {1: simulator_rate("CartPole-v1", 8, max(ppo_steps // 8, 1)),
           seeds: simulator_rate("CartPole-v1", 8 * seeds, max(ppo_steps // 8, 1))}
    print(f"  matmul [256,64]x[64,64]: {small / 1e9:.1f} GFLOP/s; [2048,2048]^2: {large / 1e9:.1f} GFLOP/s; "
          f"PPO {flops / 1e3:.1f} kFLOP per env step; simulator " +
          ", ".join(f"{rate:,.0f} env-steps/s ({8 * n} envs)" for n, (rate, _) in sim.items()), flush=True)
    lines = [f"Ceilings for pgrun's PPO on CartPole-v1. Matmul throughput: {small / 1e9:.1f} GFLOP/s at the "
             f"minibatch's shape ([256,64]x[64,64], chained 2000 times in one jitted loop) and {large / 1e9:.1f} "
             f"GFLOP/s at [2048,2048]x[2048,2048]. One iteration costs {flops / 1e3:.1f} kFLOP of matmuls per env "
             f"step (actor+critic forward once in the rollout, then 4 epochs of forward+backward, about 3 forward "
             f"passes each). The simulator ceiling runs the same number of envs per seed (8, and 8 x {seeds}).",
             "", "| ceiling | seeds | ceiling env-steps/s | pgrun after compile | fraction | pgrun incl. compile "
             "| fraction |", "|---|---|---|---|---|---|---|"]

    def add(label: str, ceiling: float, row: Row) -> None:
        lines.append(f"| {label} | {row.seeds} | {ceiling:,.0f} | {row.sps_after_compile:,.0f} | "
                     f"{row.sps_after_compile / ceiling:.0%} | {row.sps:,.0f} | {row.sps / ceiling:.0%} |")

    runs = [ours[key] for key in ("ppo1", "ppoN") if key in ours]
    for row in runs:
        add("raw simulator: random policy, jitted scan, auto-reset", sim[row.seeds][0], row)
    for row in runs:
        add("compute bound at the minibatch shape's matmul rate", small / flops, row)
    for row in runs:
        add("compute bound at the large matmul's rate", large / flops, row)
    if "trpo" in ours:
        add("raw simulator, Pendulum-v1 (for TRPO)", simulator_rate("Pendulum-v1", 8, max(trpo_steps // 8, 1))[0],
            ours["trpo"])
    lines.append(f"\nThe simulator's own compile took {sim[1][1]:.2f} s (8 envs); ceilings are rates after compile.")
    return lines


# ------------------------------------------------------------------------------------------- report


def fmt(value: float | None, spec: str = ",.0f") -> str:
    return "—" if value is None else format(value, spec)


def table(rows: list[Row], baselines: dict[str, Row]) -> list[str]:
    lines = ["| library | task | seeds | env steps/seed | wall s | compile s | env-steps/s incl. compile | "
             "after compile | x baseline (incl. compile) | final return |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        base = baselines.get(r.task)
        ratio = "—" if base is None or base is r else f"{r.sps / base.sps:.1f}x"
        lines.append(f"| {r.name} | {r.task} | {r.seeds} | {r.env_steps:,} | {r.wall:.2f} | {fmt(r.compile, '.2f')} | "
                     f"{r.sps:,.0f} | {fmt(r.sps_after_compile)} | {ratio} | {fmt(r.final_return, '.1f')} |")
    return lines


def library_versions() -> str:
    found = []
    for dist in ("jax", "torch", "stable-baselines3", "sb3-contrib", "rejax", "gymnax"):
        try:
            found.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    return ", ".join(found)


def torch_threads() -> str:
    if importlib.util.find_spec("torch") is None:
        return "n/a"
    import torch

    return str(torch.get_num_threads())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200_000,
                        help="env steps per seed and library (rounded up to pgrun's whole logging blocks)")
    parser.add_argument("--seeds", type=int, default=16, help="seeds of the vmapped JAX runs")
    parser.add_argument("--skip", nargs="*", default=[], choices=["pgrun", "sb3", "rejax", "limits"],
                        help="parts to leave out")
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="torch intra-op threads for the torch libraries (0: torch's default); one thread "
                             "is fastest for these small networks, by far on a busy machine")
    parser.add_argument("--repeats", type=int, default=1,
                        help="run every row this many times and keep the fastest (for a busy machine)")
    parser.add_argument("--no-warm", action="store_true",
                        help="leave out pgrun's warm-compilation-cache rows (two extra processes each)")
    parser.add_argument("--write", action="store_true", help=f"replace the speed table in {DOC}")
    args = parser.parse_args()
    register_configs()
    if args.torch_threads and importlib.util.find_spec("torch") is not None:
        import torch

        torch.set_num_threads(args.torch_threads)
    ppo_steps = rounded_steps(PPO_OVERRIDES, args.steps)
    trpo_steps = rounded_steps(TRPO_OVERRIDES, args.steps)
    print(f"{platform.machine()}, {jax.device_count()} x {jax.devices()[0].device_kind}; {library_versions()}",
          flush=True)

    warm_up()
    n = args.repeats
    rows: list[Row] = []

    def record(row: Row) -> Row:
        print(f"  {row.name:18s} {row.task:17s} seeds={row.seeds:<3d} {row.env_steps:,} steps/seed "
              f"in {row.wall:7.2f}s: {row.sps:10,.0f} env-steps/s (return {fmt(row.final_return, '.1f')})",
              flush=True)
        rows.append(row)
        return row

    ours: dict[str, Row] = {}
    if "pgrun" not in args.skip:
        ours["ppo1"] = record(best_of(n, lambda: run_pgrun("PPO CartPole-v1", PPO_OVERRIDES, ppo_steps, 1)))
        ours["ppoN"] = record(best_of(n, lambda: run_pgrun("PPO CartPole-v1", PPO_OVERRIDES, ppo_steps,
                                                           args.seeds)))
        ours["trpo"] = record(best_of(n, lambda: run_pgrun("TRPO Pendulum-v1", TRPO_OVERRIDES, trpo_steps, 1)))
        if not args.no_warm:
            record(best_of(n, lambda: run_pgrun_warm("PPO CartPole-v1", PPO_OVERRIDES, ppo_steps, 1)))
            record(best_of(n, lambda: run_pgrun_warm("PPO CartPole-v1", PPO_OVERRIDES, ppo_steps, args.seeds)))
            record(best_of(n, lambda: run_pgrun_warm("TRPO Pendulum-v1", TRPO_OVERRIDES, trpo_steps, 1)))
    baselines: dict[str, Row] = {}
    if "sb3" not in args.skip and available("stable_baselines3"):
        baselines["PPO CartPole-v1"] = record(best_of(n, lambda: run_sb3_ppo(ppo_steps)))
        if available("sb3_contrib"):
            baselines["TRPO Pendulum-v1"] = record(best_of(n, lambda: run_sb3_trpo(trpo_steps)))
    if "rejax" not in args.skip and available("rejax"):
        record(best_of(n, lambda: run_rejax_ppo(ppo_steps, 1)))
        record(best_of(n, lambda: run_rejax_ppo(ppo_steps, args.seeds)))

    command = " ".join(["python scripts/benchmark_speed.py", *sys.argv[1:]]).strip()
    lines = [f"Command: `{command}`. Budget {ppo_steps:,} env steps per seed and library (`--steps {args.steps}`); "
             f"{datetime.date.today().isoformat()}; {platform.machine()}, {jax.devices()[0].device_kind}; "
             f"{library_versions()}; torch threads: {torch_threads()}; fastest of {n} run(s) per row.", ""]
    if rows:
        lines += table(rows, baselines)

    if "limits" not in args.skip:
        lines += ["", *ceilings(ours, args.seeds, ppo_steps, trpo_steps)]
    text = "\n".join(lines)
    print(text)
    if not rows and "limits" in args.skip:
        print("nothing ran", file=sys.stderr)
        return 1
    if args.write:
        write_block("speed-benchmark", text, "## Against other libraries")
    return 0


if __name__ == "__main__":
    sys.exit(main())
