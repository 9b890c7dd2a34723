"""What every algorithm consumes and produces.

An algorithm is a pure ``update(state, batch, key) -> (state, metrics)``; the
training loop owns rollouts, episode statistics and observation statistics.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import optax

from pgrun.envs.wrappers import EpisodeStats
from pgrun.normalization import RunningMeanStd


@flax.struct.dataclass
class Batch:
    """One rollout, ``[time, env, ...]``, with raw (unnormalised) observations."""

    obs: jax.Array
    actions: jax.Array
    log_probs: jax.Array  # of the behaviour policy, at collection time
    rewards: jax.Array
    terminated: jax.Array
    dones: jax.Array  # terminated or truncated
    next_obs: jax.Array  # true successor observation (final observation at an episode end)


@flax.struct.dataclass
class TrainState:
    params: Any
    opt_state: Any
    obs_stats: RunningMeanStd
    episodes: EpisodeStats
    iteration: jax.Array


class Algorithm(NamedTuple):
    """``init_opt_state(params)`` and the pure update of one algorithm."""

    init_opt_state: Callable[[Any], Any]
    update: Callable[[TrainState, Batch, jax.Array], tuple[TrainState, dict[str, jax.Array]]]


def explained_variance(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """1 - Var[target - prediction] / Var[target]: 1 is perfect, <= 0 is useless."""
    var_t = jnp.var(targets)
    return jnp.where(var_t > 0, 1.0 - jnp.var(targets - predictions) / jnp.maximum(var_t, 1e-12), 0.0)


def make_optimizer(lr: float, max_grad_norm: float, decay_steps: int | None) -> optax.GradientTransformation:
    """Adam after global-norm clipping; the learning rate is injected state so it
    can be logged (and decays linearly to 0 over ``decay_steps`` updates if given)."""
    schedule = optax.linear_schedule(lr, 0.0, decay_steps) if decay_steps else lr
    return optax.chain(optax.clip_by_global_norm(max_grad_norm),
                       optax.inject_hyperparams(optax.adam)(learning_rate=schedule, eps=1e-5))


def learning_rate_of(opt_state: Any) -> jax.Array:
    """The learning rate of the last step taken by a :func:`make_optimizer` optimiser."""
    return jnp.asarray(opt_state[1].hyperparams["learning_rate"], jnp.float32)
