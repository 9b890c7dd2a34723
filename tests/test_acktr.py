"""ACKTR against theory: K-FAC's algebra, its Fisher, its step, and learning.

The Kronecker-factored inverse against the explicit inverse of the damped
Kronecker product; the layer-by-layer forward pass against ``policy.dist`` and
its pre-activation gradients against analytic backpropagation; on a single
state (constant layer inputs) K-FAC's Fisher of a one-layer softmax policy
against the exact Fisher (the Hessian of the mean KL) and the full update
against an explicit linear solve and the trust-region formula; the factors'
running averages against the decay schedule; a short Gaussian run,
validation and learning on CartPole.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from omegaconf import OmegaConf

from conftest import compose_config
from pgrun import kfac
from pgrun.algos.acktr import (LOG_STD_FISHER, actor_forward, fisher_factors, layer_inputs_and_output_grads,
                               make_acktr, natural_direction)
from pgrun.config import ConfigError, validate
from pgrun.algos.common import gae_targets, standardize
from pgrun.envs.core import Box, Discrete
from pgrun.policies import make_policy
from pgrun.run import run_training
from pgrun.types import AlgoContext, Batch, TrainState
from test_learning import logged


def random_spd(n: int, rng: np.random.Generator, low: float = 0.1, high: float = 5.0) -> np.ndarray:
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return (q * rng.uniform(low, high, n)) @ q.T


def explicit_damped(a: np.ndarray, g: np.ndarray, damping: float) -> tuple[np.ndarray, np.ndarray]:
    """Martens & Grosse's pi-corrected split of ``damping``, written out in float64."""
    pi = math.sqrt((np.trace(a) / a.shape[0]) / (np.trace(g) / g.shape[0]))
    root = math.sqrt(damping)
    return a + pi * root * np.eye(a.shape[0]), g + root / pi * np.eye(g.shape[0])


# ---------------------------------------------------------------- Kronecker algebra


@pytest.mark.parametrize("n, cond, rtol", [(1, 1.0, 1e-6), (5, 10.0, 1e-5), (65, 1e3, 1e-4), (65, 1e5, 1e-2)])
def test_spd_inverse_matches_the_float64_inverse(n, cond, rtol):
    """Float32 Gauss-Jordan loses about cond * eps, as any float32 solve does."""
    rng = np.random.default_rng(n)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    matrix = (q * np.logspace(0.0, math.log10(cond), n)) @ q.T
    got = np.asarray(kfac.spd_inverse(jnp.asarray(matrix, jnp.float32)), np.float64)
    expected = np.linalg.inv(matrix)
    assert np.linalg.norm(got - expected) / np.linalg.norm(expected) < rtol


@pytest.mark.parametrize("n_in, n_out, damping", [(4, 3, 0.0), (4, 3, 0.1), (7, 2, 1e-3), (3, 6, 1.0)])
def test_kronecker_inverse_matches_explicit_inverse(n_in, n_out, damping):
    """A_d^-1 dW G_d^-1 == (A_d (x) G_d)^-1 vec(dW), the Kronecker product formed and solved in float64."""
    rng = np.random.default_rng(n_in * 10 + n_out)
    a, g = random_spd(n_in, rng), random_spd(n_out, rng)
    grad = rng.standard_normal((n_in, n_out))
    a_d, g_d = explicit_damped(a, g, damping)
    expected = np.linalg.solve(np.kron(a_d, g_d), grad.reshape(-1)).reshape(n_in, n_out)
    factors = kfac.KroneckerFactors(jnp.asarray(a, jnp.float32), jnp.asarray(g, jnp.float32))
    got = kfac.precondition(factors, jnp.asarray(grad, jnp.float32), jnp.asarray(damping, jnp.float32))
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())
    # The quadratic form of a step with the damped factors is vec^T (A_d (x) G_d) vec.
    step = rng.standard_normal((n_in, n_out))
    quadratic = kfac.quadratic_form(kfac.damped(factors, jnp.asarray(damping, jnp.float32)),
                                    jnp.asarray(step, jnp.float32))
    np.testing.assert_allclose(float(quadratic), step.reshape(-1) @ np.kron(a_d, g_d) @ step.reshape(-1), rtol=1e-4)


