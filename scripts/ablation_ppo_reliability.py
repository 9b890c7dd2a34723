"""Why some PPO and A2C seeds collapsed on CartPole-v1: one difference at a time, 32 seeds each.

Each variant trains PPO (the ``a2c_`` variants: A2C) with its CartPole-v1
defaults (PPO: 500k steps, 4 envs x 128 steps, 4 epochs x 4 minibatches, lr
2.5e-4 annealed, 64x64 tanh) for 32 seeds in one vectorised program, changing
one thing: either a config override or,
for what pgrun deliberately does not offer (treating a time-limit truncation as
a terminal state, as PureJaxRL's ``ppo.py`` does), a documented in-script patch.
Beside the final return (the mean over the episodes that ended in the last
logging block of 10 iterations, as in summary.json) it reports how saturated
each seed's critic ended: the fraction of second-layer tanh units with
|tanh| > 0.99 on 2,048 CartPole states drawn uniformly from the region a
balancing policy visits. A saturated layer gives the same value everywhere,
so the advantages lose their baseline and the critic its gradient.

    python scripts/ablation_ppo_reliability.py --write --resume  # every PPO variant, seeds 0-31
    python scripts/ablation_ppo_reliability.py --write --resume --variants a2c_before a2c_reward_scaling \
        a2c_no_entropy a2c_default a2c_sb3                          # the A2C study
    python scripts/ablation_ppo_reliability.py --variants default value_clip --seeds 8

Each variant runs in a subprocess of its own (patches never leak between
variants) and its per-seed figures are appended to ``--results``, so a run
that was stopped continues with ``--resume``; the table goes to stdout and,
with ``--write``, to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TOTAL_STEPS = 500_000

# name -> (what it changes, overrides, patch name or None)
BEFORE = ["env.normalize_reward=false", "algo.clip_vloss=false"]  # pgrun's PPO defaults before this study
VARIANTS: dict[str, tuple[str, list[str], str | None]] = {
    "before": ("pgrun's defaults before this study: raw rewards, value loss unclipped", BEFORE, None),
    "value_clip": ("value loss clipped to clip_eps around the rollout's values (PureJaxRL, CleanRL)",
                   ["env.normalize_reward=false", "algo.clip_vloss=true"], None),
    "truncation_terminal": ("a time-limit truncation treated as termination (PureJaxRL's handling)", BEFORE,
                            "truncation_terminal"),
    "purejaxrl": ("value loss clipped and truncation treated as termination: PureJaxRL's ppo.py point for point",
                  ["env.normalize_reward=false", "algo.clip_vloss=true"], "truncation_terminal"),
    "small_targets": ("rewards x 0.1 for the critic and advantages (value targets 10x smaller)", BEFORE,
                      "reward_scale_0.1"),
    "reward_scaling": ("rewards divided by a running std of the discounted return (env.normalize_reward)",
                       ["env.normalize_reward=true", "algo.clip_vloss=false"], None),
    "default": ("reward scaling and the clipped value loss: pgrun's defaults now",
                ["env.normalize_reward=true", "algo.clip_vloss=true"], None),
    "lr_per_iteration": ("learning rate annealed per iteration instead of per minibatch step (PureJaxRL's "
                         "schedule)", BEFORE, "lr_per_iteration"),
    "jax_permutation": ("minibatches shuffled by jax.random.permutation instead of pgrun's sort of packed keys",
                        BEFORE, "jax_permutation"),
    "batch_adv_norm": ("advantages normalised over the whole batch, not per minibatch",
                       BEFORE + ["algo.norm_adv=false"], "batch_adv_norm"),
    # A2C, CartPole-v1 defaults (4 envs x 16 steps, lr 7e-4 annealed, n-step returns), one change at a time.
    "a2c_before": ("A2C with pgrun's defaults before this study: raw rewards, entropy bonus 0.01",
                   ["algo=a2c", "env.normalize_reward=false", "algo.ent_coef=0.01"], None),
    "a2c_reward_scaling": ("A2C, rewards scaled (env.normalize_reward), entropy bonus 0.01",
                           ["algo=a2c", "env.normalize_reward=true", "algo.ent_coef=0.01"], None),
    "a2c_no_entropy": ("A2C, raw rewards, no entropy bonus", ["algo=a2c", "env.normalize_reward=false",
                                                              "algo.ent_coef=0.0"], None),
    "a2c_default": ("A2C with rewards scaled and no entropy bonus: pgrun's defaults now",
                    ["algo=a2c", "env.normalize_reward=true", "algo.ent_coef=0.0"], None),
    "a2c_sb3": ("A2C as Stable-Baselines3's defaults with the zoo's 8 CartPole envs, as far as pgrun expresses "
                "them: 8 envs x 5 steps, constant lr 7e-4, no entropy bonus, raw rewards (Adam, not RMSprop)",
                ["algo=a2c", "env.normalize_reward=false", "algo.ent_coef=0.0", "num_envs=8", "algo.num_steps=5",
                 "algo.anneal_lr=false"], None),
}
PPO_VARIANTS = [name for name in VARIANTS if not name.startswith("a2c_")]


def apply_patch(name: str | None) -> None:
    """Monkeypatch pgrun for a variant that no config key expresses."""
    if name is None:
        return
    import jax
    import jax.numpy as jnp

    import pgrun.algos.common as common
    import pgrun.algos.ppo as ppo

    if name == "truncation_terminal":
        original = ppo.gae_targets
        ppo.gae_targets = lambda policy, critic, batch, gamma, lam: original(
            policy, critic, batch.replace(terminated=batch.dones), gamma, lam)
    elif name == "reward_scale_0.1":
        original = ppo.gae_targets
        ppo.gae_targets = lambda policy, critic, batch, gamma, lam: original(
            policy, critic, batch.replace(rewards=batch.rewards * 0.1), gamma, lam)
    elif name == "batch_adv_norm":
        original = ppo.gae_targets

        def normalised(policy, critic, batch, gamma, lam):
            values, advantages, targets = original(policy, critic, batch, gamma, lam)
            return values, common.normalize(advantages), targets

        ppo.gae_targets = normalised
    elif name == "lr_per_iteration":
        original_step = ppo.optimizer_step
        steps_per_iteration = 4 * 4  # update_epochs x num_minibatches of the defaults

        def stepwise(optimizer, grads, opt_state, params, hparams, decay_steps):
            done = (opt_state.count // steps_per_iteration) * steps_per_iteration
            lr = hparams["lr"] * jnp.maximum(1.0 - done / decay_steps, 0.0)
            return original_step(optimizer, grads, opt_state, params, {**hparams, "lr": lr}, None)

        ppo.optimizer_step = stepwise
    elif name == "jax_permutation":
        common.random_permutation = jax.random.permutation
    else:
        raise ValueError(f"unknown patch {name}")


def critic_saturation(checkpoint_path: Path, num_states: int = 2048) -> list[float]:
    """Per seed: the fraction of (state, unit) pairs of the critic's last hidden layer with |tanh| > 0.99."""
    from pgrun import checkpoint

    critic = checkpoint.read(checkpoint_path)["state"]["train"]["params"]["critic"]["params"]
    rng = np.random.default_rng(0)
    high = np.array([2.4, 2.0, 0.21, 2.0], np.float32)
    states = rng.uniform(-high, high, size=(num_states, 4)).astype(np.float32)
    layers = sorted(critic, key=lambda name: int(name.split("_")[1]))[:-1]  # hidden layers, not the head
    hidden = np.broadcast_to(states, (np.asarray(critic[layers[0]]["kernel"]).shape[0],) + states.shape)
    for name in layers:
        kernel, bias = np.asarray(critic[name]["kernel"]), np.asarray(critic[name]["bias"])
        hidden = np.tanh(np.einsum("msi,mio->mso", hidden, kernel) + bias[:, None, :])
    return (np.abs(hidden) > 0.99).mean(axis=(1, 2)).tolist()


