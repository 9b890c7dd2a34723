"""Natural-gradient machinery against independent computations from theory.

Conjugate gradient against a direct solve; Fisher-vector products against an
explicit Hessian of the mean KL, the closed-form (Gauss-Newton) Fisher matrix
and a Monte-Carlo estimate of E[grad log pi grad log pi^T]; the trust-region
step against its closed form; TRPO's line search on constructed problems; and
NPG/TRPO updates on real CartPole batches with the KL and surrogate gain
recomputed from the parameters.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from conftest import compose_config, gae_by_hand
from pgrun.envs.core import Box, Discrete
from pgrun.natural import backtracking_line_search, conjugate_gradient, fisher_vector_product, natural_step
from pgrun.policies import make_policy
from pgrun.rollout import identity_normalizer, make_rollout
from pgrun.train import build, init_train_state

# ---------------------------------------------------------------------------
# Conjugate gradient
# ---------------------------------------------------------------------------


def random_spd(n: int, cond: float, rng: np.random.Generator, eigenvalues=None) -> np.ndarray:
    """Q diag(lambda) Q^T with log-spaced eigenvalues from 1 to ``cond`` (or the given ones)."""
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    eig = np.logspace(0.0, math.log10(cond), n) if eigenvalues is None else np.asarray(eigenvalues, float)
    return (q * eig) @ q.T


def relative_error(x, reference) -> float:
    x, reference = np.asarray(x, np.float64), np.asarray(reference, np.float64)
    return float(np.linalg.norm(x - reference) / np.linalg.norm(reference))


@pytest.mark.parametrize("n, cond, iters, rtol", [
    # Exact arithmetic converges in n steps; float32 does too when the spectrum is benign.
    (5, 10.0, 5, 1e-5),
    (20, 10.0, 20, 1e-5),
    (50, 10.0, 50, 1e-5),
    # Wider spectra lose conjugacy in finite precision (a textbook float64 CG needs
    # more than n steps on them too); a few n iterations still reach the solution.
    (8, 100.0, 16, 1e-4),
    (20, 100.0, 60, 1e-4),
    (20, 1e3, 80, 1e-3),
    (50, 1e3, 200, 1e-3),
])
def test_conjugate_gradient_matches_direct_solve(n, cond, iters, rtol):
    """CG on random SPD systems (float32) reaches the float64 direct solution."""
    rng = np.random.default_rng(n * 1000 + int(cond))
    a = random_spd(n, cond, rng)
    b = rng.standard_normal(n)
    exact = np.linalg.solve(a, b)
    a32 = jnp.asarray(a, jnp.float32)
    result = conjugate_gradient(lambda v: a32 @ v, jnp.asarray(b, jnp.float32), iters, tol=0.0)
    assert result.x.dtype == jnp.float32
    assert relative_error(result.x, exact) < rtol, (n, cond, relative_error(result.x, exact))


@pytest.mark.parametrize("n, cond, iters", [(20, 100.0, 5), (30, 1e3, 10), (12, 10.0, 3)])
def test_conjugate_gradient_reports_the_true_residual(n, cond, iters):
    """residual_norm is ||b - A x|| of the returned x (checked before convergence,
    where the residual is large and the two could visibly disagree)."""
    rng = np.random.default_rng(7 + n)
    a = random_spd(n, cond, rng)
    b = rng.standard_normal(n)
    a32 = jnp.asarray(a, jnp.float32)
    result = conjugate_gradient(lambda v: a32 @ v, jnp.asarray(b, jnp.float32), iters, tol=0.0)
    true_residual = np.linalg.norm(b - a @ np.asarray(result.x, np.float64))
    assert int(result.iterations) == iters
    assert true_residual > 1e-3 * np.linalg.norm(b)  # genuinely unconverged: the check has power
    np.testing.assert_allclose(float(result.residual_norm), true_residual, rtol=1e-3)


def test_conjugate_gradient_stops_early_at_tolerance():
    """With k distinct eigenvalues CG solves in k steps (Krylov theory), so it
    must stop long before max_iters, at the first iterate with ||r||^2 <= tol."""
    rng = np.random.default_rng(3)
    n, k = 40, 3
    a = random_spd(n, 1.0, rng, eigenvalues=np.repeat([1.0, 4.0, 9.0], [14, 13, 13]))
    b = rng.standard_normal(n)
    a32, b32 = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
    tol = 1e-8 * float(b @ b)
    result = conjugate_gradient(lambda v: a32 @ v, b32, max_iters=100, tol=tol)
    iterations = int(result.iterations)
    assert iterations < 100
    assert iterations <= k + 1, f"{k} distinct eigenvalues should need about {k} iterations, took {iterations}"
    assert float(result.residual_norm) ** 2 <= tol
    assert np.linalg.norm(b - a @ np.asarray(result.x, np.float64)) <= 1e-3 * np.linalg.norm(b)
    # It stopped at the FIRST iterate below tol: one iteration fewer is still above it.
    previous = conjugate_gradient(lambda v: a32 @ v, b32, max_iters=iterations - 1, tol=tol)
    assert float(previous.residual_norm) ** 2 > tol


def test_conjugate_gradient_runs_under_jit():
    """CG is traceable: jitted with the matrix as an argument it solves the system."""
    rng = np.random.default_rng(11)
    n = 16
    a = random_spd(n, 20.0, rng)
    b = rng.standard_normal(n)

    @jax.jit
    def solve(matrix, rhs):
        return conjugate_gradient(lambda v: matrix @ v, rhs, n * 3, 1e-12)

    result = solve(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32))
    assert relative_error(result.x, np.linalg.solve(a, b)) < 1e-4
    assert int(result.iterations) <= 3 * n


# ---------------------------------------------------------------------------
# Fisher-vector products on a small policy network
# ---------------------------------------------------------------------------

OBS_DIM, BATCH = 3, 24


def categorical_kl(old_logits, new_logits):
    """KL(p || q) = sum p (log p - log q), from logits."""
    logp, logq = jax.nn.log_softmax(old_logits, -1), jax.nn.log_softmax(new_logits, -1)
    return jnp.sum(jnp.exp(logp) * (logp - logq), axis=-1)


def gaussian_kl(mean1, log_std1, mean2, log_std2):
    """Closed form of KL(N(m1, s1^2) || N(m2, s2^2)), summed over independent dims."""
    var1, var2 = jnp.exp(2 * log_std1), jnp.exp(2 * log_std2)
    return jnp.sum(log_std2 - log_std1 + (var1 + (mean1 - mean2) ** 2) / (2 * var2) - 0.5, axis=-1)


class SmallPolicy:
    """A make_policy actor on obs dim 3, hidden [5], with its parameters flattened
    and randomly perturbed (away from the near-uniform initialisation)."""

    def __init__(self, kind: str, seed: int = 0):
        self.kind = kind
        obs_space = Box(low=-np.ones(OBS_DIM, np.float32), high=np.ones(OBS_DIM, np.float32))
        action_space = Discrete(3) if kind == "categorical" else Box(low=-np.ones(2, np.float32),
                                                                       high=np.ones(2, np.float32))
        self.policy = make_policy(obs_space, action_space, [5], "tanh")
        k_init, k_perturb, k_obs = jax.random.split(jax.random.PRNGKey(seed), 3)
        flat, self.unravel = ravel_pytree(self.policy.init(k_init)["actor"])
        self.theta = flat + 0.5 * jax.random.normal(k_perturb, flat.shape)
        self.obs = jax.random.normal(k_obs, (BATCH, OBS_DIM))

    def dist(self, theta, obs=None):
        return self.policy.dist(self.unravel(theta), self.obs if obs is None else obs)

    def outputs(self, theta, obs):
        """The distribution's parameters, flattened: logits, or [mean, log_std]."""
        d = self.dist(theta, obs)
        return d.logits if self.kind == "categorical" else jnp.concatenate([d.mean, d.log_std], -1)

    def mean_kl(self, theta):
        """Mean KL(pi_old || pi_theta) over the batch, pi_old fixed at self.theta (own closed form)."""
        old = jax.lax.stop_gradient(self.dist(self.theta))
        new = self.dist(theta)
        if self.kind == "categorical":
            return jnp.mean(categorical_kl(old.logits, new.logits))
        return jnp.mean(gaussian_kl(old.mean, old.log_std, new.mean, new.log_std))

    @functools.cached_property
    def fisher_matrix(self) -> np.ndarray:
        """Exact Fisher, mean over states of J^T M J with J the Jacobian of the
        distribution's parameters and M their Fisher: diag(p) - p p^T for logits;
        diag(1/sigma^2) for the mean and 2 for each log-std of a Gaussian."""
        jac = jax.jit(jax.vmap(jax.jacobian(self.outputs), in_axes=(None, 0)))(self.theta, self.obs)
        jac = np.asarray(jac, np.float64)  # [batch, outputs, params]
        out = np.asarray(self.outputs(self.theta, self.obs), np.float64)
        if self.kind == "categorical":
            p = np.exp(out - out.max(-1, keepdims=True))
            p /= p.sum(-1, keepdims=True)
            m = jax.vmap(jnp.diag)(p) - p[:, :, None] * p[:, None, :]
        else:
            d = out.shape[-1] // 2
            m = jax.vmap(jnp.diag)(np.concatenate([np.exp(-2 * out[:, d:]), 2.0 * np.ones_like(out[:, d:])], -1))
        m = np.asarray(m, np.float64)
        return np.einsum("bop,boq,bqr->pr", jac, m, jac) / len(out)

    @functools.cached_property
    def kl_hessian(self) -> np.ndarray:
        return np.asarray(jax.jit(jax.hessian(self.mean_kl))(self.theta), np.float64)


