"""pgrun.stats: hand-worked small cases, and agreement with rliable (Agarwal et al., 2021) on random ones.

The bootstrap comparisons run both implementations with fixed seeds, so they
are deterministic; the tolerance, 6% of the interval's width, covers the
Monte-Carlo difference between two independent sets of 5,000 resamples (at
most 3.3% over twelve trials) but not a 90% interval passed off as a 95% one
(8%), nor an unstratified resampling (many times the width).
"""

from __future__ import annotations

import numpy as np
import pytest
from rliable import library, metrics
from scipy import stats as scipy_stats

from pgrun import stats

REPS = 5000
TOLERANCE = 0.06  # of an interval's width


def correlated_scores(seed: int, runs: int = 10) -> np.ndarray:
    """``[runs, 3]`` scores on three tasks of very different scales, where a run's seed lifts all its tasks.

    Very different task levels make pooling the tasks' scores (unstratified
    resampling) widen the interval many times over; a shared per-run effect
    makes drawing whole rows (one run index for every task) widen it too.
    """
    rng = np.random.default_rng(seed)
    run_effect = rng.normal(0.0, 10.0, size=(runs, 1))
    return np.array([0.0, 200.0, 1000.0]) + run_effect + rng.normal(0.0, 1.0, size=(runs, 3))


def rliable_ci(scores: np.ndarray, aggregate, seed: int) -> tuple[float, float]:
    np.random.seed(seed)  # rliable's StratifiedBootstrap draws from numpy's global generator
    _, intervals = library.get_interval_estimates({"x": scores}, lambda s: np.array([aggregate(s)]), reps=REPS)
    return float(intervals["x"][0, 0]), float(intervals["x"][1, 0])


# ---------------------------------------------------------------- IQM


@pytest.mark.parametrize("scores, expected", [
    ([1, 2, 3, 4, 5, 6, 7, 8], 4.5),            # cut 2 each end: mean(3, 4, 5, 6)
    ([1, 2, 3, 4, 5, 6, 7, 1000], 4.5),         # the outlier is cut; the mean would be 128.5
    ([10, 1, 2, 3, 100], 5.0),                  # n=5: cut int(1.25) = 1: mean(2, 3, 10)
    ([0, 1, 2, 4, 8, 100], 3.75),               # n=6: cut int(1.5) = 1 (rounding would cut 2: 3.0)
    ([1, 2, 30], 11.0),                         # below 4 scores nothing is cut: the mean
    ([7.0], 7.0),
    ([[1, 100], [2, 3], [4, 5], [6, 7]], 4.5),  # runs and tasks pooled: 1 2 3 4 5 6 7 100
])
def test_iqm_hand_worked(scores, expected):
    assert stats.iqm(scores) == pytest.approx(expected)


def test_iqm_along_an_axis_is_one_iqm_per_column():
    values = np.array([[0.0, 10.0], [1.0, 20.0], [2.0, 30.0], [100.0, -50.0]])
    np.testing.assert_allclose(stats.iqm(values, axis=0), [1.5, 15.0])


@pytest.mark.parametrize("shape", [(1,), (3,), (5,), (10,), (7, 3), (10, 5), (4, 1)])
def test_iqm_equals_rliable_and_scipy(shape):
    scores = np.random.default_rng(sum(shape)).normal(size=shape) * 100
    assert stats.iqm(scores) == pytest.approx(metrics.aggregate_iqm(scores), rel=1e-12)
    assert stats.iqm(scores) == pytest.approx(scipy_stats.trim_mean(scores, 0.25, axis=None), rel=1e-12)


# ---------------------------------------------------------------- bootstrap CI


def test_bootstrap_ci_of_two_runs_spans_them():
    # Resampled means of [0, 1]: 0, 0.5, 1 with probability 1/4, 1/2, 1/4, so the 2.5% and 97.5%
    # percentiles are 0 and 1, the 20% and 80% ones too, and the 30% and 70% ones both 0.5.
    assert stats.bootstrap_ci([0.0, 1.0], np.mean) == (0.0, 1.0)
    assert stats.bootstrap_ci([0.0, 1.0], np.mean, confidence=0.6) == (0.0, 1.0)
    assert stats.bootstrap_ci([0.0, 1.0], np.mean, confidence=0.4) == (0.5, 0.5)