def test_pi_correction_adds_damping_times_identity_and_balanced_cross_terms():
    """A_d (x) G_d = A (x) G + lambda I + pi sqrt(lambda) I (x) G + sqrt(lambda)/pi A (x) I, and the two cross terms
    have equal traces (the point of pi)."""
    rng = np.random.default_rng(3)
    a, g, damping = random_spd(5, rng, 0.1, 20.0), random_spd(3, rng, 1e-3, 0.1), 0.04
    factors = kfac.KroneckerFactors(jnp.asarray(a, jnp.float32), jnp.asarray(g, jnp.float32))
    a_d, g_d = (np.asarray(f, np.float64) for f in kfac.damped(factors, jnp.asarray(damping, jnp.float32)))
    pi, root = math.sqrt((np.trace(a) / 5) / (np.trace(g) / 3)), math.sqrt(damping)
    cross_g, cross_a = pi * root * np.kron(np.eye(5), g), root / pi * np.kron(a, np.eye(3))
    expected = np.kron(a, g) + damping * np.eye(15) + cross_g + cross_a
    np.testing.assert_allclose(np.kron(a_d, g_d), expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.trace(cross_g), np.trace(cross_a), rtol=1e-9)


def test_running_average_follows_the_decay_schedule():
    """S_1 = s_1 and S_k = eps_k S_(k-1) + (1 - eps_k) s_k with eps_k = min(decay, 1 - 1/k)."""
    rng = np.random.default_rng(0)
    decay = 0.8
    batches = [rng.standard_normal((3, 3)) for _ in range(8)]
    running = jnp.zeros((3, 3), jnp.float32)
    expected = None
    for k, s in enumerate(batches, start=1):
        running = kfac.running_average(running, jnp.asarray(s, jnp.float32), jnp.asarray(decay), jnp.asarray(k))
        eps = min(decay, 1.0 - 1.0 / k)
        expected = s if k == 1 else eps * expected + (1.0 - eps) * s
        np.testing.assert_allclose(np.asarray(running), expected, rtol=1e-5, atol=1e-6)
    # Up to 1/(1 - decay) updates the schedule is the plain mean of the batches so far.
    np.testing.assert_allclose(np.mean(batches[:5], axis=0), _replay(batches[:5], decay), rtol=1e-5, atol=1e-6)


def _replay(batches, decay):
    running = jnp.zeros_like(jnp.asarray(batches[0], jnp.float32))
    for k, s in enumerate(batches, start=1):
        running = kfac.running_average(running, jnp.asarray(s, jnp.float32), jnp.asarray(decay), jnp.asarray(k))
    return np.asarray(running)


@pytest.mark.parametrize("quadratic, delta, lr_max", [(4.0, 0.01, 10.0), (0.3, 0.002, 1.0), (1e-4, 0.01, 0.5)])
def test_step_size_puts_the_predicted_kl_at_delta_unless_capped(quadratic, delta, lr_max):
    eta = float(kfac.trust_region_step_size(jnp.asarray(quadratic), jnp.asarray(delta), jnp.asarray(lr_max)))
    if math.sqrt(2 * delta / quadratic) <= lr_max:
        np.testing.assert_allclose(0.5 * eta**2 * quadratic, delta, rtol=1e-6)
    else:
        assert eta == pytest.approx(lr_max) and 0.5 * eta**2 * quadratic < delta


# ---------------------------------------------------------------- the actor layer by layer


