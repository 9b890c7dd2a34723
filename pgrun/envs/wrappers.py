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
    ``{'episode_count', 'episode_return_sum', 'episode_length_sum'}``. Running
    sums restart after every ``done``; they are computed as a segmented
    associative scan (log-depth, vectorised) rather than a step-by-step loop.
    """
    starts = jnp.concatenate([jnp.zeros_like(dones[:1]), dones[:-1]], axis=0)  # first step of a new episode

    def combine(earlier, later):
        ret_a, len_a, start_a = earlier
        ret_b, len_b, start_b = later
        return (jnp.where(start_b, ret_b, ret_a + ret_b), jnp.where(start_b, len_b, len_a + len_b),
                start_a | start_b)

    returns, lengths, _ = jax.lax.associative_scan(
        combine, (rewards.astype(jnp.float32), jnp.ones(rewards.shape, jnp.int32), starts), axis=0)
    # Steps before the batch's first episode start continue the episode carried in.
    carried = jnp.cumsum(starts, axis=0) == 0
    returns = returns + jnp.where(carried, stats.returns, 0.0)
    lengths = lengths + jnp.where(carried, stats.lengths, 0)
    finished = dones.astype(jnp.float32)
    new_stats = EpisodeStats(jnp.where(dones[-1], 0.0, returns[-1]), jnp.where(dones[-1], 0, lengths[-1]))
    return new_stats, {"episode_count": finished.sum(), "episode_return_sum": (returns * finished).sum(),
                       "episode_length_sum": (lengths * finished).sum()}