def test_bootstrap_ci_is_stratified_by_task():
    # Runs differ only between tasks: each task's resample is its own constant, so every resample has
    # the same mean and the interval has no width. Pooling the tasks would draw 0s and 10s in any mix.
    scores = np.array([[0.0, 10.0]] * 6)
    low, high = stats.bootstrap_ci(scores, np.mean)
    assert low == pytest.approx(5.0) and high == pytest.approx(5.0)


def test_bootstrap_ci_is_deterministic_and_contains_the_estimate():
    scores = correlated_scores(0)
    first = stats.bootstrap_ci(scores, stats.iqm, seed=3)
    assert stats.bootstrap_ci(scores, stats.iqm, seed=3) == first
    assert stats.bootstrap_ci(scores, stats.iqm, seed=4) != first
    assert first[0] < stats.iqm(scores) < first[1]
    narrow = stats.bootstrap_ci(scores, stats.iqm, confidence=0.5, seed=3)
    assert first[0] < narrow[0] < narrow[1] < first[1]
    assert stats.bootstrap_ci([4.0], np.mean) == (4.0, 4.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name, aggregate, ours", [("iqm", metrics.aggregate_iqm, stats.iqm),
                                                   ("mean", metrics.aggregate_mean, np.mean)])
def test_bootstrap_ci_matches_rliable(seed, name, aggregate, ours):
    scores = correlated_scores(seed)
    expected = rliable_ci(scores, aggregate, seed)
    got = stats.bootstrap_ci(scores, ours, reps=REPS, seed=seed)
    width = expected[1] - expected[0]
    assert width > 0
    np.testing.assert_allclose(got, expected, atol=TOLERANCE * width, err_msg=name)


def test_one_task_as_1d_or_2d_is_the_same_interval():
    scores = correlated_scores(5)[:, 1]
    assert stats.bootstrap_ci(scores, np.mean) == stats.bootstrap_ci(scores[:, None], np.mean)


def test_invalid_scores_are_refused():
    for bad in ([], [1.0, np.nan], np.zeros((2, 2, 2))):
        with pytest.raises(ValueError):
            stats.bootstrap_ci(bad, np.mean)
        with pytest.raises(ValueError):
            stats.summarize(bad)
    with pytest.raises(ValueError):
        stats.bootstrap_ci([1.0, 2.0], np.mean, confidence=95)


# ---------------------------------------------------------------- summarize


def test_summarize_hand_worked():
    scores = [4.0, 1.0, 100.0, 2.0, 3.0]
    summary = stats.summarize(scores, target=3.0)
    assert set(summary) == {"n", "mean", "mean_ci", "iqm", "iqm_ci", "median", "worst", "std", "fraction_at_or_above"}
    assert summary["n"] == 5
    assert summary["mean"] == pytest.approx(22.0)
    assert summary["iqm"] == pytest.approx(3.0)  # mean(2, 3, 4)
    assert summary["median"] == 3.0 and summary["worst"] == 1.0
    assert summary["std"] == pytest.approx(np.sqrt(((np.array(scores) - 22.0) ** 2).sum() / 4))  # n-1
    assert summary["fraction_at_or_above"] == pytest.approx(0.6)  # 3, 4, 100: the target itself counts
    assert summary["mean_ci"] == pytest.approx(stats.bootstrap_ci(scores, np.mean))
    assert summary["iqm_ci"] == pytest.approx(stats.bootstrap_ci(scores, stats.iqm))
    assert summary["iqm_ci"][0] < 3.0 < summary["iqm_ci"][1] and summary["mean_ci"][0] < 22.0 < summary["mean_ci"][1]


def test_summarize_one_run_shows_no_spread():
    summary = stats.summarize([7.0])
    assert "fraction_at_or_above" not in summary
    assert summary == {"n": 1, "mean": 7.0, "mean_ci": None, "iqm": 7.0, "iqm_ci": None, "median": 7.0,
                       "worst": 7.0, "std": None}


