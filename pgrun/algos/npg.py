"""Natural policy gradient, and the trust-region step TRPO builds on.

Per iteration: the gradient g of the importance-sampled surrogate
L(theta) = E[pi_theta(a|s) / pi_old(a|s) A] at theta_old; the direction
x ~ F^-1 g by conjugate gradient on Fisher-vector products (the Hessian of
the mean KL, never formed); the step sqrt(2 delta / x^T F x) x, which puts
the quadratic model of the KL exactly at delta. NPG takes that step as it
is; TRPO (:mod:`pgrun.algos.trpo`) passes a line search that backtracks until
the surrogate improves and the true mean KL is within delta. The critic is
fitted separately by a few epochs of Adam on the value targets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from omegaconf import MISSING

from pgrun.algos.common import (Algorithm, Batch, TrainState, explained_variance, fit_critic, flatten_time,
                                gae_targets, learning_rate_of, make_optimizer, standardize)
from pgrun.natural import backtracking_line_search, fisher_vector_product, natural_step
from pgrun.errors import require
from pgrun.policies import Policy
from pgrun.types import AlgoConfig, AlgoContext, AlgorithmSpec


@dataclass
class NPGConfig(AlgoConfig):
    """Natural policy gradient: conjugate gradient on Fisher-vector products."""

    name: str = "npg"
    gae_lambda: float = MISSING
    delta: float = MISSING  # KL radius of the step: 1/2 s^T F s = delta
    cg_iters: int = 10
    cg_tol: float = 1e-10  # stop CG when the squared residual norm is below this
    damping: float = 0.1  # F + damping * I
    vf_iters: int = MISSING  # critic epochs per iteration
    vf_minibatches: int = MISSING


def validate_npg(algo: Any, context: AlgoContext) -> None:
    """The trust region, CG and critic-fit keys, and a critic minibatch count that divides the batch."""
    batch = context.batch_size(algo)
    require(algo.delta > 0, f"algo.delta={algo.delta} must be positive")
    require(algo.cg_iters >= 1, f"algo.cg_iters={algo.cg_iters} must be at least 1")
    require(algo.cg_tol >= 0, f"algo.cg_tol={algo.cg_tol} must be non-negative")
    require(algo.damping >= 0, f"algo.damping={algo.damping} must be non-negative")
    require(algo.vf_iters >= 1, f"algo.vf_iters={algo.vf_iters} must be at least 1")
    require(algo.vf_minibatches >= 1 and batch % algo.vf_minibatches == 0,
            f"algo.vf_minibatches={algo.vf_minibatches} must divide the batch num_envs*algo.num_steps={batch}")


class LineSearch(NamedTuple):
    """TRPO's backtracking search; its coefficient is the traced ``hparams['backtrack_coef']``."""

    max_backtracks: int  # the coefficient is a traced hyperparameter, hparams["backtrack_coef"]


def make_natural_policy_gradient(cfg: Any, policy: Policy, num_iterations: int,
                                 line_search: LineSearch | None = None) -> Algorithm:
    """NPG (``line_search=None``) or TRPO; ``cfg`` is an NPGConfig or TRPOConfig."""
    critic_updates = num_iterations * cfg.vf_iters * cfg.vf_minibatches
    critic_optimizer = make_optimizer()
    decay_steps = critic_updates if cfg.anneal_lr else None

    def policy_step(hp, actor_params, obs, actions, old_log_probs, advantages):
        flat, unravel = ravel_pytree(actor_params)
        old_dist = jax.lax.stop_gradient(policy.dist(actor_params, obs))

        def surrogate(theta):
            ratio = jnp.exp(policy.dist(unravel(theta), obs).log_prob(actions) - old_log_probs)
            return jnp.mean(ratio * advantages)

        def dist_at(theta):
            return policy.dist(unravel(theta), obs)

        def mean_kl(theta):
            return jnp.mean(old_dist.kl(dist_at(theta)))

        grad = jax.grad(surrogate)(flat)
        fvp = fisher_vector_product(dist_at, flat, hp["damping"])
        step = natural_step(grad, fvp, hp["delta"], cfg.cg_iters, hp["cg_tol"])
        if line_search is None:
            new_flat = flat + step.step
            kl, gain = mean_kl(new_flat), surrogate(new_flat) - surrogate(flat)
            accepted, backtracks = jnp.asarray(True), jnp.asarray(0, jnp.int32)
        else:
            search = backtracking_line_search(surrogate, mean_kl, flat, step.step, hp["delta"],
                                              hp["backtrack_coef"], line_search.max_backtracks)
            new_flat, kl, gain = search.params, search.kl, search.surrogate_gain
            accepted, backtracks = search.accepted, search.backtracks
        metrics = {
            "natural/cg_residual": step.cg_residual,
            "natural/step_norm": jnp.linalg.norm(new_flat - flat),
            "natural/kl": kl,
            "natural/surrogate_gain": gain,
            "natural/expected_gain": step.expected_gain,
            "natural/backtracks": backtracks.astype(jnp.float32),
            "natural/accepted": accepted.astype(jnp.float32),
            "losses/entropy": old_dist.entropy().mean(),
        }
        return unravel(new_flat), metrics

    def update(state: TrainState, batch: Batch, key: jax.Array):
        params, hp = state.params, state.hparams

        values, advantages, targets = gae_targets(policy, params["critic"], batch, hp["gamma"], hp["gae_lambda"])
        if cfg.norm_adv:
            advantages = standardize(advantages)
        obs, actions, log_probs, advantages_flat, targets_flat = flatten_time(
            (batch.obs, batch.actions, batch.log_probs, advantages, targets))
        actor, metrics = policy_step(hp, params["actor"], obs, actions, log_probs, advantages_flat)
        (critic, opt_state), critic_metrics = fit_critic(
            policy, critic_optimizer, params["critic"], state.opt_state, obs, targets_flat, key, hp, cfg.vf_iters,
            cfg.vf_minibatches, decay_steps)
        metrics.update(critic_metrics)
        metrics["losses/explained_variance"] = explained_variance(values, targets)
        metrics["charts/learning_rate"] = learning_rate_of(opt_state)
        return state.replace(params={"actor": actor, "critic": critic}, opt_state=opt_state), metrics

    return Algorithm(lambda params: critic_optimizer.init(params["critic"]), update)


def make_npg(cfg: Any, policy: Policy, num_iterations: int, context: AlgoContext | None = None) -> Algorithm:
    """Build NPG's pure update for ``cfg`` (an NPGConfig) and ``num_iterations`` rollouts."""
    return make_natural_policy_gradient(cfg, policy, num_iterations)


ALGORITHM = AlgorithmSpec(
    name="npg", config=NPGConfig, build=make_npg, validate=validate_npg, paper="Kakade, 2002",
    summary="natural policy gradient: conjugate gradient on Fisher-vector products, a step of KL delta")