def _policy(kind: str, hidden=(8, 8), activation="tanh", bounded_mean=False, obs_dim=4, actions=3):
    obs_space = Box(low=-np.ones(obs_dim, np.float32), high=np.ones(obs_dim, np.float32))
    space = (Discrete(actions) if kind == "categorical" else
             Box(low=-np.ones(actions, np.float32), high=np.ones(actions, np.float32)))
    return make_policy(obs_space, space, hidden, activation, bounded_mean)


def _perturbed(params, key, scale=0.5):
    """Parameters away from the near-uniform initial policy (head gain 0.01), so every term matters."""
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(tree, [x + scale * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])


@pytest.mark.parametrize("kind, activation, bounded_mean", [
    ("categorical", "tanh", False), ("categorical", "relu", False), ("gaussian", "tanh", False),
    ("gaussian", "elu", True)])
def test_forward_pass_equals_policy_dist(kind, activation, bounded_mean):
    policy = _policy(kind, activation=activation, bounded_mean=bounded_mean)
    actor = _perturbed(policy.init(jax.random.PRNGKey(0))["actor"], jax.random.PRNGKey(1))
    obs = jax.random.normal(jax.random.PRNGKey(2), (32, 4))
    mine, inputs = actor_forward(policy, actor, obs)
    reference = policy.dist(actor, obs)
    for got, expected in zip(jax.tree.leaves(mine), jax.tree.leaves(reference)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))
    assert [x.shape[1] for x in inputs] == [4, 8, 8]
    np.testing.assert_array_equal(np.asarray(inputs[0]), np.asarray(obs))


def test_pre_activation_gradients_match_analytic_backpropagation():
    """Softmax head: g_out = onehot(a) - p; tanh layers: g_l = (g_(l+1) W_(l+1)^T) (1 - tanh(s_l)^2)."""
    policy = _policy("categorical")
    actor = _perturbed(policy.init(jax.random.PRNGKey(0))["actor"], jax.random.PRNGKey(1))
    obs = np.asarray(jax.random.normal(jax.random.PRNGKey(2), (16, 4)), np.float64)
    actions = np.asarray(jax.random.randint(jax.random.PRNGKey(3), (16,), 0, 3))
    inputs, grads = layer_inputs_and_output_grads(policy, actor, jnp.asarray(obs, jnp.float32), jnp.asarray(actions))
    mlp = actor["params"]["MLP_0"]
    w = [(np.asarray(mlp[f"Dense_{i}"]["kernel"], np.float64), np.asarray(mlp[f"Dense_{i}"]["bias"], np.float64))
         for i in range(3)]
    s0 = obs @ w[0][0] + w[0][1]
    s1 = np.tanh(s0) @ w[1][0] + w[1][1]
    logits = np.tanh(s1) @ w[2][0] + w[2][1]
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    g2 = np.eye(3)[actions] - p
    g1 = (g2 @ w[2][0].T) * (1 - np.tanh(s1) ** 2)
    g0 = (g1 @ w[1][0].T) * (1 - np.tanh(s0) ** 2)
    for got, expected in zip(grads, [g0, g1, g2]):
        np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(inputs[2]), np.tanh(s1), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- K-FAC's Fisher on a single state


def _one_layer_softmax(obs_dim=3, actions=4):
    policy = _policy("categorical", hidden=(), obs_dim=obs_dim, actions=actions)
    actor = _perturbed(policy.init(jax.random.PRNGKey(5))["actor"], jax.random.PRNGKey(6), scale=0.7)
    return policy, actor


def _as_weight(actor):
    layer = actor["params"]["MLP_0"]["Dense_0"]
    return kfac.with_bias_row(layer["kernel"], layer["bias"])


def _with_weight(actor, weight):
    kernel, bias = kfac.without_bias_row(weight)
    return {"params": {"MLP_0": {"Dense_0": {"kernel": kernel, "bias": bias}}}}


