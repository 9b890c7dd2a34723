"""ACKTR: actor-critic with a Kronecker-factored natural gradient in a trust region.

Per iteration, on GAE advantages ``A`` from the critic (as A2C):

1. The policy gradient ``g = grad_theta E[log pi(a|s) A + c_e H(pi(.|s))]``.
2. Fisher statistics with actions ``a~ ~ pi(.|s)`` sampled from the current
   policy (the true Fisher, not the empirical one): for every dense layer
   ``l`` of the actor, ``A_l = E[a_bar a_bar^T]`` over its inputs with a 1
   appended and ``G_l = E[g g^T]`` over ``g = d log pi(a~|s) / d s_l``, the
   gradients at its pre-activations ``s_l``; each averaged across iterations
   with ``eps_k = min(stats_decay, 1 - 1/k)`` (:mod:`pgrun.kfac`).
3. The natural direction ``Delta = F_hat^-1 g`` with ``F_hat`` block diagonal:
   ``A_l,d (x) G_l,d`` per dense layer, damping split between the factors by
   the pi-correction (``Delta_l = A_l,d^-1 g_l G_l,d^-1``); a Gaussian policy's
   state-independent log-std gets its exact Fisher, ``2`` per dimension, plus
   ``damping`` (its Fisher has no cross terms with the mean's parameters).
4. The trust-region step ``theta <- theta + eta Delta`` with
   ``eta = min(lr_max, sqrt(2 delta / (Delta^T F Delta)))``, which puts the
   quadratic model of the KL, ``eta^2 Delta^T F Delta / 2``
   (``kfac/quadratic_kl``), at ``delta`` unless ``lr_max`` binds. With
   ``step_fisher=exact`` (the default) F is the exact Fisher on the batch,
   one Fisher-vector product (:func:`pgrun.natural.fisher_vector_product`);
   with ``step_fisher=kfac`` it is the paper's damped K-FAC matrix F_hat,
   whose quadratic form is ``g^T Delta``. Both are logged
   (``kfac/exact_quadratic_kl``, ``kfac/kfac_quadratic_kl``): the block-diagonal
   F_hat ignores how the layers' steps add up in the output: over training
   runs on seeds 0-9 it predicted about 2.5 (CartPole-v1), 3 (Acrobot-v1)
   and 10 (Pendulum-v1) times less KL than the exact Fisher does, and the
   measured KL after the step (``natural/kl``) follows the exact one, so
   ``kfac`` steps overshoot ``delta`` by those factors.

The critic is fitted by Adam on the value targets (``vf_iters`` epochs of
``vf_minibatches`` minibatches, as :mod:`pgrun.algos.npg` does) rather than by
ACKTR's Gauss-Newton K-FAC step.

Wu, Mansimov, Liao, Grosse & Ba (2017), "Scalable trust-region method for deep
reinforcement learning using Kronecker-factored approximation"; Martens &
Grosse (2015), "Optimizing neural networks with Kronecker-factored
approximate curvature".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from omegaconf import MISSING

from pgrun import kfac
from pgrun.algos.common import (Algorithm, Batch, TrainState, actor_critic_loss, explained_variance, fit_critic,
                                flatten_time, gae_targets, learning_rate_of, make_optimizer, standardize)
from pgrun.distributions import Categorical, DiagGaussian
from pgrun.errors import require
from pgrun.natural import fisher_vector_product
from pgrun.policies import ACTIVATIONS, GaussianActor, Policy
from pgrun.types import AlgoConfig, AlgoContext, AlgorithmSpec

# The Fisher information of log sigma in N(mu, sigma^2): E[(z^2 - 1)^2] = 2 for z ~ N(0, 1).
LOG_STD_FISHER = 2.0
STEP_FISHERS = ("exact", "kfac")


@dataclass
class ACKTRConfig(AlgoConfig):
    """Actor-critic with a K-FAC natural-gradient policy step of KL radius delta."""

    name: str = "acktr"
    gae_lambda: float = MISSING
    delta: float = MISSING  # KL radius: eta^2 Delta^T F_hat Delta / 2 = delta unless lr_max binds
    lr_max: float = MISSING  # largest natural step size eta
    damping: float = MISSING  # Tikhonov damping lambda, split between A and G by the pi-correction
    stats_decay: float = MISSING  # running-average weight of the old K-FAC factors
    ent_coef: float = 0.0  # entropy bonus in the policy gradient
    # the Fisher of the step size's quadratic form: exact (a Fisher-vector product) | kfac (F_hat, as the paper)
    step_fisher: str = "exact"
    vf_iters: int = MISSING  # critic Adam epochs per iteration
    vf_minibatches: int = MISSING


def validate_acktr(algo: Any, context: AlgoContext) -> None:
    """A known step Fisher, a positive trust region and damping, and a critic fit that splits the batch."""
    batch = context.batch_size(algo)
    require(algo.step_fisher in STEP_FISHERS,
            f"algo.step_fisher={algo.step_fisher} is not valid: use one of {', '.join(STEP_FISHERS)}")
    require(algo.delta > 0, f"algo.delta={algo.delta} must be positive")
    require(algo.lr_max > 0, f"algo.lr_max={algo.lr_max} must be positive")
    require(algo.damping > 0, f"algo.damping={algo.damping} must be positive (the K-FAC factors can be singular)")
    require(0 <= algo.stats_decay < 1, f"algo.stats_decay={algo.stats_decay} must lie in [0, 1)")
    require(algo.ent_coef >= 0, f"algo.ent_coef={algo.ent_coef} must be non-negative")
    require(0 <= algo.gae_lambda <= 1, f"algo.gae_lambda={algo.gae_lambda} must lie in [0, 1]")
    require(algo.vf_iters >= 1, f"algo.vf_iters={algo.vf_iters} must be at least 1")
    require(algo.vf_minibatches >= 1 and batch % algo.vf_minibatches == 0,
            f"algo.vf_minibatches={algo.vf_minibatches} must divide the batch num_envs*algo.num_steps={batch}")


# ---------------------------------------------------------------- the actor, layer by layer


def dense_layers(actor_params: Any) -> list[dict[str, jax.Array]]:
    """The actor MLP's dense layers in order (``Dense_0`` .. ``Dense_n`` of ``MLP_0``)."""
    mlp = actor_params["params"]["MLP_0"]
    return [mlp[f"Dense_{i}"] for i in range(len(mlp))]


