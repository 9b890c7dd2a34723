"""REINFORCE: the Monte-Carlo policy gradient with reward-to-go.

grad J ~ E[grad log pi(a_t|s_t) (G_t - b(s_t))], G_t the discounted return
from t to the end of the episode, one gradient step per batch. As in common
practice the scores are not weighted by gamma^t, so for gamma < 1 the step
follows the undiscounted-state-distribution form of the gradient (exact for
gamma = 1).

A batch is a fixed window of ``num_steps`` steps per environment; environments
carry their state from one batch to the next and reset when an episode ends,
so episodes are cut at both edges of the window:

- ``baseline=value``: a learned critic V is the baseline, and the return of an
  episode cut by the batch boundary (or by the time limit) is completed with
  V of the state where it was cut.
- ``baseline=none``: without a critic nothing can complete a cut episode.
  Keeping the episodes that happen to end inside the batch would select on
  their own actions (a short episode is more likely kept) and bias the
  gradient. Instead an episode is used only if it starts inside the batch at a
  step s >= 1 with s + T <= num_steps, T the environment's time limit: that is
  decided by the steps before s, and every such episode ends inside the batch.
  Each used episode then contributes an unbiased term, and the loss divides
  their sum by the fixed num_envs * num_steps, not by the random number of
  steps kept, so the estimate's expectation is grad J times E[episodes used]
  / (num_envs * num_steps), the true direction (with ``norm_adv=false`` and
  ``env.normalize_reward=false``: normalising by the batch's mean and std is
  the usual standardisation, biased by O(1/batch), and the reward scale is
  updated with the batch's own returns before it divides them). It needs num_steps > T; about (num_steps - T) /
  num_steps of the episodes are used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from pgrun.advantages import discounted_returns
from pgrun.algos.common import (Algorithm, Batch, TrainState, actor_critic_loss, explained_variance, flatten_time,
                                learning_rate_of, make_optimizer, optimizer_step, standardize)
from pgrun.errors import require
from pgrun.policies import Policy
from pgrun.types import AlgoConfig, AlgoContext, AlgorithmSpec


@dataclass
class ReinforceConfig(AlgoConfig):
    """Monte-Carlo policy gradient with reward-to-go."""

    name: str = "reinforce"
    baseline: str = "value"  # value | none
    ent_coef: float = 0.0
    vf_coef: float = 0.5


def validate_reinforce(algo: Any, context: AlgoContext) -> None:
    """``baseline=none`` needs a time limit shorter than the batch, or no episode could be used."""
    require(algo.baseline in ("value", "none"), f"algo.baseline={algo.baseline} is not valid: use value or none")
    if algo.baseline != "none":
        return
    limit, env_id = context.time_limit, context.env_id
    require(limit is not None, f"algo.baseline=none uses only episodes that fit in a batch, and {env_id} has "
                               f"no time limit to bound them: use algo.baseline=value")
    require(algo.num_steps > limit,
            f"algo.baseline=none uses only episodes that start and end inside a batch: algo.num_steps="
            f"{algo.num_steps} must exceed {env_id}'s time limit of {limit} steps: set algo.num_steps={4 * limit} "
            f"or more (fewer episodes go unused) or use algo.baseline=value")


def early_episode_mask(dones: jax.Array, time_limit: int) -> jax.Array:
    """1 at the steps of the episodes that start at a step s >= 1 of the batch with
    s + time_limit <= num_steps, 0 elsewhere.

    A start at s is known from the done at s - 1, before any of the episode's own
    actions. Step 0 is left out: whether an episode starts there is in the
    previous batch, not in this one.
    """
    num_steps = dones.shape[0]
    starts = jnp.concatenate([jnp.zeros_like(dones[:1]), dones[:-1]]).astype(jnp.int32)
    early = starts * (jnp.arange(num_steps) + time_limit <= num_steps)[:, None]
    started, started_early = jnp.cumsum(starts, 0), jnp.cumsum(early, 0)
    # Every early start comes before every late one: step t belongs to an early episode
    # iff an early episode has started by t and no late one has.
    return ((started_early > 0) & (started == started_early)).astype(jnp.float32)


def reward_to_go(policy: Policy, params: Any, batch: Batch, gamma: float, baseline: str, time_limit: int | None):
    """``(returns, baseline_values, mask)`` for a ``[time, env]`` batch; ``time_limit``
    (the environment's) is needed with ``baseline='none'``."""
    if baseline == "value":
        values = policy.value(params["critic"], batch.obs)
        next_values = policy.value(params["critic"], batch.next_obs)
        returns = discounted_returns(batch.rewards, next_values, batch.terminated, batch.dones, gamma)
        return returns, values, jnp.ones_like(returns)
    zeros = jnp.zeros_like(batch.rewards)
    returns = discounted_returns(batch.rewards, zeros, batch.dones, batch.dones, gamma)
    return returns, zeros, early_episode_mask(batch.dones, time_limit)


def reinforce_loss(params: Any, policy: Policy, batch: Batch, hparams: dict[str, jax.Array], baseline: str,
                   time_limit: int | None, norm_adv: bool):
    """``(loss, metrics)`` for a ``[time, env]`` batch; the negative gradient of the
    loss w.r.t. the actor is the REINFORCE estimate."""
    returns, values, mask = jax.lax.stop_gradient(
        reward_to_go(policy, params, batch, hparams["gamma"], baseline, time_limit))
    advantages = returns - values
    if norm_adv:
        advantages = standardize(advantages, mask)
    # Unused steps weigh 0 and the loss still averages over every step of the batch: a
    # fixed denominator, since dividing by the random number of steps kept biases the direction.
    with_critic = baseline == "value"
    obs, actions, advantages, returns_flat = flatten_time((batch.obs, batch.actions, advantages * mask, returns))
    loss, metrics = actor_critic_loss(policy, params, obs, actions, advantages, returns_flat if with_critic else None,
                                      hparams["vf_coef"], hparams["ent_coef"])
    if with_critic:
        metrics["losses/explained_variance"] = explained_variance(values, returns)
    metrics["losses/used_fraction"] = mask.mean()
    return loss, metrics


def make_reinforce(cfg: Any, policy: Policy, num_iterations: int, context: AlgoContext | None = None) -> Algorithm:
    """Build REINFORCE's pure update; ``baseline=none`` needs the environment's time limit
    from ``context``."""
    optimizer = make_optimizer()
    decay_steps = num_iterations if cfg.anneal_lr else None
    time_limit = None
    if cfg.baseline == "none":
        if context is None or context.time_limit is None:
            raise ValueError("REINFORCE without a baseline needs the environment's time limit (context.time_limit)")
        time_limit = context.time_limit
    grad_fn = jax.grad(reinforce_loss, has_aux=True)

    def update(state: TrainState, batch: Batch, key: jax.Array):
        hp = state.hparams
        grads, metrics = grad_fn(state.params, policy, batch, hp, cfg.baseline, time_limit, cfg.norm_adv)
        params, opt_state = optimizer_step(optimizer, grads, state.opt_state, state.params, hp, decay_steps)
        metrics["charts/learning_rate"] = learning_rate_of(opt_state)
        return state.replace(params=params, opt_state=opt_state), metrics

    return Algorithm(optimizer.init, update)


ALGORITHM = AlgorithmSpec(
    name="reinforce", config=ReinforceConfig, build=make_reinforce, validate=validate_reinforce,
    paper="Williams, 1992", summary="Monte-Carlo policy gradient with reward-to-go, a learned baseline or none")