def _exact_fisher(policy, actor, obs):
    """The Hessian of the mean KL(pi_old || pi_theta) in vec([W; b]) (row-major), at theta = theta_old."""
    weight = _as_weight(actor)
    old = policy.dist(actor, obs)

    def mean_kl(flat):
        return jnp.mean(old.kl(policy.dist(_with_weight(actor, flat.reshape(weight.shape)), obs)))

    return np.asarray(jax.hessian(mean_kl)(weight.reshape(-1)), np.float64)


def test_kfac_fisher_of_a_one_layer_softmax_on_one_state_is_the_exact_fisher():
    """With one state the layer's input is constant, so E[a a^T (x) g g^T] = A (x) G exactly; with the
    actions' expectation taken exactly (every action, weighted by its probability) A (x) G equals the
    Hessian of the mean KL, and the sampled factors converge to it."""
    policy, actor = _one_layer_softmax()
    state = jnp.asarray([[0.3, -1.2, 0.8]], jnp.float32)
    probs = np.asarray(jax.nn.softmax(policy.dist(actor, state).logits[0]))
    enumerated = jnp.repeat(state, 4, axis=0)
    (exact,) = fisher_factors(policy, actor, enumerated, jnp.arange(4), jnp.asarray(probs))
    fisher = _exact_fisher(policy, actor, jnp.repeat(state, 5, axis=0))
    np.testing.assert_allclose(np.kron(np.asarray(exact.a), np.asarray(exact.g)), fisher, rtol=1e-4, atol=1e-6)
    # Theory for the pieces: A = a_bar a_bar^T, G = diag(p) - p p^T.
    a_bar = np.append(np.asarray(state[0]), 1.0)
    np.testing.assert_allclose(np.asarray(exact.a), np.outer(a_bar, a_bar), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(exact.g), np.diag(probs) - np.outer(probs, probs), rtol=1e-5, atol=1e-7)
    # Actions sampled from the policy (as the update does) estimate the same G.
    many = jnp.repeat(state, 10_000, axis=0)
    sampled_actions = policy.dist(actor, many).sample(jax.random.PRNGKey(7))
    (sampled,) = fisher_factors(policy, actor, many, sampled_actions)
    np.testing.assert_allclose(np.asarray(sampled.g), np.asarray(exact.g), atol=0.02)  # 4 standard errors


def test_log_std_block_of_the_exact_fisher_is_two_per_dimension_and_decoupled():
    """A diagonal Gaussian's Fisher in log-std is 2 I, with no cross terms to the mean's parameters, so
    preconditioning log-std separately by 2 + damping loses nothing."""
    policy = _policy("gaussian", hidden=(), obs_dim=3, actions=2)
    actor = _perturbed(policy.init(jax.random.PRNGKey(0))["actor"], jax.random.PRNGKey(1))
    obs = jax.random.normal(jax.random.PRNGKey(2), (6, 3))
    flat, unravel = jax.flatten_util.ravel_pytree(actor)
    old = policy.dist(actor, obs)
    hessian = np.asarray(jax.hessian(lambda t: jnp.mean(old.kl(policy.dist(unravel(t), obs))))(flat))
    is_log_std = np.asarray(jax.flatten_util.ravel_pytree(
        jax.tree_util.tree_map_with_path(lambda path, x: jnp.full(x.shape, "log_std" in str(path)), actor))[0]) > 0
    np.testing.assert_allclose(hessian[np.ix_(is_log_std, is_log_std)], LOG_STD_FISHER * np.eye(2), atol=1e-5)
    np.testing.assert_allclose(hessian[np.ix_(is_log_std, ~is_log_std)], 0.0, atol=1e-6)
    # natural_direction divides the log-std gradient by exactly that, plus damping.
    grad = jax.tree.map(jnp.ones_like, actor)
    factors = tuple(kfac.KroneckerFactors(jnp.eye(4), jnp.eye(2)) for _ in range(1))
    direction, _ = natural_direction(factors, grad, jnp.asarray(0.1))
    np.testing.assert_allclose(np.asarray(direction["params"]["log_std"]), 1.0 / 2.1, rtol=1e-6)


