"""One module per algorithm; :func:`make_algorithm` picks by ``cfg.name``."""

from __future__ import annotations

from typing import Any

from pgrun.algos.common import Algorithm
from pgrun.config import ConfigError
from pgrun.policies import Policy


def make_algorithm(cfg: Any, policy: Policy, num_iterations: int) -> Algorithm:
    if cfg.name == "ppo":
        from pgrun.algos.ppo import make_ppo

        return make_ppo(cfg, policy, num_iterations)
    raise ConfigError(f"algorithm '{cfg.name}' is not available: use algo=ppo")
