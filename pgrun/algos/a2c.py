"""A2C: synchronous advantage actor-critic, one gradient step per rollout.

Advantages are GAE(lambda) from the learned critic; ``gae_lambda=1`` gives
n-step returns bootstrapped at the end of the rollout (n = ``num_steps``).
The loss is the vanilla policy-gradient loss plus value error and an entropy
bonus, minimised jointly by one Adam step on the whole batch.
"""

from __future__ import annotations

from typing import Any

import jax

from pgrun.algos.common import (Algorithm, Batch, TrainState, actor_critic_loss, explained_variance, flatten_time,
                                gae_targets, learning_rate_of, make_optimizer, normalize, optimizer_step)
from pgrun.policies import Policy


def make_a2c(cfg: Any, policy: Policy, num_iterations: int) -> Algorithm:
    optimizer = make_optimizer()
    decay_steps = num_iterations if cfg.anneal_lr else None

    def update(state: TrainState, batch: Batch, key: jax.Array):
        hp = state.hparams
        values, advantages, targets = gae_targets(policy, state.params["critic"], batch, hp["gamma"], hp["gae_lambda"])
        if cfg.norm_adv:
            advantages = normalize(advantages)
        obs, actions, advantages, targets = flatten_time((batch.obs, batch.actions, advantages, targets))
        grads, metrics = jax.grad(actor_critic_loss, argnums=1, has_aux=True)(
            policy, state.params, obs, actions, advantages, targets, hp["vf_coef"], hp["ent_coef"])
        params, opt_state = optimizer_step(optimizer, grads, state.opt_state, state.params, hp, decay_steps)
        metrics["losses/explained_variance"] = explained_variance(values, targets.reshape(values.shape))
        metrics["charts/learning_rate"] = learning_rate_of(opt_state)
        return state.replace(params=params, opt_state=opt_state), metrics

    return Algorithm(optimizer.init, update)