# ---------------------------------------------------------------- the full update


class OneLayerACKTR(NamedTuple):
    cfg: Any
    policy: Any
    actor: Any
    algorithm: Any
    update: Any  # jitted once: the real-valued keys are traced hyperparameters, varied per test


def _one_layer_acktr(step_fisher: str) -> OneLayerACKTR:
    cfg = compose_config("algo=acktr", "num_envs=2", "algo.num_steps=16", "algo.vf_minibatches=2",
                         f"algo.step_fisher={step_fisher}").algo
    policy, actor = _one_layer_softmax()
    algorithm = make_acktr(cfg, policy, num_iterations=10, context=AlgoContext(2, "test", None))
    return OneLayerACKTR(cfg, policy, actor, algorithm, jax.jit(algorithm.update))


@pytest.fixture(scope="module")
def kfac_step_acktr() -> OneLayerACKTR:
    return _one_layer_acktr("kfac")


def _train_state(setup: OneLayerACKTR, **hparams) -> TrainState:
    policy, algorithm = setup.policy, setup.algorithm
    params = {"actor": setup.actor, "critic": policy.init(jax.random.PRNGKey(9))["critic"]}
    values = {k: v for k, v in OmegaConf.to_container(setup.cfg).items() if isinstance(v, float)}
    assert set(hparams) <= set(values)
    hparams = {k: jnp.asarray(v, jnp.float32) for k, v in {**values, **hparams}.items()}
    return TrainState(params=params, opt_state=algorithm.init_opt_state(params), obs_stats=None,
                      reward_scaler=None, episodes=None, iteration=jnp.zeros((), jnp.int32),
                      algo_state=algorithm.init_algo_state(hparams), hparams=hparams)


def _batch(obs, key, num_actions=4):
    """A ``[16, 2]`` batch at the given ``[16, 2, obs]`` observations with random actions and rewards."""
    k_actions, k_rewards = jax.random.split(key)
    shape = obs.shape[:2]
    return Batch(obs=obs, actions=jax.random.randint(k_actions, shape, 0, num_actions),
                 log_probs=jnp.zeros(shape), rewards=jax.random.normal(k_rewards, shape),
                 terminated=jnp.zeros(shape, bool), dones=jnp.zeros(shape, bool), next_obs=obs)


STATE = jnp.asarray([0.3, -1.2, 0.8], jnp.float32)


def _explicit_direction(setup: OneLayerACKTR, state: TrainState, batch: Batch, key, damping: float):
    """``((A_d (x) G_d)^-1 g, its damped quadratic form)`` for a one-state batch, in float64 from theory:
    A = a_bar a_bar^T, G over the residuals onehot(a~) - p of the actions the update samples, g the
    gradient of mean(log pi(a_i|s) A_i) in [W; b], a_bar (x) mean((onehot(a_i) - p) A_i)."""
    policy, actor, cfg = setup.policy, setup.actor, setup.cfg
    _, advantages, _ = gae_targets(policy, state.params["critic"], batch, cfg.gamma, cfg.gae_lambda)
    advantages = np.asarray(standardize(advantages)).reshape(-1)
    actions = np.asarray(batch.actions).reshape(-1)
    logits = np.asarray(policy.dist(actor, STATE).logits, np.float64)
    p = np.exp(logits - logits.max())
    p /= p.sum()
    a_bar = np.append(np.asarray(STATE, np.float64), 1.0)
    grad = np.outer(a_bar, ((np.eye(4)[actions] - p) * advantages[:, None]).mean(0))
    sampled = np.asarray(policy.dist(actor, batch.obs.reshape(-1, 3)).sample(jax.random.split(key)[0]))
    residual = np.eye(4)[sampled] - p
    a_d, g_d = explicit_damped(np.outer(a_bar, a_bar), residual.T @ residual / len(sampled), damping)
    damped_fisher = np.kron(a_d, g_d)
    direction = np.linalg.solve(damped_fisher, grad.reshape(-1))
    return direction, direction @ damped_fisher @ direction


