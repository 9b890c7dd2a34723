"""The algorithm registry: every module in this package that exports ``ALGORITHM``.

Adding an algorithm is one module here (exporting an
:class:`~pgrun.types.AlgorithmSpec` as ``ALGORITHM``) and one YAML in
``conf/algo/`` whose defaults start from ``_<name>_schema``; the config
schemas, command-line choices, validation, HParams columns, tests that cover
every algorithm and the documentation table all read this registry.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache
from typing import Any

from pgrun.errors import ConfigError
from pgrun.policies import Policy
from pgrun.types import Algorithm, AlgoContext, AlgorithmSpec


@lru_cache(maxsize=None)
def registry() -> dict[str, AlgorithmSpec]:
    """Every registered algorithm by name, in alphabetical order."""
    found: dict[str, AlgorithmSpec] = {}
    for module_info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        spec = getattr(module, "ALGORITHM", None)
        if spec is None:
            continue
        if spec.name in found:
            raise RuntimeError(f"two algorithm modules register the name '{spec.name}'")
        found[spec.name] = spec
    return dict(sorted(found.items()))


def algorithm_names() -> list[str]:
    """Every registered algorithm's name, sorted: the choices of ``algo=``."""
    return list(registry())


def get_algorithm(name: str) -> AlgorithmSpec:
    """The registered algorithm called ``name``; :class:`ConfigError` naming the choices otherwise."""
    specs = registry()
    if name not in specs:
        raise ConfigError(f"unknown algorithm '{name}': choose one of {', '.join(specs)}")
    return specs[name]


def make_algorithm(cfg: Any, policy: Policy, num_iterations: int, context: AlgoContext) -> Algorithm:
    """The algorithm named by ``cfg.name``, built for ``num_iterations`` rollouts."""
    return get_algorithm(cfg.name).build(cfg, policy, num_iterations, context)
