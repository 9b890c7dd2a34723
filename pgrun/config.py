"""Typed configuration: the schemas Hydra checks, and every range check in one place.

The values users see live in ``conf/`` (YAML); the types live here. Hydra
type-checks YAML only when it is composed on top of a structured schema, so each
YAML group option starts from a schema registered below. Semantic checks that a
type cannot express (ranges, divisibility, fit to the action space) are in
:func:`validate`, which raises :class:`ConfigError` with a one-line message that
names the problem and the fix.
"""

from __future__ import annotations

import difflib
import itertools
from dataclasses import dataclass, field, fields
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

ALGOS = ("reinforce", "a2c", "npg", "trpo", "ppo")
BACKENDS = ("auto", "jax", "gymnasium")
ACTIVATIONS = ("tanh", "relu", "elu", "gelu", "silu")
PPO_OBJECTIVES = ("clip", "kl_adaptive", "kl_fixed", "none")


class ConfigError(ValueError):
    """Bad user input: reported on one line, exit code 2."""


@dataclass
class AlgoConfig:
    """Hyperparameters shared by every algorithm."""

    name: str = MISSING
    lr: float = MISSING  # Adam step size (NPG/TRPO: of the critic; the policy step is set by delta)
    gamma: float = MISSING
    num_steps: int = MISSING  # rollout length per environment and iteration
    hidden_sizes: list[int] = field(default_factory=lambda: [64, 64])
    activation: str = "tanh"
    max_grad_norm: float = 0.5
    anneal_lr: bool = False  # linear decay of the learning rate to 0
    norm_adv: bool = True  # normalise advantages (per minibatch for PPO, per batch otherwise)
    log_std_init: float = 0.0  # initial log standard deviation of a Gaussian policy (continuous actions)
    bounded_mean: bool = False  # a Gaussian policy's mean through tanh, inside the action box


@dataclass
class ReinforceConfig(AlgoConfig):
    """Monte-Carlo policy gradient with reward-to-go."""

    name: str = "reinforce"
    baseline: str = "value"  # value | none
    ent_coef: float = 0.0
    vf_coef: float = 0.5


@dataclass
class A2CConfig(AlgoConfig):
    """Synchronous advantage actor-critic."""

    name: str = "a2c"
    gae_lambda: float = MISSING  # 1.0: n-step returns
    ent_coef: float = MISSING
    vf_coef: float = MISSING


@dataclass
class NPGConfig(AlgoConfig):
    """Natural policy gradient: conjugate gradient on Fisher-vector products."""

    name: str = "npg"
    gae_lambda: float = MISSING
    delta: float = MISSING  # KL radius of the step: 1/2 s^T F s = delta
    cg_iters: int = 10
    cg_tol: float = 1e-10  # stop CG when the squared residual norm is below this
    damping: float = 0.1  # F + damping * I
    vf_iters: int = MISSING  # critic epochs per iteration
    vf_minibatches: int = MISSING


@dataclass
class TRPOConfig(NPGConfig):
    """NPG plus a backtracking line search on the surrogate and the true KL."""

    name: str = "trpo"
    backtrack_coef: float = 0.8
    max_backtracks: int = 10


@dataclass
class PPOConfig(AlgoConfig):
    """Proximal policy optimisation."""

    name: str = "ppo"
    objective: str = "clip"  # clip | kl_adaptive | kl_fixed | none
    gae_lambda: float = MISSING
    update_epochs: int = MISSING
    num_minibatches: int = MISSING
    clip_eps: float = MISSING
    kl_target: float = 0.01  # d_targ of the adaptive KL penalty
    kl_beta: float = 1.0  # initial (kl_adaptive) or constant (kl_fixed) penalty weight
    ent_coef: float = MISSING
    vf_coef: float = MISSING
    clip_vloss: bool = True  # clip the value update to clip_eps around the rollout's values


@dataclass
class EnvConfig:
    """Which environment, and how it is simulated."""

    id: str = MISSING
    backend: str = "auto"  # auto: the JAX port when one exists, else Gymnasium
    normalize_obs: bool = False  # running mean/std normalisation inside the jitted loop
    # Rewards divided by a running std of the discounted return, for learning only (logged returns stay
    # raw): keeps the critic's targets of order one, where a tanh critic does not saturate.
    normalize_reward: bool = True


@dataclass
class CheckpointConfig:
    every: int = 100  # iterations between 'latest' checkpoints (rounded to logging blocks)