@pytest.fixture(scope="module", params=["categorical", "gaussian"])
def small(request):
    return SmallPolicy(request.param)


@pytest.mark.parametrize("damping", [0.0, 0.1])
def test_fisher_vector_product_equals_explicit_kl_hessian(small, damping):
    """(F + damping I) v in Gauss-Newton form equals jax.hessian of the mean
    KL times v, and the closed-form Fisher J^T M J times v (Fisher = KL Hessian)."""
    hessian, fisher = small.kl_hessian, small.fisher_matrix
    np.testing.assert_allclose(hessian, fisher, atol=1e-5 * np.abs(fisher).max())
    fvp = jax.jit(fisher_vector_product(small.dist, small.theta, damping))
    rng = np.random.default_rng(5)
    for _ in range(3):
        v = rng.standard_normal(small.theta.size)
        expected = (hessian + damping * np.eye(v.size)) @ v
        got = np.asarray(fvp(jnp.asarray(v, jnp.float32)), np.float64)
        assert relative_error(got, expected) < 1e-4, relative_error(got, expected)
    # Linearity in v, as a matrix-vector product must be.
    v1, v2 = (jnp.asarray(rng.standard_normal(small.theta.size), jnp.float32) for _ in range(2))
    assert relative_error(fvp(2.0 * v1 - v2), 2.0 * fvp(v1) - fvp(v2)) < 1e-4


