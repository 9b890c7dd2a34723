"""PPO objective ablation: the PPO paper's comparison of surrogate objectives, rerun with pgrun.

Eleven settings, as in the paper's table of average normalised scores
(Schulman et al., 2017, section 6.1): no clipping or penalty; clipping with
eps 0.1, 0.2, 0.3; an adaptive KL penalty with d_targ 0.003, 0.01, 0.03
(initial beta 1); a fixed KL penalty with beta 0.3, 1, 3, 10. Each objective
is one compiled program that vectorises its values and ``--seeds`` seeds
(``sweep.vmap`` x ``num_seeds``), so a suite trains four programs per
environment.

Scoring follows the paper: a run's score is the mean return of its last 100
episodes (rebuilt from the event files' per-block means and episode counts);
per environment a uniformly random policy scores 0 and the best setting 1; the
normalised scores are averaged over environments and seeds. The table puts
ours beside the paper's and says where the two orderings agree.

    python scripts/ablation_ppo_objectives.py --suite jax --write
    python scripts/ablation_ppo_objectives.py --suite mujoco --envs InvertedPendulum-v5 --steps 100000 --write

Runs are kept under ``--out`` (default ``outputs/ablation/<suite>-<time>``);
pointing ``--out`` at an earlier ablation reuses its completed runs, so an
interrupted suite continues where it stopped and ``--rescore`` only re-reads.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ablation_scoring import average_over_envs, last_episodes_mean, normalised_scores, spearman, spearman_p_value
from docs_section import write_block

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
SECTION_TITLE = "## PPO objective ablation"
LAST_EPISODES = 100


@dataclass(frozen=True)
class Setting:
    """One row of the paper's table: an objective and, where it has one, its swept value."""

    label: str
    objective: str
    key: str | None  # the algo.* key the objective's program vectorises
    value: float | None
    paper: float  # the paper's average normalised score


# The PPO paper's Table 1 (Schulman et al., 2017, "Proximal Policy Optimization Algorithms",
# arXiv:1707.06347): average normalised score over 21 runs (7 MuJoCo tasks x 3 seeds, 1M steps).
SETTINGS = [
    Setting("No clipping or penalty", "none", None, None, -0.39),
    Setting("Clipping, eps = 0.1", "clip", "algo.clip_eps", 0.1, 0.76),
    Setting("Clipping, eps = 0.2", "clip", "algo.clip_eps", 0.2, 0.82),
    Setting("Clipping, eps = 0.3", "clip", "algo.clip_eps", 0.3, 0.70),
    Setting("Adaptive KL, d_targ = 0.003", "kl_adaptive", "algo.kl_target", 0.003, 0.68),
    Setting("Adaptive KL, d_targ = 0.01", "kl_adaptive", "algo.kl_target", 0.01, 0.74),
    Setting("Adaptive KL, d_targ = 0.03", "kl_adaptive", "algo.kl_target", 0.03, 0.71),
    Setting("Fixed KL, beta = 0.3", "kl_fixed", "algo.kl_beta", 0.3, 0.62),
    Setting("Fixed KL, beta = 1", "kl_fixed", "algo.kl_beta", 1.0, 0.71),
    Setting("Fixed KL, beta = 3", "kl_fixed", "algo.kl_beta", 3.0, 0.72),
    Setting("Fixed KL, beta = 10", "kl_fixed", "algo.kl_beta", 10.0, 0.69),
]
OBJECTIVES = ("none", "clip", "kl_adaptive", "kl_fixed")
# Every program of the ablation starts from these; the adaptive penalty's initial beta is 1 as in the paper.
COMMON = ["algo=ppo", "algo.ent_coef=0", "algo.kl_beta=1"]

# The paper's MuJoCo hyperparameters (its Table 3): Adam 3e-4, horizon 2048 with one environment,
# 10 epochs of minibatches of 64, gamma 0.99, GAE lambda 0.95, 64x64 tanh networks, no entropy
# bonus. The paper names no learning-rate annealing and no gradient clipping, so both are off
# (a clip norm of 1e9 never binds); observations are normalised with running statistics, rewards are
# not scaled and the value loss is not clipped (so the clip_eps sweep varies only the policy's clip).
PAPER_MUJOCO = ["env.normalize_reward=false", "algo.clip_vloss=false", "num_envs=1", "algo.num_steps=2048", "algo.update_epochs=10", "algo.num_minibatches=32",
                "algo.lr=3e-4", "algo.gamma=0.99", "algo.gae_lambda=0.95", "algo.hidden_sizes=[64,64]",
                "algo.activation=tanh", "algo.anneal_lr=false", "algo.max_grad_norm=1e9",
                "env.normalize_obs=true"]


