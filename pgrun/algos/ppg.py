"""PPG: phasic policy gradient -- PPO's policy and value phases, then a phase that
distils the value function into the policy network (Cobbe, Hilton, Klimov and
Schulman, 2020, "Phasic Policy Gradient", algorithm 1).

Policy phase, every iteration, on the rollout just collected (GAE advantages A,
value targets V_targ = V_old + A):

- ``policy_epochs`` (E_pi) epochs of minibatch Adam on the actor theta for
  L_clip = -E[min(r A, clip(r, 1-eps, 1+eps) A)] - ent_coef H[pi_theta],
  r = pi_theta(a|s) / pi_old(a|s), as PPO (:func:`pgrun.algos.ppo.clipped_surrogate`);
- ``value_epochs`` (E_V) epochs of minibatch Adam on the critic phi for
  L_value = 0.5 E[(V_phi(s) - V_targ)^2] (clipped around V_old with ``clip_vloss``);
- (s, V_targ) of every step goes into a buffer B that holds the last ``n_pi`` rollouts.

Auxiliary phase, after every ``n_pi`` iterations, on all of B: pi_old is the policy
as the phase starts; then ``aux_epochs`` (E_aux) epochs of minibatch Adam on

- the actor and an auxiliary value head on its last hidden layer h_theta(s):
  L_joint = L_aux + beta_clone E[KL(pi_old(.|s) || pi_theta(.|s))],
  L_aux = 0.5 E[(V_aux(s) - V_targ)^2],  V_aux(s) = w^T h_theta(s) + b;
- the critic: L_value = 0.5 E[(V_phi(s) - V_targ)^2].

The behavioural-cloning KL keeps the policy where the policy phase left it while
the auxiliary value loss shapes its features; the critic sees every target E_aux
more times. Policy, value and auxiliary updates each have their own Adam (and
gradient clip); the actor, the auxiliary head and the critic are clipped apart in
the auxiliary phase, so a large beta_clone cannot scale the head's gradient away.

Where things live: pgrun's actor and critic are separate networks
(``params['actor']``, ``params['critic']``); the auxiliary head (``w``, ``b``) and the
buffer are in ``algo_state``, the three optimiser states in ``opt_state``. The
actor's hidden features come from the same forward pass as its distribution
(:func:`actor_with_features`, through flax's captured intermediates), so the head
sits on exactly the layer the policy head reads. The buffer stores observations
as the update saw them (normalised with the statistics of their own iteration)
and the targets computed then, as the paper's algorithm stores (s_t, V_targ).

When the auxiliary phase runs: the iteration's place in its phase is
``state.iteration mod n_pi``, and the phase runs where that is ``n_pi - 1``. Every
member of a run is at the same iteration, but under ``jax.vmap`` over members
``state.iteration`` is still a batched value, and a ``lax.cond`` on a batched
predicate becomes a select that runs both branches every iteration: the
auxiliary phase (the largest part of the work) would then be paid on every
iteration instead of one in ``n_pi``. :func:`same_for_all_members` declares the
iteration count shared -- under vmap it takes the first member's -- so the
predicate stays unbatched and the cond stays a branch; the phase costs what it
costs, once per ``n_pi`` iterations, for one member or many. Measured on a 2-core
CPU with the CartPole defaults (rollout included), per iteration: 9 ms for one
member, 98 ms for 8 members with the branch, 937 ms for 8 members with the
select; without an auxiliary phase (``aux_epochs=0``) 6 and 43 ms. (Amortising
the phase over the ``n_pi`` iterations would also have avoided the select, but
it is not the paper's algorithm: pi_old and the data would drift during the phase.)

Metrics: PPO's ``losses/...`` from the policy and value phases; ``ppg/aux_phase``
(1 on iterations that ran the auxiliary phase); ``ppg/aux_value_loss`` (L_aux),
``ppg/bc_kl`` (the cloning KL) and ``ppg/aux_critic_loss`` (L_value there), means
over the last auxiliary epoch's minibatches of the latest phase (0 before the
first).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
from jax.custom_batching import custom_vmap
from omegaconf import MISSING

from pgrun.algos.common import (Algorithm, Batch, TrainState, explained_variance, flatten_time, gae_targets,
                                learning_rate_of, make_optimizer, minibatch_epochs, optimizer_step, standardize)
from pgrun.algos.ppo import clipped_surrogate, clipped_value_loss, effective_sample_size, squared_error
from pgrun.errors import require
from pgrun.policies import ACTIVATIONS, Policy
from pgrun.types import AlgoConfig, AlgoContext, AlgorithmSpec


@dataclass
class PPGConfig(AlgoConfig):
    """Phasic policy gradient: PPO's phases, then an auxiliary phase every n_pi iterations."""

    name: str = "ppg"
    gae_lambda: float = MISSING
    num_minibatches: int = MISSING  # minibatches per epoch of the policy and value phases
    policy_epochs: int = MISSING  # E_pi: passes of the clipped surrogate over each rollout
    value_epochs: int = MISSING  # E_V: passes of the value loss over each rollout
    clip_eps: float = MISSING
    ent_coef: float = MISSING
    clip_vloss: bool = True  # clip the value-phase update to clip_eps around the rollout's values
    n_pi: int = MISSING  # policy iterations per phase: rollouts in the auxiliary buffer
    aux_epochs: int = MISSING  # E_aux: passes over the buffer per auxiliary phase (0: none)
    aux_num_minibatches: int = MISSING  # minibatches per auxiliary epoch, over all n_pi rollouts
    beta_clone: float = MISSING  # weight of the behavioural-cloning KL in L_joint


