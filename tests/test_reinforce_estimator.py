"""The REINFORCE estimator against the exact policy gradient of a small MDP.

A 3-state, 2-action episodic MDP with a finite horizon and a tabular softmax
policy has an objective J(theta) computable exactly by backward induction, so
jax.grad of it is the true policy gradient. The estimator is the gradient of
the project's ``actor_critic_loss`` (value_targets=None) with reward-to-go from
``discounted_returns``, averaged over sampled episodes; it must agree with the
exact gradient within a few standard errors and must not agree with a wrong one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import compose_config
from pgrun.advantages import discounted_returns
from pgrun.algos import reinforce
from pgrun.algos.common import Batch, actor_critic_loss
from pgrun.algos.reinforce import early_episode_mask, reinforce_loss, reward_to_go
from pgrun.envs import episode_time_limit
from pgrun.config import ConfigError, validate
from pgrun.distributions import Categorical
from pgrun.rollout import identity_normalizer, make_rollout
from pgrun.train import build, init_train_state

S, A, H = 3, 2, 4  # states, actions, horizon (steps per episode at most)

# P[s, a] = probabilities of next state 0, 1, 2 or termination.
P = np.array([
    [[0.6, 0.2, 0.1, 0.1], [0.1, 0.5, 0.2, 0.2]],
    [[0.2, 0.2, 0.5, 0.1], [0.3, 0.1, 0.1, 0.5]],
    [[0.1, 0.6, 0.1, 0.2], [0.4, 0.1, 0.2, 0.3]],
])
R = np.array([[1.0, 0.0], [-0.5, 2.0], [0.5, -1.0]])  # reward r(s, a)
D0 = np.array([0.5, 0.3, 0.2])  # start-state distribution
THETA = np.array([[0.3, -0.2], [0.0, 0.5], [-0.4, 0.1]])  # policy logits per state


@dataclass(frozen=True)
class TabularPolicy:
    """pi(a|s) = softmax(theta[s]) with one-hot observations; the Policy interface
    actor_critic_loss uses (``dist`` over actor params, ``value`` over critic params)."""

    def dist(self, actor_params, obs):
        return Categorical(obs @ actor_params["logits"])

    def value(self, critic_params, obs):
        return jnp.zeros(obs.shape[:-1])


POLICY = TabularPolicy()


def exact_objective(theta, gamma):
    """J = E[sum_{t<H} gamma^t r_t] by backward induction over the horizon."""
    pi = jax.nn.softmax(theta, axis=-1)
    p_next = jnp.asarray(P[:, :, :S])  # termination has value 0
    v = jnp.zeros(S)
    for _ in range(H):
        q = jnp.asarray(R) + gamma * p_next @ v  # [S, A]
        v = jnp.sum(pi * q, axis=-1)
    return jnp.asarray(D0) @ v


def sample_episodes(theta, n, rng):
    """n independent episodes, one per column of ``[H, n]`` arrays; steps after
    an episode's end are padding (mask 0, reward 0, done 1)."""
    pi = np.exp(theta) / np.exp(theta).sum(-1, keepdims=True)
    states = rng.choice(S, size=n, p=D0)
    alive = np.ones(n, bool)
    obs = np.zeros((H, n, S), np.float32)
    actions = np.zeros((H, n), np.int32)
    rewards = np.zeros((H, n), np.float32)
    dones = np.ones((H, n), bool)
    mask = np.zeros((H, n), np.float32)
    for t in range(H):
        u = rng.random(n)
        act = (u > pi[states, 0]).astype(np.int32)  # two actions
        cum = np.cumsum(P[states, act], axis=-1)
        nxt = (rng.random(n)[:, None] > cum).sum(-1)  # 0..S, S = terminated
        obs[t, np.arange(n), states] = 1.0
        actions[t] = act
        rewards[t] = np.where(alive, R[states, act], 0.0)
        mask[t] = alive
        ended = (nxt == S) | (t == H - 1)
        dones[t] = np.where(alive, ended, True)
        alive = alive & ~ended
        states = np.where(nxt == S, 0, nxt)
    return obs, actions, rewards, dones, mask