@pytest.mark.parametrize("step_fisher", ["kfac", "exact"])
def test_update_on_one_state_is_the_explicit_natural_step_in_the_trust_region(step_fisher, kfac_step_acktr):
    """On a batch of one repeated state, with a one-layer softmax policy: the new weights are
    theta + eta (A_d (x) G_d)^-1 g, the Kronecker product formed and solved explicitly, with
    eta = sqrt(2 delta / Delta^T F Delta), F the damped A_d (x) G_d (kfac) or the Hessian of the mean
    KL (exact); the logged quadratic KLs are those of the step under both; the measured KL matches
    the exact one (third-order terms are small at this radius). The sampled G differs from the exact
    one, so K-FAC's prediction need not match the measured KL, even on one state."""
    setup = kfac_step_acktr if step_fisher == "kfac" else _one_layer_acktr("exact")
    delta, damping, lr_max = 2e-5, 1e-4, 100.0
    state = _train_state(setup, delta=delta, damping=damping, lr_max=lr_max, ent_coef=0.0)
    batch = _batch(jnp.broadcast_to(STATE, (16, 2, 3)), jax.random.PRNGKey(11))
    key = jax.random.PRNGKey(12)
    new_state, metrics = setup.update(state, batch, key)

    direction, kfac_quadratic = _explicit_direction(setup, state, batch, key, damping)
    exact_fisher = _exact_fisher(setup.policy, setup.actor, STATE[None])
    exact_quadratic = direction @ exact_fisher @ direction
    eta = min(lr_max, math.sqrt(2 * delta / (kfac_quadratic if step_fisher == "kfac" else exact_quadratic)))
    old = np.asarray(_as_weight(setup.actor), np.float64)
    expected = old + eta * direction.reshape(4, 4)
    got = np.asarray(_as_weight(new_state.params["actor"]), np.float64)
    np.testing.assert_allclose(got, expected, rtol=2e-3, atol=2e-3 * np.abs(expected - old).max())
    np.testing.assert_allclose(float(metrics["kfac/step_size"]), eta, rtol=2e-3)
    np.testing.assert_allclose(float(metrics["kfac/quadratic_kl"]), delta, rtol=1e-4)
    np.testing.assert_allclose(float(metrics["kfac/kfac_quadratic_kl"]), 0.5 * eta**2 * kfac_quadratic, rtol=2e-3)
    np.testing.assert_allclose(float(metrics["kfac/exact_quadratic_kl"]), 0.5 * eta**2 * exact_quadratic, rtol=2e-3)
    measured = float(metrics["natural/kl"])
    assert abs(measured - 0.5 * eta**2 * exact_quadratic) < 0.05 * 0.5 * eta**2 * exact_quadratic, measured
    assert float(metrics["kfac/at_lr_max"]) == 0.0


def test_lr_max_caps_the_step_and_the_predicted_kl_falls_below_delta(kfac_step_acktr):
    state = _train_state(kfac_step_acktr, delta=0.01, lr_max=0.05)
    batch = _batch(jax.random.normal(jax.random.PRNGKey(1), (16, 2, 3)), jax.random.PRNGKey(2))
    _, metrics = kfac_step_acktr.update(state, batch, jax.random.PRNGKey(3))
    assert float(metrics["kfac/step_size"]) == pytest.approx(0.05)
    assert float(metrics["kfac/at_lr_max"]) == 1.0
    assert 0 < float(metrics["kfac/quadratic_kl"]) < 0.01