def test_summarize_two_runs():
    summary = stats.summarize([0.0, 500.0], target=500.0)
    assert summary["std"] == pytest.approx(np.sqrt(125000.0))
    assert summary["mean_ci"] == (0.0, 500.0) and summary["iqm_ci"] == (0.0, 500.0)
    assert summary["fraction_at_or_above"] == 0.5


def test_summarize_matches_rliable():
    scores = correlated_scores(7)
    summary = stats.summarize(scores, reps=REPS, seed=7)
    assert summary["iqm"] == pytest.approx(metrics.aggregate_iqm(scores))
    assert summary["mean"] == pytest.approx(metrics.aggregate_mean(scores))
    for key, aggregate in (("iqm_ci", metrics.aggregate_iqm), ("mean_ci", metrics.aggregate_mean)):
        expected = rliable_ci(scores, aggregate, 7)
        np.testing.assert_allclose(summary[key], expected, atol=TOLERANCE * (expected[1] - expected[0]), err_msg=key)


# ---------------------------------------------------------------- performance profiles and bands


def test_performance_profile_hand_worked():
    profile = stats.performance_profile([1.0, 2.0, 3.0, 4.0], [0.0, 1.0, 2.5, 4.0, 5.0])
    np.testing.assert_allclose(profile, [1.0, 1.0, 0.5, 0.25, 0.0])  # a score equal to tau counts


def test_performance_profile_matches_rliable():
    scores = correlated_scores(11)
    rng = np.random.default_rng(11)
    taus = np.sort(rng.uniform(scores.min() - 5, scores.max() + 5, size=40))  # ties with a score: probability 0
    np.random.seed(11)
    profiles, bands = library.create_performance_profile({"x": scores}, taus, reps=REPS)
    np.testing.assert_allclose(stats.performance_profile(scores, taus), profiles["x"])
    lower, upper = stats.performance_profile_band(scores, taus, reps=REPS, seed=11)
    # Fractions of 30 scores move in steps of 1/30: allow one step of Monte-Carlo difference.
    np.testing.assert_allclose(lower, bands["x"][0], atol=1 / 30 + 1e-9)
    np.testing.assert_allclose(upper, bands["x"][1], atol=1 / 30 + 1e-9)
    assert np.all(lower <= profiles["x"]) and np.all(profiles["x"] <= upper)


def test_bootstrap_band_stays_within_the_data():
    # Two seeds at 0 and 500 on a task bounded by 0..500: a t-interval would run far outside.
    curves = np.array([[0.0, 100.0, 500.0], [500.0, 300.0, 500.0]])
    lower, upper = stats.bootstrap_band(curves)
    np.testing.assert_allclose(lower, [0.0, 100.0, 500.0])
    np.testing.assert_allclose(upper, [500.0, 300.0, 500.0])
    rng = np.random.default_rng(0)
    curves = rng.normal(size=(5, 50)).cumsum(axis=1)
    lower, upper = stats.bootstrap_band(curves)
    center = stats.iqm(curves, axis=0)
    assert np.all(curves.min(axis=0) <= lower) and np.all(upper <= curves.max(axis=0))
    assert np.all(lower <= center + 1e-12) and np.all(center <= upper + 1e-12)
    assert np.all(upper - lower > 0)
    one = stats.bootstrap_band(curves[:1])
    np.testing.assert_array_equal(one[0], curves[0])
    np.testing.assert_array_equal(one[1], curves[0])


def test_bootstrap_band_is_deterministic_for_a_seed():
    curves = np.random.default_rng(1).normal(size=(20, 30))
    first = stats.bootstrap_band(curves, seed=5)
    np.testing.assert_array_equal(stats.bootstrap_band(curves, seed=5), first)
    assert not np.array_equal(stats.bootstrap_band(curves, seed=6), first)


def test_bootstrap_band_at_each_point_is_the_one_task_interval():
    curves = correlated_scores(3)
    lower, upper = stats.bootstrap_band(curves, reps=REPS)
    for point in range(curves.shape[1]):
        expected = rliable_ci(curves[:, point:point + 1], metrics.aggregate_iqm, point)
        width = expected[1] - expected[0]
        assert lower[point] == pytest.approx(expected[0], abs=TOLERANCE * width)
        assert upper[point] == pytest.approx(expected[1], abs=TOLERANCE * width)