def reinforce_gradients(theta, gamma, n, seed, discount_scores=True):
    """Per-episode estimates sum_t gamma^t grad log pi(a_t|s_t) G_t, each read off the
    gradient of actor_critic_loss on that episode, and the same loss on the whole batch."""
    obs, actions, rewards, dones, mask = sample_episodes(theta, n, np.random.default_rng(seed))
    returns = discounted_returns(jnp.asarray(rewards), jnp.zeros((H, n)), jnp.asarray(dones), jnp.asarray(dones),
                                 gamma)
    # gamma^t weights the score at step t for the discounted objective (1 when gamma = 1).
    advantages = returns * gamma ** jnp.arange(H, dtype=jnp.float32)[:, None] if discount_scores else returns
    params = {"actor": {"logits": jnp.asarray(theta, jnp.float32)}, "critic": {}}

    def loss_grad(o, a, adv, m):
        grads, _ = jax.grad(actor_critic_loss, argnums=1, has_aux=True)(POLICY, params, o, a, adv, None, 0.0, 0.0, m)
        return grads["actor"]["logits"]

    per_episode = jax.jit(jax.vmap(loss_grad, in_axes=(1, 1, 1, 1)))(
        jnp.asarray(obs), jnp.asarray(actions), advantages, jnp.asarray(mask))
    # The loss averages over the episode's steps and is a loss: undo both.
    lengths = mask.sum(0)
    per_episode = -np.asarray(per_episode, np.float64) * lengths[:, None, None]
    flat = lambda x: x.reshape((-1,) + x.shape[2:])
    batch_grad = jax.jit(loss_grad)(flat(jnp.asarray(obs)), flat(jnp.asarray(actions)), flat(advantages),
                                    flat(jnp.asarray(mask)))
    batch_estimate = -np.asarray(batch_grad, np.float64) * lengths.sum() / n
    return per_episode.reshape(n, -1), batch_estimate.reshape(-1)


@pytest.mark.parametrize("gamma", [1.0, 0.9])
def test_sampled_returns_match_the_exact_objective(gamma):
    """Sanity check of the harness: the episode sampler and the backward induction
    describe the same MDP (mean discounted return within 4 standard errors of J)."""
    _, _, rewards, _, _ = sample_episodes(THETA, 50_000, np.random.default_rng(11))
    returns = (rewards * gamma ** np.arange(H)[:, None]).sum(0)
    exact = float(exact_objective(jnp.asarray(THETA), gamma))
    assert abs(returns.mean() - exact) < 4 * returns.std(ddof=1) / math.sqrt(returns.size)


@pytest.mark.parametrize("gamma", [1.0, 0.9])
def test_reinforce_estimator_matches_the_exact_policy_gradient(gamma):
    """The Monte-Carlo mean over episodes agrees with jax.grad of the exact J within
    4 standard errors per component (SE from the per-episode estimates, which are
    i.i.d.; 6 components, so a false failure has probability < 1e-3 under the CLT),
    while a sign-flipped gradient lies far outside that tolerance."""
    n = 40_000
    per_episode, batch_estimate = reinforce_gradients(THETA, gamma, n, seed=int(gamma * 10))
    exact = np.asarray(jax.grad(exact_objective)(jnp.asarray(THETA), gamma), np.float64).reshape(-1)
    estimate = per_episode.mean(0)
    stderr = per_episode.std(0, ddof=1) / math.sqrt(n)
    # The batch loss over all episodes is the same estimator (normalised by total steps);
    # float32 sums over ~10^5 steps agree to about 1e-4, far below the standard error.
    np.testing.assert_allclose(batch_estimate, estimate, rtol=1e-3, atol=1e-6)
    assert np.all(np.abs(batch_estimate - estimate) < 0.1 * stderr)
    z = np.abs(estimate - exact) / stderr
    assert z.max() < 4.0, f"estimate {estimate} vs exact {exact} (z = {z})"
    # Power: the exact gradient is large compared with the noise, so a wrong one is caught.
    assert np.abs(exact).max() > 10 * stderr.max()
    z_flipped = np.abs(estimate + exact) / stderr
    assert z_flipped.max() > 4.0


def test_dropping_the_discount_on_the_score_is_detected():
    """Power check: grad J_gamma = E[sum_t gamma^t grad log pi G_t]. Weighting the
    scores by G_t alone (the common practice, and what make_reinforce feeds the
    loss) estimates a different vector for gamma < 1 (here about 10% larger), and
    the comparison above is sharp enough to reject it."""
    n = 40_000
    per_episode, _ = reinforce_gradients(THETA, 0.9, n, seed=4, discount_scores=False)
    exact = np.asarray(jax.grad(exact_objective)(jnp.asarray(THETA), 0.9), np.float64).reshape(-1)
    z = np.abs(per_episode.mean(0) - exact) / (per_episode.std(0, ddof=1) / math.sqrt(n))
    assert z.max() > 4.0


