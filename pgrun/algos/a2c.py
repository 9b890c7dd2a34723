"""A2C: synchronous advantage actor-critic, one gradient step per rollout.

Advantages are GAE(lambda) from the learned critic; ``gae_lambda=1`` gives
n-step returns bootstrapped at the end of the rollout (n = ``num_steps``).
The loss is the vanilla policy-gradient loss plus value error and an entropy
bonus, minimised jointly by one Adam step on the whole batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
from omegaconf import MISSING

from pgrun.algos.common import (Algorithm, Batch, TrainState, actor_critic_loss, explained_variance, flatten_time,
                                gae_targets, learning_rate_of, make_optimizer, optimizer_step, standardize)
from pgrun.policies import Policy
from pgrun.types import AlgoConfig, AlgoContext, AlgorithmSpec


@dataclass
class A2CConfig(AlgoConfig):
    """Synchronous advantage actor-critic."""

    name: str = "a2c"
    gae_lambda: float = MISSING  # 1.0: n-step returns
    ent_coef: float = MISSING
    vf_coef: float = MISSING


def make_a2c(cfg: Any, policy: Policy, num_iterations: int, context: AlgoContext | None = None) -> Algorithm:
    """Build A2C's pure update for ``cfg`` (an A2CConfig) and ``num_iterations`` rollouts."""
    optimizer = make_optimizer()
    decay_steps = num_iterations if cfg.anneal_lr else None

    def update(state: TrainState, batch: Batch, key: jax.Array):
        hp = state.hparams
        values, advantages, targets = gae_targets(policy, state.params["critic"], batch, hp["gamma"], hp["gae_lambda"])
        if cfg.norm_adv:
            advantages = standardize(advantages)
        obs, actions, advantages, targets = flatten_time((batch.obs, batch.actions, advantages, targets))
        grads, metrics = jax.grad(actor_critic_loss, argnums=1, has_aux=True)(
            policy, state.params, obs, actions, advantages, targets, hp["vf_coef"], hp["ent_coef"])
        params, opt_state = optimizer_step(optimizer, grads, state.opt_state, state.params, hp, decay_steps)
        metrics["losses/explained_variance"] = explained_variance(values, targets.reshape(values.shape))
        metrics["charts/learning_rate"] = learning_rate_of(opt_state)
        return state.replace(params=params, opt_state=opt_state), metrics

    return Algorithm(optimizer.init, update)


ALGORITHM = AlgorithmSpec(
    name="a2c", config=A2CConfig, build=make_a2c, paper="Mnih et al., 2016",
    summary="advantage actor-critic: one gradient step per rollout on GAE advantages")
