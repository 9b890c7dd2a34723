"""PPO: several epochs of minibatch ascent on a surrogate of the policy improvement.

With r = pi(a|s) / pi_old(a|s) and GAE advantages A, ``algo.objective`` picks
the surrogate (Schulman et al., 2017, section 6 ablation):

- ``clip``:        E[min(r A, clip(r, 1-eps, 1+eps) A)]
- ``kl_adaptive``: E[r A] - beta KL[pi_old, pi], beta doubled when the
                   measured KL exceeds 1.5 x target, halved below target / 1.5,
                   within [1e-4, 1e4]
- ``kl_fixed``:    E[r A] - beta KL[pi_old, pi] with constant beta
- ``none``:        E[r A], the plain importance-sampled surrogate

The loss adds ``vf_coef`` x value error and subtracts ``ent_coef`` x entropy.

The per-minibatch metrics (``losses/policy_loss``, ``value_loss``, ``entropy``,
``approx_kl``, ``clip_fraction``, ``ess``) are the mean over the last epoch's
minibatches: the first epoch starts at the rollout's policy (ratio exactly 1),
so a mean over every epoch would understate how far the update moved.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from omegaconf import MISSING

from pgrun.algos.common import (Algorithm, Batch, TrainState, make_optimizer, squared_error, standardize,
                                surrogate_epochs)
from pgrun.errors import require
from pgrun.policies import Policy
from pgrun.types import AlgoConfig, AlgoContext, AlgorithmSpec

OBJECTIVES = ("clip", "kl_adaptive", "kl_fixed", "none")


@dataclass
class PPOConfig(AlgoConfig):
    """Proximal policy optimisation."""

    name: str = "ppo"
    objective: str = "clip"  # clip | kl_adaptive | kl_fixed | none
    gae_lambda: float = MISSING
    update_epochs: int = MISSING
    num_minibatches: int = MISSING
    clip_eps: float = MISSING
    kl_target: float = 0.01  # d_targ of the adaptive KL penalty
    kl_beta: float = 1.0  # initial (kl_adaptive) or constant (kl_fixed) penalty weight
    ent_coef: float = MISSING
    vf_coef: float = MISSING
    clip_vloss: bool = True  # clip the value update to clip_eps around the rollout's values


def check_minibatches(algo: Any, context: AlgoContext) -> None:
    """Epoch and minibatch counts that split the batch evenly."""
    batch = context.batch_size(algo)
    require(algo.update_epochs >= 1, f"algo.update_epochs={algo.update_epochs} must be at least 1")
    require(algo.num_minibatches >= 1, f"algo.num_minibatches={algo.num_minibatches} must be at least 1")
    require(batch % algo.num_minibatches == 0,
            f"the batch of num_envs*algo.num_steps={batch} does not split into "
            f"algo.num_minibatches={algo.num_minibatches}: pick a divisor of {batch}")


def validate_ppo(algo: Any, context: AlgoContext) -> None:
    """The surrogate's keys, and epochs and minibatches that split the batch evenly."""
    require(algo.objective in OBJECTIVES,
            f"algo.objective={algo.objective} is not valid: use one of {', '.join(OBJECTIVES)}")
    require(algo.clip_eps > 0, f"algo.clip_eps={algo.clip_eps} must be positive")
    require(algo.kl_target > 0, f"algo.kl_target={algo.kl_target} must be positive")
    require(algo.kl_beta >= 0, f"algo.kl_beta={algo.kl_beta} must be non-negative")
    check_minibatches(algo, context)


KL_BETA_RANGE = (1e-4, 1e4)  # the adaptive KL penalty's weight stays in here


def adapt_kl_beta(beta: jax.Array, kl: jax.Array, target: float) -> jax.Array:
    """The adaptive-KL rule: double beta above 1.5 x target, halve it below target / 1.5,
    then clip it to ``KL_BETA_RANGE``.

    Unbounded, a run of halvings reaches float32's 0 (from beta = 1: after 127
    where subnormals are flushed, as on XLA's CPU, else 150) and doubling 0 never
    recovers. With advantages normalised per minibatch (the
    default) the surrogate's gradient is O(1), so beta = 1e-4 already makes the
    penalty negligible and beta = 1e4 already makes it dominate: beyond them only
    the time to come back grows, and across the range it is at most 27 updates.
    An initial beta outside the range is moved into it by the first update.
    """
    beta = jnp.where(kl > 1.5 * target, beta * 2.0, beta)
    beta = jnp.where(kl < target / 1.5, beta / 2.0, beta)
    return jnp.clip(beta, *KL_BETA_RANGE)


