"""Distributions against closed forms, policy heads against the action space."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pgrun.distributions import Categorical, DiagGaussian
from pgrun.envs.core import Box, Discrete
from pgrun.initializers import orthogonal
from pgrun.normalization import RunningMeanStd
from pgrun.policies import make_policy


def test_categorical_matches_explicit_probabilities():
    logits = jnp.array([[1.0, 2.0, 0.5], [0.0, 0.0, 0.0]])
    p = np.exp(np.asarray(logits)) / np.exp(np.asarray(logits)).sum(-1, keepdims=True)
    dist = Categorical(logits)
    np.testing.assert_allclose(dist.log_prob(jnp.array([1, 2])), np.log([p[0, 1], p[1, 2]]), rtol=1e-6)
    np.testing.assert_allclose(dist.entropy(), -(p * np.log(p)).sum(-1), rtol=1e-6)
    q_logits = jnp.array([[0.3, -1.0, 2.0], [1.0, 0.0, -1.0]])
    q = np.exp(np.asarray(q_logits)) / np.exp(np.asarray(q_logits)).sum(-1, keepdims=True)
    np.testing.assert_allclose(dist.kl(Categorical(q_logits)), (p * np.log(p / q)).sum(-1), rtol=1e-5)


def test_categorical_samples_follow_the_probabilities():
    dist = Categorical(jnp.log(jnp.array([0.2, 0.5, 0.3])))
    samples = jax.vmap(dist.sample)(jax.random.split(jax.random.PRNGKey(0), 20000))
    freq = np.bincount(np.asarray(samples), minlength=3) / 20000
    np.testing.assert_allclose(freq, [0.2, 0.5, 0.3], atol=0.015)  # > 4 standard errors


def test_gaussian_matches_closed_forms():
    mean, log_std = jnp.array([0.5, -1.0]), jnp.array([0.1, -0.7])
    dist = DiagGaussian(mean, log_std)
    x = jnp.array([0.2, -0.4])
    std = np.exp(np.asarray(log_std))
    expected = np.sum(-0.5 * ((np.asarray(x) - np.asarray(mean)) / std) ** 2 - np.log(std) - 0.5 * math.log(2 * math.pi))
    np.testing.assert_allclose(dist.log_prob(x), expected, rtol=1e-6)
    np.testing.assert_allclose(dist.entropy(), np.sum(0.5 * np.log(2 * math.pi * math.e * std**2)), rtol=1e-6)
    other = DiagGaussian(jnp.array([0.0, 0.0]), jnp.array([0.3, 0.2]))
    s2 = np.exp(2 * np.asarray(other.log_std))
    kl = np.sum(np.log(np.sqrt(s2) / std) + (std**2 + (np.asarray(mean)) ** 2) / (2 * s2) - 0.5)
    np.testing.assert_allclose(dist.kl(other), kl, rtol=1e-5)


def test_policy_heads_fit_the_action_space():
    key = jax.random.PRNGKey(0)
    obs_space = Box(-np.ones(3, np.float32), np.ones(3, np.float32))
    discrete = make_policy(obs_space, Discrete(4), [16, 16], "tanh")
    params = discrete.init(key)
    dist = discrete.dist(params["actor"], jnp.zeros((5, 3)))
    assert dist.logits.shape == (5, 4)
    # Near-uniform initial policy: the policy head is initialised with gain 0.01.
    assert float(jnp.max(jnp.abs(dist.logits))) < 0.1
    assert discrete.value(params["critic"], jnp.zeros((5, 3))).shape == (5,)

    box = Box(np.array([-2.0, 0.0], np.float32), np.array([2.0, 1.0], np.float32))
    gaussian = make_policy(obs_space, box, [16], "relu")
    g_params = gaussian.init(key)
    g_dist = gaussian.dist(g_params["actor"], jnp.zeros((5, 3)))
    assert g_dist.mean.shape == (5, 2) and g_dist.log_std.shape == (5, 2)
    env_actions = gaussian.to_env_action(jnp.array([[-1.0, 1.0], [0.0, 0.0], [5.0, -5.0]]))
    np.testing.assert_allclose(env_actions, [[-2.0, 1.0], [0.0, 0.5], [2.0, 0.0]])


def test_hidden_layers_are_orthogonal():
    policy = make_policy(Box(-np.ones(8, np.float32), np.ones(8, np.float32)), Discrete(2), [8], "tanh")
    kernel = np.asarray(policy.init(jax.random.PRNGKey(1))["critic"]["params"]["Dense_0"]["kernel"])
    np.testing.assert_allclose(kernel.T @ kernel, 2.0 * np.eye(8), atol=1e-5)  # gain sqrt(2)


@pytest.mark.parametrize("shape", [(4, 64), (64, 64), (64, 2), (64, 1), (3, 5, 7), (128, 256)])
def test_orthogonal_init_equals_the_qr_of_the_same_draw(shape):
    """Gram-Schmidt gives LAPACK's Q (signs fixed so R's diagonal is positive) for the same Gaussian draw."""
    for seed in range(3):
        key = jax.random.PRNGKey(seed)
        ours = np.asarray(orthogonal(1.5)(key, shape))
        lapack = np.asarray(jax.nn.initializers.orthogonal(1.5)(key, shape))
        np.testing.assert_allclose(ours, lapack, atol=2e-5)
        matrix = ours.reshape(-1, shape[-1]) / 1.5
        small = min(matrix.shape)
        gram = matrix.T @ matrix if matrix.shape[0] >= matrix.shape[1] else matrix @ matrix.T
        np.testing.assert_allclose(gram, np.eye(small), atol=2e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_running_statistics_equal_the_pooled_moments(seed):
    rng = np.random.default_rng(seed)
    batches = [rng.normal(3.0, 2.0, size=(n, 4)).astype(np.float32) for n in (7, 50, 13)]
    stats = RunningMeanStd.create((4,))
    for batch in batches:
        stats = stats.update(jnp.asarray(batch))
    pooled = np.concatenate(batches)
    np.testing.assert_allclose(stats.mean, pooled.mean(0), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(stats.var, pooled.var(0), rtol=1e-3, atol=1e-3)
    normalized = np.asarray(stats.normalize(jnp.asarray(pooled)))
    np.testing.assert_allclose(normalized.mean(0), 0.0, atol=1e-2)
    np.testing.assert_allclose(normalized.std(0), 1.0, atol=1e-2)


def test_initialisation_compiled_for_one_call_gives_the_same_weights():
    """The initialisation program is compiled with backend optimisations off (it runs once);
    that must not change what it computes."""
    from pgrun.train import compile_run_once

    policy = make_policy(Box(-np.ones(3), np.ones(3)), Box(-np.ones(2), np.ones(2)), [64, 64], "tanh")
    init = jax.jit(jax.vmap(policy.init))
    keys = jax.random.split(jax.random.PRNGKey(3), 4)
    quick, usual = compile_run_once(init, keys)(keys), init(keys)
    for a, b in zip(jax.tree.leaves(quick), jax.tree.leaves(usual)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_gaussian_log_std_starts_at_the_configured_value(compose_cfg):
    """algo.log_std_init sets the initial log-std; as a traced value it can differ per sweep member."""
    from pgrun.train import build, init_train_state

    setup = build(compose_cfg("algo=a2c", "env=Pendulum-v1", "algo.log_std_init=-2.0", "compile_cache_dir="))
    state = init_train_state(setup, jax.random.PRNGKey(0))
    log_std = np.asarray(state.params["actor"]["params"]["log_std"])
    assert log_std.shape == (1,) and np.all(log_std == -2.0)
    traced = jax.jit(lambda v: setup.policy.init(jax.random.PRNGKey(0), v))(jnp.float32(-0.5))
    assert np.all(np.asarray(traced["actor"]["params"]["log_std"]) == -0.5)
    # the rest of the actor is the same draw whatever the log-std
    same = setup.policy.init(jax.random.PRNGKey(0), 0.0)
    np.testing.assert_array_equal(np.asarray(traced["actor"]["params"]["MLP_0"]["Dense_0"]["kernel"]),
                                  np.asarray(same["actor"]["params"]["MLP_0"]["Dense_0"]["kernel"]))


def test_bounded_mean_keeps_the_gaussian_mean_inside_the_action_box():
    """With bounded_mean the mean is tanh of the head's output (so within [-1, 1]) and its
    log-probabilities follow; without it the same parameters give the raw head output."""
    box = Box(-np.ones(2, np.float32), np.ones(2, np.float32))
    obs_space = Box(-np.ones(3, np.float32), np.ones(3, np.float32))
    bounded = make_policy(obs_space, box, [8], "tanh", bounded_mean=True)
    free = make_policy(obs_space, box, [8], "tanh")
    params = free.init(jax.random.PRNGKey(0))
    head = params["actor"]["params"]["MLP_0"]["Dense_1"]
    params["actor"]["params"]["MLP_0"]["Dense_1"] = {**head, "kernel": head["kernel"] * 1000.0}
    obs = jax.random.normal(jax.random.PRNGKey(1), (64, 3)) * 5.0
    raw = free.dist(params["actor"], obs).mean
    squashed = bounded.dist(params["actor"], obs).mean
    assert float(jnp.max(jnp.abs(raw))) > 5.0
    np.testing.assert_allclose(np.asarray(squashed), np.tanh(np.asarray(raw)), rtol=1e-5, atol=1e-6)
    action = jnp.zeros((64, 2))
    expected = DiagGaussian(jnp.tanh(raw), jnp.zeros_like(raw)).log_prob(action)
    np.testing.assert_allclose(np.asarray(bounded.dist(params["actor"], obs).log_prob(action)), np.asarray(expected),
                               rtol=1e-5)