def actor_forward(policy: Policy, actor_params: Any, obs: jax.Array,
                  pre_activation_shifts: list[jax.Array] | None = None):
    """``(distribution, inputs of each dense layer)``: ``policy.dist`` computed layer
    by layer. ``pre_activation_shifts`` (zeros) are added to each layer's
    pre-activations, so differentiating with respect to them gives the
    per-sample gradients at the pre-activations."""
    activation = ACTIVATIONS[policy.actor.activation]
    layers = dense_layers(actor_params)
    x, inputs = obs, []
    for i, layer in enumerate(layers):
        inputs.append(x)
        x = x @ layer["kernel"] + layer["bias"]
        if pre_activation_shifts is not None:
            x = x + pre_activation_shifts[i]
        if i < len(layers) - 1:
            x = activation(x)
    if isinstance(policy.actor, GaussianActor):
        mean = jnp.tanh(x) if policy.actor.bounded_mean else x
        log_std = actor_params["params"]["log_std"]
        return DiagGaussian(mean, jnp.broadcast_to(log_std, mean.shape)), inputs
    return Categorical(x), inputs


def layer_inputs_and_output_grads(policy: Policy, actor_params: Any, obs: jax.Array, actions: jax.Array):
    """``(inputs, grads)`` per dense layer over a flat ``[n, ...]`` batch: the layer's
    inputs ``[n, in]`` and ``d log pi(actions_i|obs_i) / d s_i`` at its pre-activations ``[n, out]``."""
    shifts = [jnp.zeros((obs.shape[0], layer["bias"].shape[0]), obs.dtype) for layer in dense_layers(actor_params)]

    def total_log_prob(shifts):
        dist, inputs = actor_forward(policy, actor_params, obs, shifts)
        return dist.log_prob(actions).sum(), inputs

    grads, inputs = jax.grad(total_log_prob, has_aux=True)(shifts)
    return inputs, grads