def clipped_surrogate(ratio: jax.Array, advantages: jax.Array, clip_eps: float) -> jax.Array:
    """Per-sample min(r A, clip(r, 1-eps, 1+eps) A)."""
    return jnp.minimum(ratio * advantages, jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * advantages)


def clipped_value_loss(values: jax.Array, old_values: jax.Array, targets: jax.Array, clip_eps: float) -> jax.Array:
    """0.5 E[max((V - target)^2, (V_clip - target)^2)] with V_clip = V_old + clip(V - V_old, -eps, eps)."""
    clipped = old_values + jnp.clip(values - old_values, -clip_eps, clip_eps)
    return 0.5 * jnp.mean(jnp.maximum((values - targets) ** 2, (clipped - targets) ** 2))


def effective_sample_size(ratio: jax.Array) -> jax.Array:
    """(sum w)^2 / (n sum w^2): 1 when all importance weights are equal."""
    return jnp.sum(ratio) ** 2 / (ratio.size * jnp.maximum(jnp.sum(ratio**2), 1e-12))


def make_ppo(cfg: Any, policy: Policy, num_iterations: int, context: AlgoContext | None = None) -> Algorithm:
    """Build PPO's pure update for ``cfg`` (a PPOConfig) and ``num_iterations`` rollouts."""
    num_updates = num_iterations * cfg.update_epochs * cfg.num_minibatches
    optimizer = make_optimizer()
    decay_steps = num_updates if cfg.anneal_lr else None
    penalised = cfg.objective in ("kl_adaptive", "kl_fixed")

    def loss_fn(params, hp, beta, minibatch):
        obs, actions, old_log_probs, old_dist, old_values, advantages, targets = minibatch
        dist = policy.dist(params["actor"], obs)
        log_ratio = dist.log_prob(actions) - old_log_probs
        ratio = jnp.exp(log_ratio)
        if cfg.norm_adv:
            advantages = standardize(advantages)
        kl = old_dist.kl(dist).mean()
        if cfg.objective == "clip":
            surrogate = clipped_surrogate(ratio, advantages, hp["clip_eps"]).mean()
        else:
            surrogate = (ratio * advantages).mean()
        policy_loss = -surrogate + (beta * kl if penalised else 0.0)
        value_loss = value_loss_fn(policy.value(params["critic"], obs), old_values, targets, hp["clip_eps"])
        entropy = dist.entropy().mean()
        total = policy_loss + hp["vf_coef"] * value_loss - hp["ent_coef"] * entropy
        metrics = {
            "losses/policy_loss": policy_loss,
            "losses/value_loss": value_loss,
            "losses/entropy": entropy,
            "losses/approx_kl": jnp.mean(ratio - 1.0 - log_ratio),  # unbiased, non-negative estimator
            "losses/clip_fraction": jnp.mean((jnp.abs(ratio - 1.0) > hp["clip_eps"]).astype(jnp.float32)),
            "losses/ess": effective_sample_size(ratio),
        }
        return total, metrics

    value_loss_fn = clipped_value_loss if cfg.clip_vloss else (lambda values, old, targets, eps: squared_error(values, targets))
    grad_fn = jax.grad(loss_fn, has_aux=True)

    def update(state: TrainState, batch: Batch, key: jax.Array):
        hp = state.hparams
        beta = state.algo_state.get("kl_beta", jnp.asarray(0.0, jnp.float32))
        (params, opt_state), metrics, old_dist = surrogate_epochs(
            policy, optimizer, grad_fn, state, batch, key, beta, cfg.update_epochs, cfg.num_minibatches, decay_steps)
        algo_state = state.algo_state
        if penalised:
            metrics["losses/kl_beta"] = beta
            if cfg.objective == "kl_adaptive":
                kl = old_dist.kl(policy.dist(params["actor"], batch.obs)).mean()
                algo_state = {"kl_beta": adapt_kl_beta(beta, kl, hp["kl_target"])}
        return state.replace(params=params, opt_state=opt_state, algo_state=algo_state), metrics

    def init_algo_state(hparams):
        return {"kl_beta": jnp.asarray(hparams["kl_beta"], jnp.float32)} if penalised else {}

    return Algorithm(optimizer.init, update, init_algo_state)


ALGORITHM = AlgorithmSpec(
    name="ppo", config=PPOConfig, build=make_ppo, validate=validate_ppo, paper="Schulman et al., 2017",
    summary="proximal policy optimisation: minibatch epochs on a clipped or KL-penalised surrogate")
