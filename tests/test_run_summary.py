"""The spread of final returns across seeds, in summary.json and in the closing
line: the sample standard deviation (n - 1), and none from a single seed."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from conftest import compose_config
from pgrun.run import report_done, run_training, sample_std

TINY = ("algo=ppo", "env=CartPole-v1", "num_envs=4", "algo.num_steps=64", "algo.hidden_sizes=[16]",
        "total_timesteps=2048")


def closing_summary(mean, std, seeds, **extra):
    return {"final_return_mean": mean, "final_return_std": std, "seeds": seeds, "env_steps": 2048,
            "wall_seconds": 2.0, "sps": 1024.0, **extra}


def test_sample_std_divides_by_n_minus_1_and_needs_two_values():
    assert sample_std([]) is None
    assert sample_std([42.0]) is None
    assert sample_std([3.0, 5.0]) == pytest.approx(math.sqrt(2.0))
    values = [10.0, 12.0, 17.0, 30.5]
    assert sample_std(values) == pytest.approx(np.std(values, ddof=1))
    assert sample_std(values) != pytest.approx(np.std(values))


def test_closing_line_shows_a_spread_only_from_two_seeds(capsys):
    """One seed (std None): the mean alone, no '± 0.00'; two seeds: mean ± std; no
    finished episode: n/a. The same per point of a vectorised sweep."""

    def report(summary):
        report_done("ppo CartPole-v1", summary, 1.5, len(summary["seeds"]))
        return capsys.readouterr().out

    one = report(closing_summary(123.456, None, [0]))
    assert "final mean return 123.46 over 1 seed(s)" in one and "±" not in one
    two = report(closing_summary(123.456, 7.891, [0, 1]))
    assert "final mean return 123.46 ± 7.89 over 2 seed(s)" in two
    assert "final mean return n/a (no episode finished)" in report(closing_summary(None, None, [0]))
    points = [{"dir": "algo.lr=0.001", "status": "completed", "final_return_mean": 50.0, "final_return_std": None},
              {"dir": "algo.lr=0.01", "status": "completed", "final_return_mean": 60.0, "final_return_std": 2.5}]
    swept = report(closing_summary(55.0, 5.0, [0, 0], points=points)).splitlines()
    assert swept[0].endswith("algo.lr=0.001: final mean return 50.00 over 2 seed(s)")
    assert swept[1].endswith("algo.lr=0.01: final mean return 60.00 ± 2.50 over 2 seed(s)")


def test_runs_record_the_sample_std_and_print_no_spread_for_one_seed(tmp_path, capsys):
    summary = run_training(compose_config(*TINY, "num_seeds=3"), tmp_path / "three")
    returns = [r for r in summary["returns_per_seed"] if r is not None]
    assert len(returns) >= 2
    assert summary["final_return_std"] == pytest.approx(np.std(returns, ddof=1), rel=1e-9)
    on_disk = json.loads((tmp_path / "three" / "summary.json").read_text())
    assert on_disk["final_return_std"] == summary["final_return_std"]
    assert "±" in capsys.readouterr().out.splitlines()[-1]

    summary = run_training(compose_config(*TINY, "num_seeds=1"), tmp_path / "one")
    assert summary["returns_per_seed"][0] is not None and summary["final_return_std"] is None
    assert json.loads((tmp_path / "one" / "summary.json").read_text())["final_return_std"] is None
    done = capsys.readouterr().out.splitlines()[-1]
    assert "done: final mean return" in done and "±" not in done


def test_a_final_return_older_than_the_last_block_says_where_it_was_measured(tmp_path):
    """MountainCar's random episodes last their 200-step limit: with 16-step blocks the only
    episode ends in block 13 (steps 193-208), and block 14 ends none. The final return is then
    block 13's, and summary.json says so instead of passing it off as the last block's."""
    cfg = compose_config("algo=ppo", "env=MountainCar-v0", "num_envs=1", "algo.num_steps=16", "algo.num_minibatches=1",
                         "log_interval=1", "total_timesteps=224", "eval.every=0", "quiet=true", "algo.hidden_sizes=[8]")
    summary = run_training(cfg, tmp_path)
    assert summary["env_steps"] == 224
    assert summary["returns_per_seed"] == [-200.0]
    assert summary["returns_measured_at_steps"] == [208]


def test_a_member_without_any_finished_episode_has_no_measurement(tmp_path):
    cfg = compose_config("algo=ppo", "env=MountainCar-v0", "num_envs=1", "algo.num_steps=16", "algo.num_minibatches=1",
                         "log_interval=1", "total_timesteps=64", "eval.every=0", "quiet=true", "algo.hidden_sizes=[8]")
    summary = run_training(cfg, tmp_path)
    assert summary["returns_per_seed"] == [None] and summary["returns_measured_at_steps"] == [None]