def test_reinforce_estimate_is_not_the_gradient_of_a_different_policy():
    """Power check: the estimate at theta is distinguishable from the exact gradient
    at a moderately different theta (the estimator tracks the policy it samples)."""
    n = 40_000
    per_episode, _ = reinforce_gradients(THETA, 1.0, n, seed=3)
    other = np.asarray(jax.grad(exact_objective)(jnp.asarray(THETA + 0.8 * np.array([[1, -1], [-1, 1], [1, -1]])),
                                                 1.0), np.float64).reshape(-1)
    z = np.abs(per_episode.mean(0) - other) / (per_episode.std(0, ddof=1) / math.sqrt(n))
    assert z.max() > 4.0


# ---------------------------------------------------------------------------
# baseline=none: episodes that start early enough in the batch
# ---------------------------------------------------------------------------


def early_mask_by_loop(dones: np.ndarray, time_limit: int) -> np.ndarray:
    """1 at every step of an episode that starts at s >= 1 (a done at s - 1) with
    s + time_limit <= steps, from s to its end (the next done, or the batch's end)."""
    steps, envs = dones.shape
    mask = np.zeros((steps, envs), np.float32)
    for e in range(envs):
        for s in range(1, steps - time_limit + 1):
            if dones[s - 1, e]:
                t = s
                while t < steps:
                    mask[t, e] = 1.0
                    if dones[t, e]:
                        break
                    t += 1
    return mask


@pytest.mark.parametrize("p_done", [0.0, 0.05, 0.3, 1.0])
@pytest.mark.parametrize("time_limit", [1, 4, 36, 37])
def test_early_episode_mask_matches_a_plain_loop(p_done, time_limit):
    rng = np.random.default_rng(int(p_done * 100) + time_limit)
    dones = rng.random((37, 6)) < p_done
    dones[:, 1] = False  # no start inside the batch: nothing is used
    dones[0, 2], dones[1:, 2] = True, False  # one episode from step 1 to the end
    dones[-1, 3] = True  # a done on the last step starts nothing inside the batch
    mask = np.asarray(early_episode_mask(jnp.asarray(dones), time_limit))
    np.testing.assert_array_equal(mask, early_mask_by_loop(dones, time_limit))


def simulate_windows(theta, num_windows: int, num_steps: int, num_envs: int, rng):
    """Consecutive batches of ``num_steps`` steps as the runner collects them: each
    environment's state carries over from one batch to the next, and an episode that
    ends (terminated, or truncated after H steps) is followed at once by a fresh one
    from D0. Returns ``(obs, actions, rewards, terminated, dones)``, each
    ``[num_windows, num_steps, num_envs, ...]``."""
    pi = np.exp(theta) / np.exp(theta).sum(-1, keepdims=True)
    total, envs = num_windows * num_steps, np.arange(num_envs)
    obs = np.zeros((total, num_envs, S), np.float32)
    actions = np.zeros((total, num_envs), np.int32)
    rewards = np.zeros((total, num_envs), np.float32)
    terminated = np.zeros((total, num_envs), bool)
    dones = np.zeros((total, num_envs), bool)
    states, elapsed = rng.choice(S, size=num_envs, p=D0), np.zeros(num_envs, int)
    for t in range(total):
        act = (rng.random(num_envs) > pi[states, 0]).astype(np.int32)
        nxt = (rng.random(num_envs)[:, None] > np.cumsum(P[states, act], axis=-1)).sum(-1)  # S = terminated
        obs[t, envs, states], actions[t], rewards[t] = 1.0, act, R[states, act]
        elapsed += 1
        terminated[t] = nxt == S
        dones[t] = terminated[t] | (elapsed == H)
        states = np.where(dones[t], rng.choice(S, size=num_envs, p=D0), nxt)
        elapsed = np.where(dones[t], 0, elapsed)
    window = lambda x: x.reshape((num_windows, num_steps) + x.shape[1:])
    return tuple(map(window, (obs, actions, rewards, terminated, dones)))


