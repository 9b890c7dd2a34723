"""The functional environment interface every backend implements.

An environment is a set of pure functions over an explicit state, so that a
whole rollout can live inside ``jax.lax.scan`` and be ``vmap``-ed over parallel
environments and seeds. Truncation at ``max_episode_steps`` belongs to the
environment itself (the step counter is part of the state), exactly as
Gymnasium's ``TimeLimit`` wrapper does it for the registered ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Union

import jax
import numpy as np


@dataclass(frozen=True)
class Discrete:
    """``n`` actions, numbered ``0 .. n-1``."""

    n: int


@dataclass(frozen=True)
class Box:
    """A box of real vectors; bounds may be infinite."""

    low: np.ndarray
    high: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(np.shape(self.low))


Space = Union[Discrete, Box]


class Env(Protocol):
    """A pure-JAX environment: no Python side effects, all state explicit.

    ``reset(key) -> (obs, state)`` and
    ``step(key, state, action) -> (obs, state, reward, terminated, truncated)``
    where ``reward`` is float32 and both flags are booleans. ``truncated`` is
    true only when the time limit ends an episode that did not terminate.
    """

    id: str
    observation_space: Box
    action_space: Space
    max_episode_steps: int

    def reset(self, key: jax.Array) -> tuple[jax.Array, Any]: ...

    def step(
        self, key: jax.Array, state: Any, action: jax.Array
    ) -> tuple[jax.Array, Any, jax.Array, jax.Array, jax.Array]: ...