def fisher_factors(policy: Policy, actor_params: Any, obs: jax.Array, actions: jax.Array,
                   weights: jax.Array | None = None) -> tuple[kfac.KroneckerFactors, ...]:
    """Each dense layer's ``(A, G)`` on one batch; ``actions`` drawn from the policy
    itself give the Fisher (``weights`` can instead weigh enumerated actions by
    their probabilities, for an exact expectation)."""
    inputs, grads = layer_inputs_and_output_grads(policy, actor_params, obs, actions)
    return tuple(kfac.batch_factors(x, g, weights) for x, g in zip(inputs, grads))


def natural_direction(factors: tuple[kfac.KroneckerFactors, ...], grad: Any, damping: jax.Array):
    """``(F_hat^-1 grad, grad^T F_hat^-1 grad)`` for an actor-shaped gradient, ``F_hat``
    the damped block-diagonal K-FAC Fisher; the second is the quadratic form
    ``Delta^T F_hat Delta`` of the returned direction, evaluated from the factors."""
    layers = {}
    quadratic = jnp.zeros((), jnp.float32)
    for i, (layer_factors, layer_grad) in enumerate(zip(factors, dense_layers(grad))):
        weight_grad = kfac.with_bias_row(layer_grad["kernel"], layer_grad["bias"])
        step = kfac.precondition(layer_factors, weight_grad, damping)
        quadratic = quadratic + kfac.quadratic_form(kfac.damped(layer_factors, damping), step)
        kernel, bias = kfac.without_bias_row(step)
        layers[f"Dense_{i}"] = {"kernel": kernel, "bias": bias}
    direction = {**grad["params"], "MLP_0": layers}
    if "log_std" in grad["params"]:
        fisher = LOG_STD_FISHER + damping
        direction["log_std"] = grad["params"]["log_std"] / fisher
        quadratic = quadratic + fisher * jnp.sum(direction["log_std"] ** 2)
    return {**grad, "params": direction}, quadratic


def zero_factors(policy: Policy) -> tuple[kfac.KroneckerFactors, ...]:
    """All-zero factors shaped for ``policy``'s actor (the first average replaces them)."""
    shapes = jax.eval_shape(policy.init, jax.random.PRNGKey(0))["actor"]
    return tuple(kfac.KroneckerFactors(jnp.zeros((layer["kernel"].shape[0] + 1,) * 2, jnp.float32),
                                       jnp.zeros((layer["kernel"].shape[1],) * 2, jnp.float32))
                 for layer in dense_layers(shapes))


# ---------------------------------------------------------------- the update


