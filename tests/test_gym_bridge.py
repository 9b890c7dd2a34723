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
