"""Scores across seeds, reported as Agarwal et al. (2021) recommend.

"Deep Reinforcement Learning at the Edge of the Statistical Precipice"
(NeurIPS 2021): with the handful of seeds an RL experiment has, a mean ± std
hides how uncertain the estimate is, and one outlying seed moves the mean. So
report the interquartile mean (robust to an outlier, far less noisy than the
median), a stratified bootstrap confidence interval for it, the worst seed,
and the whole distribution of run scores (a performance profile).

Scores are ``[runs, tasks]`` arrays, a 1-D array being one task. numpy only,
so the base install needs nothing more; the tests check these functions
against the ``rliable`` package, the paper's reference implementation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Union

import numpy as np

Scores = Union[Sequence[float], Sequence[Sequence[float]], np.ndarray]
Statistic = Callable[[np.ndarray], Any]

# Every CI of a report and a plot uses these, so the same inputs give the same numbers.
CONFIDENCE = 0.95
REPS = 2000
SEED = 0


def _scores(scores: Scores) -> np.ndarray:
    """Scores as a float array; refuse what would make every statistic silently wrong."""
    array = np.asarray(scores, dtype=float)
    if array.ndim not in (1, 2) or array.size == 0:
        raise ValueError(f"scores must be a non-empty [runs] or [runs, tasks] array, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError("scores must be finite (drop the runs without a score first)")
    return array


def _check(confidence: float, reps: int) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence}")
    if reps < 1:
        raise ValueError(f"reps must be at least 1, got {reps}")


def iqm(scores: Scores, axis: int | None = None) -> Any:
    """Interquartile mean: the mean of the middle 50% of the scores.

    ``int(0.25 * n)`` scores are cut from each end, the convention of
    ``scipy.stats.trim_mean(x, 0.25)`` and rliable, so below four scores
    nothing is cut and this is the mean. ``axis=None`` pools runs and tasks
    (a float); an axis gives one IQM per remaining index (an array).
    """
    array = np.asarray(scores, dtype=float)
    if axis is None:
        array, axis = array.reshape(-1), 0
    n = array.shape[axis]
    if n == 0:
        raise ValueError("iqm of no scores")
    cut = int(0.25 * n)
    middle = np.take(np.sort(array, axis=axis), np.arange(cut, n - cut), axis=axis)
    result = middle.mean(axis=axis)
    return float(result) if result.ndim == 0 else result


def _interval(replicates: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval: the bootstrap distribution's own quantiles, no normal approximation."""
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(replicates, [tail, 100.0 - tail], axis=0)
    return low, high


def _stratified_replicates(scores: np.ndarray, statistic: Statistic, reps: int, seed: int) -> np.ndarray:
    """``statistic`` of ``reps`` resamples, each drawing runs with replacement within each task.

    Tasks are fixed and only seeds are random, so every task keeps its own
    number of runs in every resample; each (run, task) cell draws its run
    independently, which treats run i of one task as unrelated to run i of
    another. Pooling all tasks' scores instead would let a resample hold more
    runs of an easy task than of a hard one, and widen the interval for
    nothing.
    """
    table = scores.reshape(scores.shape[0], -1)
    runs, tasks = table.shape
    columns = np.arange(tasks)
    rng = np.random.default_rng(seed)
    replicates = []
    for _ in range(reps):
        rows = rng.integers(0, runs, size=(runs, tasks))
        replicates.append(np.asarray(statistic(table[rows, columns].reshape(scores.shape)), dtype=float))
    return np.stack(replicates)


def bootstrap_ci(scores: Scores, statistic: Statistic, confidence: float = CONFIDENCE, reps: int = REPS,
                 seed: int = SEED) -> tuple[float, float]:
    """Stratified bootstrap percentile confidence interval ``(low, high)`` for a scalar ``statistic``.

    ``scores`` is ``[runs, tasks]`` or 1-D (one task); ``statistic`` gets each
    resample in that same shape. Runs are resampled within each task (see
    :func:`_stratified_replicates`), and the same ``seed`` gives the same
    interval, so a report does not change between two readings. With one run
    there is nothing to resample and the interval is that run's value.
    """
    _check(confidence, reps)
    replicates = _stratified_replicates(_scores(scores), statistic, reps, seed)
    if replicates.ndim != 1:
        raise ValueError("statistic must return one number (see performance_profile_band for a vector)")
    low, high = _interval(replicates, confidence)
    return float(low), float(high)