def test_fisher_vector_product_matches_monte_carlo_score_outer_products(small):
    """F v = E_s E_{a~pi(.|s)}[g (g . v)], g = grad log pi(a|s), estimated from
    sampled actions. Tolerance: 5 standard errors per component, the standard
    error from the per-sample terms (pooled over states, which can only inflate
    it); for ~40 roughly normal components a false failure has probability < 1e-4."""
    fvp = fisher_vector_product(small.dist, small.theta, 0.0)
    v = jnp.asarray(np.random.default_rng(1).standard_normal(small.theta.size), jnp.float32)
    exact = np.asarray(fvp(v), np.float64)

    per_state = 4000
    obs = jnp.repeat(small.obs, per_state, axis=0)
    actions = small.dist(small.theta, obs).sample(jax.random.PRNGKey(2))

    def score(s, a):
        return jax.grad(lambda th: small.dist(th, s).log_prob(a))(small.theta)

    scores = jax.jit(jax.vmap(score))(obs, actions)
    terms = np.asarray(scores * (scores @ v)[:, None], np.float64)
    estimate = terms.mean(0)
    stderr = terms.std(0, ddof=1) / math.sqrt(len(terms))
    # The estimate is precise enough to tell F v apart from a factor-of-two slip.
    assert stderr.max() < 0.05 * np.abs(exact).max()
    z = np.abs(estimate - exact) / np.maximum(stderr, 1e-12)
    assert z.max() < 5.0, f"Monte-Carlo Fisher disagrees: max z = {z.max():.1f}"
    z_half = np.abs(estimate - 0.5 * exact) / np.maximum(stderr, 1e-12)
    assert z_half.max() > 5.0, "test has no power: cannot tell F v from F v / 2"


