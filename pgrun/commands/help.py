"""``pgrun --help``: pgrun's own page, in place of Hydra's generic one.

Hydra's page lists every config-group option, internal schemas and some sixty
environment ids included, and says nothing about what pgrun does. This page
is built from what the code knows: the algorithm registry, the environments
with a JAX port, and the defaults of the composed config (composed with the
overrides given beside ``--help``, so ``pgrun algo=trpo env=Pendulum-v1
--help`` shows that pair's defaults, tuned values included). With ``algo=NAME``
among the overrides it also lists that algorithm's own keys.
"""

from __future__ import annotations

from typing import Any

SUMMARY = ("pgrun: on-policy policy-gradient reinforcement learning on JAX. Hydra overrides pick the algorithm, "
           "the environment and every hyperparameter; each run logs to TensorBoard.")

USAGE = """\
usage: pgrun [KEY=VALUE ...]          train one run (its folder: outputs/<date>/<time>-<algo>-<env>)
       pgrun -m KEY=A,B ... [...]     a sweep: one job per combination (Hydra multirun)
       pgrun resume=RUN_DIR           continue a run from its latest checkpoint
       pgrun [KEY=VALUE ...] --help   this page, with the defaults those overrides give"""

PAGE_WIDTH = 100

# The keys most runs set, with what each means (values come from the composed config).
MAIN_KEYS = (
    ("algo", "the algorithm (above); its hyperparameters are algo.*"),
    ("env", "the environment: any registered Gymnasium id"),
    ("seed", "first seed; the run trains seed, seed+1, ..., seed+num_seeds-1"),
    ("num_seeds", "independent seeds trained together in one compiled program"),
    ("total_timesteps", "environment steps per seed"),
    ("num_envs", "parallel environments per seed"),
    ("log_interval", "training iterations between TensorBoard points"),
    ("env.backend", "auto (the first backend that provides the id, a JAX port first) | {backends}"),
    ("env.normalize_obs", "normalise observations by a running mean and std"),
    ("env.normalize_reward", "scale rewards by a running std of the return (learning only; logs stay raw)"),
    ("eval.every", "iterations between evaluations on environments of their own; 0: off"),
    ("checkpoint.every", "iterations between checkpoints/latest.msgpack"),
    ("sweep.vmap", "{key: [values], ...}: every combination x num_seeds in one compiled program"),
)

EXAMPLES = (
    ("pgrun", "PPO on CartPole-v1 with the defaults"),
    ("pgrun algo=trpo env=Pendulum-v1 total_timesteps=200000", "another algorithm and environment"),
    ("pgrun algo.lr=1e-3 num_envs=8 env.normalize_obs=true", "overrides of single keys"),
    ("pgrun num_seeds=8", "8 seeds, trained together"),
    ("pgrun -m algo=ppo,trpo seed=0,1,2", "a sweep of 6 jobs, one after another"),
    ("pgrun -m hydra/launcher=joblib algo.lr=1e-4,3e-4", "jobs in parallel processes (pip install 'pgrun[sweep]')"),
    ("pgrun 'sweep.vmap={algo.lr: [1e-4, 3e-4]}' num_seeds=4", "8 policies in one program"),
    ("pgrun resume=RUN_DIR", "continue an interrupted run"),
    ("pgrun-eval RUN_DIR --episodes 20 --video", "evaluate a run's final policy (writes RUN_DIR/eval.json)"),
    ("pgrun-report DIR --target 475", "IQM, mean and worst seed per configuration of the runs under DIR"),
    ("tensorboard --logdir outputs", "watch every run's curves"),
)

FOOTER = """\
More: pgrun [KEY=VALUE ...] --cfg job prints the whole composed config (every key);
pgrun --hydra-help shows Hydra's own options (--cfg, --multirun, --config-dir, ...).
Exit codes: 0 success, 1 training failed, 2 bad input."""


