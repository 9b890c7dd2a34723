"""GAE and reward-to-go against plain Python loops over the same batch."""

import numpy as np
import pytest

from pgrun.advantages import discounted_returns, gae


def make_batch(seed, steps=40, envs=3):
    rng = np.random.default_rng(seed)
    rewards = rng.normal(size=(steps, envs)).astype(np.float32)
    values = rng.normal(size=(steps, envs)).astype(np.float32)
    next_values = rng.normal(size=(steps, envs)).astype(np.float32)
    # Several episode ends inside the batch, some real terminations, some truncations.
    dones = rng.random((steps, envs)) < 0.15
    terminated = dones & (rng.random((steps, envs)) < 0.6)
    # Where an episode continues, V(s_{t+1}) is the next row's V(s_t).
    next_values[:-1] = np.where(dones[:-1], next_values[:-1], values[1:])
    assert dones.any() and terminated.any() and (dones & ~terminated).any()
    return rewards, values, next_values, terminated, dones


def gae_loop(rewards, values, next_values, terminated, dones, gamma, lam):
    steps, envs = rewards.shape
    adv = np.zeros((steps, envs))
    for e in range(envs):
        running = 0.0
        for t in reversed(range(steps)):
            bootstrap = 0.0 if terminated[t, e] else next_values[t, e]
            delta = rewards[t, e] + gamma * bootstrap - values[t, e]
            if dones[t, e]:
                running = 0.0
            running = delta + gamma * lam * running
            adv[t, e] = running
    return adv


def returns_loop(rewards, next_values, terminated, dones, gamma):
    steps, envs = rewards.shape
    out = np.zeros((steps, envs))
    for e in range(envs):
        for t in range(steps):
            # Sum discounted rewards to the end of this episode or of the batch.
            total, discount, k = 0.0, 1.0, t
            while True:
                total += discount * rewards[k, e]
                discount *= gamma
                if dones[k, e]:
                    if not terminated[k, e]:
                        total += discount * next_values[k, e]
                    break
                if k == steps - 1:
                    total += discount * next_values[k, e]
                    break
                k += 1
            out[t, e] = total
    return out


@pytest.mark.parametrize("gamma,lam", [(0.99, 0.95), (0.9, 1.0), (1.0, 0.0)])
@pytest.mark.parametrize("seed", [0, 1])
def test_gae_matches_python_loop(seed, gamma, lam):
    batch = make_batch(seed)
    adv, targets = gae(*batch, gamma, lam)
    expected = gae_loop(*batch, gamma, lam)
    np.testing.assert_allclose(np.asarray(adv), expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(targets), expected + batch[1], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("gamma", [0.99, 0.5])
@pytest.mark.parametrize("seed", [0, 3])
def test_discounted_returns_match_python_loop(seed, gamma):
    rewards, values, next_values, terminated, dones = make_batch(seed)
    got = discounted_returns(rewards, next_values, terminated, dones, gamma)
    np.testing.assert_allclose(np.asarray(got), returns_loop(rewards, next_values, terminated, dones, gamma),
                               rtol=1e-4, atol=1e-4)


def test_gae_with_lambda_one_is_return_minus_value():
    rewards, values, next_values, terminated, dones = make_batch(5)
    adv, _ = gae(rewards, values, next_values, terminated, dones, 0.97, 1.0)
    ret = discounted_returns(rewards, next_values, terminated, dones, 0.97)
    np.testing.assert_allclose(np.asarray(adv), np.asarray(ret) - values, rtol=1e-4, atol=1e-4)
