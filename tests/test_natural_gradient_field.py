"""The exact LQR quantities behind scripts/natural_gradient_field.py, checked against theory.

J against an independently derived closed form and against sampled returns;
the gradient against finite differences and a Monte-Carlo score-function
estimate; the Fisher matrix against a Monte-Carlo E[grad log p(tau) grad log
p(tau)^T]; the Peters & Schaal claim about the two fields as exploration
shrinks; and the script end to end.

Monte-Carlo checks pass when the estimate is within 4 standard errors of the
exact value, and each also requires the standard error to be a small fraction
of the value so that the comparison has the power to catch a wrong formula.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "natural_gradient_field.py"
Z_TOL = 4.0  # standard errors
N_TRAJECTORIES = 200_000


def load_script():
    spec = importlib.util.spec_from_file_location("natural_gradient_field", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ngf = load_script()
T = ngf.HORIZON


def closed_form_return(k: float, sigma: float, horizon: int = T, s0_var: float = 0.0) -> float:
    """J from the geometric-series solution m_t = s0_var c^t + sigma^2 (c^t - 1) / (c - 1), c = (1 + k)^2."""
    c = (1.0 + k) ** 2
    t = np.arange(horizon, dtype=np.float64)
    series = t if c == 1.0 else (c**t - 1.0) / (c - 1.0)
    moments = s0_var * c**t + sigma**2 * series
    return float(-np.sum((1.0 + k**2) * moments + sigma**2))


def best_gain_closed_form(horizon: int = T) -> float:
    """argmax_k J to 1e-5: a 1e-3 grid over [-2, 0], then a 1e-5 grid around its best point.

    With s_0 = 0, J = -sigma^2 H(k), so sigma does not matter.
    """
    coarse = np.linspace(-2.0, 0.0, 2001)
    k0 = coarse[np.argmax([closed_form_return(k, 1.0, horizon) for k in coarse])]
    fine = np.linspace(k0 - 1e-3, k0 + 1e-3, 201)
    return float(fine[np.argmax([closed_form_return(k, 1.0, horizon) for k in fine])])


def gaussian_scores(k, sigma, s, a):
    """d/dk and d/dsigma of log N(a; k s, sigma^2)."""
    noise = a - k * s
    return noise * s / sigma**2, (noise**2 - sigma**2) / sigma**3


def simulate(k: float, sigma: float, n: int, seed: int, s0_var: float = 0.0):
    """Sample trajectories of s' = s + a, a ~ N(k s, sigma^2); per-step scores (n, T, 2) and rewards (n, T)."""
    rng = np.random.default_rng(seed)
    s = np.sqrt(s0_var) * rng.standard_normal(n)
    scores, rewards = np.empty((n, T, 2)), np.empty((n, T))
    for t in range(T):
        a = k * s + sigma * rng.standard_normal(n)
        scores[:, t, 0], scores[:, t, 1] = gaussian_scores(k, sigma, s, a)
        rewards[:, t] = -s**2 - a**2
        s = s + a
    return scores, rewards


def mean_and_se(x: np.ndarray):
    return x.mean(axis=0), x.std(axis=0, ddof=1) / np.sqrt(x.shape[0])


POINTS = [(0.0, 0.5, 0.0), (-1.2, 0.3, 0.0), (-0.3, 0.4, 1.0)]  # (k, sigma, s0_var)


# ---------------------------------------------------------------------------
# J and its gradient
# ---------------------------------------------------------------------------


def test_gaussian_scores_are_the_derivatives_of_the_log_density():
    def log_density(k, sigma, s, a):
        return -0.5 * ((a - k * s) / sigma) ** 2 - jnp.log(sigma)

    for k, sigma, s, a in [(-0.7, 0.3, 1.3, -0.2), (0.4, 1.7, -0.5, 2.0)]:
        expected = jax.grad(log_density, argnums=(0, 1))(k, sigma, s, a)
        np.testing.assert_allclose(gaussian_scores(k, sigma, s, a), expected, rtol=1e-5)


@pytest.mark.parametrize("k, sigma, s0_var", [*POINTS, (-1.0, 0.7, 0.0), (0.3, 0.2, 2.0)])
def test_expected_return_matches_the_closed_form(k, sigma, s0_var):
    got = float(ngf.expected_return(k, sigma, T, s0_var))
    np.testing.assert_allclose(got, closed_form_return(k, sigma, T, s0_var), rtol=1e-5)


@pytest.mark.parametrize("k, sigma, s0_var", POINTS)
def test_gradient_matches_central_finite_differences(k, sigma, s0_var):
    with jax.enable_x64(True):
        grad = np.asarray(ngf.vanilla_gradient(k, sigma, T, s0_var))
        h = 1e-5
        fd_k = (ngf.expected_return(k + h, sigma, T, s0_var) - ngf.expected_return(k - h, sigma, T, s0_var)) / (2 * h)
        fd_s = (ngf.expected_return(k, sigma + h, T, s0_var) - ngf.expected_return(k, sigma - h, T, s0_var)) / (2 * h)
    assert grad.dtype == np.float64
    np.testing.assert_allclose(grad, [float(fd_k), float(fd_s)], rtol=1e-7)