def _format(value: Any) -> str:
    """A config value as one would type it in an override."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ",".join(_format(v) for v in value) + "]"
    return "null" if value is None else str(value)


def _single_overrides(args: list[str]) -> list[str]:
    """The overrides among ``args`` that name one config (no flags, sweeps, hydra.* or resume=)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    candidates = [a for a in args if "=" in a and not a.startswith("-")
                  and not a.lstrip("+~").startswith(("hydra.", "hydra/", "resume="))]
    parsed = OverridesParser.create().parse_overrides(candidates)
    return [text for text, override in zip(candidates, parsed) if not override.is_sweep_override()]


def compose(overrides: list[str]) -> Any:
    """The config ``pgrun <overrides>`` would run with."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from pgrun.config import register_configs
    from pgrun.paths import conf_dir

    register_configs()
    with initialize_config_dir(str(conf_dir()), version_base=None):
        return hydra_compose("config", overrides=overrides)


def _table(rows: list[tuple[str, str]], indent: int = 2) -> list[str]:
    """Two columns; a long right-hand text wraps under itself, so the page stays readable at 100 columns."""
    import textwrap

    width = max(len(left) for left, _ in rows) + 2
    lines = []
    for left, right in rows:
        wrapped = textwrap.wrap(right, max(40, PAGE_WIDTH - indent - width)) or [""]
        lines.append(" " * indent + f"{left:<{width}}{wrapped[0]}".rstrip())
        lines += [" " * (indent + width) + more for more in wrapped[1:]]
    return lines


def algorithm_lines() -> list[str]:
    """One line per registered algorithm: name, summary, paper."""
    from pgrun.algos import registry

    return _table([(name, spec.summary + (f" ({spec.paper})" if spec.paper else ""))
                   for name, spec in registry().items()])


def environment_lines() -> list[str]:
    """The ids with a JAX port, and what else works."""
    from pgrun.envs import has_jax_port, known_ids

    ports = [env_id for env_id in known_ids() if has_jax_port(env_id)]
    return ["  JAX ports, simulated inside the compiled training loop:",
            "    " + ", ".join(ports),
            "  Any other registered Gymnasium id runs through the Gymnasium backend, e.g. env=FrozenLake-v1,",
            "  or MuJoCo's env=Hopper-v5 after pip install 'pgrun[mujoco]'."]


def key_lines(cfg: Any) -> list[str]:
    """The main keys with their defaults in the composed config."""
    from omegaconf import OmegaConf

    from pgrun.envs import backends

    values = {"algo": cfg.algo.name, "env": cfg.env.id}
    rows = [(f"{key}={_format(values[key] if key in values else OmegaConf.select(cfg, key))}",
             meaning.format(backends=" | ".join(backends())) if key == "env.backend" else meaning)
            for key, meaning in MAIN_KEYS]
    return _table(rows)


def algorithm_key_lines(cfg: Any) -> list[str]:
    """``algo.KEY=VALUE`` for each of the composed algorithm's own keys."""
    from omegaconf import OmegaConf

    algo = OmegaConf.to_container(cfg.algo, resolve=True)
    return [f"  algo.{key}={_format(value)}" for key, value in algo.items() if key != "name"]


def help_page(args: list[str]) -> str:
    """The whole page; ``args`` is the command line, whose single overrides set the defaults shown."""
    overrides = _single_overrides(args)
    cfg = compose(overrides)
    import textwrap

    lines = [*textwrap.wrap(SUMMARY, PAGE_WIDTH), "", USAGE, "", "Algorithms (algo=NAME):", *algorithm_lines(), "",
             "Environments (env=ID):", *environment_lines(), "",
             "Main keys, with their defaults (KEY=VALUE on the command line):", *key_lines(cfg)]
    if any(o.lstrip("+~").split("=", 1)[0] == "algo" for o in overrides):
        lines += ["", f"Keys of algo={cfg.algo.name}, with their defaults:", *algorithm_key_lines(cfg)]
    else:
        lines += ["  (pgrun algo=NAME --help also lists that algorithm's own keys)"]
    lines += ["", "Examples:", *_table(list(EXAMPLES)), "", FOOTER]
    return "\n".join(lines) + "\n"
