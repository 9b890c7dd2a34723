"""The environment backend registry: which ids each backend simulates, and how.

A backend is either *in the compiled loop* (pure-JAX environments whose step
is traced into the training program, like the classic-control ports) or *on
the host* (stepped in Python between jitted acting and learning calls, like
Gymnasium). ``env.backend=auto`` picks the first backend, in registry order,
that provides the id, so a JAX port wins over Gymnasium for the same id, and
the host backends after Gymnasium's synchronous one (``gymnasium_async``,
``envpool``) run only when asked for. An id need not be a Gymnasium id: a
backend lists its own.

Adding a backend is one :class:`Backend` passed to :func:`register_backend`
(from its own module, imported below), exposing ``make`` (the environments),
``spaces`` (what a trained policy needs, without the training environments)
and ``time_limit``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

from pgrun.errors import ConfigError, first_line
from pgrun.names import close_matches

AUTO = "auto"


@dataclass(frozen=True)
class Backend:
    """One way of simulating environments."""

    name: str  # env.backend=<name>
    in_jit: bool  # True: a JAX Env stepped inside the compiled loop; False: a host vector env
    ids: Callable[[], list[str]]  # the ids it provides
    make: Callable[[str, int], Any]  # (id, host environments) -> env (JAX backends ignore the count)
    spaces: Callable[[str], tuple[Any, Any]]  # id -> (observation space, action space) as the policy sees them
    time_limit: Callable[[str], int | None]  # id -> episode time limit, None without one


_BACKENDS: dict[str, Backend] = {}


def register_backend(backend: Backend) -> None:
    """Add a backend; ``auto`` prefers backends registered earlier."""
    _BACKENDS[backend.name] = backend
    provided_ids.cache_clear()


def backends() -> dict[str, Backend]:
    """Every registered backend by name, in ``auto``'s order of preference."""
    return dict(_BACKENDS)


@lru_cache(maxsize=None)
def provided_ids(name: str) -> frozenset[str]:
    """The ids backend ``name`` provides (cached: Gymnasium's registry is large)."""
    return frozenset(_BACKENDS[name].ids())


def known_ids() -> list[str]:
    """Every id some backend provides, sorted."""
    return sorted(set().union(*(provided_ids(name) for name in _BACKENDS)))


def gymnasium_ids() -> list[str]:
    """Every id in Gymnasium's registry, sorted."""
    import gymnasium

    return sorted(gymnasium.registry.keys())


def has_jax_port(env_id: str) -> bool:
    """Whether a backend inside the compiled loop provides ``env_id``."""
    return any(b.in_jit and env_id in provided_ids(b.name) for b in _BACKENDS.values())


def check_env_id(env_id: str) -> None:
    """:class:`ConfigError` with close matches unless some backend provides ``env_id``."""
    if not any(env_id in provided_ids(name) for name in _BACKENDS):
        raise ConfigError(f"unknown environment '{env_id}'{close_matches(env_id, known_ids())}: "
                          f"pass a registered Gymnasium id, e.g. env=CartPole-v1")


def resolve_backend(env_id: str, backend: str) -> str:
    """The backend that will simulate ``env_id``: ``auto`` picks the first that provides it."""
    check_env_id(env_id)
    if backend == AUTO:
        return next(name for name in _BACKENDS if env_id in provided_ids(name))
    if backend not in _BACKENDS:
        raise ConfigError(f"env.backend={backend} is not valid: use one of {', '.join([AUTO, *_BACKENDS])}")
    if env_id not in provided_ids(backend):
        others = [name for name in _BACKENDS if env_id in provided_ids(name)]
        provided = sorted(provided_ids(backend))
        listing = f" (it provides: {', '.join(provided)})" if len(provided) <= 40 else ""
        raise ConfigError(f"{env_id} has no {'JAX port' if backend == 'jax' else backend + ' environment'}"
                          f"{listing}: use env.backend={others[0]} or env.backend=auto")
    return backend


def make_env(env_id: str, backend: str, host_envs: int) -> tuple[Any, str]:
    """``(env, backend name)``: a functional JAX env, or a host vector env of ``host_envs`` copies."""
    name = resolve_backend(env_id, backend)
    return _BACKENDS[name].make(env_id, host_envs), name


def env_spaces(env_id: str, backend: str) -> tuple[Any, Any]:
    """``(observation space, action space)`` as the policy sees them, from one environment
    (no vector of training environments): what loading a trained policy needs."""
    return _BACKENDS[resolve_backend(env_id, backend)].spaces(env_id)


def episode_time_limit(env_id: str, backend: str = AUTO) -> int | None:
    """The episode time limit of ``env_id`` as ``backend`` simulates it; None without one."""
    return _BACKENDS[resolve_backend(env_id, backend)].time_limit(env_id)


# ------------------------------------------------------------------ the built-in backends


