"""Typed configuration: the schemas Hydra checks, and every range check in one place.

The values users see live in ``conf/`` (YAML); the types live here. Hydra
type-checks YAML only when it is composed on top of a structured schema, so each
YAML group option starts from a schema registered below. Semantic checks that a
type cannot express (ranges, divisibility, fit to the action space) are in
:func:`validate`, which raises :class:`ConfigError` with a one-line message that
names the problem and the fix.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, fields
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from pgrun.algos import get_algorithm, registry
from pgrun.devices import requested_devices
from pgrun.distributed import checked_setting
from pgrun.envs import AUTO, backends, check_env_id, episode_time_limit, known_ids
from pgrun.errors import ConfigError, require as _check
from pgrun.names import close_matches
from pgrun.types import AlgoContext

ACTIVATIONS = ("tanh", "relu", "elu", "gelu", "silu")


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
    """When the ``latest`` checkpoint is rewritten during training."""

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
    # local devices the members are split over: "all" or a positive count (devices=2 parses as "2");
    # a run never uses more devices than it has members, and host environments train on one
    devices: str = "all"
    # auto: join the multi-process job the environment describes (PGRUN_NUM_PROCESSES & co., or a Slurm
    # step of several tasks), if any; off: this process trains a whole run of its own (pgrun/distributed.py)
    distributed: str = "auto"


def config_keys() -> dict[str, str]:
    """Every key a run's config can have, dotted, with its declared type's name (``int``,
    ``float``, ``bool``, ``str``, ``list``, ``Any``): the top level, ``env.*``, and ``algo.*``
    of every registered algorithm. What the command line checks overrides against."""
    import typing

    def type_name(annotation: Any) -> str:
        text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
        return "list" if text.startswith("list") else text.split(".")[-1]

    keys: dict[str, str] = {}

    def visit(prefix: str, schema: type) -> None:
        hints = typing.get_type_hints(schema)
        for f in fields(schema):
            hint = hints.get(f.name, f.type)
            if isinstance(hint, type) and hasattr(hint, "__dataclass_fields__"):
                visit(f"{prefix}{f.name}.", hint)
            elif f.name not in ("algo", "env") or prefix:
                keys[f"{prefix}{f.name}"] = type_name(hint)

    visit("", RunConfig)
    visit("env.", EnvConfig)
    for spec in registry().values():
        visit("algo.", spec.config)
    keys.update({"algo": "str", "env": "str"})
    return keys


def whole_numbers_as_integers(overrides: list[str]) -> list[str]:
    """``total_timesteps=1e5`` as ``total_timesteps=100000``: a whole-number float given to an
    integer key (also in a sweep's comma list) is written as the integer it means, which the
    typed config would otherwise refuse. Anything else is left for the config to judge."""
    types = config_keys()

    def as_integer(text: str) -> str:
        try:
            value = float(text)
        except ValueError:
            return text
        return str(int(value)) if value.is_integer() and abs(value) < 2**63 else text

    out = []
    for override in overrides:
        key, sep, value = override.partition("=")
        if sep and types.get(key.lstrip("+~")) == "int" and not value.startswith(("[", "{", "range(", "choice(")):
            override = key + "=" + ",".join(as_integer(part) for part in value.split(","))
        out.append(override)
    return out


def algo_schema(name: str | None) -> type | None:
    """The typed config of the algorithm called ``name``; None when there is none."""
    spec = registry().get(name) if name else None
    return spec.config if spec else None


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
    for name, spec in registry().items():
        cs.store(group="algo", name=f"_{name}_schema", node=spec.config)
    cs.store(group="env", name="_schema", node=EnvConfig)
    from pgrun.paths import conf_dir

    with_yaml = {p.stem for p in (conf_dir() / "env").glob("*.yaml")}
    for env_id in known_ids():
        if env_id not in with_yaml and "/" not in env_id:
            cs.store(group="env", name=env_id, node=EnvConfig(id=env_id))
    _registered = True


def validate(cfg: Any) -> None:
    """Range and consistency checks that types cannot express, for the run and,
    in a vectorised sweep, for every point of it."""
    points = sweep_points(cfg)
    for point in points:
        _validate_one(with_overrides(cfg, point) if point else cfg)


def _validate_one(cfg: Any) -> None:
    a, e = cfg.algo, cfg.env
    spec = get_algorithm(a.name)
    choices = [AUTO, *backends()]
    _check(e.backend in choices, f"env.backend={e.backend} is not valid: use one of {', '.join(choices)}")
    _check(cfg.total_timesteps > 0, f"total_timesteps={cfg.total_timesteps} must be positive")
    _check(cfg.num_envs >= 1, f"num_envs={cfg.num_envs} must be at least 1")
    _check(cfg.num_seeds >= 1, f"num_seeds={cfg.num_seeds} must be at least 1")
    # seeds become uint32 PRNG keys: the whole range seed .. seed+num_seeds-1 must fit
    _check(0 <= cfg.seed and cfg.seed + cfg.num_seeds - 1 < 2**32,
           f"seed={cfg.seed} with num_seeds={cfg.num_seeds} leaves the seeds' range 0 .. {2**32 - 1}: "
           "pick a seed in it")
    _check(cfg.log_interval >= 1, f"log_interval={cfg.log_interval} must be at least 1")
    _check(cfg.xla_cpu_threads >= 0, f"xla_cpu_threads={cfg.xla_cpu_threads} must be 0 (automatic) or positive")
    if "devices" in cfg:  # runs saved before devices existed have none
        requested_devices(cfg.devices)
    if "distributed" in cfg:  # nor distributed
        checked_setting(cfg.distributed)
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
    check_env_id(e.id)
    spec.validate(a, AlgoContext(cfg.num_envs, e.id, episode_time_limit(e.id, e.backend)))


def check_saved_config(cfg: Any, run_dir: Any) -> None:
    """Refuse, in one line, a run saved by a version of pgrun whose algorithm or environment
    config lacks keys this version needs (its checkpoint would not fit the state either)."""
    sections = [("algo", algo_schema(cfg.algo.get("name"))), ("env", EnvConfig)]
    missing = [f"{section}.{f.name}" for section, schema in sections if schema is not None
               for f in fields(schema) if f.name not in cfg[section]]
    _check(not missing, f"{run_dir} was written by another version of pgrun (its config has no "
                        f"{', '.join(missing)}): start a new run")


@dataclass(frozen=True)
class Schedule:
    """A run's iterations and how they fall into logging blocks.

    The run ends at the first whole iteration at or past ``total_timesteps``
    (so runs with different batch sizes get the same budget to within one
    batch). Blocks hold ``block_len`` iterations; when that does not divide the
    total, the last block is shorter: it runs the same compiled block with its
    final iterations skipped, so there is still one program to compile.
    """

    total: int  # iterations in the run
    block_len: int  # iterations per logging block

    @property
    def num_blocks(self) -> int:
        return -(-self.total // self.block_len)

    def iterations_done(self, blocks_done: int) -> int:
        """Iterations run once ``blocks_done`` blocks have."""
        return min(blocks_done * self.block_len, self.total)

    def iterations_in(self, block: int) -> int:
        """Iterations the block at 0-based index ``block`` runs (``block_len`` but for a short last one)."""
        return self.iterations_done(block + 1) - self.iterations_done(block)


def schedule(cfg: Any) -> Schedule:
    """The run's :class:`Schedule`: enough iterations of ``num_envs x algo.num_steps`` env steps to
    cover ``total_timesteps`` per seed, in blocks of ``log_interval``."""
    batch = cfg.num_envs * cfg.algo.num_steps
    total = max(1, -(-cfg.total_timesteps // batch))
    return Schedule(total, min(cfg.log_interval, total))


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
    return [f.name for f in fields(get_algorithm(algo_name).config) if f.type in (float, "float")]


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
