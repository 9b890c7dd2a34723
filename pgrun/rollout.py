"""Acting, and the fixed-size rollout of the JAX path as one ``lax.scan``."""

from __future__ import annotations

from typing import Any, Callable

import jax

from pgrun.types import Batch
from pgrun.envs.core import Env
from pgrun.envs.wrappers import auto_reset_step
from pgrun.normalization import RunningMeanStd
from pgrun.policies import Policy

Normalizer = Callable[[RunningMeanStd, jax.Array], jax.Array]


def identity_normalizer(stats: RunningMeanStd, obs: jax.Array) -> jax.Array:
    """Observations as they are (``env.normalize_obs=false``)."""
    return obs


def running_normalizer(stats: RunningMeanStd, obs: jax.Array) -> jax.Array:
    """Observations standardised with the running statistics, and clipped."""
    return stats.normalize(obs)


def normalizer_for(normalize_obs: bool) -> Normalizer:
    """The running normaliser with ``env.normalize_obs``, else the identity."""
    return running_normalizer if normalize_obs else identity_normalizer


def act(policy: Policy, normalize: Normalizer, params: Any, obs_stats: RunningMeanStd, obs: jax.Array,
        key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Sample actions for a batch of raw observations: ``(actions, log_probs)``."""
    dist = policy.dist(params["actor"], normalize(obs_stats, obs))
    actions = dist.sample(key)
    return actions, dist.log_prob(actions)


def make_rollout(env: Env, policy: Policy, normalize: Normalizer, num_steps: int):
    """``rollout(params, obs_stats, env_state, obs, key) -> (env_state, obs, Batch)``.

    ``env_state`` and ``obs`` are batched over parallel environments; the
    environment auto-resets, so the rollout never stops early.
    """
    batched_step = jax.vmap(auto_reset_step, in_axes=(None, 0, 0, 0, 0))

    def rollout(params, obs_stats, env_state, obs, key):
        num_envs = obs.shape[0]

        def step(carry, keys):
            env_state, obs = carry
            actions, log_probs = act(policy, normalize, params, obs_stats, obs, keys[0])
            next_obs, env_state, rewards, terminated, truncated, final_obs = batched_step(
                env, keys[1:1 + num_envs], keys[1 + num_envs:], env_state, policy.to_env_action(actions))
            transition = Batch(obs, actions, log_probs, rewards, terminated, terminated | truncated, final_obs)
            return (env_state, next_obs), transition

        # All keys of the rollout in one batched call: per step one to act, one per env to step and to reset.
        keys = jax.random.split(key, (num_steps, 1 + 2 * num_envs))
        (env_state, obs), batch = jax.lax.scan(step, (env_state, obs), keys)
        return env_state, obs, batch

    return rollout
