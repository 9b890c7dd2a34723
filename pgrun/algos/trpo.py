"""TRPO: NPG's natural-gradient step, accepted only through a backtracking line search.

Candidates theta + c^j s (c = ``backtrack_coef``, j = 0 .. ``max_backtracks``)
are tried in turn; the first whose surrogate improves and whose mean KL to
the old policy is at most ``delta`` is taken, and if none is, the policy stays
as it was. The direction and step size are NPG's own code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pgrun.algos.common import Algorithm
from pgrun.algos.npg import LineSearch, NPGConfig, make_natural_policy_gradient, validate_npg
from pgrun.errors import require
from pgrun.policies import Policy
from pgrun.types import AlgoContext, AlgorithmSpec


@dataclass
class TRPOConfig(NPGConfig):
    """NPG plus a backtracking line search on the surrogate and the true KL."""

    name: str = "trpo"
    backtrack_coef: float = 0.8
    max_backtracks: int = 10


def validate_trpo(algo: Any, context: AlgoContext) -> None:
    """NPG's checks plus a backtracking coefficient in (0, 1)."""
    validate_npg(algo, context)
    require(0 < algo.backtrack_coef < 1, f"algo.backtrack_coef={algo.backtrack_coef} must lie in (0, 1)")
    require(algo.max_backtracks >= 0, f"algo.max_backtracks={algo.max_backtracks} must be non-negative")


def make_trpo(cfg: Any, policy: Policy, num_iterations: int, context: AlgoContext | None = None) -> Algorithm:
    """Build TRPO's pure update for ``cfg`` (a TRPOConfig) and ``num_iterations`` rollouts."""
    return make_natural_policy_gradient(cfg, policy, num_iterations,
                                        LineSearch(cfg.max_backtracks))


ALGORITHM = AlgorithmSpec(
    name="trpo", config=TRPOConfig, build=make_trpo, validate=validate_trpo, paper="Schulman et al., 2015",
    summary="trust-region policy optimisation: NPG's step behind a line search on the surrogate and the KL")