@dataclass
class EvalConfig:
    """Evaluation during training, on environments of its own (the training ones are untouched)."""

    every: int = 100  # iterations between evaluations (rounded down to logging blocks); 0: off
    episodes: int = 10  # complete episodes per member and evaluation
    deterministic: bool = True  # act with the policy's mode; false: sample actions


@dataclass
class SweepConfig:
    """Sweeps inside one compiled program (beyond ``num_seeds``)."""

    # hyperparameter -> values, e.g. {algo.lr: [1e-4, 3e-4, 1e-3]}: every combination
    # (times num_seeds) is trained in one jax.vmap and logged as its own run.
    # (Typed Any so a plain `sweep.vmap={...}` override may set it; checked in validate.)
    vmap: Any = None


@dataclass
class RunConfig:
    """The top level of every run."""

    algo: Any = MISSING
    env: Any = MISSING
    seed: int = 0
    total_timesteps: int = MISSING
    num_envs: int = MISSING
    num_seeds: int = 1
    log_interval: int = 10  # iterations between TensorBoard points
    quiet: bool = False
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    compile_cache_dir: str = ""  # persistent XLA compilation cache; "" disables it
    sweep: SweepConfig = field(default_factory=SweepConfig)
    # CPU threads XLA may use in this job; 0: all cores, or cores / n_jobs under a parallel launcher
    xla_cpu_threads: int = 0


ALGO_SCHEMAS: dict[str, type] = {"reinforce": ReinforceConfig, "a2c": A2CConfig, "npg": NPGConfig,
                                 "trpo": TRPOConfig, "ppo": PPOConfig}

_registered = False


def register_configs() -> None:
    """Register schemas, and every Gymnasium id as an ``env`` option.

    ``env=<id>`` then works for any registered Gymnasium environment, not just
    the ones with a YAML file in ``conf/env``.
    """
    global _registered
    if _registered:
        return
    cs = ConfigStore.instance()
    cs.store(name="run_schema", node=RunConfig)
    for name, schema in ALGO_SCHEMAS.items():
        cs.store(group="algo", name=f"_{name}_schema", node=schema)
    cs.store(group="env", name="_schema", node=EnvConfig)
    from pgrun.paths import conf_dir

    with_yaml = {p.stem for p in (conf_dir() / "env").glob("*.yaml")}
    for env_id in gymnasium_ids():
        if env_id not in with_yaml and "/" not in env_id:
            cs.store(group="env", name=env_id, node=EnvConfig(id=env_id))
    _registered = True


def gymnasium_ids() -> list[str]:
    import gymnasium

    return sorted(gymnasium.registry.keys())


def close_matches(name: str, options: list[str]) -> str:
    """' (did you mean X, Y?)' or '' — appended to unknown-name errors."""
    found = difflib.get_close_matches(name, options, n=3, cutoff=0.5)
    if not found:
        lowered = {o.lower(): o for o in options}
        found = [lowered[m] for m in difflib.get_close_matches(name.lower(), list(lowered), n=3, cutoff=0.5)]
    return f" (did you mean {', '.join(found)}?)" if found else ""


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def validate(cfg: Any) -> None:
    """Range and consistency checks that types cannot express, for the run and,
    in a vectorised sweep, for every point of it."""
    points = sweep_points(cfg)
    for point in points:
        _validate_one(with_overrides(cfg, point) if point else cfg)