def run_variant(name: str, seeds: int, first_seed: int, steps: int) -> dict:
    """Train one variant in this process (called in a subprocess) and return its figures."""
    from hydra import compose, initialize_config_dir

    from pgrun.config import register_configs
    from pgrun.paths import conf_dir
    from pgrun.run import run_training

    _, overrides, patch = VARIANTS[name]
    apply_patch(patch)
    register_configs()
    with initialize_config_dir(str(conf_dir()), version_base=None):
        algo = [] if any(o.startswith("algo=") for o in overrides) else ["algo=ppo"]
        cfg = compose("config", overrides=[*algo, "env=CartPole-v1", f"total_timesteps={steps}",
                                           f"num_seeds={seeds}", f"seed={first_seed}", "quiet=true",
                                           "compile_cache_dir=", *overrides])
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        summary = run_training(cfg, Path(tmp))
        saturation = critic_saturation(Path(tmp) / "checkpoints" / "final.msgpack")
    return {"variant": name, "returns": summary["returns_per_seed"], "saturation": saturation,
            "seconds": time.perf_counter() - start}


def row(result: dict, seeds: int, first_seed: int) -> str:
    name = result["variant"]
    what, overrides, patch = VARIANTS[name]
    # a seed without a final return (no episode ended in the last block) counts as below 450
    r = np.asarray([0.0 if x is None else x for x in result["returns"]], float)
    sat = np.asarray(result["saturation"])
    changes = " ".join(overrides) + (f" + patch `{patch}`" if patch else "")
    command = f"`--variants {name}`: {changes}"
    return (f"| {name} | {what} | {command} | {first_seed}-{first_seed + seeds - 1} | {r.mean():.1f} | "
            f"{np.median(r):.1f} | {r.min():.1f} | {int((r < 450).sum())} | {sat.mean():.2f} | "
            f"{int((sat > 0.9).sum())} |")


