"""PPO with the clipped surrogate objective.

L = -E[min(r A, clip(r, 1-eps, 1+eps) A)] + c_v * 1/2 E[(V - R)^2] - c_e * E[H],
r = pi(a|s) / pi_old(a|s), optimised for ``update_epochs`` passes of shuffled
minibatches over one rollout. Advantages are GAE(lambda), optionally
normalised per minibatch.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from pgrun.advantages import gae
from pgrun.algos.common import Algorithm, Batch, TrainState, explained_variance, learning_rate_of, make_optimizer
from pgrun.policies import Policy


def make_ppo(cfg: Any, policy: Policy, num_iterations: int) -> Algorithm:
    """Build PPO's pure update for ``cfg`` (a PPOConfig) and ``num_iterations`` rollouts."""
    num_updates = num_iterations * cfg.update_epochs * cfg.num_minibatches
    optimizer = make_optimizer(cfg.lr, cfg.max_grad_norm, num_updates if cfg.anneal_lr else None)

    def loss_fn(params, obs, actions, old_log_probs, advantages, targets):
        dist = policy.dist(params["actor"], obs)
        log_ratio = dist.log_prob(actions) - old_log_probs
        ratio = jnp.exp(log_ratio)
        if cfg.norm_adv:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        clipped = jnp.clip(ratio, 1.0 - cfg.clip_eps, 1.0 + cfg.clip_eps)
        policy_loss = -jnp.minimum(ratio * advantages, clipped * advantages).mean()
        value_loss = 0.5 * jnp.mean((policy.value(params["critic"], obs) - targets) ** 2)
        entropy = dist.entropy().mean()
        total = policy_loss + cfg.vf_coef * value_loss - cfg.ent_coef * entropy
        metrics = {
            "policy_loss": policy_loss,
            "value_loss": value_loss,
            "entropy": entropy,
            "approx_kl": jnp.mean(ratio - 1.0 - log_ratio),  # unbiased, non-negative estimator
            "clip_fraction": jnp.mean((jnp.abs(ratio - 1.0) > cfg.clip_eps).astype(jnp.float32)),
        }
        return total, metrics

    grad_fn = jax.grad(loss_fn, has_aux=True)

    def update(state: TrainState, batch: Batch, key: jax.Array):
        params = state.params
        values = policy.value(params["critic"], batch.obs)
        next_values = policy.value(params["critic"], batch.next_obs)
        advantages, targets = gae(batch.rewards, values, next_values, batch.terminated, batch.dones,
                                  cfg.gamma, cfg.gae_lambda)
        flat = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]),
                            (batch.obs, batch.actions, batch.log_probs, advantages, targets))
        batch_size = flat[0].shape[0]
        mb_size = batch_size // cfg.num_minibatches

        def minibatch_step(carry, minibatch):
            params, opt_state = carry
            grads, metrics = grad_fn(params, *minibatch)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), metrics

        def epoch(carry, epoch_key):
            order = jax.random.permutation(epoch_key, batch_size)
            minibatches = jax.tree.map(
                lambda x: x[order].reshape((cfg.num_minibatches, mb_size) + x.shape[1:]), flat)
            return jax.lax.scan(minibatch_step, carry, minibatches)

        (params, opt_state), metrics = jax.lax.scan(
            epoch, (params, state.opt_state), jax.random.split(key, cfg.update_epochs))
        metrics = jax.tree.map(jnp.mean, metrics)
        metrics["explained_variance"] = explained_variance(values, targets)
        metrics["learning_rate"] = learning_rate_of(opt_state)
        return state.replace(params=params, opt_state=opt_state), metrics

    return Algorithm(optimizer.init, update)