def make_acktr(cfg: Any, policy: Policy, num_iterations: int, context: AlgoContext | None = None) -> Algorithm:
    """Build ACKTR's pure update for ``cfg`` (an ACKTRConfig) and ``num_iterations`` rollouts.

    ``algo_state`` holds the running K-FAC factors and the number of updates
    they have absorbed. The Fisher's actions are sampled with the first half
    of ``jax.random.split(key)``; the critic's minibatches use the second.
    """
    critic_optimizer = make_optimizer()
    decay_steps = num_iterations * cfg.vf_iters * cfg.vf_minibatches if cfg.anneal_lr else None

    def exact_fisher_quadratic(actor_params, obs, direction):
        """``Delta^T F Delta`` with F the exact Fisher (the Hessian of the mean KL) on the batch."""
        flat, unravel = ravel_pytree(actor_params)
        flat_direction, _ = ravel_pytree(direction)
        product = fisher_vector_product(lambda theta: policy.dist(unravel(theta), obs), flat, 0.0)
        return jnp.vdot(flat_direction, product(flat_direction))

    def policy_step(hp, algo_state, actor_params, obs, actions, advantages, fisher_key):
        old_dist = policy.dist(actor_params, obs)
        sampled = jax.lax.stop_gradient(old_dist.sample(fisher_key))
        updates = algo_state["updates"] + 1
        factors = kfac.running_average(algo_state["factors"], fisher_factors(policy, actor_params, obs, sampled),
                                       hp["stats_decay"], updates)
        loss_grads, metrics = jax.grad(actor_critic_loss, argnums=1, has_aux=True)(
            policy, {"actor": actor_params}, obs, actions, advantages, None, 0.0, hp["ent_coef"])
        ascent = jax.tree.map(jnp.negative, loss_grads["actor"])
        direction, kfac_quadratic = natural_direction(factors, ascent, hp["damping"])
        exact_quadratic = exact_fisher_quadratic(actor_params, obs, direction)
        quadratic = exact_quadratic if cfg.step_fisher == "exact" else kfac_quadratic
        step_size = kfac.trust_region_step_size(quadratic, hp["delta"], hp["lr_max"])
        new_actor = jax.tree.map(lambda p, d: p + step_size * d, actor_params, direction)
        metrics.update({
            "kfac/step_size": step_size,
            "kfac/quadratic_kl": 0.5 * step_size**2 * quadratic,
            "kfac/kfac_quadratic_kl": 0.5 * step_size**2 * kfac_quadratic,
            "kfac/exact_quadratic_kl": 0.5 * step_size**2 * exact_quadratic,
            "kfac/at_lr_max": (step_size >= hp["lr_max"]).astype(jnp.float32),
            "natural/kl": jnp.mean(old_dist.kl(policy.dist(new_actor, obs))),
            "natural/step_norm": step_size * jnp.sqrt(sum(jnp.sum(d**2) for d in jax.tree.leaves(direction))),
        })
        return new_actor, {"factors": factors, "updates": updates}, metrics

    def update(state: TrainState, batch: Batch, key: jax.Array):
        params, hp = state.params, state.hparams
        values, advantages, targets = gae_targets(policy, params["critic"], batch, hp["gamma"], hp["gae_lambda"])
        if cfg.norm_adv:
            advantages = standardize(advantages)
        obs, actions, advantages, targets = flatten_time((batch.obs, batch.actions, advantages, targets))
        fisher_key, critic_key = jax.random.split(key)
        actor, algo_state, metrics = policy_step(hp, state.algo_state, params["actor"], obs, actions, advantages,
                                                 fisher_key)
        (critic, opt_state), critic_metrics = fit_critic(
            policy, critic_optimizer, params["critic"], state.opt_state, obs, targets, critic_key, hp, cfg.vf_iters,
            cfg.vf_minibatches, decay_steps)
        metrics.update(critic_metrics)
        metrics["losses/explained_variance"] = explained_variance(values, targets.reshape(values.shape))
        metrics["charts/learning_rate"] = learning_rate_of(opt_state)
        state = state.replace(params={"actor": actor, "critic": critic}, opt_state=opt_state, algo_state=algo_state)
        return state, metrics

    def init_algo_state(hparams):
        return {"factors": zero_factors(policy), "updates": jnp.zeros((), jnp.int32)}

    return Algorithm(lambda params: critic_optimizer.init(params["critic"]), update, init_algo_state)


ALGORITHM = AlgorithmSpec(
    name="acktr", config=ACKTRConfig, build=make_acktr, validate=validate_acktr, paper="Wu et al., 2017",
    summary="actor-critic with a Kronecker-factored (K-FAC) natural gradient scaled to a KL trust region")