@dataclass(frozen=True)
class Suite:
    """Environments with their default budgets; every one trains with ``PAPER_MUJOCO``."""

    envs: dict[str, int]  # environment -> default env steps per run
    source: str  # where the hyperparameters come from, for the docs


SUITES = {
    "jax": Suite(
        envs={"Pendulum-v1": 1_000_000, "MountainCarContinuous-v0": 500_000},
        source=("the paper's MuJoCo settings for both environments (1 env x 2048 steps, 10 epochs of minibatches "
                "of 64, Adam 3e-4 constant, gamma 0.99, GAE lambda 0.95, no gradient clipping, running observation "
                "normalisation, 64x64 tanh actor and critic with a state-independent log-std, entropy coefficient "
                "0, initial KL beta 1)."),
    ),
    "mujoco": Suite(
        envs={env: 1_000_000 for env in ("HalfCheetah-v5", "Hopper-v5", "InvertedDoublePendulum-v5",
                                          "InvertedPendulum-v5", "Reacher-v5", "Swimmer-v5", "Walker2d-v5")},
        source=("the paper's MuJoCo settings for every task (1 env x 2048 steps, 10 epochs of minibatches of 64, "
                "Adam 3e-4 constant, gamma 0.99, GAE lambda 0.95, no gradient clipping, running observation "
                "normalisation, 64x64 tanh actor and critic, entropy coefficient 0, initial KL beta 1), through "
                "the Gymnasium bridge."),
    ),
}


def objective_overrides(objective: str) -> list[str]:
    """``algo.objective=...`` and, for objectives with values, the sweep over them."""
    settings = [s for s in SETTINGS if s.objective == objective]
    overrides = [f"algo.objective={objective}"]
    if settings[0].key is not None:
        values = ",".join(f"{s.value:g}" for s in settings)
        overrides.append(f"sweep.vmap={{{settings[0].key}: [{values}]}}")
    return overrides


# ---------------------------------------------------------------- training