def window_residuals(theta, num_windows: int, num_steps: int, num_envs: int, seed: int):
    """Per (batch, environment): ``num_steps`` x the negative gradient of the project's
    REINFORCE loss (baseline=none, gamma = 1, the sum of the used steps' terms
    grad log pi(a_t|s_t) G_t), minus n x grad J, n the number of episodes used.

    Each used episode is chosen before its own first action and, given that, is a
    fresh episode whose term has mean grad J; so an unbiased estimator gives
    residuals of mean 0 (a martingale-difference sequence along each environment,
    uncorrelated, so the usual standard error of their mean holds)."""
    obs, actions, rewards, terminated, dones = simulate_windows(theta, num_windows, num_steps, num_envs,
                                                                np.random.default_rng(seed))
    columns = lambda x: jnp.asarray(np.moveaxis(x, 2, 1).reshape((-1, num_steps, 1) + x.shape[3:]))
    obs, actions, rewards, terminated, dones = map(columns, (obs, actions, rewards, terminated, dones))
    params = {"actor": {"logits": jnp.asarray(theta, jnp.float32)}, "critic": {}}
    hparams = {"gamma": 1.0, "vf_coef": 0.0, "ent_coef": 0.0}

    def column(o, a, r, term, d):
        batch = Batch(obs=o, actions=a, log_probs=jnp.zeros_like(r), rewards=r, terminated=term, dones=d, next_obs=o)
        grads, _ = jax.grad(reinforce_loss, has_aux=True)(params, POLICY, batch, hparams, "none", H, False)
        _, _, mask = reward_to_go(POLICY, params, batch, 1.0, "none", H)
        return -grads["actor"]["logits"].reshape(-1) * num_steps, (mask * d).sum()

    sums, used = jax.jit(jax.vmap(column))(obs, actions, rewards, terminated, dones)
    exact = np.asarray(jax.grad(exact_objective)(jnp.asarray(theta), 1.0), np.float64).reshape(-1)
    used = np.asarray(used, np.float64)
    return np.asarray(sums, np.float64) - used[:, None] * exact, used, exact


def former_mask(dones: jax.Array, time_limit: int) -> jax.Array:
    """The rule baseline=none used before: the steps of the episodes that end inside
    the batch, including the tail of one begun in the previous batch."""
    ends_later = jnp.flip(jnp.cumsum(jnp.flip(dones.astype(jnp.int32), 0), 0), 0)
    return (ends_later > 0).astype(jnp.float32)


def unbiased_z(residuals: np.ndarray) -> np.ndarray:
    """|mean| / standard error of each component of the residuals."""
    return np.abs(residuals.mean(0)) / (residuals.std(0, ddof=1) / math.sqrt(len(residuals)))


def test_no_baseline_estimator_is_unbiased_across_consecutive_batches():
    """On the rollout layout (state carried across batches, auto-reset, time limit H),
    the mean of the baseline=none estimate over many batches equals
    E[episodes used] / (num_envs * num_steps) x grad J: its residuals against the
    exact gradient have mean 0 within 4 standard errors per component (6 components,
    a false failure has probability < 1e-3), and the exact gradient stands far above
    that tolerance."""
    residuals, used, exact = window_residuals(THETA, num_windows=40, num_steps=2 * H, num_envs=1000, seed=21)
    assert used.mean() > 0.5  # most batches use an episode
    z = unbiased_z(residuals)
    assert z.max() < 4.0, f"z = {z}"
    stderr = residuals.std(0, ddof=1) / math.sqrt(len(residuals))
    assert np.abs(exact).max() * used.mean() > 10 * stderr.max()


def test_the_former_mask_fails_the_unbiasedness_test(monkeypatch):
    """Power check: keeping the steps of the episodes that end inside the batch (the
    former rule) gives residuals far from 0 on the same harness, and not only in
    scale: their part orthogonal to grad J, which no rescaling removes, is too."""
    monkeypatch.setattr(reinforce, "early_episode_mask", former_mask)
    residuals, _, exact = window_residuals(THETA, num_windows=40, num_steps=2 * H, num_envs=1000, seed=21)
    assert unbiased_z(residuals).max() > 10.0
    direction = exact / np.linalg.norm(exact)
    orthogonal = residuals - np.outer(residuals @ direction, direction)
    assert unbiased_z(orthogonal).max() > 6.0