def test_natural_step_reaches_the_kl_radius_and_solves_fisher_system(small):
    """The NPG step s = sqrt(2 delta / x^T F x) x with F x = g: checked against a
    direct solve with the explicit (damped) Fisher matrix, 1/2 s^T F s = delta,
    and expected_gain = g^T s."""
    damping, delta = 0.05, 0.02
    fisher = small.fisher_matrix + damping * np.eye(small.theta.size)
    key_a, key_adv = jax.random.split(jax.random.PRNGKey(9))
    actions = small.dist(small.theta).sample(key_a)
    advantages = jax.random.normal(key_adv, (BATCH,))
    old_log_probs = small.dist(small.theta).log_prob(actions)

    def surrogate(theta):
        return jnp.mean(jnp.exp(small.dist(theta).log_prob(actions) - old_log_probs) * advantages)

    grad = jax.grad(surrogate)(small.theta)
    fvp = fisher_vector_product(small.dist, small.theta, damping)
    n = small.theta.size
    result = jax.jit(lambda g: natural_step(g, fvp, delta, 4 * n, 1e-14))(grad)

    g = np.asarray(grad, np.float64)
    direction = np.linalg.solve(fisher, g)
    assert relative_error(result.direction, direction) < 1e-3
    s = np.asarray(result.step, np.float64)
    np.testing.assert_allclose(0.5 * s @ fisher @ s, delta, rtol=1e-3)
    closed_form = math.sqrt(2 * delta / (g @ direction)) * direction
    assert relative_error(s, closed_form) < 1e-3
    np.testing.assert_allclose(float(result.expected_gain), g @ s, rtol=1e-4)
    assert float(result.expected_gain) > 0  # F is positive definite, so the step ascends


# ---------------------------------------------------------------------------
# Backtracking line search on constructed problems
# ---------------------------------------------------------------------------

G = jnp.asarray([1.0, -0.5, 0.25, 2.0])
M = jnp.diag(jnp.asarray([1.0, 2.0, 0.5, 3.0]))
THETA0 = jnp.asarray([0.3, -0.2, 0.1, 0.0])


def quad_kl(theta):
    """A KL-like function of the displacement: 0 at THETA0, quadratic plus a quartic term."""
    d = theta - THETA0
    return 0.5 * d @ M @ d + 2.0 * (d @ d) ** 2


def concave_surrogate(curvature):
    """Improves along G near THETA0 but falls once the step is longer than |G| / curvature."""
    def surrogate(theta):
        d = theta - THETA0
        return G @ d - curvature * d @ d
    return surrogate


def search(step, curvature=4.0, delta=0.01, coef=0.8, max_backtracks=10):
    surrogate = concave_surrogate(curvature)
    fn = jax.jit(lambda s: backtracking_line_search(surrogate, quad_kl, THETA0, s, delta, coef, max_backtracks))
    return fn(step)