@pytest.mark.parametrize("k, sigma, s0_var", POINTS)
def test_return_and_gradient_match_monte_carlo(k, sigma, s0_var):
    scores, rewards = simulate(k, sigma, N_TRAJECTORIES, seed=1, s0_var=s0_var)
    returns = rewards.sum(axis=1)
    mean, se = mean_and_se(returns)
    exact = float(ngf.expected_return(k, sigma, T, s0_var))
    assert se < 0.02 * abs(exact)
    assert abs(mean - exact) < Z_TOL * se, (mean, exact, se)

    # Score-function estimator with reward-to-go: sum_t grad log pi_t * sum_{t' >= t} r_t'.
    reward_to_go = np.cumsum(rewards[:, ::-1], axis=1)[:, ::-1]
    per_trajectory = np.einsum("ntp,nt->np", scores, reward_to_go)
    mc, mc_se = mean_and_se(per_trajectory)
    exact_grad = np.asarray(ngf.vanilla_gradient(k, sigma, T, s0_var))
    assert np.all(mc_se < 0.05 * np.abs(exact_grad)), (mc_se, exact_grad)
    z = np.abs(mc - exact_grad) / mc_se
    assert np.all(z < Z_TOL), (mc, exact_grad, z)


# ---------------------------------------------------------------------------
# Fisher information
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("k, sigma, s0_var", POINTS)
def test_fisher_matches_monte_carlo_outer_product_of_trajectory_scores(k, sigma, s0_var):
    scores, _ = simulate(k, sigma, N_TRAJECTORIES, seed=2, s0_var=s0_var)
    trajectory_score = scores.sum(axis=1)  # grad log p(tau): the dynamics do not depend on theta
    outer = np.einsum("ni,nj->nij", trajectory_score, trajectory_score)
    mc, se = mean_and_se(outer)
    exact = np.asarray(ngf.fisher(k, sigma, T, s0_var))
    assert np.all(se[[0, 1], [0, 1]] < 0.03 * np.diag(exact))
    assert np.all(np.abs(mc - exact) < Z_TOL * se), (mc, exact, se)
    # The cross term is zero in theory; require the estimate to pin it near zero in correlation units too.
    assert abs(mc[0, 1]) / np.sqrt(mc[0, 0] * mc[1, 1]) < 0.02


def test_natural_gradient_solves_the_fisher_system():
    for k, sigma, s0_var in POINTS:
        f = np.asarray(ngf.fisher(k, sigma, T, s0_var), np.float64)
        np.testing.assert_allclose(f @ np.asarray(ngf.natural_gradient(k, sigma, T, s0_var)),
                                   np.asarray(ngf.vanilla_gradient(k, sigma, T, s0_var)), rtol=1e-5)


# ---------------------------------------------------------------------------
# The claim: vanilla gradients shrink exploration, natural gradients fix the gain
# ---------------------------------------------------------------------------

SIGMAS = (0.2, 0.1, 0.05)


def test_best_gain_matches_an_independent_grid_search():
    assert ngf.optimal_gain(0.3) == pytest.approx(best_gain_closed_form(), abs=1e-3)
    # With s_0 = 0 the best gain does not depend on sigma.
    assert ngf.optimal_gain(0.05) == pytest.approx(ngf.optimal_gain(0.9), abs=1e-3)


@pytest.mark.parametrize("k", [0.0, -1.5])  # either side of k* ~ -0.58
def test_vanilla_gradient_is_dominated_by_sigma_as_exploration_shrinks(k):
    grads = [np.asarray(ngf.vanilla_gradient(k, s)) for s in SIGMAS]
    ratios = np.array([abs(g[1]) / abs(g[0]) for g in grads])
    assert all(g[1] < 0 for g in grads)  # it always asks for less exploration
    assert np.all(np.diff(ratios) > 0)
    assert ratios[-1] > 5.0
    # J = -sigma^2 H(k) makes the ratio 2 H / (sigma |H'|): it grows like 1/sigma, without bound.
    np.testing.assert_allclose(ratios * np.array(SIGMAS), ratios[0] * SIGMAS[0], rtol=1e-3)


@pytest.mark.parametrize("k", [0.0, -1.5])
def test_natural_gradient_keeps_pointing_at_the_best_gain(k):
    k_star = best_gain_closed_form()
    for sigma in SIGMAS:
        nat = np.asarray(ngf.natural_gradient(k, sigma))
        assert np.sign(nat[0]) == np.sign(k_star - k)
        assert abs(nat[0]) > abs(nat[1])  # within 45 degrees of the k-axis


def test_with_a_random_start_the_vanilla_gradient_turns_toward_the_gain_instead():
    """Why the script starts at s_0 = 0: with s_0 ~ N(0, 1) the claim reverses at small sigma."""
    ratios = [abs(g[1]) / abs(g[0]) for g in (np.asarray(ngf.vanilla_gradient(0.0, s, T, 1.0)) for s in SIGMAS)]
    assert np.all(np.diff(ratios) < 0)
    assert ratios[-1] < 0.5


# ---------------------------------------------------------------------------
# The script
# ---------------------------------------------------------------------------


def test_script_writes_a_png(tmp_path):
    out = tmp_path / "field.png"
    result = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width > 800 and height > 300
    assert len(data) > 20_000


def test_script_rejects_a_one_step_horizon(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "x.png"), "--horizon", "1"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "--horizon" in result.stderr
    assert not (tmp_path / "x.png").exists()
