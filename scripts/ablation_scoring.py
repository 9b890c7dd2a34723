"""Scoring for the PPO objective ablation: the PPO paper's protocol, as pure functions.

The paper (Schulman et al., 2017, section 6.1) scores a run by the mean total
reward of its last 100 episodes, shifts and scales each environment so that a
random policy scores 0 and the best setting 1, and averages over environments
and seeds. Our event files hold one mean per logging block, with the number
of episodes behind it, so the last-100 mean is rebuilt from blocks. Kept apart
from the runner (numpy only, no training) so the arithmetic can be tested on
its own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np


def last_episodes_mean(block_means: Sequence[float], block_counts: Sequence[float],
                       episodes: int = 100) -> tuple[float, int]:
    """``(mean return, episodes used)`` over the last logging blocks that cover
    at least ``episodes`` episodes, oldest block first in the inputs.

    Blocks are taken whole, newest first, each weighted by its episode count,
    until ``episodes`` are covered: a block's mean is all we know of its
    episodes, so none is split. Blocks without episodes (whose logged mean is
    a repeat of an older one) weigh nothing. When the whole run ended fewer
    episodes, all are used and the count says so; NaN when none ended.
    """
    means = np.asarray(block_means, dtype=float)
    counts = np.asarray(block_counts, dtype=float)
    if means.shape != counts.shape:
        raise ValueError(f"{means.shape[0]} block means but {counts.shape[0]} episode counts")
    total, weighted = 0.0, 0.0
    for mean, count in zip(means[::-1], counts[::-1]):
        if count <= 0:
            continue
        if not math.isfinite(mean):
            raise ValueError("a block with episodes has a non-finite mean return")
        total += count
        weighted += count * mean
        if total >= episodes:
            break
    return (weighted / total if total else math.nan), int(round(total))


def normalise(score: float | np.ndarray, random_score: float, best_score: float) -> float | np.ndarray:
    """Shift and scale so that ``random_score`` maps to 0 and ``best_score`` to 1."""
    span = best_score - random_score
    if not span > 0:
        raise ValueError(f"the best score {best_score} must exceed the random policy's {random_score}")
    return (np.asarray(score, dtype=float) - random_score) / span


def normalised_scores(scores: Mapping[str, Mapping[str, Sequence[float]]],
                      random_scores: Mapping[str, float]) -> dict[str, dict[str, np.ndarray]]:
    """``env -> setting -> per-seed normalised scores``, from raw per-seed scores.

    Per environment the best setting is the one with the highest mean over
    seeds; it scores 1 on average, the random policy 0.
    """
    result: dict[str, dict[str, np.ndarray]] = {}
    for env, by_setting in scores.items():
        best = max(float(np.mean(values)) for values in by_setting.values())
        result[env] = {setting: normalise(np.asarray(values, float), random_scores[env], best)
                       for setting, values in by_setting.items()}
    return result


def average_over_envs(normalised: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, tuple[float, float]]:
    """``setting -> (mean, standard error)`` of the normalised score averaged over
    environments and seeds.

    Every environment counts equally (the mean of its seeds' mean); the
    standard error comes from the seed-to-seed spread within each environment
    (sample std, n-1), NaN with a single seed.
    """
    envs = list(normalised)
    settings = list(normalised[envs[0]])
    result = {}
    for setting in settings:
        per_env = [np.asarray(normalised[env][setting], float) for env in envs]
        mean = float(np.mean([values.mean() for values in per_env]))
        if all(values.size > 1 for values in per_env):
            variance = sum(values.var(ddof=1) / values.size for values in per_env) / len(envs) ** 2
            error = math.sqrt(variance)
        else:
            error = math.nan
        result[setting] = (mean, error)
    return result


def ranks(values: Sequence[float]) -> np.ndarray:
    """Ranks from 1 (smallest) to n; tied values share the mean of their ranks."""
    values = np.asarray(values, dtype=float)
    order = np.argsort(values, kind="stable")
    result = np.empty(len(values))
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[order[j + 1]] == values[order[i]]:
            j += 1
        result[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return result


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation: the Pearson correlation of the (tie-averaged) ranks."""
    if len(x) != len(y) or len(x) < 2:
        raise ValueError("spearman needs two sequences of the same length, at least 2")
    rx, ry = ranks(x), ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denominator = math.sqrt(float(np.sum(rx**2) * np.sum(ry**2)))
    return float(np.sum(rx * ry) / denominator) if denominator else math.nan


def spearman_p_value(x: Sequence[float], y: Sequence[float], permutations: int = 20_000, seed: int = 0) -> float:
    """Two-sided permutation p-value of :func:`spearman`: the share of random
    pairings whose |rho| is at least the observed one (with 11 settings the
    exact null has 11! pairings, so it is sampled)."""
    observed = abs(spearman(x, y))
    rx = ranks(x) - ranks(x).mean()
    ry = ranks(y) - ranks(y).mean()
    scale = math.sqrt(float(np.sum(rx**2) * np.sum(ry**2)))
    rng = np.random.default_rng(seed)
    shuffled = np.array([rng.permutation(ry) for _ in range(permutations)])
    rhos = np.abs(shuffled @ rx) / scale
    return float((1 + np.sum(rhos >= observed - 1e-12)) / (1 + permutations))