def conditions(j, step, curvature=4.0, delta=0.01, coef=0.8):
    """(gain, kl, ok) of candidate theta0 + coef^j step, computed in float64 NumPy."""
    d = coef**j * np.asarray(step, np.float64)
    g, m = np.asarray(G, np.float64), np.asarray(M, np.float64)
    gain = g @ d - curvature * d @ d
    kl = 0.5 * d @ m @ d + 2.0 * (d @ d) ** 2
    return gain, kl, (gain > 0) and (kl <= delta)


def test_line_search_accepts_a_good_full_step_unchanged():
    """A full step that improves the surrogate within the KL radius is taken as is (j = 0)."""
    step = 0.02 * G / jnp.linalg.norm(G)
    gain, kl, ok = conditions(0, step)
    assert ok and kl < 0.01
    result = search(step)
    assert bool(result.accepted) and int(result.backtracks) == 0
    np.testing.assert_allclose(result.params, THETA0 + step, rtol=1e-6)
    np.testing.assert_allclose(float(result.surrogate_gain), gain, rtol=1e-4)
    np.testing.assert_allclose(float(result.kl), kl, rtol=1e-4)


@pytest.mark.parametrize("scale, curvature, binding", [
    (0.1, 4.0, "kl"), (0.3, 4.0, "kl"), (0.6, 4.0, "kl"),  # the true KL exceeds delta
    (0.05, 200.0, "gain"),  # within the KL radius, but the surrogate falls
])
def test_line_search_shrinks_an_overlong_step_to_the_first_admissible_fraction(scale, curvature, binding):
    """A full step that violates a condition is shrunk by coef^j for the FIRST j
    meeting both (surrogate gain > 0 and true KL <= delta); candidate j-1 fails one."""
    step = scale * G / jnp.linalg.norm(G)
    assert not conditions(0, step, curvature)[2]
    expected_j = next(j for j in range(11) if conditions(j, step, curvature)[2])
    assert expected_j >= 1
    gain_before, kl_before, _ = conditions(expected_j - 1, step, curvature)
    assert (kl_before > 0.01) if binding == "kl" else (gain_before <= 0 and kl_before <= 0.01)
    result = search(step, curvature)
    j = int(result.backtracks)
    assert bool(result.accepted)
    assert j == expected_j, f"accepted fraction 0.8^{j}, first admissible is 0.8^{expected_j}"
    np.testing.assert_allclose(result.params, THETA0 + 0.8**j * step, rtol=1e-5, atol=1e-7)
    gain, kl, ok = conditions(j, step, curvature)
    assert ok and float(result.kl) <= 0.01 and float(result.surrogate_gain) > 0
    np.testing.assert_allclose(float(result.kl), kl, rtol=1e-3)
    np.testing.assert_allclose(float(result.surrogate_gain), gain, rtol=1e-3)
    # The accepted parameters meet the conditions when re-evaluated from scratch.
    new = np.asarray(result.params, np.float64)
    assert quad_kl(jnp.asarray(new)) <= 0.01 + 1e-7
    assert not conditions(j - 1, step, curvature)[2]


def test_line_search_rejects_when_no_fraction_improves():
    """A step pointing downhill on the surrogate never improves it: the old
    parameters are returned, not accepted, with zero gain and KL."""
    step = -0.05 * G / jnp.linalg.norm(G)
    assert all(not conditions(j, step, curvature=0.0)[2] for j in range(11))
    result = search(step, curvature=0.0)
    assert not bool(result.accepted)
    np.testing.assert_array_equal(result.params, THETA0)
    assert float(result.surrogate_gain) == 0.0 and float(result.kl) == 0.0


def test_line_search_rejects_when_the_step_is_too_long_for_max_backtracks():
    """If the first admissible fraction lies beyond max_backtracks, nothing is accepted."""
    step = 1.2 * G / jnp.linalg.norm(G)
    first = next(j for j in range(40) if conditions(j, step)[2])
    result = search(step, max_backtracks=first - 1)
    assert not bool(result.accepted)
    np.testing.assert_array_equal(result.params, THETA0)
    accepted = search(step, max_backtracks=first)
    assert bool(accepted.accepted) and int(accepted.backtracks) == first


