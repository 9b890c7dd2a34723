"""Brax's locomotion tasks as pure-JAX environments, stepped inside the compiled training loop.

With Brax (``pip install 'pgrun[brax]'``) the physics is traced into the same
program as the policy and the update, so on a GPU or TPU a whole MuJoCo-style
training run is one program, vmapped over seeds like the classic-control
ports. Ids are ``brax/<task>`` (``env=brax/hopper``); Brax's own
reimplementations of the tasks, on its ``positional`` pipeline (the fastest of
its pipelines on a CPU), so returns are not comparable with Gymnasium's
MuJoCo ids. Episodes are cut at 1000 steps, as Brax's training wrappers do.

Brax is imported only when an environment is built: importing it takes seconds.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from pgrun.envs.core import Box

PREFIX = "brax/"
TASKS = ("ant", "halfcheetah", "hopper", "humanoid", "humanoidstandup", "inverted_pendulum",
         "inverted_double_pendulum", "pusher", "reacher", "walker2d")
BRAX_IDS = tuple(PREFIX + task for task in TASKS)
EPISODE_STEPS = 1000
PIPELINE = "positional"
INSTALL_HINT = "pip install 'pgrun[brax]' (brax 0.14.2)"


def brax_installed() -> bool:
    """Whether Brax can be imported (found without importing it)."""
    return importlib.util.find_spec("brax") is not None


@flax.struct.dataclass
class BraxState:
    """Brax's state of one environment, and the step count the time limit needs."""

    inner: Any  # Brax's own State: physics, observation, reward, done
    time: jax.Array  # steps into the episode, for the time limit


class BraxEnv:
    """One Brax task behind pgrun's functional :class:`~pgrun.envs.core.Env` interface."""

    max_episode_steps = EPISODE_STEPS

    def __init__(self, env_id: str):
        from brax import envs

        self.id = env_id
        self._env = envs.get_environment(env_id.removeprefix(PREFIX), backend=PIPELINE)
        obs_dim, act_dim = self._env.observation_size, self._env.action_size
        self.observation_space = Box(np.full(obs_dim, -np.inf, np.float32), np.full(obs_dim, np.inf, np.float32))
        self.action_space = Box(-np.ones(act_dim, np.float32), np.ones(act_dim, np.float32))

    def reset(self, key: jax.Array) -> tuple[jax.Array, BraxState]:
        state = self._env.reset(key)
        return state.obs, BraxState(state, jnp.zeros((), jnp.int32))

    def step(self, key: jax.Array, state: BraxState, action: jax.Array):
        inner = self._env.step(state.inner, action)
        time = state.time + 1
        terminated = inner.done > 0.5
        truncated = (time >= self.max_episode_steps) & ~terminated
        return inner.obs, BraxState(inner, time), inner.reward.astype(jnp.float32), terminated, truncated
