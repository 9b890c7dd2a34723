"""Environments without a JAX port train through the Gymnasium bridge."""

import math

import gymnasium
import numpy as np
import pytest

from conftest import compose_config
from pgrun.envs.gym_bridge import GymVectorEnv, encode_observations
from pgrun.run import run_training


def test_discrete_observations_are_one_hot():
    space = gymnasium.spaces.Discrete(5)
    encoded = encode_observations(space, np.array([0, 3, 4]))
    np.testing.assert_array_equal(encoded, np.eye(5, dtype=np.float32)[[0, 3, 4]])


def test_final_observation_is_the_true_successor():
    envs = GymVectorEnv("CartPole-v1", num_envs=2)
    obs = envs.reset(seed=0)
    reference = gymnasium.make("CartPole-v1")
    ref_obs, _ = reference.reset(seed=0)
    np.testing.assert_allclose(obs[0], ref_obs)
    for _ in range(200):
        step = envs.step(np.array([1, 1]))  # always push right: episodes end fast
        ref_obs, _, term, trunc, _ = reference.step(1)
        np.testing.assert_allclose(step.final_obs[0], ref_obs, rtol=1e-6)
        if step.terminated[0] or step.truncated[0]:
            assert term or trunc
            assert not np.allclose(step.obs[0], step.final_obs[0])  # obs is already the next episode's
            return
    pytest.fail("no episode ended")


def test_ppo_trains_on_frozenlake_through_the_bridge(tmp_path):
    cfg = compose_config("env=FrozenLake-v1", "total_timesteps=4096", "num_envs=4", "log_interval=2",
                         "quiet=true", "num_seeds=2")
    summary = run_training(cfg, tmp_path)
    assert summary["backend"] == "gymnasium" and summary["env_steps"] == 4096
    assert len(summary["returns_per_seed"]) == 2
    assert all(0.0 <= r <= 1.0 for r in summary["returns_per_seed"])
    assert (tmp_path / "seed_0").is_dir() and (tmp_path / "seed_1").is_dir()


def test_ppo_trains_on_hopper_through_the_bridge(tmp_path):
    cfg = compose_config("env=Hopper-v5", "env.normalize_obs=true", "total_timesteps=2048", "num_envs=2",
                         "log_interval=4", "quiet=true")
    summary = run_training(cfg, tmp_path)
    assert summary["backend"] == "gymnasium" and summary["env_steps"] == 2048
    assert math.isfinite(summary["final_return_mean"])


def test_bridge_and_port_agree_on_the_cartpole_interface(tmp_path):
    """The same config runs on both backends and sees the same spaces."""
    from pgrun.envs import make_env

    port, _ = make_env("CartPole-v1", "jax", 1)
    host, _ = make_env("CartPole-v1", "gymnasium", 1)
    assert port.action_space == host.action_space
    assert port.observation_space.shape == host.observation_space.shape


def test_bridge_resume_clears_what_belonged_to_unfinished_episodes(tmp_path):
    """The host environments restart their episodes on resume, so the saved partial returns,
    lengths and the reward scaler's running discounted return must not carry over; the learner
    itself (parameters, return statistics) must."""
    import jax
    import numpy as np

    from pgrun import checkpoint
    from pgrun.train import build, make_loop

    cfg = compose_config("env=CartPole-v1", "env.backend=gymnasium", "num_envs=2", "algo.num_steps=32",
                         "total_timesteps=640", "log_interval=2", "eval.every=0", "quiet=true", "compile_cache_dir=")
    loop = make_loop(build(cfg))
    runner = loop.start()
    runner, _ = loop.run_block(runner)  # 128 steps: unfinished episodes with partial returns
    trained = loop.train_state(runner)
    assert np.all(np.asarray(trained.episodes.lengths) > 0)
    assert np.any(np.asarray(trained.reward_scaler.returns) != 0)
    path = checkpoint.save(tmp_path, "latest", loop.checkpoint_state(runner), {"blocks_done": 1})
    fresh = make_loop(build(cfg))
    restored = fresh.train_state(fresh.restore(fresh.start(), checkpoint.read(path)["state"]))
    assert np.all(np.asarray(restored.episodes.returns) == 0) and np.all(np.asarray(restored.episodes.lengths) == 0)
    assert np.all(np.asarray(restored.reward_scaler.returns) == 0)
    for kept, saved in [(restored.params, trained.params), (restored.reward_scaler.stats, trained.reward_scaler.stats)]:
        for a, b in zip(jax.tree.leaves(kept), jax.tree.leaves(saved)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
