"""The pieces algorithms share: optimiser steps, minibatch epochs, losses, targets.

What an algorithm consumes and produces (:class:`~pgrun.types.Batch`,
:class:`~pgrun.types.TrainState`, :class:`~pgrun.types.Algorithm`) is in
:mod:`pgrun.types`; they are imported here too, for the algorithm modules.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from pgrun.advantages import gae
from pgrun.permutation import random_permutation
from pgrun.policies import Policy
from pgrun.types import Algorithm, AlgoConfig, AlgoContext, AlgorithmSpec, Batch, TrainState  # noqa: F401


def squared_error(values: jax.Array, targets: jax.Array) -> jax.Array:
    """0.5 E[(V - target)^2]: every critic's regression loss."""
    return 0.5 * jnp.mean((values - targets) ** 2)


def explained_variance(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """1 - Var[target - prediction] / Var[target]: 1 is perfect, <= 0 is useless."""
    var_t = jnp.var(targets)
    return jnp.where(var_t > 0, 1.0 - jnp.var(targets - predictions) / jnp.maximum(var_t, 1e-12), 0.0)


def standardize(x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Zero mean, unit standard deviation (over the entries where ``mask`` is 1)."""
    if mask is None:
        return (x - x.mean()) / (x.std() + 1e-8)
    count = jnp.maximum(mask.sum(), 1.0)
    mean = (x * mask).sum() / count
    std = jnp.sqrt((((x - mean) * mask) ** 2).sum() / count)
    return (x - mean) / (std + 1e-8)


def _clipped_adam(learning_rate: float, max_grad_norm: float) -> optax.GradientTransformation:
    # On one flat vector rather than per layer: a dozen small per-leaf updates become one,
    # about 10% of PPO's update time and a third of its compile time on CPU.
    return optax.flatten(optax.chain(optax.clip_by_global_norm(max_grad_norm), optax.adam(learning_rate, eps=1e-5)))


def make_optimizer() -> optax.GradientTransformation:
    """Adam after global-norm clipping, with the learning rate and the clip norm as
    injected state rather than constants: :func:`optimizer_step` sets them from the
    traced hyperparameters before every step, so one compiled program serves any
    of their values (and the learning rate can be logged)."""
    return optax.inject_hyperparams(_clipped_adam)(learning_rate=0.0, max_grad_norm=1.0)


def optimizer_step(optimizer: optax.GradientTransformation, grads: Any, opt_state: Any, params: Any,
                   hparams: dict[str, jax.Array], decay_steps: int | None) -> tuple[Any, Any]:
    """``(new params, new optimiser state)`` after one step at ``hparams['lr']``,
    decayed linearly to 0 over ``decay_steps`` steps when given."""
    lr = hparams["lr"]
    if decay_steps:
        lr = lr * jnp.maximum(1.0 - opt_state.count / decay_steps, 0.0)
    injected = {**opt_state.hyperparams, "learning_rate": jnp.asarray(lr, jnp.float32),
                "max_grad_norm": jnp.asarray(hparams["max_grad_norm"], jnp.float32)}
    updates, opt_state = optimizer.update(grads, opt_state._replace(hyperparams=injected), params)
    return optax.apply_updates(params, updates), opt_state


def learning_rate_of(opt_state: Any) -> jax.Array:
    """The learning rate of the last step taken by a :func:`make_optimizer` optimiser."""
    return jnp.asarray(opt_state.hyperparams["learning_rate"], jnp.float32)


def gae_targets(policy: Policy, critic_params: Any, batch: Batch, gamma: float, gae_lambda: float):
    """``(values, advantages, value_targets)`` for a ``[time, env]`` batch."""
    values = policy.value(critic_params, batch.obs)
    next_values = policy.value(critic_params, batch.next_obs)
    advantages, targets = gae(batch.rewards, values, next_values, batch.terminated, batch.dones, gamma, gae_lambda)
    return values, advantages, targets


def flatten_time(tree: Any) -> Any:
    """``[time, env, ...] -> [time * env, ...]`` for every leaf."""
    return jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), tree)


def minibatch_epochs(step: Callable[[Any, Any], tuple[Any, dict]], carry: Any, data: Any, key: jax.Array,
                     epochs: int, num_minibatches: int, last_epoch_metrics: bool = False) -> tuple[Any, dict]:
    """``epochs`` passes of shuffled minibatches over flat ``data`` (leading axis
    = samples), scanning ``step(carry, minibatch) -> (carry, metrics)``.
    Returns the final carry and the metrics averaged over all steps or, with
    ``last_epoch_metrics``, over the last epoch's steps only (the earlier epochs
    see parameters nearer the start, which dilutes a measure of drift)."""
    size = jax.tree.leaves(data)[0].shape[0]
    mb_size = size // num_minibatches

    def epoch(carry, epoch_key):
        order = random_permutation(epoch_key, size)[: mb_size * num_minibatches]
        minibatches = jax.tree.map(lambda x: x[order].reshape((num_minibatches, mb_size) + x.shape[1:]), data)
        return jax.lax.scan(step, carry, minibatches)

    carry, metrics = jax.lax.scan(epoch, carry, jax.random.split(key, epochs))
    if last_epoch_metrics:
        metrics = jax.tree.map(lambda x: x[-1], metrics)
    return carry, jax.tree.map(jnp.mean, metrics)


def surrogate_epochs(policy: Policy, optimizer: optax.GradientTransformation, grad_fn: Callable,
                     state: TrainState, batch: Batch, key: jax.Array, coefficient: jax.Array, epochs: int,
                     num_minibatches: int, decay_steps: int | None) -> tuple[tuple[Any, Any], dict, Any]:
    """The multi-epoch surrogate methods' update (PPO, MDPO): GAE targets and the behaviour
    distribution frozen at the rollout's parameters, then ``epochs`` passes of shuffled minibatch
    steps of ``grad_fn(params, hparams, coefficient, minibatch)``, a minibatch being
    ``(obs, actions, old log-probs, old distribution, old values, advantages, value targets)``.

    Returns ``((params, optimiser state), metrics, old distribution)``: the last epoch's mean
    metrics plus ``losses/explained_variance`` and ``charts/learning_rate``."""
    params, hp = state.params, state.hparams
    values, advantages, targets = gae_targets(policy, params["critic"], batch, hp["gamma"], hp["gae_lambda"])
    old_dist = jax.lax.stop_gradient(policy.dist(params["actor"], batch.obs))
    data = flatten_time((batch.obs, batch.actions, batch.log_probs, old_dist, values, advantages, targets))

    def minibatch_step(carry, minibatch):
        params, opt_state = carry
        grads, metrics = grad_fn(params, hp, coefficient, minibatch)
        return optimizer_step(optimizer, grads, opt_state, params, hp, decay_steps), metrics

    (params, opt_state), metrics = minibatch_epochs(minibatch_step, (params, state.opt_state), data, key, epochs,
                                                    num_minibatches, last_epoch_metrics=True)
    metrics["losses/explained_variance"] = explained_variance(values, targets)
    metrics["charts/learning_rate"] = learning_rate_of(opt_state)
    return (params, opt_state), metrics, old_dist


def fit_critic(policy: Policy, optimizer: optax.GradientTransformation, critic_params: Any, opt_state: Any,
               obs: jax.Array, targets: jax.Array, key: jax.Array, hparams: dict[str, jax.Array], epochs: int,
               num_minibatches: int, decay_steps: int | None) -> tuple[tuple[Any, Any], dict]:
    """``epochs`` passes of the optimiser over shuffled minibatches of 0.5 E[(V - target)^2] on flat
    ``obs`` and ``targets``: the critic of the methods whose policy step is not a gradient step.
    Returns ``((critic params, optimiser state), {"losses/value_loss": ...})``."""

    def step(carry, minibatch):
        params, state = carry
        minibatch_obs, minibatch_targets = minibatch
        loss, grads = jax.value_and_grad(lambda p: squared_error(policy.value(p, minibatch_obs), minibatch_targets))(
            params)
        return optimizer_step(optimizer, grads, state, params, hparams, decay_steps), {"losses/value_loss": loss}

    return minibatch_epochs(step, (critic_params, opt_state), (obs, targets), key, epochs, num_minibatches)


def actor_critic_loss(policy: Policy, params: Any, obs: jax.Array, actions: jax.Array, advantages: jax.Array,
                      value_targets: jax.Array | None, vf_coef: float, ent_coef: float,
                      mask: jax.Array | None = None):
    """The vanilla policy-gradient loss ``-E[log pi(a|s) A] + c_v L_V - c_e H``.

    Its gradient is the score-function estimator of the policy gradient.
    ``value_targets=None`` trains no critic; ``mask`` (1 = use) restricts the
    policy term to chosen samples. Returns ``(loss, metrics)``.
    """
    dist = policy.dist(params["actor"], obs)
    weights = jnp.ones_like(advantages) if mask is None else mask
    count = jnp.maximum(weights.sum(), 1.0)
    policy_loss = -(dist.log_prob(actions) * jax.lax.stop_gradient(advantages) * weights).sum() / count
    entropy = dist.entropy().mean()
    loss = policy_loss - ent_coef * entropy
    metrics = {"losses/policy_loss": policy_loss, "losses/entropy": entropy}
    if value_targets is not None:
        value_loss = squared_error(policy.value(params["critic"], obs), value_targets)
        loss = loss + vf_coef * value_loss
        metrics["losses/value_loss"] = value_loss
    return loss, metrics