def bootstrap_band(curves: np.ndarray, statistic: Callable[[np.ndarray], np.ndarray] | None = None,
                   confidence: float = CONFIDENCE, reps: int = REPS, seed: int = SEED
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Pointwise bootstrap percentile band ``(lower, upper)`` for curves ``[runs, points]``.

    ``statistic`` maps ``[runs, points]`` to ``[points]`` (default: the IQM
    over runs). A resample draws whole runs, keeping each run's curve in one
    piece, so the band is smooth; at every point it is the one-task interval
    :func:`bootstrap_ci` would give. Since every resample's IQM or mean is an
    average of observed values, the band never leaves the data's range.
    """
    _check(confidence, reps)
    values = np.asarray(curves, dtype=float)
    if values.ndim != 2 or values.size == 0:
        raise ValueError(f"curves must be a non-empty [runs, points] array, got shape {values.shape}")
    reduce = statistic or (lambda x: iqm(x, axis=0))
    rng = np.random.default_rng(seed)
    runs = values.shape[0]
    replicates = np.stack([np.asarray(reduce(values[rng.integers(0, runs, size=runs)]), dtype=float)
                           for _ in range(reps)])
    return _interval(replicates, confidence)


def performance_profile(scores: Scores, thresholds: Sequence[float] | np.ndarray) -> np.ndarray:
    """Fraction of runs (of all tasks) scoring at or above each threshold.

    ``>=`` rather than rliable's ``>``, so that the profile at a target is the
    report's fraction of seeds at or above it; the two differ only at a
    threshold equal to some run's score.
    """
    pooled = _scores(scores).reshape(-1)
    taus = np.asarray(thresholds, dtype=float).reshape(-1)
    return (pooled[:, None] >= taus[None, :]).mean(axis=0)


def performance_profile_band(scores: Scores, thresholds: Sequence[float] | np.ndarray,
                             confidence: float = CONFIDENCE, reps: int = REPS, seed: int = SEED
                             ) -> tuple[np.ndarray, np.ndarray]:
    """Stratified bootstrap percentile band ``(lower, upper)`` of :func:`performance_profile`."""
    _check(confidence, reps)
    taus = np.asarray(thresholds, dtype=float).reshape(-1)
    replicates = _stratified_replicates(_scores(scores), lambda x: performance_profile(x, taus), reps, seed)
    return _interval(replicates, confidence)


def summarize(scores: Scores, target: float | None = None, *, confidence: float = CONFIDENCE, reps: int = REPS,
              seed: int = SEED) -> dict[str, Any]:
    """What a results table shows for one method: point estimates, intervals, worst run.

    Keys: ``n`` (runs), ``mean``, ``mean_ci`` and ``iqm``, ``iqm_ci``
    (stratified bootstrap percentile intervals, as :func:`bootstrap_ci` with
    the same seed gives), ``median``, ``worst`` (the lowest score), ``std``
    (sample std, n-1) and, when ``target`` is given, ``fraction_at_or_above``.
    Point statistics pool runs and tasks. With one run there is no spread to
    estimate: ``std`` and both intervals are None rather than a zero width
    that would look like certainty.
    """
    _check(confidence, reps)
    array = _scores(scores)
    pooled = array.reshape(-1)
    n = int(array.shape[0])
    mean_ci = iqm_ci = None
    if n >= 2:
        # one set of resamples for both, exactly the draws bootstrap_ci makes with this seed
        replicates = _stratified_replicates(array, lambda x: (np.mean(x), iqm(x)), reps, seed)
        low, high = _interval(replicates, confidence)
        mean_ci, iqm_ci = (float(low[0]), float(high[0])), (float(low[1]), float(high[1]))
    summary: dict[str, Any] = {
        "n": n,
        "mean": float(np.mean(pooled)),
        "mean_ci": mean_ci,
        "iqm": iqm(pooled),
        "iqm_ci": iqm_ci,
        "median": float(np.median(pooled)),
        "worst": float(np.min(pooled)),
        "std": float(np.std(pooled, ddof=1)) if n >= 2 else None,
    }
    if target is not None:
        summary["fraction_at_or_above"] = float(np.mean(pooled >= target))
    return summary
