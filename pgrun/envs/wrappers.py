"""Auto-reset and episode statistics over the functional :class:`Env`."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from pgrun.envs.core import Env


def auto_reset_step(env: Env, step_key: jax.Array, reset_key: jax.Array, state: Any, action: jax.Array):
    """Step; where the episode ended, start a new one in the same call.

    Returns ``(obs, state, reward, terminated, truncated, final_obs)``: ``obs``
    and ``state`` already belong to the new episode after an end, and
    ``final_obs`` is the true successor observation (needed to bootstrap a
    truncated episode).
    """
    final_obs, next_state, reward, terminated, truncated = env.step(step_key, state, action)
    reset_obs, reset_state = env.reset(reset_key)
    done = terminated | truncated
    pick = lambda a, b: jnp.where(done.reshape(done.shape + (1,) * (a.ndim - done.ndim)), a, b)
    obs = pick(reset_obs, final_obs)
    state = jax.tree.map(pick, reset_state, next_state)
    return obs, state, reward, terminated, truncated, final_obs


@flax.struct.dataclass
class EpisodeStats:
    """Per-environment running return/length of the unfinished episode."""

    returns: jax.Array
    lengths: jax.Array

    @classmethod
    def create(cls, num_envs: int) -> "EpisodeStats":
        return cls(jnp.zeros((num_envs,), jnp.float32), jnp.zeros((num_envs,), jnp.int32))


def accumulate_episodes(stats: EpisodeStats, rewards: jax.Array, dones: jax.Array):
    """Fold a ``[time, env]`` batch into the running episode statistics.

    Returns the new stats and the sums over episodes that ended in the batch:
    ``{'episode_count', 'episode_return_sum', 'episode_length_sum'}``.
    """

    def step(carry, xs):
        reward, done = xs
        ret, length = carry.returns + reward, carry.lengths + 1
        finished = done.astype(jnp.float32)
        sums = (finished.sum(), (ret * finished).sum(), (length * finished).sum())
        carry = EpisodeStats(jnp.where(done, 0.0, ret), jnp.where(done, 0, length))
        return carry, sums

    stats, (count, ret_sum, len_sum) = jax.lax.scan(step, stats, (rewards, dones))
    return stats, {"episode_count": count.sum(), "episode_return_sum": ret_sum.sum(),
                   "episode_length_sum": len_sum.sum()}
