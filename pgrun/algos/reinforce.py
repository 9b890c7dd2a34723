"""REINFORCE: the Monte-Carlo policy gradient with reward-to-go.

grad J ~ E[grad log pi(a_t|s_t) (G_t - b(s_t))], G_t the discounted return
from t to the end of the episode, one gradient step per batch. As in common
practice the scores are not weighted by gamma^t, so for gamma < 1 the step
follows the undiscounted-state-distribution form of the gradient (exact for
gamma = 1).

Episodes cut by the batch boundary are handled honestly:

- ``baseline=value``: a learned critic V is the baseline, and the return of an
  episode cut by the batch boundary (or by the time limit) is completed with
  V of the state where it was cut.
- ``baseline=none``: without a critic nothing can complete a cut episode, so
  only steps of episodes that end inside the batch contribute; the unfinished
  tail of each environment's rollout is masked out. An episode ended by the
  time limit counts as complete (its return is the sum up to the limit).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from pgrun.advantages import discounted_returns
from pgrun.algos.common import (Algorithm, Batch, TrainState, actor_critic_loss, explained_variance, flatten_time,
                                learning_rate_of, make_optimizer, normalize, optimizer_step)
from pgrun.policies import Policy


def complete_episode_mask(dones: jax.Array) -> jax.Array:
    """1 where the step's episode ends inside the batch (a done at or after t)."""
    ends_later = jnp.flip(jnp.cumsum(jnp.flip(dones.astype(jnp.int32), 0), 0), 0)
    return (ends_later > 0).astype(jnp.float32)


def reward_to_go(policy: Policy, params: Any, batch: Batch, gamma: float, baseline: str):
    """``(returns, baseline_values, mask)`` for a ``[time, env]`` batch."""
    if baseline == "value":
        values = policy.value(params["critic"], batch.obs)
        next_values = policy.value(params["critic"], batch.next_obs)
        returns = discounted_returns(batch.rewards, next_values, batch.terminated, batch.dones, gamma)
        return returns, values, jnp.ones_like(returns)
    zeros = jnp.zeros_like(batch.rewards)
    returns = discounted_returns(batch.rewards, zeros, batch.dones, batch.dones, gamma)
    return returns, zeros, complete_episode_mask(batch.dones)


def make_reinforce(cfg: Any, policy: Policy, num_iterations: int) -> Algorithm:
    optimizer = make_optimizer()
    decay_steps = num_iterations if cfg.anneal_lr else None
    with_critic = cfg.baseline == "value"

    def update(state: TrainState, batch: Batch, key: jax.Array):
        hp = state.hparams
        returns, values, mask = reward_to_go(policy, state.params, batch, hp["gamma"], cfg.baseline)
        advantages = returns - values
        if cfg.norm_adv:
            advantages = normalize(advantages, mask)
        obs, actions, advantages, returns_flat, mask_flat = flatten_time(
            (batch.obs, batch.actions, advantages, returns, mask))
        grads, metrics = jax.grad(actor_critic_loss, argnums=1, has_aux=True)(
            policy, state.params, obs, actions, advantages, returns_flat if with_critic else None,
            hp["vf_coef"], hp["ent_coef"], mask_flat)
        params, opt_state = optimizer_step(optimizer, grads, state.opt_state, state.params, hp, decay_steps)
        if with_critic:
            metrics["losses/explained_variance"] = explained_variance(values, returns)
        metrics["charts/learning_rate"] = learning_rate_of(opt_state)
        metrics["losses/used_fraction"] = mask.mean()
        return state.replace(params=params, opt_state=opt_state), metrics

    return Algorithm(optimizer.init, update)