def validate_ppg(algo: Any, context: AlgoContext) -> None:
    """Epoch counts, a phase period, and minibatches that split the batch and the auxiliary buffer."""
    batch = context.batch_size(algo)
    require(algo.policy_epochs >= 1, f"algo.policy_epochs={algo.policy_epochs} must be at least 1")
    require(algo.value_epochs >= 1, f"algo.value_epochs={algo.value_epochs} must be at least 1")
    require(algo.num_minibatches >= 1 and batch % algo.num_minibatches == 0,
            f"the batch of num_envs*algo.num_steps={batch} does not split into "
            f"algo.num_minibatches={algo.num_minibatches}: pick a divisor of {batch}")
    require(algo.n_pi >= 1, f"algo.n_pi={algo.n_pi} must be at least 1")
    require(algo.aux_epochs >= 0, f"algo.aux_epochs={algo.aux_epochs} must be 0 (no auxiliary phase) or more")
    require(algo.aux_num_minibatches >= 1 and (algo.n_pi * batch) % algo.aux_num_minibatches == 0,
            f"the auxiliary buffer of algo.n_pi*num_envs*algo.num_steps={algo.n_pi * batch} does not split "
            f"into algo.aux_num_minibatches={algo.aux_num_minibatches}: pick a divisor of {algo.n_pi * batch}")
    require(algo.clip_eps > 0, f"algo.clip_eps={algo.clip_eps} must be positive")
    require(algo.beta_clone >= 0, f"algo.beta_clone={algo.beta_clone} must be non-negative")


# ---------------------------------------------------------------- the policy network's features


def actor_with_features(policy: Policy, actor_params: Any, obs: jax.Array):
    """``(distribution, h)``: the actor's distribution and its last hidden layer's
    activations ``h[..., width]`` -- the input of its policy head -- from one forward pass."""
    last_hidden = f"Dense_{len(policy.actor.hidden_sizes) - 1}"
    dist, captured = policy.actor.apply(
        actor_params, obs, mutable="intermediates",
        capture_intermediates=lambda module, method: method == "__call__" and module.name == last_hidden)
    pre_activation = captured["intermediates"]["MLP_0"][last_hidden]["__call__"][0]
    return dist, ACTIVATIONS[policy.actor.activation](pre_activation)


def init_aux_head(width: int) -> dict[str, jax.Array]:
    """The auxiliary value head w^T h + b, at zero: its first gradient is the targets' pull alone."""
    return {"kernel": jnp.zeros((width, 1), jnp.float32), "bias": jnp.zeros((1,), jnp.float32)}


def aux_value(head: dict[str, jax.Array], features: jax.Array) -> jax.Array:
    """V_aux(s) = w^T h(s) + b: the auxiliary value head on the actor's last hidden features."""
    return (features @ head["kernel"] + head["bias"])[..., 0]


def joint_loss(policy: Policy, actor_params: Any, head: dict[str, jax.Array], obs: jax.Array,
               targets: jax.Array, old_dist: Any, beta_clone: float):
    """L_joint = 0.5 E[(V_aux(s) - V_targ)^2] + beta_clone E[KL(pi_old || pi_theta)];
    returns ``(L_joint, (L_aux, KL))``."""
    dist, features = actor_with_features(policy, actor_params, obs)
    aux_loss = squared_error(aux_value(head, features), targets)
    bc_kl = jnp.mean(old_dist.kl(dist))
    return aux_loss + beta_clone * bc_kl, (aux_loss, bc_kl)


# ---------------------------------------------------------------- the phase schedule


@custom_vmap
def same_for_all_members(x: jax.Array) -> jax.Array:
    """``x``, declared equal across the members a vmap runs together (the iteration
    count is): under vmap the first member's value, unbatched, so a ``lax.cond``
    on it stays a branch instead of a select of both branches."""
    return x


