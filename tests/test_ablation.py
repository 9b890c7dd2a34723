"""The scoring of scripts/ablation_ppo_objectives.py, on inputs whose answers are worked out by hand.

The ablation's conclusions rest on three pieces of arithmetic: the mean of
the last 100 episodes rebuilt from per-block means, the per-environment
normalisation, and the rank correlation with the paper. Each is checked here
against values computed independently (by hand, or by a different formula),
without any training; so is the reading of those blocks from event files
written by hand, and the sweep each objective's program runs.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
sys.path.insert(0, str(SCRIPTS))  # the scripts import their sibling modules, as when run directly


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


scoring = _load("ablation_scoring")


def test_last_100_episodes_walks_back_whole_blocks_weighted_by_count():
    # oldest first: 50 episodes at -1000, 40 at -300, a block with none (its logged mean repeats -300),
    # 30 at -200, 50 at -100. Newest first: 50 + 30 = 80 < 100, so the 40-episode block is needed
    # too (the empty block weighs nothing), 120 episodes in all, and the oldest block stays out.
    means = [-1000.0, -300.0, -300.0, -200.0, -100.0]
    counts = [50, 40, 0, 30, 50]
    mean, used = scoring.last_episodes_mean(means, counts, 100)
    assert used == 120
    assert mean == pytest.approx((50 * -100 + 30 * -200 + 40 * -300) / 120)  # -191.67


def test_last_100_episodes_stops_as_soon_as_100_are_covered():
    mean, used = scoring.last_episodes_mean([5.0, 7.0, 9.0], [100, 60, 40], 100)
    assert (mean, used) == (pytest.approx((60 * 7 + 40 * 9) / 100), 100)
    # one block that alone holds more than 100 episodes is taken whole
    assert scoring.last_episodes_mean([1.0, 2.0], [10, 250], 100) == (2.0, 250)


def test_last_100_episodes_with_fewer_episodes_uses_all_and_says_so():
    mean, used = scoring.last_episodes_mean([10.0, 20.0], [3, 1], 100)
    assert used == 4 and mean == pytest.approx(12.5)
    mean, used = scoring.last_episodes_mean([math.nan, math.nan], [0, 0], 100)
    assert used == 0 and math.isnan(mean)
    with pytest.raises(ValueError):
        scoring.last_episodes_mean([1.0], [1, 2], 100)


def test_normalisation_maps_random_to_0_and_best_to_1():
    assert scoring.normalise(-1200.0, -1200.0, -150.0) == pytest.approx(0.0)
    assert scoring.normalise(-150.0, -1200.0, -150.0) == pytest.approx(1.0)
    assert scoring.normalise(-675.0, -1200.0, -150.0) == pytest.approx(0.5)
    assert scoring.normalise(-1725.0, -1200.0, -150.0) == pytest.approx(-0.5)  # worse than random: negative
    with pytest.raises(ValueError):
        scoring.normalise(0.0, 5.0, 5.0)


def test_best_setting_is_the_best_mean_over_seeds_and_envs_weigh_equally():
    scores = {"A": {"x": [10.0, 30.0], "y": [15.0, 15.0], "z": [0.0, 0.0]},
              "B": {"x": [-50.0, -50.0], "y": [-10.0, -30.0], "z": [-80.0, -100.0]}}
    random = {"A": 0.0, "B": -100.0}
    normalised = scoring.normalised_scores(scores, random)
    # A: best mean is x (20): x -> [0.5, 1.5], y -> [0.75, 0.75], z -> [0, 0]
    # B: best mean is y (-20, i.e. 80 above random): x -> [0.625, 0.625], y -> [1.125, 0.875], z -> [0.25, 0]
    np.testing.assert_allclose(normalised["A"]["x"], [0.5, 1.5])
    np.testing.assert_allclose(normalised["B"]["y"], [1.125, 0.875])
    np.testing.assert_allclose(normalised["B"]["z"], [0.25, 0.0])
    for env in scores:
        assert max(float(np.mean(v)) for v in normalised[env].values()) == pytest.approx(1.0)
    averaged = scoring.average_over_envs(normalised)
    assert averaged["x"][0] == pytest.approx((1.0 + 0.625) / 2)
    assert averaged["y"][0] == pytest.approx((0.75 + 1.0) / 2)
    assert averaged["z"][0] == pytest.approx((0.0 + 0.125) / 2)
    # s.e. of (mean_A + mean_B) / 2: A's seeds [0.5, 1.5] have variance 0.5, B's none -> sqrt(0.5 / 2) / 2
    assert averaged["x"][1] == pytest.approx(math.sqrt(0.5 / 2) / 2)


def test_ranks_average_ties():
    np.testing.assert_allclose(scoring.ranks([0.3, 0.1, 0.3, 0.2]), [3.5, 1.0, 3.5, 2.0])


def test_spearman_against_the_no_ties_formula_and_extremes():
    x = [0.1, 0.4, 0.2, 0.9, 0.5]
    y = [1.0, 3.0, 4.0, 5.0, 2.0]
    # without ties rho = 1 - 6 sum d^2 / (n (n^2 - 1)); ranks of x: 1 3 2 5 4, of y: 1 3 4 5 2
    d2 = (0 + 0 + 4 + 0 + 4)
    assert scoring.spearman(x, y) == pytest.approx(1 - 6 * d2 / (5 * 24))  # 0.6
    assert scoring.spearman(x, [2 * v + 1 for v in x]) == pytest.approx(1.0)
    assert scoring.spearman(x, [-v for v in x]) == pytest.approx(-1.0)
    # with ties: Pearson correlation of the average ranks, computed directly
    a, b = [1, 2, 2, 3], [1, 3, 2, 4]
    ra, rb = np.array([1, 2.5, 2.5, 4]), np.array([1, 3, 2, 4])
    assert scoring.spearman(a, b) == pytest.approx(np.corrcoef(ra, rb)[0, 1])


def test_spearman_p_value_is_small_for_a_perfect_ordering_and_large_for_none():
    x = list(range(11))
    assert scoring.spearman_p_value(x, x, permutations=5000) < 1e-3  # 2 / 11! in truth
    rng = np.random.default_rng(3)
    unrelated = [scoring.spearman_p_value(x, list(rng.permutation(11)), permutations=2000, seed=i)
                 for i in range(20)]
    assert np.median(unrelated) > 0.2


runner = _load("ablation_ppo_objectives")


def test_each_objective_is_one_program_sweeping_the_papers_values():
    assert runner.objective_overrides("none") == ["algo.objective=none"]
    assert runner.objective_overrides("clip") == ["algo.objective=clip", "sweep.vmap={algo.clip_eps: [0.1,0.2,0.3]}"]
    assert runner.objective_overrides("kl_adaptive")[1] == "sweep.vmap={algo.kl_target: [0.003,0.01,0.03]}"
    assert runner.objective_overrides("kl_fixed")[1] == "sweep.vmap={algo.kl_beta: [0.3,1,3,10]}"
    assert len(runner.SETTINGS) == 11 and {s.objective for s in runner.SETTINGS} == set(runner.OBJECTIVES)


def test_scores_are_rebuilt_from_event_files(tmp_path):
    """Two seeds' event files written by hand, laid out as a sweep point is: the block without
    episodes repeats the previous mean (as the logger does) and must weigh nothing."""
    import json

    from tensorboardX import SummaryWriter

    point = tmp_path / "algo.clip_eps=0.2"
    blocks = {0: [(2048, -900.0, 40), (4096, -500.0, 30), (6144, -500.0, 0), (8192, -300.0, 80)],
              1: [(2048, -800.0, 10), (4096, -700.0, 20)]}
    for seed, rows in blocks.items():
        writer = SummaryWriter(logdir=str(point / f"seed_{seed}"))
        for step, mean, count in rows:
            writer.add_scalar("charts/episodes", count, step)
            writer.add_scalar("charts/episodic_return", mean, step)
        writer.close()
    (point / "summary.json").write_text(json.dumps({"seeds": [0, 1], "env_steps": 8192, "status": "completed",
                                                    "error": "algo.clip_eps=0.2, seed 1: non-finite loss"}))
    scores, env_steps, status = runner.read_setting(point)
    assert (env_steps, status) == (8192, "completed")
    assert scores[0].score == pytest.approx((80 * -300 + 30 * -500) / 110) and scores[0].episodes == 110
    assert not scores[0].failed
    assert scores[1].score == pytest.approx((20 * -700 + 10 * -800) / 30) and scores[1].episodes == 30
    assert scores[1].failed