def train(command: list[str], run_dir: Path) -> None:
    """Run one ``pgrun`` program into ``run_dir`` (its output in ``train.log``).

    A program that ran to its end is reused rather than retrained, including
    one that stopped on a non-finite loss (exit 1): that is a result of the
    objective, reported in the table, and would recur. An interrupted or
    unfinished program is trained again from scratch, so its event files do
    not mix two runs. Only bad input (exit 2) stops the suite.
    """
    summary = run_dir / "summary.json"
    if summary.exists() and json.loads(summary.read_text()).get("status") in ("completed", "failed"):
        return
    if (run_dir / ".hydra").is_dir():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "train.log", "w") as log:
        result = subprocess.run([sys.executable, "-m", "pgrun", *command, f"hydra.run.dir={run_dir}"],
                                stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    if result.returncode not in (0, 1) or not summary.exists():
        raise SystemExit(f"pgrun exited {result.returncode}; see {run_dir / 'train.log'}")


def program_seconds(run_dir: Path) -> float:
    """A program's wall time, compilation included, as its ``summary.json`` recorded it."""
    return float(json.loads((run_dir / "summary.json").read_text())["wall_seconds"])


def setting_dir(run_dir: Path, setting: Setting) -> Path:
    """Where a setting's seeds are: a point folder of its objective's sweep, or the run itself."""
    return run_dir if setting.key is None else run_dir / f"{setting.key}={setting.value:g}"


@dataclass
class SeedScore:
    seed: int
    score: float  # mean return of the last >= 100 episodes; NaN when none ended
    episodes: int
    failed: bool  # training went non-finite: the score covers the episodes before it


def read_setting(point: Path) -> tuple[list[SeedScore], int, str]:
    """Each seed's last-100-episode score from a setting's event files, the env steps trained and
    how training ended (``completed``; ``failed`` when a non-finite loss stopped every seed)."""
    from pgrun.report import read_scalars

    summary = json.loads((point / "summary.json").read_text())
    seeds = summary["seeds"]
    errors = summary.get("error", "")
    scores = []
    for seed in seeds:
        event_dir = point / f"seed_{seed}" if len(seeds) > 1 else point
        count_steps, counts = read_scalars(event_dir, "charts/episodes")
        return_steps, returns = read_scalars(event_dir, "charts/episodic_return")
        by_step = dict(zip(return_steps.tolist(), returns.tolist()))
        means = [by_step.get(step, math.nan) for step in count_steps.tolist()]
        score, episodes = last_episodes_mean(means, counts, LAST_EPISODES)
        scores.append(SeedScore(seed, score, episodes, re.search(rf"\bseed {seed}\b", errors) is not None))
    return scores, int(summary["env_steps"]), summary["status"]


# ---------------------------------------------------------------- the random policy


def random_policy_returns(env_id: str, backend: str, episodes: int, seed: int = 0) -> np.ndarray:
    """Returns of ``episodes`` episodes of uniformly random actions over the action box (each
    action dimension uniform between its bounds), on the same simulator the suite trains on."""
    if backend == "jax":
        return _random_returns_jax(env_id, episodes, seed)
    return _random_returns_gymnasium(env_id, episodes, seed)


def _random_returns_jax(env_id: str, episodes: int, seed: int) -> np.ndarray:
    import jax
    import jax.numpy as jnp

    from pgrun.envs.classic import make_jax_env

    env = make_jax_env(env_id)
    low, high = jnp.asarray(env.action_space.low), jnp.asarray(env.action_space.high)

    def episode(key):
        reset_key, run_key = jax.random.split(key)
        _, state = env.reset(reset_key)

        def step(carry, key):
            state, total, done = carry
            action_key, step_key = jax.random.split(key)
            action = jax.random.uniform(action_key, low.shape, minval=low, maxval=high)
            _, state, reward, terminated, truncated = env.step(step_key, state, action)
            return (state, total + jnp.where(done, 0.0, reward), done | terminated | truncated), None

        carry = (state, jnp.float32(0.0), jnp.bool_(False))
        (_, total, _), _ = jax.lax.scan(step, carry, jax.random.split(run_key, env.max_episode_steps))
        return total

    keys = jax.random.split(jax.random.PRNGKey(seed), episodes)
    return np.asarray(jax.jit(jax.vmap(episode))(keys), dtype=float)


def _random_returns_gymnasium(env_id: str, episodes: int, seed: int) -> np.ndarray:
    import gymnasium

    env = gymnasium.make(env_id)
    env.action_space.seed(seed)
    returns = []
    for i in range(episodes):
        env.reset(seed=seed + i)
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return np.asarray(returns)


# ---------------------------------------------------------------- the table


@dataclass
class EnvResult:
    env: str
    env_steps: int
    random_mean: float
    random_std: float
    random_episodes: int
    scores: dict[str, list[SeedScore]]  # setting label -> per-seed scores
    stopped: dict[str, int]  # setting label -> env steps, for settings whose training stopped early
    commands: list[str]
    wall_seconds: float


def fmt(x: float, digits: int = 2) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def ordinal_ranks(values: list[float]) -> list[int]:
    """1 for the largest; ties share the better rank (for display)."""
    return [1 + sum(other > v for other in values) for v in values]


def analyse(results: list[EnvResult]) -> tuple[dict[str, tuple[float, float]], dict[str, dict[str, np.ndarray]]]:
    """``(setting -> (mean, s.e.) over envs and seeds, env -> setting -> per-seed normalised scores)``."""
    raw = {r.env: {label: [s.score for s in seeds] for label, seeds in r.scores.items()} for r in results}
    for env, by_setting in raw.items():
        missing = [label for label, values in by_setting.items() if not all(math.isfinite(v) for v in values)]
        if missing:
            raise SystemExit(f"{env}: no episode ended in {', '.join(missing)}; train longer")
    normalised = normalised_scores(raw, {r.env: r.random_mean for r in results})
    return average_over_envs(normalised), normalised


def agreement(averaged: dict[str, tuple[float, float]], normalised: dict[str, dict[str, np.ndarray]]) -> list[str]:
    """Plain-language comparison of our ordering with the paper's, and how much of ours is noise."""
    ours = {label: mean for label, (mean, _) in averaged.items()}
    labels = [s.label for s in SETTINGS]
    paper = [s.paper for s in SETTINGS]
    mine = [ours[label] for label in labels]
    rho, p = spearman(mine, paper), spearman_p_value(mine, paper)
    rho_wo, p_wo = spearman(mine[1:], paper[1:]), spearman_p_value(mine[1:], paper[1:])
    lines = [f"- Spearman rank correlation with the paper over all 11 settings: rho = {rho:.2f} "
             f"(permutation p = {p:.3f}); over the 10 settings with clipping or a penalty: rho = {rho_wo:.2f} "
             f"(p = {p_wo:.3f})."]
    if len(normalised) > 1:
        per_env = [f"{env} rho = {spearman([float(np.mean(n[label])) for label in labels], paper):.2f}"
                   for env, n in normalised.items()]
        lines.append(f"- Each environment alone against the paper (11 settings): {'; '.join(per_env)}.")
    best = max(labels, key=lambda label: ours[label])
    worst = min(labels, key=lambda label: ours[label])
    lines.append(f"- Best setting: ours {best} ({ours[best]:.3f}); the paper's Clipping, eps = 0.2 (0.82)"
                 + (" — the same." if best == "Clipping, eps = 0.2" else " — they differ."))
    mean, error = averaged[best]
    close = [label for label in labels if label != best and math.isfinite(error)
             and ours[label] >= mean - 2 * math.hypot(error, averaged[label][1])]
    if close:
        lines.append(f"- Not told apart from our best by these seeds (within two standard errors of the "
                     f"difference): {'; '.join(close)}.")
    lines.append(f"- Worst setting: ours {worst} ({ours[worst]:.3f}); the paper's No clipping or penalty (-0.39)"
                 + (" — the same." if worst == "No clipping or penalty" else " — they differ."))
    for objective, name in (("clip", "Clipping"), ("kl_adaptive", "Adaptive KL"), ("kl_fixed", "Fixed KL")):
        family = [s for s in SETTINGS if s.objective == objective]
        ours_order = sorted(family, key=lambda s: -ours[s.label])
        paper_order = sorted(family, key=lambda s: -s.paper)
        show = lambda order: " > ".join(f"{s.value:g}" for s in order)  # noqa: E731
        verdict = "same order" if ours_order == paper_order else (
            "same best value" if ours_order[0] == paper_order[0] else "different best value")
        lines.append(f"- {name} by value, best first: ours {show(ours_order)}; paper {show(paper_order)} "
                     f"({verdict}).")
    best_of = {name: max(ours[s.label] for s in SETTINGS if s.objective == objective)
               for objective, name in (("clip", "clipping"), ("kl_adaptive", "adaptive KL"),
                                       ("kl_fixed", "fixed KL"))}
    order = " > ".join(f"{name} ({value:.3f})" for name, value in sorted(best_of.items(), key=lambda kv: -kv[1]))
    lines.append(f"- Best value of each family, ours: {order}; paper: clipping (0.82) > adaptive KL (0.74) "
                 f"> fixed KL (0.72).")
    return lines


def markdown(suite: str, results: list[EnvResult], seeds: int, record: dict | None) -> str:
    """The suite's markdown: how it was run, the table beside the paper's, the agreement, the programs.

    ``record`` is the training invocation's command, date, wall time and load
    (None when the runs' record is missing and only the scores can be told).
    """
    averaged, normalised = analyse(results)
    ours = {label: mean for label, (mean, _) in averaged.items()}
    our_ranks = dict(zip(ours, ordinal_ranks(list(ours.values()))))
    paper_ranks = dict(zip([s.label for s in SETTINGS], ordinal_ranks([s.paper for s in SETTINGS])))
    envs = [r.env for r in results]
    if record:
        header = [
            f"Command: `{record['command']}`",
            "",
            f"Date {record['date']}; machine: {record['machine']}; load average (1/5/15 min) "
            f"{record['load_start']} at the start, {record['load_end']} at the end (the machine was shared). Wall "
            f"time {record['wall_seconds'] / 60:.1f} min for the whole suite (four programs per environment, "
            f"random-policy baselines and scoring included).",
            "",
        ]
    else:
        header = ["Rescored from runs whose invocation was not recorded (their training wall times are below).", ""]
    lines = [
        *header,
        f"Budget: " + "; ".join(f"{r.env} {r.env_steps:,} env steps per run" for r in results)
        + f"; {seeds} seeds per setting (seeds 0..{seeds - 1}), 11 settings, four compiled programs per "
          f"environment. Hyperparameters: {SUITES[suite].source}",
        "",
        "| setting | paper avg. normalized score | paper rank | ours: avg. normalised score ± s.e. | our rank | "
        + " | ".join(f"{env} normalised" for env in envs) + " | "
        + " | ".join(f"{env} return (last {LAST_EPISODES} ep.)" for env in envs) + " |",
        "|---" * (5 + 2 * len(envs)) + "|",
    ]
    for setting in SETTINGS:
        mean, error = averaged[setting.label]
        per_env = [fmt(float(np.mean(normalised[env][setting.label])), 3) for env in envs]
        returns = []
        for r in results:
            values = [s.score for s in r.scores[setting.label]]
            failed = sum(s.failed for s in r.scores[setting.label])
            note = f" ({failed} seed{'s' if failed > 1 else ''} diverged)" if failed else ""
            if setting.label in r.stopped:
                note += f" (training stopped at {r.stopped[setting.label]:,} steps: non-finite loss)"
            returns.append(f"{np.mean(values):.1f} ± {np.std(values):.1f}{note}")
        lines.append(f"| {setting.label} | {setting.paper:.2f} | {paper_ranks[setting.label]} | {mean:.3f} ± "
                     f"{fmt(error, 3)} | {our_ranks[setting.label]} | " + " | ".join(per_env) + " | "
                     + " | ".join(returns) + " |")
    lines.append("| Random policy (score 0) | 0 | | 0 | | " + " | ".join("0" for _ in envs) + " | "
                 + " | ".join(f"{r.random_mean:.1f} ± {r.random_std:.1f} ({r.random_episodes} ep.)"
                              for r in results) + " |")
    lines += [
        "",
        "Paper column: the average normalized scores of the PPO paper's Table 1 (Schulman et al., 2017, "
        "arXiv:1707.06347; 7 MuJoCo tasks x 3 seeds, 1M steps each), quoted as published. Ours: per environment "
        f"and seed, the mean return of the last {LAST_EPISODES} episodes (rebuilt from the event files: whole "
        "logging blocks, newest first, each block's mean weighted by its `charts/episodes` count, until at least "
        f"{LAST_EPISODES} episodes are covered); shifted and scaled per environment so that a uniformly random "
        "policy (each action dimension uniform over its bounds, measured on the same simulator) scores 0 and the "
        "best setting's mean over seeds scores 1; then averaged over seeds and environments, each environment "
        "weighing the same. ± is the standard error from the seed-to-seed spread. Returns are mean ± std over "
        f"seeds. Ranks: 1 is the best. {coverage(results)}",
        "",
        "Agreement with the paper's ordering:",
        "",
        *agreement(averaged, normalised),
        "",
        *commands_note(results),
    ]
    return "\n".join(lines)


def coverage(results: list[EnvResult]) -> str:
    """How many episodes the scores rest on, and whether any run fell short of the protocol's 100."""
    used = [s.episodes for r in results for seeds in r.scores.values() for s in seeds]
    short = sum(n < LAST_EPISODES for n in used)
    text = f"Each score averages {min(used)} to {max(used)} episodes"
    return text + (f"; {short} run(s) ended fewer than {LAST_EPISODES} episodes in all and average all of them."
                   if short else ".")


def commands_note(results: list[EnvResult]) -> list[str]:
    """The programs that were run: the overrides they share once, then what each adds."""
    split = [shlex.split(c)[1:] for r in results for c in r.commands]
    shared = [o for o in split[0] if all(o in other for other in split[1:])]
    lines = ["Programs (one compiled program each, every override shared by all of them listed once):", "",
             f"- shared: `pgrun {shlex.join(shared)}`"]
    for r in results:
        for command in r.commands:
            own = [o for o in shlex.split(command)[1:] if o not in shared]
            lines.append(f"- `{shlex.join(own)}`")
    wall = "; ".join(f"{r.env} {r.wall_seconds / 60:.1f} min" for r in results)
    return lines + ["", f"Training wall time per environment (four programs, compilation included, as their "
                        f"`summary.json` recorded it): {wall}."]


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 2**20:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    import jax

    return (f"{os.cpu_count()}-core {platform.machine()} {model}{memory}, {platform.system()}, "
            f"{jax.devices()[0].platform.upper()} only, JAX {jax.__version__}")


def load_average() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def write_section(suite: str, text: str) -> None:
    """Replace this suite's block of the ablation section, adding the section if it is new."""
    heading = f"### {'JAX ports' if suite == 'jax' else 'MuJoCo tasks'} (`--suite {suite}`)"
    if SECTION_TITLE not in DOC.read_text():
        heading = f"{SECTION_TITLE}\n\n{heading}"
    write_block(f"ablation:{suite}", text, heading, DOC)


# ---------------------------------------------------------------- main


def parse_steps(items: list[str], envs: list[str]) -> dict[str, int]:
    """``--steps 200000`` for every environment, or ``--steps Hopper-v5=100000`` for one."""
    steps: dict[str, int] = {}
    for item in items:
        env, _, number = item.rpartition("=")
        targets = [env] if env else envs
        for target in targets:
            if target not in envs:
                raise SystemExit(f"--steps {item}: {target} is not among the environments {', '.join(envs)}")
            steps[target] = int(float(number))
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", choices=list(SUITES), default="jax")
    parser.add_argument("--envs", nargs="+", help="a subset of the suite's environments")
    parser.add_argument("--steps", nargs="+", default=[], metavar="[ENV=]N",
                        help="env steps per run: one number for every environment, or ENV=N for one "
                             "(defaults: jax suite Pendulum-v1 1M, MountainCarContinuous-v0 500k; mujoco 1M)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--random-episodes", type=int, default=200,
                        help="episodes of the random policy per environment (at least 100)")
    parser.add_argument("--out", type=Path, help="folder for the runs (an earlier one is reused)")
    parser.add_argument("--rescore", action="store_true", help="only score the runs already in --out")
    parser.add_argument("--write", action="store_true", help=f"write the table into {DOC.relative_to(ROOT)}")
    args = parser.parse_args()
    suite = SUITES[args.suite]
    envs = args.envs or list(suite.envs)
    for env in envs:
        if env not in suite.envs:
            raise SystemExit(f"{env} is not in the {args.suite} suite: {', '.join(suite.envs)}")
    if args.random_episodes < 100:
        raise SystemExit("--random-episodes must be at least 100 (the score averages 100 episodes)")
    steps = {**suite.envs, **parse_steps(args.steps, envs)}
    stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    out = (args.out or ROOT / "outputs" / "ablation" / f"{args.suite}-{stamp}").resolve()
    if args.rescore and not out.exists():
        raise SystemExit(f"--rescore: {out} does not exist")
    record_path = out / f"suite-{args.suite}.json"
    record = {"command": "python scripts/ablation_ppo_objectives.py " + shlex.join(sys.argv[1:]),
              "date": subprocess.run(["date"], capture_output=True, text=True).stdout.strip(),
              "machine": machine(), "load_start": load_average()}
    wall_start = time.perf_counter()
    backend = "jax" if args.suite == "jax" else "gymnasium"

    results = []
    for env in envs:
        commands, wall, scores, stopped, env_steps = [], 0.0, {}, {}, 0
        for objective in OBJECTIVES:
            command = [*COMMON, f"env={env}", *PAPER_MUJOCO, *objective_overrides(objective),
                       f"total_timesteps={steps[env]}", f"num_seeds={args.seeds}", "log_interval=1"]
            commands.append("pgrun " + shlex.join(command))
            run_dir = out / env / objective
            if not args.rescore:
                print(f"[ablation] {env} {objective}: training ({run_dir})", flush=True)
                train(command, run_dir)
            wall += program_seconds(run_dir)
            for setting in (s for s in SETTINGS if s.objective == objective):
                scores[setting.label], trained, status = read_setting(setting_dir(run_dir, setting))
                env_steps = max(env_steps, trained)
                if status != "completed":
                    stopped[setting.label] = trained
                shown = ", ".join(fmt(s.score, 1) for s in scores[setting.label])
                print(f"[ablation] {env} {setting.label}: last-{LAST_EPISODES} scores {shown}", flush=True)
        random_returns = random_policy_returns(env, backend, args.random_episodes)
        print(f"[ablation] {env} random policy: {random_returns.mean():.1f} over {random_returns.size} episodes",
              flush=True)
        results.append(EnvResult(env, env_steps, float(random_returns.mean()), float(random_returns.std()),
                                 random_returns.size, scores, stopped, commands, wall))
    if args.rescore:  # the table tells how the runs were trained, not how they were re-read
        record = json.loads(record_path.read_text()) if record_path.exists() else None
    else:
        record.update(wall_seconds=time.perf_counter() - wall_start, load_end=load_average())
        record_path.write_text(json.dumps(record, indent=1) + "\n")
    text = markdown(args.suite, results, args.seeds, record)
    print(text)
    (out / f"ablation-{args.suite}.md").write_text(text + "\n")
    if args.write:
        write_section(args.suite, text)
        print(f"[ablation] wrote the {args.suite} table into {DOC}", flush=True)


if __name__ == "__main__":
    main()
