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


def random_success_rate(episodes: int = 1000) -> float:
    """FrozenLake-v1 (slippery) played with uniformly random actions, in Gymnasium itself."""
    env = gymnasium.make("FrozenLake-v1")
    env.action_space.seed(0)
    wins = 0.0
    for episode in range(episodes):
        env.reset(seed=episode)
        done = False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            wins, done = wins + reward, terminated or truncated
    return wins / episodes


def test_ppo_learns_frozenlake_through_the_bridge(tmp_path):
    """Discrete observations, one-hot encoded, through the host bridge: after 20k steps each of two
    seeds' greedy policy reaches the goal in clearly more of 200 episodes than random actions do
    (about 1%, measured here; the trained policies reached about 15%). A bridge that scrambled
    observations, actions or rewards learns nothing."""
    from omegaconf import OmegaConf

    from pgrun.evaluate import evaluate

    cfg = compose_config("env=FrozenLake-v1", "total_timesteps=20480", "num_envs=4", "log_interval=4",
                         "algo.lr=2e-3", "algo.anneal_lr=false", "eval.every=0", "quiet=true", "num_seeds=2")
    summary = run_training(cfg, tmp_path)
    assert summary["backend"] == "gymnasium" and summary["env_steps"] == 20480
    assert (tmp_path / "seed_0").is_dir() and (tmp_path / "seed_1").is_dir()
    (tmp_path / ".hydra").mkdir()
    OmegaConf.save(cfg, tmp_path / ".hydra" / "config.yaml")
    baseline = random_success_rate()
    for member in (0, 1):
        report = evaluate(tmp_path, episodes=200, deterministic=True, seed_index=member)
        assert report["mean_return"] >= baseline + 0.08, (member, report["mean_return"], baseline)


def test_ppo_on_hopper_through_the_bridge_normalises_with_what_it_saw(tmp_path):
    """A Box observation and action space through the bridge with env.normalize_obs: the saved
    observation statistics absorbed exactly the run's 2048 observations (count), of Hopper's own
    states (the torso's height, observation 0, stays in the healthy range 0.7-2 outside which the
    task ends), and the return is finite."""
    from pgrun import checkpoint

    cfg = compose_config("env=Hopper-v5", "env.normalize_obs=true", "total_timesteps=2048", "num_envs=2",
                         "log_interval=4", "eval.every=0", "quiet=true")
    summary = run_training(cfg, tmp_path)
    assert summary["backend"] == "gymnasium" and summary["env_steps"] == 2048
    stats = checkpoint.read(tmp_path / checkpoint.DIRECTORY / checkpoint.FINAL)["state"]["train"]["obs_stats"]
    assert float(np.asarray(stats["count"])[0]) == pytest.approx(2048 + 1e-4, rel=1e-6)
    assert 0.7 < float(np.asarray(stats["mean"])[0, 0]) < 2.0
    assert np.all(np.asarray(stats["var"]) != 1.0)
    assert math.isfinite(summary["final_return_mean"])


def test_bridge_and_port_give_the_same_first_episode():
    """The same start and the same actions give the same transitions on both backends: the
    bridge's CartPole is reset with a seed, the port is put in that state, the port's rollout
    acts, and the bridge replays its actions. Observations, rewards, the step the episode ends
    and its final observation (next_obs) agree."""
    import jax
    import jax.numpy as jnp

    from pgrun.envs import make_env
    from pgrun.envs.classic import CartPoleState
    from pgrun.policies import make_policy
    from pgrun.rollout import identity_normalizer, make_rollout

    port, _ = make_env("CartPole-v1", "jax", 1)
    host, _ = make_env("CartPole-v1", "gymnasium", 1)
    assert port.action_space == host.action_space
    assert port.observation_space.shape == host.observation_space.shape
    start = host.reset(seed=3)[0]
    state = CartPoleState(*(jnp.float32(v)[None] for v in start), time=jnp.zeros((1,), jnp.int32))
    policy = make_policy(port.observation_space, port.action_space, [16], "tanh")
    rollout = jax.jit(make_rollout(port, policy, identity_normalizer, 200))
    batch = jax.device_get(rollout(policy.init(jax.random.PRNGKey(0)), None, state, jnp.asarray(start)[None],
                                   jax.random.PRNGKey(1))[2])
    assert batch.dones[:, 0].any()
    end = int(np.argmax(batch.dones[:, 0]))
    seen = start
    for t in range(end + 1):
        np.testing.assert_allclose(batch.obs[t, 0], seen, rtol=1e-4, atol=1e-5)
        out = host.step(np.asarray(batch.actions[t]))
        np.testing.assert_allclose(batch.next_obs[t, 0], out.final_obs[0], rtol=1e-4, atol=1e-5)
        assert batch.rewards[t, 0] == out.rewards[0]
        assert batch.terminated[t, 0] == out.terminated[0]
        assert batch.dones[t, 0] == (out.terminated[0] or out.truncated[0])
        seen = out.obs[0]
    host.close()


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
