"""Reward scaling against a plain loop over VecNormalize's definition."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from pgrun.normalization import RewardScaler


def loop_reference(batches, gamma, clip=10.0):
    """Per environment G_t = gamma G_{t-1} + r_t, restarted after a done; the scale is the
    standard deviation of every G seen so far (with the prior: variance 1 at weight 1e-4)."""
    num_envs = batches[0][0].shape[1]
    running = np.zeros(num_envs)
    seen: list[float] = []
    out = []
    for rewards, dones in batches:
        for t in range(rewards.shape[0]):
            running = gamma * running + rewards[t]
            seen.extend(running.tolist())
            running = np.where(dones[t], 0.0, running)
        values = np.asarray(seen, np.float64)
        prior_n = 1e-4
        n = prior_n + values.size
        mean = values.sum() / n
        # the prior contributes mean 0 and variance 1 at weight prior_n
        m2 = prior_n * (1.0 + mean**2) + ((values - mean) ** 2).sum()
        out.append(np.clip(rewards / np.sqrt(m2 / n + 1e-8), -clip, clip))
    return out


@pytest.mark.parametrize("gamma", [0.99, 0.9])
def test_scaled_rewards_match_the_loop_over_several_batches(gamma):
    rng = np.random.default_rng(0)
    batches = [(rng.normal(1.0, 2.0, size=(16, 3)).astype(np.float32), rng.random((16, 3)) < 0.1) for _ in range(4)]
    scaler = RewardScaler.create(3)
    ours = []
    for rewards, dones in batches:
        scaler, scaled = scaler.scale(jnp.asarray(rewards), jnp.asarray(dones), jnp.float32(gamma))
        ours.append(np.asarray(scaled))
    for got, want in zip(ours, loop_reference(batches, gamma)):
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-6)


def test_cartpole_like_rewards_scale_targets_to_order_one():
    """Reward 1 per step over long episodes: discounted returns near 1/(1-gamma) = 100 become a few units."""
    rewards = np.ones((500, 4), np.float32)
    dones = np.zeros((500, 4), bool)
    dones[-1] = True
    scaler, scaled = RewardScaler.create(4).scale(jnp.asarray(rewards), jnp.asarray(dones), jnp.float32(0.99))
    target = float(np.asarray(scaled)[0, 0]) / (1 - 0.99)
    assert 1.0 < target < 10.0, target
    assert np.all(np.asarray(scaler.returns) == 0.0)  # every episode ended: the running returns restart


def test_rewards_are_clipped():
    """One spike after 399 quiet steps: its return is about 20 standard deviations out."""
    rewards = np.zeros((400, 1), np.float32)
    rewards[-1] = 1e6
    _, scaled = RewardScaler.create(1).scale(jnp.asarray(rewards), jnp.zeros((400, 1), bool), jnp.float32(0.99),
                                             clip=5.0)
    assert float(np.asarray(scaled).max()) == pytest.approx(5.0)


@pytest.mark.parametrize("scaled", [True, False])
def test_the_update_sees_scaled_rewards_and_the_episode_returns_stay_raw(scaled):
    """make_learn hands the algorithm rewards divided by the loop reference's scale (or the raw
    rewards with env.normalize_reward=false), while the episode statistics sum the raw rewards."""
    import jax

    from conftest import compose_config
    from pgrun.algos.common import Batch
    from pgrun.train import build, init_train_state, make_learn

    setup = build(compose_config("env=CartPole-v1", f"env.normalize_reward={str(scaled).lower()}", "num_envs=3",
                                 "compile_cache_dir="))
    seen = {}

    def spy(state, batch, key):
        seen["rewards"] = batch.rewards
        return state, {}

    setup.algorithm = setup.algorithm._replace(update=spy)
    rng = np.random.default_rng(1)
    rewards = rng.normal(2.0, 1.0, size=(20, 3)).astype(np.float32)
    dones = np.zeros((20, 3), bool)
    dones[7, 0] = dones[13, 2] = True
    obs = jnp.zeros((20, 3, 4), jnp.float32)
    batch = Batch(obs, jnp.zeros((20, 3), jnp.int32), jnp.zeros((20, 3)), jnp.asarray(rewards), jnp.asarray(dones),
                  jnp.asarray(dones), obs)
    state = init_train_state(setup, jax.random.PRNGKey(0))
    state, metrics = make_learn(setup)(state, batch, jax.random.PRNGKey(1))
    want = loop_reference([(rewards, dones)], 0.99)[0] if scaled else rewards
    np.testing.assert_allclose(np.asarray(seen["rewards"]), want, rtol=2e-4, atol=1e-6)
    assert float(metrics["episode_return_sum"]) == pytest.approx(rewards[:8, 0].sum() + rewards[:14, 2].sum(), rel=1e-5)
    assert ("charts/reward_scale" in metrics) == scaled