# ---------------------------------------------------------------------------
# NPG / TRPO end to end on CartPole batches
# ---------------------------------------------------------------------------

COMMON = ("env=CartPole-v1", "num_envs=4", "algo.num_steps=64", "algo.vf_minibatches=4",
          "algo.hidden_sizes=[32,32]", "total_timesteps=2560")


def independent_kl_and_gain(policy, cfg, old_params, new_actor, batch):
    """Mean KL(pi_old || pi_new) and surrogate gain L(new) - L(old) on the batch,
    with the advantages recomputed from the (pre-update) critic."""
    f64 = lambda x: np.asarray(x, np.float64)
    obs = batch.obs.reshape(-1, batch.obs.shape[-1])
    actions = batch.actions.reshape(-1)
    old_logits = f64(policy.dist(old_params["actor"], obs).logits)
    new_logits = f64(policy.dist(new_actor, obs).logits)
    logp = old_logits - np.logaddexp.reduce(old_logits, -1, keepdims=True)
    logq = new_logits - np.logaddexp.reduce(new_logits, -1, keepdims=True)
    kl = float(np.mean(np.sum(np.exp(logp) * (logp - logq), -1)))

    values = f64(policy.value(old_params["critic"], batch.obs))
    next_values = f64(policy.value(old_params["critic"], batch.next_obs))
    adv = gae_by_hand(f64(batch.rewards), values, next_values, f64(batch.terminated), f64(batch.dones),
                    cfg.algo.gamma, cfg.algo.gae_lambda).reshape(-1)
    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    idx = np.arange(len(actions))
    behaviour = f64(batch.log_probs).reshape(-1)
    ratio_new = np.exp(logq[idx, actions] - behaviour)
    ratio_old = np.exp(logp[idx, actions] - behaviour)
    return kl, float(np.mean((ratio_new - ratio_old) * adv))


class CartPoleLab:
    """Collects batches with the JAX CartPole and applies NPG/TRPO updates."""

    def __init__(self, *overrides):
        base = build(compose_config(*overrides, *COMMON))
        self._updates = {overrides: (base.cfg, jax.jit(base.algorithm.update))}
        self.policy, self.env = base.policy, base.env
        self.rollout = jax.jit(make_rollout(base.env, base.policy, identity_normalizer, base.cfg.algo.num_steps))
        self.state = init_train_state(base, jax.random.PRNGKey(0))
        obs, self.env_state = jax.vmap(base.env.reset)(jax.random.split(jax.random.PRNGKey(1), 4))
        self.obs = obs

    def algorithm(self, *overrides):
        if overrides not in self._updates:
            setup = build(compose_config(*overrides, *COMMON))
            self._updates[overrides] = (setup.cfg, jax.jit(setup.algorithm.update))
        return self._updates[overrides]

    def collect(self, params, key):
        """The next batch of the ongoing environments."""
        self.env_state, self.obs, batch = self.rollout(params, self.state.obs_stats, self.env_state, self.obs, key)
        return batch

    def fresh_batch(self, params, key):
        """A batch from freshly reset environments: the same whatever ran before."""
        k_reset, k_roll = jax.random.split(key)
        obs, env_state = jax.vmap(self.env.reset)(jax.random.split(k_reset, self.obs.shape[0]))
        return self.rollout(params, self.state.obs_stats, env_state, obs, k_roll)[2]


# Without damping the step fills the quadratic KL model exactly, and on CartPole the
# true KL of the full step overshoots delta: the line search has work to do.
TRPO = ("algo=trpo", "algo.delta=0.02", "algo.damping=0.0")
NPG = ("algo=npg", "algo.delta=0.02", "algo.damping=0.0")


@pytest.fixture(scope="module")
def lab():
    return CartPoleLab(*TRPO)