def table(results: list[dict], seeds: int, first_seed: int, steps: int, command: str) -> str:
    import jax

    lines = [
        f"Written by `{command}` on {datetime.date.today().isoformat()} ({platform.machine()}, "
        f"{platform.python_version()}, jax {jax.__version__}). CartPole-v1 with the algorithm's defaults but for the "
        "overrides shown, "
        f"{steps:,d} steps per seed; final return = mean return of the episodes that ended in the last "
        "10 iterations; saturation = fraction of the critic's last hidden tanh units with |tanh| > 0.99 over "
        "2,048 states (mean over seeds), dead critics = seeds with more than 90% saturated.",
        "",
        "| variant | what changes | command | seeds | mean | median | worst seed | seeds < 450 | "
        "critic saturation | dead critics |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [row(r, seeds, first_seed) for r in results]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=PPO_VARIANTS,
                        help="default: the PPO variants; the a2c_ ones compare A2C the same way")
    parser.add_argument("--seeds", type=int, default=32)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=TOTAL_STEPS, help="env steps per seed")
    parser.add_argument("--write", action="store_true", help="replace the ablation block of docs/benchmarks.md")
    parser.add_argument("--results", type=Path, default=HERE.parent / "docs" / "reliability_ablation.jsonl",
                        help="JSON lines, one finished variant each (with per-seed returns)")
    parser.add_argument("--resume", action="store_true",
                        help="reuse the variants already in --results (same seeds and steps)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one variant and print JSON
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_variant(args.one, args.seeds, args.first_seed, args.steps)))
        return
    results = []
    cached = {}
    if args.resume and args.results.exists():
        for line in args.results.read_text().splitlines():
            item = json.loads(line)
            if (item["seeds"], item["first_seed"], item["steps"]) == (args.seeds, args.first_seed, args.steps):
                cached[item["variant"]] = item
    for name in args.variants:
        if name in cached:
            results.append(cached[name])
            continue
        out = subprocess.run([sys.executable, __file__, "--one", name, "--seeds", str(args.seeds),
                              "--first-seed", str(args.first_seed), "--steps", str(args.steps)], capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"variant {name} failed:\n{out.stderr[-3000:]}")
        results.append({**json.loads(out.stdout.strip().splitlines()[-1]), "seeds": args.seeds,
                        "first_seed": args.first_seed, "steps": args.steps})
        with args.results.open("a") as log:
            log.write(json.dumps(results[-1]) + "\n")
        print(row(results[-1], args.seeds, args.first_seed), flush=True)
    command = "python scripts/ablation_ppo_reliability.py " + " ".join(sys.argv[1:])
    text = table(results, args.seeds, args.first_seed, args.steps, command.strip())
    print(text)
    if args.write:
        sys.path.insert(0, str(HERE))
        from docs_section import write_block

        if all(name.startswith("a2c_") for name in args.variants):
            write_block("a2c-reliability", text, "## A2C on CartPole-v1: the same study")
        else:
            write_block("ppo-reliability", text, "## Why PPO seeds collapsed on CartPole-v1")


if __name__ == "__main__":
    main()