def test_update_keeps_running_averages_of_the_factors(kfac_step_acktr):
    """A of a one-layer policy depends only on the observations: after k updates algo_state holds
    the schedule's average of the batches' E[a_bar a_bar^T]; G after the first update is the sampled
    residuals' second moment."""
    policy, actor, update = kfac_step_acktr.policy, kfac_step_acktr.actor, kfac_step_acktr.update
    state = _train_state(kfac_step_acktr, stats_decay=0.6)
    expected_a = None
    for k in range(1, 5):
        obs = jax.random.normal(jax.random.PRNGKey(100 + k), (16, 2, 3)) * k
        batch = _batch(obs, jax.random.PRNGKey(200 + k))
        key = jax.random.PRNGKey(300 + k)
        if k == 1:
            sampled = policy.dist(actor, obs.reshape(-1, 3)).sample(jax.random.split(key)[0])
            logits = np.asarray(policy.dist(actor, obs.reshape(-1, 3)).logits, np.float64)
            p = np.exp(logits - logits.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            residual = np.eye(4)[np.asarray(sampled)] - p
            expected_g = residual.T @ residual / 32
        state, _ = update(state, batch, key)
        homogeneous = np.concatenate([np.asarray(obs, np.float64).reshape(-1, 3), np.ones((32, 1))], axis=1)
        batch_a = homogeneous.T @ homogeneous / 32
        eps = min(0.6, 1 - 1 / k)
        expected_a = batch_a if k == 1 else eps * expected_a + (1 - eps) * batch_a
        (factors,) = state.algo_state["factors"]
        np.testing.assert_allclose(np.asarray(factors.a), expected_a, rtol=1e-5, atol=1e-5)
        assert int(state.algo_state["updates"]) == k
        if k == 1:
            np.testing.assert_allclose(np.asarray(factors.g), expected_g, rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------- runs and validation


METRICS = ("kfac/step_size", "kfac/quadratic_kl", "kfac/exact_quadratic_kl", "kfac/kfac_quadratic_kl", "natural/kl",
           "losses/policy_loss", "losses/value_loss", "losses/entropy", "losses/explained_variance")


def _check_metrics(run_dir, algo_cfg):
    for tag in METRICS:
        values = [v for _, v in logged(run_dir, tag)]
        assert values and all(np.isfinite(values)), (tag, values)
    assert all(0 < v <= algo_cfg.lr_max for _, v in logged(run_dir, "kfac/step_size"))
    assert all(v <= algo_cfg.delta * (1 + 1e-4) for _, v in logged(run_dir, "kfac/quadratic_kl"))


def test_short_gaussian_run_logs_the_kfac_metrics_and_stays_finite(tmp_path):
    cfg = compose_config("algo=acktr", "env=Pendulum-v1", "total_timesteps=8192", "quiet=true", "num_envs=2",
                         "algo.num_steps=64", "log_interval=4", "eval.every=0")
    summary = run_training(cfg, tmp_path)
    assert np.isfinite(summary["final_return_mean"])
    _check_metrics(tmp_path, cfg.algo)


@pytest.mark.parametrize("override, fragment", [
    ("algo.delta=-0.1", "algo.delta"), ("algo.damping=0", "algo.damping"), ("algo.stats_decay=1.0", "stats_decay"),
    ("algo.lr_max=0", "algo.lr_max"), ("algo.vf_minibatches=3", "vf_minibatches"),
    ("algo.step_fisher=diagonal", "algo.step_fisher=diagonal is not valid")])
def test_validation_rejects_bad_values_in_one_line(override, fragment):
    with pytest.raises(ConfigError, match=fragment) as error:
        validate(compose_config("algo=acktr", override))
    assert "\n" not in str(error.value)


def test_acktr_learns_cartpole(tmp_path):
    cfg = compose_config("algo=acktr", "env=CartPole-v1", "seed=1", "total_timesteps=60000", "quiet=true",
                         "eval.every=0")
    summary = run_training(cfg, tmp_path)
    curve = logged(tmp_path, "charts/episodic_return")
    # A random policy averages about 22; the first block must show it, the last well above it.
    assert curve[0][1] < 60
    assert summary["final_return_mean"] >= 200, (summary["final_return_mean"], curve)
    _check_metrics(tmp_path, cfg.algo)