def test_no_baseline_loss_sums_the_early_episodes_over_a_fixed_denominator():
    """reinforce_loss(baseline='none') is sum over the used episodes of
    sum_t grad log pi(a_t|s_t) G_t divided by num_envs * num_steps, whatever the
    number of steps used -- checked against a loop over the episodes."""
    steps, envs, gamma = 23, 5, 0.95
    obs, actions, rewards, terminated, dones = (x[0] for x in simulate_windows(THETA, 1, steps, envs,
                                                                                np.random.default_rng(5)))
    batch = Batch(obs=jnp.asarray(obs), actions=jnp.asarray(actions), log_probs=jnp.zeros((steps, envs)),
                  rewards=jnp.asarray(rewards), terminated=jnp.asarray(terminated), dones=jnp.asarray(dones),
                  next_obs=jnp.asarray(obs))
    params = {"actor": {"logits": jnp.asarray(THETA, jnp.float32)}, "critic": {}}
    hparams = {"gamma": gamma, "vf_coef": 0.0, "ent_coef": 0.0}
    grads, metrics = jax.grad(reinforce_loss, has_aux=True)(params, POLICY, batch, hparams, "none", H, False)

    pi = np.exp(THETA) / np.exp(THETA).sum(-1, keepdims=True)
    expected, used = np.zeros((S, A)), 0
    for e in range(envs):
        for s in range(1, steps - H + 1):
            if not dones[s - 1, e]:
                continue
            end = s + int(np.argmax(dones[s:, e]))  # the episode's last step
            assert dones[end, e], "an episode that starts early enough ends inside the batch"
            for u in range(s, end + 1):
                g = sum(gamma ** (k - u) * rewards[k, e] for k in range(u, end + 1))
                score = -pi[int(obs[u, e].argmax())].copy()
                score[actions[u, e]] += 1.0  # grad of log softmax w.r.t. the logits of state s_u
                expected[int(obs[u, e].argmax())] += score * g
                used += 1
    assert 0 < used < steps * envs, "the batch should hold both used and unused steps"
    np.testing.assert_allclose(float(metrics["losses/used_fraction"]), used / (steps * envs), rtol=1e-6)
    np.testing.assert_allclose(-np.asarray(grads["actor"]["logits"]), expected / (steps * envs), rtol=1e-4,
                               atol=1e-6)


# ---------------------------------------------------------------------------
# baseline=none needs batches longer than the environment's time limit
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("env, num_steps, needed", [("CartPole-v1", 256, 500), ("CartPole-v1", 500, 500),
                                                     ("Pendulum-v1", 150, 200)])
def test_no_baseline_with_batches_shorter_than_the_time_limit_is_refused(env, num_steps, needed):
    cfg = compose_config("algo=reinforce", "algo.baseline=none", f"env={env}", f"algo.num_steps={num_steps}")
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    message = str(err.value)
    assert "\n" not in message
    assert f"time limit of {needed} steps" in message and f"algo.num_steps={4 * needed}" in message
    assert "algo.baseline=value" in message


def test_no_baseline_without_a_time_limit_is_refused():
    cfg = compose_config("algo=reinforce", "algo.baseline=none", "env=Blackjack-v1", "algo.num_steps=1000")
    with pytest.raises(ConfigError, match="no time limit.*algo.baseline=value"):
        validate(cfg)


def test_no_baseline_run_uses_the_environments_time_limit():
    """A run's REINFORCE update takes CartPole's time limit (500) from the run config:
    from a real 600-step batch it uses exactly the steps early_episode_mask(dones, 500)
    selects."""
    cfg = compose_config("algo=reinforce", "algo.baseline=none", "env=CartPole-v1", "algo.num_steps=600",
                         "num_envs=2", "algo.hidden_sizes=[8]")
    validate(cfg)
    setup = build(cfg)
    assert episode_time_limit(setup.cfg.env.id) == 500
    state = init_train_state(setup, jax.random.PRNGKey(0))
    obs, env_state = jax.vmap(setup.env.reset)(jax.random.split(jax.random.PRNGKey(1), 2))
    rollout = jax.jit(make_rollout(setup.env, setup.policy, identity_normalizer, 600))
    batch = rollout(state.params, state.obs_stats, env_state, obs, jax.random.PRNGKey(2))[2]
    _, metrics = jax.jit(setup.algorithm.update)(state, batch, jax.random.PRNGKey(3))
    used = float(early_episode_mask(batch.dones, 500).mean())
    assert 0 < used < 1
    np.testing.assert_allclose(float(metrics["losses/used_fraction"]), used, rtol=1e-6)
    assert np.isfinite(float(metrics["losses/policy_loss"]))
