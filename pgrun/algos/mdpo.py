"""On-policy MDPO: mirror descent on the policy, each step solved approximately by SGD.

Iteration k collects a rollout with pi_k and then approximately solves the
mirror-descent step (Tomar, Shani, Efroni and Ghavamzadeh, "Mirror Descent
Policy Optimization", 2020, on-policy variant)

    theta_{k+1} = argmax_theta  E_{s,a ~ pi_k}[ r A ]  -  beta_k E_s[ KL(pi_theta(.|s) || pi_k(.|s)) ]

with r = pi_theta(a|s) / pi_k(a|s), GAE advantages A, and beta_k = 1 / t_k
the inverse of the mirror-descent step size. The KL runs from the new policy
to the old one (the Bregman divergence of the negative entropy, the reverse of
PPO's KL[pi_old, pi]), and the ratio is never clipped. The argmax is
approximated by ``update_epochs`` passes of Adam over ``num_minibatches``
shuffled minibatches of the loss

    -E[r A] + beta_k E[KL(pi_theta || pi_k)] + vf_coef L_V - ent_coef H[pi_theta]

(L_V the value loss, optionally clipped to ``vf_clip`` around the rollout's
values, as in PPO). beta_k stays fixed while one step is solved; ``algo.beta_schedule``
sets how it changes between iterations, k = 0, 1, ... counting iterations
(rollout + update) and K the run's number of iterations, c = ``algo.beta_scale``:

- ``inverse_step`` (default): beta_k = c / (k + 1), the scheduled coefficient
  "beta = c / optimisation step" of the lecture notes: the step size t_k = (k + 1) / c
  grows, so the proximity term weakens as training goes on.
- ``annealed_step_size``: t_k = 1 - k / K, beta_k = c / t_k, the paper's on-policy
  schedule (c = 1 there; the step size is annealed linearly from 1 towards 0, so
  the proximity term strengthens from c to c K).

Logged: ``mdpo/beta`` (beta_k), ``mdpo/kl_new_old`` (the mean KL(pi_{k+1} || pi_k)
over the batch after the update), ``mdpo/surrogate`` (E[r A]), ``losses/approx_kl``
(E[r - 1 - log r], an estimate of KL(pi_k || pi_theta)), ``losses/ess`` and the
usual losses. As in PPO, the per-minibatch metrics are the last epoch's mean.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import jax
import jax.numpy as jnp
from omegaconf import MISSING

from pgrun.algos.common import Algorithm, Batch, TrainState, make_optimizer, standardize, surrogate_epochs
from pgrun.algos.ppo import check_minibatches, clipped_value_loss, effective_sample_size, squared_error
from pgrun.errors import require
from pgrun.policies import Policy
from pgrun.types import AlgoConfig, AlgoContext, AlgorithmSpec

BETA_SCHEDULES = ("inverse_step", "annealed_step_size")


@dataclass
class MDPOConfig(AlgoConfig):
    """Mirror descent policy optimisation, on-policy."""

    name: str = "mdpo"
    beta_schedule: str = "inverse_step"  # inverse_step: c / (k + 1) | annealed_step_size: c / (1 - k / K)
    beta_scale: float = MISSING  # c, the constant of the KL coefficient's schedule
    gae_lambda: float = MISSING
    update_epochs: int = MISSING
    num_minibatches: int = MISSING
    ent_coef: float = MISSING
    vf_coef: float = MISSING
    clip_vloss: bool = True  # clip the value update to vf_clip around the rollout's values
    vf_clip: float = 0.2


def validate_mdpo(algo: Any, context: AlgoContext) -> None:
    """A known schedule, a non-negative KL scale, and minibatches that split the batch."""
    require(algo.beta_schedule in BETA_SCHEDULES,
            f"algo.beta_schedule={algo.beta_schedule} is not valid: use one of {', '.join(BETA_SCHEDULES)}")
    require(algo.beta_scale >= 0, f"algo.beta_scale={algo.beta_scale} must be non-negative")
    require(algo.vf_clip > 0, f"algo.vf_clip={algo.vf_clip} must be positive")
    check_minibatches(algo, context)


def kl_coefficient(schedule: str, scale: jax.Array, iteration: jax.Array, num_iterations: int) -> jax.Array:
    """beta_k = 1 / t_k of iteration ``iteration`` = k (0-based) of ``num_iterations`` = K.

    ``inverse_step``: c / (k + 1). ``annealed_step_size``: c / (1 - k / K), with
    t_k kept at 1 / K or more so an iteration past K (a resumed run given more
    steps) does not divide by zero or turn the penalty into a reward.
    """
    k = jnp.asarray(iteration, jnp.float32)
    if schedule == "inverse_step":
        return scale / (k + 1.0)
    if schedule == "annealed_step_size":
        step_size = jnp.maximum(1.0 - k / num_iterations, 1.0 / num_iterations)
        return scale / step_size
    raise ValueError(f"unknown beta schedule {schedule!r}")


def make_mdpo_loss(policy: Policy, cfg: Any) -> Callable:
    """``loss(params, hparams, beta, minibatch) -> (loss, metrics)``, the quantity each
    Adam step descends; ``minibatch = (obs, actions, old_log_probs, old_dist,
    old_values, advantages, value_targets)``."""
    value_loss_fn = ((lambda values, old, targets, hp: clipped_value_loss(values, old, targets, hp["vf_clip"]))
                     if cfg.clip_vloss else (lambda values, old, targets, hp: squared_error(values, targets)))

    def loss(params, hp, beta, minibatch):
        obs, actions, old_log_probs, old_dist, old_values, advantages, targets = minibatch
        dist = policy.dist(params["actor"], obs)
        log_ratio = dist.log_prob(actions) - old_log_probs
        ratio = jnp.exp(log_ratio)
        if cfg.norm_adv:
            advantages = standardize(advantages)
        surrogate = (ratio * advantages).mean()
        kl_new_old = dist.kl(old_dist).mean()
        policy_loss = -surrogate + beta * kl_new_old
        value_loss = value_loss_fn(policy.value(params["critic"], obs), old_values, targets, hp)
        entropy = dist.entropy().mean()
        total = policy_loss + hp["vf_coef"] * value_loss - hp["ent_coef"] * entropy
        metrics = {
            "losses/policy_loss": policy_loss,
            "losses/value_loss": value_loss,
            "losses/entropy": entropy,
            "losses/approx_kl": jnp.mean(ratio - 1.0 - log_ratio),
            "losses/ess": effective_sample_size(ratio),
            "mdpo/surrogate": surrogate,
        }
        return total, metrics

    return loss


def make_mdpo(cfg: Any, policy: Policy, num_iterations: int, context: AlgoContext | None = None) -> Algorithm:
    """Build MDPO's pure update for ``cfg`` (an MDPOConfig) and ``num_iterations`` rollouts."""
    optimizer = make_optimizer()
    decay_steps = num_iterations * cfg.update_epochs * cfg.num_minibatches if cfg.anneal_lr else None
    grad_fn = jax.grad(make_mdpo_loss(policy, cfg), has_aux=True)

    def update(state: TrainState, batch: Batch, key: jax.Array):
        beta = kl_coefficient(cfg.beta_schedule, state.hparams["beta_scale"], state.iteration, num_iterations)
        (params, opt_state), metrics, old_dist = surrogate_epochs(
            policy, optimizer, grad_fn, state, batch, key, beta, cfg.update_epochs, cfg.num_minibatches, decay_steps)
        metrics["mdpo/beta"] = beta
        metrics["mdpo/kl_new_old"] = policy.dist(params["actor"], batch.obs).kl(old_dist).mean()
        return state.replace(params=params, opt_state=opt_state), metrics

    return Algorithm(optimizer.init, update)


ALGORITHM = AlgorithmSpec(
    name="mdpo", config=MDPOConfig, build=make_mdpo, validate=validate_mdpo,
    paper="Tomar, Shani, Efroni and Ghavamzadeh, 2020",
    summary="mirror descent policy optimisation: minibatch epochs on the surrogate minus a scheduled KL(new || old)")