def _validate_one(cfg: Any) -> None:
    a, e = cfg.algo, cfg.env
    _check(a.name in ALGOS, f"unknown algorithm '{a.name}': choose one of {', '.join(ALGOS)}")
    _check(e.backend in BACKENDS, f"env.backend={e.backend} is not valid: use one of {', '.join(BACKENDS)}")
    _check(cfg.total_timesteps > 0, f"total_timesteps={cfg.total_timesteps} must be positive")
    _check(cfg.num_envs >= 1, f"num_envs={cfg.num_envs} must be at least 1")
    _check(cfg.num_seeds >= 1, f"num_seeds={cfg.num_seeds} must be at least 1")
    # seeds become uint32 PRNG keys: the whole range seed .. seed+num_seeds-1 must fit
    _check(0 <= cfg.seed and cfg.seed + cfg.num_seeds - 1 < 2**32,
           f"seed={cfg.seed} with num_seeds={cfg.num_seeds} leaves the seeds' range 0 .. {2**32 - 1}: "
           "pick a seed in it")
    _check(cfg.log_interval >= 1, f"log_interval={cfg.log_interval} must be at least 1")
    _check(cfg.xla_cpu_threads >= 0, f"xla_cpu_threads={cfg.xla_cpu_threads} must be 0 (automatic) or positive")
    _check(cfg.checkpoint.every >= 1, f"checkpoint.every={cfg.checkpoint.every} must be at least 1")
    if "eval" in cfg:  # runs saved before evaluation existed have no eval section
        _check(cfg.eval.every >= 0, f"eval.every={cfg.eval.every} must be 0 (off) or a positive number of iterations")
        _check(cfg.eval.episodes >= 1, f"eval.episodes={cfg.eval.episodes} must be at least 1")
    _check(a.lr > 0, f"algo.lr={a.lr} must be positive")
    _check(0.0 <= a.gamma <= 1.0, f"algo.gamma={a.gamma} must lie in [0, 1]")
    _check(a.num_steps >= 1, f"algo.num_steps={a.num_steps} must be at least 1")
    _check(a.max_grad_norm > 0, f"algo.max_grad_norm={a.max_grad_norm} must be positive")
    _check(len(a.hidden_sizes) >= 1 and all(h >= 1 for h in a.hidden_sizes),
           f"algo.hidden_sizes={list(a.hidden_sizes)} needs at least one layer of positive width")
    _check(a.activation in ACTIVATIONS,
           f"algo.activation={a.activation} is not valid: use one of {', '.join(ACTIVATIONS)}")
    if "gae_lambda" in a:
        _check(0.0 <= a.gae_lambda <= 1.0, f"algo.gae_lambda={a.gae_lambda} must lie in [0, 1]")
    for key in ("ent_coef", "vf_coef"):
        if key in a:
            _check(a[key] >= 0, f"algo.{key}={a[key]} must be non-negative")
    batch = cfg.num_envs * a.num_steps
    if a.name == "reinforce":
        _check(a.baseline in ("value", "none"), f"algo.baseline={a.baseline} is not valid: use value or none")
        if a.baseline == "none" and e.id in gymnasium_ids():
            from pgrun.algos.reinforce import episode_time_limit

            limit = episode_time_limit(e.id)
            _check(limit is not None, f"algo.baseline=none uses only episodes that fit in a batch, and {e.id} has "
                                      f"no time limit to bound them: use algo.baseline=value")
            _check(a.num_steps > limit,
                   f"algo.baseline=none uses only episodes that start and end inside a batch: algo.num_steps="
                   f"{a.num_steps} must exceed {e.id}'s time limit of {limit} steps: set algo.num_steps={4 * limit} "
                   f"or more (fewer episodes go unused) or use algo.baseline=value")
    if a.name in ("npg", "trpo"):
        _check(a.delta > 0, f"algo.delta={a.delta} must be positive")
        _check(a.cg_iters >= 1, f"algo.cg_iters={a.cg_iters} must be at least 1")
        _check(a.cg_tol >= 0, f"algo.cg_tol={a.cg_tol} must be non-negative")
        _check(a.damping >= 0, f"algo.damping={a.damping} must be non-negative")
        _check(a.vf_iters >= 1, f"algo.vf_iters={a.vf_iters} must be at least 1")
        _check(a.vf_minibatches >= 1 and batch % a.vf_minibatches == 0,
               f"algo.vf_minibatches={a.vf_minibatches} must divide the batch num_envs*algo.num_steps={batch}")
    if a.name == "trpo":
        _check(0 < a.backtrack_coef < 1, f"algo.backtrack_coef={a.backtrack_coef} must lie in (0, 1)")
        _check(a.max_backtracks >= 0, f"algo.max_backtracks={a.max_backtracks} must be non-negative")
    if a.name == "ppo":
        _check(a.objective in PPO_OBJECTIVES,
               f"algo.objective={a.objective} is not valid: use one of {', '.join(PPO_OBJECTIVES)}")
        _check(a.clip_eps > 0, f"algo.clip_eps={a.clip_eps} must be positive")
        _check(a.kl_target > 0, f"algo.kl_target={a.kl_target} must be positive")
        _check(a.kl_beta >= 0, f"algo.kl_beta={a.kl_beta} must be non-negative")
        _check(a.update_epochs >= 1, f"algo.update_epochs={a.update_epochs} must be at least 1")
        _check(a.num_minibatches >= 1, f"algo.num_minibatches={a.num_minibatches} must be at least 1")
        _check(batch % a.num_minibatches == 0,
               f"the batch of num_envs*algo.num_steps={batch} does not split into "
               f"algo.num_minibatches={a.num_minibatches}: pick a divisor of {batch}")