def test_trpo_updates_keep_kl_within_delta_and_improve_the_surrogate(lab):
    """On fresh CartPole batches, whenever TRPO accepts a step the mean KL between
    old and new policy (recomputed from the parameters) is at most delta and the
    surrogate gain (recomputed with independently computed GAE) is non-negative."""
    cfg, update = lab.algorithm(*TRPO)
    delta = cfg.algo.delta
    state = lab.state
    accepted = 0
    for i in range(3):
        batch = lab.collect(state.params, jax.random.PRNGKey(100 + i))
        new_state, metrics = update(state, batch, jax.random.PRNGKey(200 + i))
        kl, gain = independent_kl_and_gain(lab.policy, cfg, state.params, new_state.params["actor"], batch)
        if float(metrics["natural/accepted"]) == 1.0:
            accepted += 1
            assert kl <= delta * (1 + 1e-4), f"iteration {i}: KL {kl} > delta {delta}"
            assert gain >= 0, f"iteration {i}: surrogate gain {gain} < 0"
            np.testing.assert_allclose(float(metrics["natural/kl"]), kl, rtol=1e-2, atol=1e-6)
            np.testing.assert_allclose(float(metrics["natural/surrogate_gain"]), gain, rtol=1e-2, atol=1e-6)
        else:
            assert kl == 0.0 and float(metrics["natural/surrogate_gain"]) == 0.0
        state = new_state
    assert accepted >= 1, "TRPO accepted no step in three iterations"


def test_trpo_line_search_contains_what_npg_overshoots(lab):
    """NPG's full step is sized by the quadratic model of the KL and on a real batch
    its true KL exceeds delta. TRPO computes the same step on the same batch, so it
    must backtrack: its new parameters are theta + coef^j (theta_NPG - theta) for
    the first j whose true KL is within delta and whose surrogate gain is positive."""
    state = lab.state
    batch = lab.fresh_batch(state.params, jax.random.PRNGKey(7))
    key = jax.random.PRNGKey(8)
    cfg_npg, npg = lab.algorithm(*NPG)
    cfg, trpo = lab.algorithm(*TRPO)
    delta, coef = cfg.algo.delta, cfg.algo.backtrack_coef
    npg_state, npg_metrics = npg(state, batch, key)
    npg_kl, _ = independent_kl_and_gain(lab.policy, cfg_npg, state.params, npg_state.params["actor"], batch)
    assert npg_kl > delta, f"NPG's full step (KL {npg_kl}) did not overshoot delta {delta}"
    np.testing.assert_allclose(float(npg_metrics["natural/kl"]), npg_kl, rtol=1e-2)

    trpo_state, metrics = trpo(state, batch, key)
    kl, gain = independent_kl_and_gain(lab.policy, cfg, state.params, trpo_state.params["actor"], batch)
    assert kl <= delta * (1 + 1e-4) and gain >= 0, (kl, gain)
    accepted = float(metrics["natural/accepted"]) == 1.0
    j = int(metrics["natural/backtracks"]) if accepted else cfg.algo.max_backtracks + 1
    assert j >= 1, "the full step violates the KL bound, so TRPO must have backtracked"

    old, unravel = ravel_pytree(state.params["actor"])
    full_step = ravel_pytree(npg_state.params["actor"])[0] - old
    new = ravel_pytree(trpo_state.params["actor"])[0]
    if accepted:
        np.testing.assert_allclose(new, old + coef**j * full_step, rtol=1e-4, atol=1e-5)
    else:
        np.testing.assert_array_equal(new, old)
    for earlier in range(j):  # every larger fraction (all of them, if rejected) fails a condition
        kl_j, gain_j = independent_kl_and_gain(lab.policy, cfg, state.params,
                                               unravel(old + coef**earlier * full_step), batch)
        assert kl_j > delta or gain_j <= 0, f"fraction {coef}^{earlier} was admissible (KL {kl_j}, gain {gain_j})"
