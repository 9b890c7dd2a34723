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

from pgrun.advantages import discounted_returns
from pgrun.algos.common import Batch, actor_critic_loss
from pgrun.algos.reinforce import complete_episode_mask, reward_to_go
from pgrun.distributions import Categorical

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
# Only complete episodes: the masked variant (baseline=none)
# ---------------------------------------------------------------------------


def mask_by_loop(dones: np.ndarray) -> np.ndarray:
    """1 at step t of env e iff some done occurs at a step >= t in that env."""
    steps, envs = dones.shape
    mask = np.zeros((steps, envs), np.float32)
    for e in range(envs):
        for t in range(steps):
            mask[t, e] = 1.0 if any(dones[u, e] for u in range(t, steps)) else 0.0
    return mask


@pytest.mark.parametrize("p_done", [0.0, 0.05, 0.3, 1.0])
def test_complete_episode_mask_matches_a_plain_loop(p_done):
    rng = np.random.default_rng(int(p_done * 100))
    dones = rng.random((37, 6)) < p_done
    dones[-1, 0] = True  # an episode ending on the last step keeps the whole column
    dones[:, 1] = False  # a column with no end at all keeps nothing
    dones[0, 2], dones[1:, 2] = True, False  # only the first step is complete
    np.testing.assert_array_equal(np.asarray(complete_episode_mask(jnp.asarray(dones))), mask_by_loop(dones))


def test_masked_estimator_uses_exactly_the_complete_episodes():
    """With episodes back to back in each environment's stream (the rollout layout)
    and a cut tail, reward_to_go(baseline='none') + actor_critic_loss gives
    sum over complete episodes of sum_t grad log pi(a_t|s_t) G_t divided by their
    step count, the cut episodes contributing nothing -- checked against a loop."""
    rng = np.random.default_rng(5)
    steps, envs, gamma = 23, 5, 0.95
    theta = THETA.astype(np.float32)
    pi = np.exp(theta) / np.exp(theta).sum(-1, keepdims=True)
    obs = np.zeros((steps, envs, S), np.float32)
    actions = np.zeros((steps, envs), np.int32)
    rewards = np.zeros((steps, envs), np.float32)
    dones = np.zeros((steps, envs), bool)
    for e in range(envs):
        s = rng.choice(S, p=D0)
        for t in range(steps):
            a = rng.choice(A, p=pi[s])
            nxt = rng.choice(S + 1, p=P[s, a])
            obs[t, e, s], actions[t, e], rewards[t, e] = 1.0, a, R[s, a]
            dones[t, e] = nxt == S
            s = rng.choice(S, p=D0) if nxt == S else nxt
    batch = Batch(obs=jnp.asarray(obs), actions=jnp.asarray(actions), log_probs=jnp.zeros((steps, envs)),
                  rewards=jnp.asarray(rewards), terminated=jnp.asarray(dones), dones=jnp.asarray(dones),
                  next_obs=jnp.asarray(obs))
    params = {"actor": {"logits": jnp.asarray(theta)}, "critic": {}}
    returns, baseline, mask = reward_to_go(POLICY, params, batch, gamma, "none")
    np.testing.assert_array_equal(np.asarray(baseline), 0.0)
    flat = lambda x: x.reshape((-1,) + x.shape[2:])
    grads, _ = jax.grad(actor_critic_loss, argnums=1, has_aux=True)(
        POLICY, params, flat(batch.obs), flat(batch.actions), flat(returns), None, 0.0, 0.0, flat(mask))

    expected, count = np.zeros((S, A)), 0
    for e in range(envs):
        start = 0
        for t in range(steps):
            if not dones[t, e]:
                continue
            for u in range(start, t + 1):  # a complete episode: steps start..t
                g = sum(gamma ** (k - u) * rewards[k, e] for k in range(u, t + 1))
                s, a = int(obs[u, e].argmax()), actions[u, e]
                score = -pi[s].astype(np.float64)
                score[a] += 1.0  # grad of log softmax w.r.t. the logits of state s
                expected[s] += score * g
                count += 1
            start = t + 1
    assert 0 < count < steps * envs, "the batch should hold both complete and cut episodes"
    np.testing.assert_allclose(float(np.asarray(mask).sum()), count)
    np.testing.assert_allclose(-np.asarray(grads["actor"]["logits"]), expected / count, rtol=1e-4, atol=1e-6)
