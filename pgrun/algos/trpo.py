"""TRPO: NPG's natural-gradient step, accepted only through a backtracking line search.

Candidates theta + c^j s (c = ``backtrack_coef``, j = 0 .. ``max_backtracks``)
are tried in turn; the first whose surrogate improves and whose mean KL to
the old policy is at most ``delta`` is taken, and if none is, the policy stays
as it was. The direction and step size are NPG's own code.
"""

from __future__ import annotations

from typing import Any

from pgrun.algos.common import Algorithm
from pgrun.algos.npg import LineSearch, make_natural_policy_gradient
from pgrun.policies import Policy


def make_trpo(cfg: Any, policy: Policy, num_iterations: int) -> Algorithm:
    return make_natural_policy_gradient(cfg, policy, num_iterations,
                                        LineSearch(cfg.max_backtracks))
