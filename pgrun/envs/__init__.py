"""Environment backends: pure-JAX ports where they exist, Gymnasium otherwise."""

from __future__ import annotations

from typing import Any

from pgrun.errors import ConfigError
from pgrun.names import close_matches


def gymnasium_ids() -> list[str]:
    """Every id in Gymnasium's registry, sorted."""
    import gymnasium

    return sorted(gymnasium.registry.keys())


def episode_time_limit(env_id: str) -> int | None:
    """The time limit Gymnasium registers for ``env_id`` (the JAX ports keep it); None without one."""
    import gymnasium

    return gymnasium.spec(env_id).max_episode_steps


def has_jax_port(env_id: str) -> bool:
    from pgrun.envs.classic import JAX_PORTS

    return env_id in JAX_PORTS


def resolve_backend(env_id: str, backend: str) -> str:
    """``auto`` picks the JAX port when there is one."""
    if backend == "auto":
        return "jax" if has_jax_port(env_id) else "gymnasium"
    if backend == "jax" and not has_jax_port(env_id):
        from pgrun.envs.classic import JAX_PORTS

        raise ConfigError(f"{env_id} has no JAX port (ports: {', '.join(sorted(JAX_PORTS))}): "
                          f"use env.backend=gymnasium or env.backend=auto")
    return backend


def env_spaces(env_id: str, backend: str) -> tuple[Any, Any]:
    """``(observation space, action space)`` as the policy sees them, from one environment
    (no vector of training environments): what loading a trained policy needs."""
    if resolve_backend(env_id, backend) == "jax":
        from pgrun.envs.classic import make_jax_env

        env = make_jax_env(env_id)
        return env.observation_space, env.action_space
    import gymnasium

    from pgrun.envs.gym_bridge import action_space_of, observation_space_of

    env = gymnasium.make(env_id)
    try:
        return observation_space_of(env.observation_space), action_space_of(env.action_space)
    finally:
        env.close()


def make_env(env_id: str, backend: str, host_envs: int) -> tuple[Any, str]:
    """``(env, backend)``: a functional JAX env, or a host vector env of ``host_envs`` copies."""
    ids = gymnasium_ids()
    if env_id not in ids:
        raise ConfigError(f"unknown environment '{env_id}'{close_matches(env_id, ids)}: "
                          f"pass a registered Gymnasium id, e.g. env=CartPole-v1")
    backend = resolve_backend(env_id, backend)
    if backend == "jax":
        from pgrun.envs.classic import make_jax_env

        return make_jax_env(env_id), backend
    import gymnasium

    from pgrun.envs.gym_bridge import GymVectorEnv, UnsupportedSpaceError

    try:
        return GymVectorEnv(env_id, host_envs), backend
    except UnsupportedSpaceError as err:
        raise ConfigError(f"{env_id}: {err}: pick an environment whose spaces are Box or Discrete") from None
    except gymnasium.error.DependencyNotInstalled as err:
        first_line = str(err).splitlines()[0]
        raise ConfigError(f"{env_id} needs an extra dependency ({first_line}): "
                          f"install it, e.g. pip install 'pgrun[mujoco]' or 'pgrun[box2d]'") from None