def check_saved_config(cfg: Any, run_dir: Any) -> None:
    """Refuse, in one line, a run saved by a version of pgrun whose algorithm or environment
    config lacks keys this version needs (its checkpoint would not fit the state either)."""
    sections = [("algo", ALGO_SCHEMAS.get(cfg.algo.get("name"))), ("env", EnvConfig)]
    missing = [f"{section}.{f.name}" for section, schema in sections if schema is not None
               for f in fields(schema) if f.name not in cfg[section]]
    _check(not missing, f"{run_dir} was written by another version of pgrun (its config has no "
                        f"{', '.join(missing)}): start a new run")


def iterations(cfg: Any) -> tuple[int, int]:
    """(iterations per logging block, number of blocks) covering total_timesteps.

    The run covers at least ``total_timesteps`` env steps per seed, rounded up to
    whole logging blocks so the compiled block is the same every time.
    """
    batch = cfg.num_envs * cfg.algo.num_steps
    total_iters = max(1, -(-cfg.total_timesteps // batch))
    block = min(cfg.log_interval, total_iters)
    return block, -(-total_iters // block)



# ---------------------------------------------------------------- vectorised sweeps


def sweepable_keys(algo_name: str) -> list[str]:
    """``algo.<key>`` for every real-valued hyperparameter of the algorithm.

    These enter the compiled program as traced inputs (see
    :func:`algo_hparams`), so their values can differ across the vmapped
    members of one program; integer and structural keys (rollout length,
    epochs, layer sizes, the objective) shape the program and cannot.
    """
    return [f"algo.{name}" for name in _real_valued(algo_name)]


def _real_valued(algo_name: str) -> list[str]:
    return [f.name for f in fields(ALGO_SCHEMAS[algo_name]) if f.type in (float, "float")]


def algo_hparams(algo: Any) -> dict[str, float]:
    """The real-valued hyperparameters of one algorithm config, by bare key (``lr``, ``gamma``, ...)."""
    return {name: float(algo[name]) for name in _real_valued(algo.name)}


def sweep_points(cfg: Any) -> list[dict[str, float]]:
    """Every combination of the ``sweep.vmap`` values, in the order given
    (``[{}]`` without a sweep). Raises :class:`ConfigError` for a malformed sweep."""
    from omegaconf import DictConfig, ListConfig

    spec = cfg.sweep.vmap if "sweep" in cfg else None
    if spec is None or (isinstance(spec, DictConfig) and len(spec) == 0):
        return [{}]
    example = "e.g. sweep.vmap='{algo.lr: [1e-4, 3e-4, 1e-3]}'"
    _check(isinstance(spec, DictConfig), f"sweep.vmap={spec} is not a mapping of key to values: write it as {example}")
    allowed = sweepable_keys(cfg.algo.name)
    values: list[list[float]] = []
    for key, listed in spec.items():
        key = str(key)
        _check(key in allowed, f"sweep.vmap cannot vary '{key}': {cfg.algo.name} can vectorise "
                               f"{', '.join(allowed)}; sweep other keys with pgrun -m {key}=...")
        _check(isinstance(listed, ListConfig) and len(listed) > 0,
               f"sweep.vmap {key} needs a non-empty list of values, {example}")
        numbers = []
        for item in listed:
            _check(isinstance(item, (int, float)) and not isinstance(item, bool),
                   f"sweep.vmap {key} value {item!r} is not a number: {example}")
            numbers.append(float(item))
        _check(len(set(numbers)) == len(numbers), f"sweep.vmap {key} lists a value twice: list each value once")
        values.append(numbers)
    keys = [str(k) for k in spec]
    return [dict(zip(keys, combo)) for combo in itertools.product(*values)]


def with_overrides(cfg: Any, point: dict[str, float]) -> Any:
    """A copy of ``cfg`` with one sweep point's values set and no sweep left in it."""
    from omegaconf import OmegaConf

    single = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    for key, value in point.items():
        OmegaConf.update(single, key, value)
    if "sweep" in single:
        single.sweep.vmap = None
    return single


def point_name(point: dict[str, float]) -> str:
    """A sweep point as a directory and TensorBoard run name: ``algo.lr=0.0003,algo.gamma=0.99``."""
    return ",".join(f"{key}={value:g}" for key, value in point.items())
