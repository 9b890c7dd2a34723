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
    ``{'episode_count', 'episode_return_sum', 'episode_length_sum'}``. A plain
    scan over time: with a handful of environments per step it runs as fast
    as a log-depth associative scan and compiles to a fraction of the code
    (about a second less XLA compilation per training program on CPU).
    """
    def step(carry, transition):
        (returns, lengths), (count, return_sum, length_sum) = carry
        reward, done = transition
        returns, lengths = returns + reward, lengths + 1
        finished = done.astype(jnp.float32)
        sums = (count + finished.sum(), return_sum + (returns * finished).sum(),
                length_sum + (lengths * finished).sum())
        return ((jnp.where(done, 0.0, returns), jnp.where(done, 0, lengths)), sums), None

    zero = jnp.zeros((), jnp.float32)
    ((returns, lengths), (count, return_sum, length_sum)), _ = jax.lax.scan(
        step, ((stats.returns, stats.lengths), (zero, zero, zero)), (rewards.astype(jnp.float32), dones))
    return EpisodeStats(returns, lengths), {"episode_count": count, "episode_return_sum": return_sum,
                                            "episode_length_sum": length_sum}
