"""One module per algorithm; :func:`make_algorithm` picks by ``cfg.name``."""

from __future__ import annotations

from typing import Any

from pgrun.algos.a2c import make_a2c
from pgrun.algos.common import Algorithm
from pgrun.algos.npg import make_npg
from pgrun.algos.ppo import make_ppo
from pgrun.algos.reinforce import make_reinforce
from pgrun.algos.trpo import make_trpo
from pgrun.policies import Policy

BUILDERS = {"reinforce": make_reinforce, "a2c": make_a2c, "npg": make_npg, "trpo": make_trpo, "ppo": make_ppo}


def make_algorithm(cfg: Any, policy: Policy, num_iterations: int) -> Algorithm:
    """The algorithm named by ``cfg.name``, built for ``num_iterations`` rollouts."""
    return BUILDERS[cfg.name](cfg, policy, num_iterations)
