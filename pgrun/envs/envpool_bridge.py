"""MuJoCo tasks simulated by envpool, stepped on the host like the Gymnasium bridge.

envpool steps a batch of environments in C++ threads, about three times the
rate of Gymnasium's synchronous vector env on Hopper. It is an optional extra
(``pip install 'pgrun[envpool]'``). Only its plain numpy ``step`` is used: its
XLA interface does not work with current JAX.

envpool resets an ended environment on the *next* step, which would cost one
wasted transition per episode and hide the next episode's first observation.
The bridge instead resets the environments that ended right away (envpool
can reset a subset), so every step reports the true final observation and
the next episode's first one, exactly as :class:`~pgrun.envs.gym_bridge.GymVectorEnv`
does.

The ids are envpool's own reimplementations of Gymnasium's MuJoCo tasks (same
names, observation and action spaces and time limits, checked by
tests/test_mujoco.py), compiled against envpool's bundled MuJoCo: returns are
comparable with Gymnasium's but not bit-for-bit identical.
"""

from __future__ import annotations

import importlib.util

import numpy as np

from pgrun.envs.gym_bridge import HostStep, action_space_of, observation_space_of

INSTALL_HINT = "pip install 'pgrun[envpool]' (envpool 1.2.5: Linux x86-64, Python 3.11 or older)"

# envpool 1.2.5's MuJoCo ids, written out because importing envpool to list them takes 8-15 s and the
# registry lists every backend's ids at start-up (tests/test_mujoco.py checks them against envpool's list).
_TASK_VERSIONS = {
    "Ant": ("v3", "v4", "v5"), "HalfCheetah": ("v3", "v4", "v5"), "Hopper": ("v3", "v4", "v5"),
    "Humanoid": ("v3", "v4", "v5"), "HumanoidStandup": ("v2", "v4", "v5"),
    "InvertedDoublePendulum": ("v2", "v4", "v5"), "InvertedPendulum": ("v2", "v4", "v5"),
    "Pusher": ("v2", "v4", "v5"), "Reacher": ("v2", "v4", "v5"), "Swimmer": ("v3", "v4", "v5"),
    "Walker2d": ("v3", "v4", "v5"),
}
ENVPOOL_IDS = tuple(f"{task}-{version}" for task, versions in _TASK_VERSIONS.items() for version in versions)


def envpool_installed() -> bool:
    """Whether envpool can be imported (found without importing it)."""
    return importlib.util.find_spec("envpool") is not None


class EnvpoolVectorEnv:
    """``num_envs`` copies of an envpool MuJoCo id with :class:`GymVectorEnv`'s interface:
    ``reset(seed)``, ``step(actions) -> HostStep``, the spaces as the policy sees them, ``close``."""

    def __init__(self, env_id: str, num_envs: int, max_episode_steps: int | None = None):
        import envpool

        self.env_id, self.num_envs, self.max_episode_steps = env_id, num_envs, max_episode_steps
        self._envpool = envpool
        self.seed: int | None = None
        self.envs = self._make(0)
        self.observation_space = observation_space_of(self.envs.observation_space)
        self.action_space = action_space_of(self.envs.action_space)

    def _make(self, seed: int):
        limit = {"max_episode_steps": self.max_episode_steps} if self.max_episode_steps else {}
        self.seed, self._fresh = seed, True
        # envpool takes int32 seeds only (and seeds environment i with seed + i); pgrun's reset seeds
        # are any non-negative integer (evaluation draws 32-bit ones), so they are folded into that range.
        pool_seed = seed % (2**31 - 1 - self.num_envs)
        return self._envpool.make(self.env_id, env_type="gymnasium", num_envs=self.num_envs, seed=pool_seed, **limit)

    def reset(self, seed: int) -> np.ndarray:
        """Every environment's first observation; environment ``i`` is seeded from ``seed + i``, so
        the same seed gives the same episodes. envpool takes its seed when it is built, so a reset
        rebuilds the pool unless it is fresh from that seed."""
        if seed != self.seed or not self._fresh:
            self.envs.close()
            self.envs = self._make(seed)
        self._fresh = False
        obs, _ = self.envs.reset()
        return np.asarray(obs, np.float32)

    def step(self, actions: np.ndarray) -> HostStep:
        obs, rewards, terminated, truncated, _ = self.envs.step(np.asarray(actions))
        obs = np.asarray(obs, np.float32)
        terminated, truncated = np.asarray(terminated, bool), np.asarray(truncated, bool)
        final_obs = obs
        ended = np.flatnonzero(terminated | truncated)
        if ended.size:
            final_obs = obs.copy()
            fresh, info = self.envs.reset(ended.astype(np.int32))
            obs[np.asarray(info["env_id"])] = np.asarray(fresh, np.float32)
        return HostStep(obs, np.asarray(rewards, np.float32), terminated, truncated, final_obs)

    def close(self) -> None:
        self.envs.close()