def _jax_ports() -> Backend:
    def ports() -> dict[str, type]:
        from pgrun.envs.classic import JAX_PORTS

        return JAX_PORTS

    def make(env_id: str, host_envs: int) -> Any:
        return ports()[env_id]()

    def spaces(env_id: str) -> tuple[Any, Any]:
        env = ports()[env_id]()
        return env.observation_space, env.action_space

    return Backend("jax", True, lambda: list(ports()), make, spaces, lambda env_id: ports()[env_id].max_episode_steps)


def _unsupported_spaces(env_id: str, err: Exception) -> ConfigError:
    return ConfigError(f"{env_id}: {err}: pick an environment whose spaces are Box or Discrete")


def _gymnasium_extra_hint(env_id: str, err: Exception) -> ConfigError:
    return ConfigError(f"{env_id} needs an extra dependency ({first_line(err)}): "
                       f"install it, e.g. pip install 'pgrun[mujoco]' or 'pgrun[box2d]'")


def _gymnasium(name: str = "gymnasium", vectorization_mode: str = "sync") -> Backend:
    """Any Gymnasium id; ``vectorization_mode="async"`` steps each copy in a worker process."""

    def make(env_id: str, host_envs: int) -> Any:
        import gymnasium

        from pgrun.envs.gym_bridge import GymVectorEnv, UnsupportedSpaceError

        try:
            return GymVectorEnv(env_id, host_envs, vectorization_mode)
        except UnsupportedSpaceError as err:
            raise _unsupported_spaces(env_id, err) from None
        except gymnasium.error.DependencyNotInstalled as err:
            raise _gymnasium_extra_hint(env_id, err) from None

    def spaces(env_id: str) -> tuple[Any, Any]:
        import gymnasium

        from pgrun.envs.gym_bridge import UnsupportedSpaceError, action_space_of, observation_space_of

        try:
            env = gymnasium.make(env_id)
        except gymnasium.error.DependencyNotInstalled as err:
            raise _gymnasium_extra_hint(env_id, err) from None
        try:
            return observation_space_of(env.observation_space), action_space_of(env.action_space)
        except UnsupportedSpaceError as err:
            raise _unsupported_spaces(env_id, err) from None
        finally:
            env.close()

    def time_limit(env_id: str) -> int | None:
        import gymnasium

        return gymnasium.spec(env_id).max_episode_steps

    return Backend(name, False, gymnasium_ids, make, spaces, time_limit)


def _envpool() -> Backend:
    """envpool's MuJoCo ids. Registered whether or not envpool is installed, so that asking for it
    without it says what to install (checked when the run is validated, before any folder exists);
    envpool itself is imported only to build environments, as importing it takes seconds."""

    def bridge() -> Any:
        from pgrun.envs import envpool_bridge  # imports Gymnasium: only when an envpool id is asked for

        return envpool_bridge

    def require() -> None:
        envpool_bridge = bridge()
        if not envpool_bridge.envpool_installed():
            raise ConfigError(f"env.backend=envpool needs the envpool package: {envpool_bridge.INSTALL_HINT}")

    def time_limit(env_id: str) -> int | None:
        import gymnasium

        require()
        return gymnasium.spec(env_id).max_episode_steps  # envpool is built with the same limit

    def make(env_id: str, host_envs: int) -> Any:
        from pgrun.envs.envpool_bridge import EnvpoolVectorEnv

        return EnvpoolVectorEnv(env_id, host_envs, time_limit(env_id))

    def spaces(env_id: str) -> tuple[Any, Any]:
        envs = make(env_id, 1)
        try:
            return envs.observation_space, envs.action_space
        finally:
            envs.close()

    return Backend("envpool", False, lambda: list(bridge().ENVPOOL_IDS), make, spaces, time_limit)


def _brax() -> Backend:
    """Brax's tasks as ``brax/<task>``, inside the compiled loop. Registered whether or not Brax is
    installed, so that asking for one without it says what to install; imported only to build one."""

    def module() -> Any:
        from pgrun.envs import brax_backend  # imports JAX: only when a Brax id is asked for

        return brax_backend

    def time_limit(env_id: str) -> int | None:
        brax_backend = module()
        if not brax_backend.brax_installed():
            raise ConfigError(f"{env_id} needs Brax: {brax_backend.INSTALL_HINT}")
        return brax_backend.EPISODE_STEPS

    def make(env_id: str, host_envs: int) -> Any:
        time_limit(env_id)
        return module().BraxEnv(env_id)

    def spaces(env_id: str) -> tuple[Any, Any]:
        env = make(env_id, 1)
        return env.observation_space, env.action_space

    return Backend("brax", True, lambda: list(module().BRAX_IDS), make, spaces, time_limit)


register_backend(_jax_ports())
register_backend(_gymnasium())
register_backend(_gymnasium("gymnasium_async", "async"))
register_backend(_envpool())
register_backend(_brax())
