"""Advantage and return estimators over a ``[time, env]`` batch.

Conventions: ``next_values[t]`` is V(s_{t+1}) of the true successor state
(the final observation of an episode when it ended at t), ``terminated[t]``
zeroes the bootstrap (a real end: no future reward), and ``dones[t]``
(terminated or truncated) stops credit from flowing across episodes. A
truncated step therefore still bootstraps from V of its final observation.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def gae(rewards: jax.Array, values: jax.Array, next_values: jax.Array, terminated: jax.Array,
        dones: jax.Array, gamma: float, gae_lambda: float) -> tuple[jax.Array, jax.Array]:
    """GAE(lambda) advantages and lambda-returns (``advantages + values``)."""
    not_terminal = 1.0 - terminated.astype(rewards.dtype)
    carry_on = 1.0 - dones.astype(rewards.dtype)
    deltas = rewards + gamma * not_terminal * next_values - values

    def backward(next_adv, xs):
        delta, cont = xs
        adv = delta + gamma * gae_lambda * cont * next_adv
        return adv, adv

    _, advantages = jax.lax.scan(backward, jnp.zeros_like(deltas[0]), (deltas, carry_on), reverse=True)
    return advantages, advantages + values


def discounted_returns(rewards: jax.Array, next_values: jax.Array, terminated: jax.Array,
                       dones: jax.Array, gamma: float) -> jax.Array:
    """Reward-to-go within each episode; the batch's last step and truncated
    steps bootstrap from ``next_values`` (it is GAE with lambda = 1 plus V)."""
    not_terminal = 1.0 - terminated.astype(rewards.dtype)
    carry_on = 1.0 - dones.astype(rewards.dtype)

    def backward(next_return, xs):
        reward, next_value, nt, cont = xs
        future = jnp.where(cont > 0, next_return, nt * next_value)
        ret = reward + gamma * future
        return ret, ret

    # The carry entering the last step is V(s_T): the batch cut an unfinished episode.
    _, returns = jax.lax.scan(backward, next_values[-1], (rewards, next_values, not_terminal, carry_on),
                              reverse=True)
    return returns