@same_for_all_members.def_vmap
def _same_for_all_members_vmap(axis_size, in_batched, x):
    return (x[0] if in_batched[0] else x), False


@flax.struct.dataclass
class AuxBuffer:
    """The last ``n_pi`` rollouts' observations and value targets, slot = iteration mod n_pi."""

    obs: jax.Array  # [n_pi, batch, obs_dim]
    targets: jax.Array  # [n_pi, batch]


class AuxOutcome(NamedTuple):
    """What the auxiliary phase changes, and its metrics."""

    actor: Any
    critic: Any
    head: dict[str, jax.Array]
    opt_state: Any
    metrics: dict[str, jax.Array]


AUX_METRICS = ("ppg/aux_value_loss", "ppg/bc_kl", "ppg/aux_critic_loss")


def make_ppg(cfg: Any, policy: Policy, num_iterations: int, context: AlgoContext | None = None) -> Algorithm:
    """Build PPG's pure update for ``cfg`` (a PPGConfig) and ``num_iterations`` rollouts."""
    optimizer = make_optimizer()
    width = int(cfg.hidden_sizes[-1])
    num_phases = num_iterations // cfg.n_pi
    if cfg.anneal_lr:
        policy_decay = num_iterations * cfg.policy_epochs * cfg.num_minibatches
        value_decay = num_iterations * cfg.value_epochs * cfg.num_minibatches
        aux_decay = num_phases * cfg.aux_epochs * cfg.aux_num_minibatches or None
    else:
        policy_decay = value_decay = aux_decay = None
    value_loss_fn = (clipped_value_loss if cfg.clip_vloss
                     else (lambda values, old, targets, eps: squared_error(values, targets)))

    def policy_loss(actor_params, hp, minibatch):
        obs, actions, old_log_probs, advantages = minibatch
        dist = policy.dist(actor_params, obs)
        log_ratio = dist.log_prob(actions) - old_log_probs
        ratio = jnp.exp(log_ratio)
        if cfg.norm_adv:
            advantages = standardize(advantages)
        surrogate = clipped_surrogate(ratio, advantages, hp["clip_eps"]).mean()
        entropy = dist.entropy().mean()
        metrics = {
            "losses/policy_loss": -surrogate,
            "losses/entropy": entropy,
            "losses/approx_kl": jnp.mean(ratio - 1.0 - log_ratio),
            "losses/clip_fraction": jnp.mean((jnp.abs(ratio - 1.0) > hp["clip_eps"]).astype(jnp.float32)),
            "losses/ess": effective_sample_size(ratio),
        }
        return -surrogate - hp["ent_coef"] * entropy, metrics

    def value_loss(critic_params, hp, minibatch):
        obs, old_values, targets = minibatch
        loss = value_loss_fn(policy.value(critic_params, obs), old_values, targets, hp["clip_eps"])
        return loss, {"losses/value_loss": loss}

    policy_grad = jax.grad(policy_loss, has_aux=True)
    value_grad = jax.grad(value_loss, has_aux=True)

    def aux_losses(trained, hp, minibatch):
        """L_joint for the actor and the head, plus L_value for the critic: their gradients
        do not mix (no shared parameters), so one sum serves all three."""
        obs, targets, old_dist = minibatch
        joint, (aux_loss, bc_kl) = joint_loss(policy, trained["actor"], trained["head"], obs, targets, old_dist,
                                              hp["beta_clone"])
        critic_loss = squared_error(policy.value(trained["critic"], obs), targets)
        metrics = {"ppg/aux_value_loss": aux_loss, "ppg/bc_kl": bc_kl, "ppg/aux_critic_loss": critic_loss}
        return joint + critic_loss, metrics

    aux_grad = jax.grad(aux_losses, has_aux=True)

    def auxiliary_phase(hp, actor, critic, head, aux_opt, buffer: AuxBuffer, key) -> AuxOutcome:
        obs = buffer.obs.reshape((-1,) + buffer.obs.shape[2:])
        targets = buffer.targets.reshape(-1)
        old_dist = jax.lax.stop_gradient(policy.dist(actor, obs))  # pi_old: the policy as the phase starts

        def step(carry, minibatch):
            trained, opt = carry
            grads, metrics = aux_grad(trained, hp, minibatch)
            new_trained, new_opt = {}, {}
            for part in ("actor", "head", "critic"):  # each clipped and scaled on its own
                new_trained[part], new_opt[part] = optimizer_step(optimizer, grads[part], opt[part], trained[part],
                                                                  hp, aux_decay)
            return (new_trained, new_opt), metrics

        (trained, aux_opt), metrics = minibatch_epochs(
            step, ({"actor": actor, "head": head, "critic": critic}, aux_opt), (obs, targets, old_dist), key,
            cfg.aux_epochs, cfg.aux_num_minibatches, last_epoch_metrics=True)
        return AuxOutcome(trained["actor"], trained["critic"], trained["head"], aux_opt, metrics)

    def update(state: TrainState, batch: Batch, key: jax.Array):
        params, hp, opt = state.params, state.hparams, state.opt_state
        k_policy, k_value, k_aux = jax.random.split(key, 3)
        values, advantages, targets = gae_targets(policy, params["critic"], batch, hp["gamma"], hp["gae_lambda"])
        obs, actions, log_probs, values_flat, advantages_flat, targets_flat = flatten_time(
            (batch.obs, batch.actions, batch.log_probs, values, advantages, targets))

        def policy_step(carry, minibatch):
            actor, opt_state = carry
            grads, metrics = policy_grad(actor, hp, minibatch)
            return optimizer_step(optimizer, grads, opt_state, actor, hp, policy_decay), metrics

        def value_step(carry, minibatch):
            critic, opt_state = carry
            grads, metrics = value_grad(critic, hp, minibatch)
            return optimizer_step(optimizer, grads, opt_state, critic, hp, value_decay), metrics

        (actor, policy_opt), metrics = minibatch_epochs(
            policy_step, (params["actor"], opt["policy"]), (obs, actions, log_probs, advantages_flat), k_policy,
            cfg.policy_epochs, cfg.num_minibatches, last_epoch_metrics=True)
        (critic, value_opt), value_metrics = minibatch_epochs(
            value_step, (params["critic"], opt["value"]), (obs, values_flat, targets_flat), k_value,
            cfg.value_epochs, cfg.num_minibatches, last_epoch_metrics=True)
        metrics.update(value_metrics)
        metrics["losses/explained_variance"] = explained_variance(values, targets)
        metrics["charts/learning_rate"] = learning_rate_of(policy_opt)

        algo_state = state.algo_state
        slot = same_for_all_members(state.iteration) % cfg.n_pi
        buffer = AuxBuffer(jax.lax.dynamic_update_index_in_dim(algo_state["buffer"].obs, obs, slot, 0),
                           jax.lax.dynamic_update_index_in_dim(algo_state["buffer"].targets, targets_flat, slot, 0))
        head, aux_opt, aux_metrics = algo_state["aux_head"], opt["aux"], algo_state["aux_metrics"]
        run_aux = slot == cfg.n_pi - 1
        if cfg.aux_epochs > 0:
            def run(operands):
                return auxiliary_phase(hp, *operands, buffer, k_aux)

            def skip(operands):
                return AuxOutcome(*operands, aux_metrics)

            outcome = jax.lax.cond(run_aux, run, skip, (actor, critic, head, aux_opt))
            actor, critic, head, aux_opt, aux_metrics = outcome
        else:
            run_aux = jnp.asarray(False)
        metrics.update(aux_metrics)
        metrics["ppg/aux_phase"] = run_aux.astype(jnp.float32)

        state = state.replace(
            params={"actor": actor, "critic": critic},
            opt_state={"policy": policy_opt, "value": value_opt, "aux": aux_opt},
            algo_state={"aux_head": head, "buffer": buffer, "aux_metrics": aux_metrics})
        return state, metrics

    def init_opt_state(params):
        return {"policy": optimizer.init(params["actor"]), "value": optimizer.init(params["critic"]),
                "aux": {"actor": optimizer.init(params["actor"]), "head": optimizer.init(init_aux_head(width)),
                        "critic": optimizer.init(params["critic"])}}

    def init_algo_state(hparams):
        batch_size = context.batch_size(cfg) if context is not None else None
        if batch_size is None:
            raise ValueError("PPG needs the run's context (num_envs) to size its auxiliary buffer")
        buffer = AuxBuffer(jnp.zeros((cfg.n_pi, batch_size, policy.obs_dim), jnp.float32),
                           jnp.zeros((cfg.n_pi, batch_size), jnp.float32))
        return {"aux_head": init_aux_head(width), "buffer": buffer,
                "aux_metrics": {name: jnp.zeros((), jnp.float32) for name in AUX_METRICS}}

    return Algorithm(init_opt_state, update, init_algo_state)


ALGORITHM = AlgorithmSpec(
    name="ppg", config=PPGConfig, build=make_ppg, validate=validate_ppg,
    paper="Cobbe, Hilton, Klimov and Schulman, 2020",
    summary="phasic policy gradient: PPO's phases, then value distillation into the actor under a cloning KL")
