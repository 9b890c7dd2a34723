"""Any Gymnasium id, stepped on the host through ``gymnasium.vector``.

Environments without a JAX port run here with the same jitted policy and the
same jitted algorithm update as the JAX path; only the environment step is
host-side Python. Observations arrive as flat float32 vectors (discrete
observation spaces one-hot encoded), and every step reports the true
successor observation so truncated episodes can be bootstrapped.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import gymnasium
import numpy as np

from pgrun.envs.core import Box, Discrete, Space


class UnsupportedSpaceError(TypeError):
    """The environment's spaces cannot be handled by the bridge."""


def observation_space_of(space: gymnasium.Space) -> Box:
    """The flat Box the policy sees for a Gymnasium observation space."""
    if isinstance(space, gymnasium.spaces.Discrete):
        return Box(np.zeros(space.n, np.float32), np.ones(space.n, np.float32))
    if isinstance(space, gymnasium.spaces.Box):
        size = int(np.prod(space.shape))
        return Box(space.low.reshape(size).astype(np.float32), space.high.reshape(size).astype(np.float32))
    raise UnsupportedSpaceError(f"observation space {space} is not supported (only Box and Discrete are)")


def action_space_of(space: gymnasium.Space) -> Space:
    """The policy's action space for a Gymnasium one (Discrete from 0, or a 1-D Box)."""
    if isinstance(space, gymnasium.spaces.Discrete):
        if space.start != 0:
            raise UnsupportedSpaceError(f"action space {space} with start={space.start} is not supported")
        return Discrete(int(space.n))
    if isinstance(space, gymnasium.spaces.Box) and len(space.shape) == 1:
        return Box(space.low.astype(np.float32), space.high.astype(np.float32))
    raise UnsupportedSpaceError(f"action space {space} is not supported (only Discrete and 1-D Box are)")


def encode_observations(space: gymnasium.Space, obs: np.ndarray) -> np.ndarray:
    """Batch of Gymnasium observations -> ``[batch, obs_dim]`` float32."""
    if isinstance(space, gymnasium.spaces.Discrete):
        return np.eye(space.n, dtype=np.float32)[np.asarray(obs, np.int64) - space.start]
    return np.asarray(obs, np.float32).reshape(len(obs), -1)


@dataclass
class HostStep:
    """One step of every host environment, with each ended episode's true final observation."""

    obs: np.ndarray  # next observation to act on (a fresh episode's after an end)
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    final_obs: np.ndarray  # true successor observation of this step


class GymVectorEnv:
    """``num_envs`` copies of a Gymnasium id, reset in the same step they end.

    ``vectorization_mode="async"`` steps each copy in its own worker process
    (``env.backend=gymnasium_async``). The workers are forked: JAX warns that
    forking its multithreaded process may deadlock the child, but the workers
    only step Gymnasium and never call JAX. Starting them from a fork server or
    by spawning instead took 35-45 s for 8 MuJoCo workers on a 2-core machine
    (each re-imports the main module and MuJoCo) against under a second.
    """

    def __init__(self, env_id: str, num_envs: int, vectorization_mode: str = "sync"):
        self.env_id = env_id
        vector_kwargs = {"autoreset_mode": gymnasium.vector.AutoresetMode.SAME_STEP}
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
            self.envs = gymnasium.make_vec(env_id, num_envs=num_envs, vectorization_mode=vectorization_mode,
                                           vector_kwargs=vector_kwargs)
        self.raw_observation_space = self.envs.single_observation_space
        self.observation_space = observation_space_of(self.raw_observation_space)
        self.action_space = action_space_of(self.envs.single_action_space)
        self.max_episode_steps = self.envs.spec.max_episode_steps if self.envs.spec else None
        self.num_envs = num_envs

    def reset(self, seed: int) -> np.ndarray:
        obs, _ = self.envs.reset(seed=[seed + i for i in range(self.num_envs)])
        return encode_observations(self.raw_observation_space, obs)

    def step(self, actions: np.ndarray) -> HostStep:
        obs, rewards, terminated, truncated, info = self.envs.step(actions)
        obs = encode_observations(self.raw_observation_space, obs)
        final_obs = obs.copy()
        if "_final_obs" in info:
            ended = np.flatnonzero(info["_final_obs"])
            if len(ended):
                final_obs[ended] = encode_observations(
                    self.raw_observation_space, np.stack([info["final_obs"][i] for i in ended]))
        return HostStep(obs, np.asarray(rewards, np.float32), np.asarray(terminated, bool),
                        np.asarray(truncated, bool), final_obs)

    def close(self) -> None:
        self.envs.close()
