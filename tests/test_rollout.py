"""The JAX rollout's transitions against the environment stepped by hand.

At an episode end the environment resets in the same call (``auto_reset_step``),
so the observation the policy sees next belongs to the new episode; the batch's
``next_obs`` must still be the episode's own last observation, which the critic
bootstraps from at a time limit. Each test replays the rollout's actions through
``env.step`` one step at a time and compares.
"""

from __future__ import annotations

import jax
import numpy as np

from pgrun.envs import make_env
from pgrun.envs.classic import CartPoleState
from pgrun.policies import make_policy
from pgrun.rollout import identity_normalizer, make_rollout

NUM_ENVS = 3


def collect(env_id: str, num_steps: int, seed: int = 0):
    """A rollout of a freshly initialised policy: (env, the actions it sent, initial env states, the batch
    in numpy, the observation after it)."""
    env, _ = make_env(env_id, "jax", NUM_ENVS)
    policy = make_policy(env.observation_space, env.action_space, [16], "tanh")
    params = policy.init(jax.random.PRNGKey(seed))
    obs, env_state = jax.vmap(env.reset)(jax.random.split(jax.random.PRNGKey(seed + 1), NUM_ENVS))
    rollout = jax.jit(make_rollout(env, policy, identity_normalizer, num_steps))
    _, last_obs, batch = rollout(params, None, env_state, obs, jax.random.PRNGKey(seed + 2))
    env_actions = np.asarray(policy.to_env_action(batch.actions))
    return env, env_actions, env_state, jax.device_get(batch), np.asarray(last_obs)


def test_cartpole_next_obs_is_the_terminal_observation_and_the_next_obs_the_reset_one():
    """Every step of every environment, ends included: next_obs, reward and flags are what
    env.step gives from the state before it; where the episode ended, the following step's
    observation is a fresh start (within the reset range, time 0) and not the terminal one.
    CartPole's observation is its whole state, so the hand replay carries on after each reset."""
    env, actions, state, batch, last_obs = collect("CartPole-v1", 300)
    state = jax.device_get(state)
    obs = batch.obs
    following = np.concatenate([obs[1:], last_obs[None]])  # the observation the policy saw next
    step = jax.jit(jax.vmap(env.step))
    keys = jax.random.split(jax.random.PRNGKey(0), NUM_ENVS)
    ends = 0
    for t in range(obs.shape[0]):
        np.testing.assert_array_equal(obs[t], np.stack([state.x, state.x_dot, state.theta, state.theta_dot], -1),
                                      err_msg=f"step {t}")
        final, state, reward, terminated, truncated = jax.device_get(step(keys, state, actions[t]))
        np.testing.assert_array_equal(batch.next_obs[t], final, err_msg=f"step {t}")
        np.testing.assert_array_equal(batch.rewards[t], reward)
        np.testing.assert_array_equal(batch.terminated[t], terminated)
        done = terminated | truncated
        np.testing.assert_array_equal(batch.dones[t], done)
        np.testing.assert_array_equal(following[t][~done], final[~done])
        for i in np.flatnonzero(done):
            ends += 1
            reset = following[t, i]
            assert not np.allclose(reset, final[i]), f"env {i}, step {t}: the terminal observation was passed on"
            assert np.all(np.abs(reset) <= 0.05), f"env {i}, step {t}: {reset} is not a fresh start"
        # after an end the replay continues from the observed fresh start, at time 0
        state = CartPoleState(*(np.where(done, following[t][:, k], final[:, k]) for k in range(4)),
                              time=np.where(done, 0, state.time).astype(np.int32))
    assert ends >= 3 * NUM_ENVS, f"only {ends} episodes ended: the ends were hardly checked"


def test_pendulum_next_obs_at_the_time_limit_is_the_200th_observation():
    """Pendulum never terminates; its episodes are cut at 200 steps. At the cut next_obs is the
    200th step's observation from env.step, and the policy's next observation is a new episode's."""
    env, actions, state, batch, last_obs = collect("Pendulum-v1", 205)
    step = jax.jit(jax.vmap(env.step))
    keys = jax.random.split(jax.random.PRNGKey(0), NUM_ENVS)
    for t in range(200):
        final, state, _, terminated, truncated = jax.device_get(step(keys, state, actions[t]))
        np.testing.assert_allclose(batch.next_obs[t], final, rtol=1e-6, atol=1e-6, err_msg=f"step {t}")
        assert not terminated.any() and np.all(truncated == (t == 199))
        assert np.all(batch.dones[t] == (t == 199)) and not batch.terminated[t].any()
    for i in range(NUM_ENVS):
        assert not np.allclose(batch.obs[200, i], final[i]), "the policy's next observation must be the new episode's"
    assert not batch.dones[200:].any()
