"""pgrun-report and scripts/plot_runs.py on real runs: a CLI sweep plus runs written in-process.

The directory the report reads holds, at different depths:

* ``sweep/``: ``pgrun -m total_timesteps=6144,8192 seed=0,1`` (Hydra's own run dirs, one seed each);
* ``extra/two-seeds``: ``total_timesteps=6144 num_seeds=2 seed=2`` (two seeds in one run, per-seed
  event folders), so configuration total_timesteps=6144 has 4 seeds from 3 jobs;
* ``extra/diverged``: ``algo.lr=1e30``, which stops with a non-finite loss (status failed);
* ``extra/killed``: a total_timesteps=6144 run whose summary.json is gone, as after a kill.

Every run shares ``algo.anneal_lr=false`` so that runs of one seed count reuse one
compiled program whatever their length, which keeps the module well under a minute.
"""

from __future__ import annotations

import importlib.util
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import compose_config
from omegaconf import OmegaConf
from scipy import stats

from pgrun import report
from pgrun.run import run_training
from pgrun.train import TrainingError

COMMON = ["algo.anneal_lr=false", "log_interval=2", "quiet=true"]
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "plot_runs.py"
ENV = dict(os.environ, PYTHONWARNINGS="ignore")


def train_in_process(run_dir: Path, *overrides: str) -> None:
    """A run as ``pgrun`` would make it, .hydra/ included (run_training does not write it)."""
    cfg = compose_config(*overrides)
    (run_dir / ".hydra").mkdir(parents=True)
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")
    OmegaConf.save(OmegaConf.create(list(overrides)), run_dir / ".hydra" / "overrides.yaml")
    try:
        run_training(cfg, run_dir)
    except TrainingError:
        pass  # the diverging run: its summary.json says so


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report")
    # The CLI sweep compiles in its own process while this one compiles the two-seed and diverging programs.
    sweep = subprocess.Popen(
        [sys.executable, "-m", "pgrun", "-m", *COMMON, "total_timesteps=6144,8192", "seed=0,1",
         f"hydra.sweep.dir={root / 'sweep'}"], cwd=root, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        train_in_process(root / "extra" / "two-seeds", *COMMON, "total_timesteps=6144", "num_seeds=2", "seed=2")
        train_in_process(root / "extra" / "diverged", *COMMON, "total_timesteps=6144", "algo.lr=1e30", "seed=7")
        train_in_process(root / "extra" / "killed", *COMMON, "total_timesteps=6144", "seed=9")
        (root / "extra" / "killed" / "summary.json").unlink()
    finally:
        out, err = sweep.communicate(timeout=400)
    assert sweep.returncode == 0, out + err
    return root


def summaries(root: Path) -> list[dict]:
    """Every summary.json, with the run's total_timesteps and lr read straight from its config."""
    found = []
    for path in root.rglob("summary.json"):
        cfg = OmegaConf.load(path.parent / ".hydra" / "config.yaml")
        found.append({**json.loads(path.read_text()), "total_timesteps": cfg.total_timesteps, "lr": cfg.algo.lr})
    return found


def rows(markdown: str) -> dict[str, list[str]]:
    """Table rows by configuration label."""
    table = [line for line in markdown.splitlines() if line.startswith("| ") and "---" not in line][1:]
    cells = [[c.strip() for c in line.strip("| ").split(" | ")] for line in table]
    return {c[0]: c for c in cells}


def by_label(built: report.Report) -> dict[str, report.Configuration]:
    return {c.label: c for c in built.configurations}


SHORT, LONG, DIVERGED = ("ppo CartPole-v1 algo.lr=0.00025 total_timesteps=6144",
                         "ppo CartPole-v1 algo.lr=0.00025 total_timesteps=8192",
                         "ppo CartPole-v1 algo.lr=1e+30 total_timesteps=6144")


def test_table_counts_seeds_and_matches_the_summaries(root, capsys):
    report.main([str(root)])
    printed = capsys.readouterr().out
    assert (root / "report.md").read_text() == printed
    table = rows(printed)
    assert set(table) == {SHORT, LONG, DIVERGED}
    assert "Common to every configuration: `algo.anneal_lr=false`, `log_interval=2`" in printed

    done = [s for s in summaries(root) if s["status"] == "completed"]
    for label, steps, seeds in ((SHORT, 6144, 4), (LONG, 8192, 2)):
        returns = [r for s in done if s["total_timesteps"] == steps and s["lr"] < 1 for r in s["returns_per_seed"]]
        assert len(returns) == seeds
        _, n, mean_std, median, env_steps, _ = table[label]
        assert n == str(seeds) and env_steps == f"{steps:,d}"
        assert mean_std == f"{report.format_number(np.mean(returns))} ± {report.format_number(np.std(returns, ddof=1))}"
        assert median == report.format_number(np.median(returns))
        stats_ = report.return_stats([r for _, _, r in by_label(report.build_report(root))[label].final_returns()])
        assert stats_.mean == pytest.approx(np.mean(returns)) and stats_.n == seeds
    assert table[SHORT][-1].startswith("3 completed; 1 unfinished (no summary.json")
    assert table[LONG][-1] == "2 completed"


def test_failed_and_unfinished_jobs_are_listed_with_their_error(root):
    markdown = report.build_report(root).markdown()
    _, n, mean_std, *_, jobs = rows(markdown)[DIVERGED]
    assert n == "0" and mean_std == "—"
    assert jobs.startswith("1 failed at 0 env steps: ") and "non-finite" in jobs
    section = markdown.split("## Jobs that did not complete", 1)[1]
    assert "`extra/diverged` (seeds 7): failed" in section and "non-finite" in section
    assert "`extra/killed` (seeds 9): unfinished (no summary.json" in section and "last logged at 6,144 env steps" in section


def test_group_by_merges_configurations(root):
    built = report.build_report(root, group_by=["algo.name"])
    (config,) = built.configurations
    assert config.label == "algo.name=ppo" and len(config.final_returns()) == 6
    assert [r.status for r in config.runs].count("failed") == 1


def test_learning_curve_uses_every_seed_of_the_event_files(root):
    config = by_label(report.build_report(root))[SHORT]
    curve = report.learning_curve(config)
    assert curve is not None and curve.num_seeds == 4
    assert curve.steps[-1] == 6144 and np.all(curve.lower <= curve.mean) and np.all(curve.mean <= curve.upper)
    # The last logged return of each seed is its final return in summary.json.
    finals = [r for _, _, r in config.final_returns()]
    assert curve.mean[-1] == pytest.approx(np.mean(finals), rel=1e-6)


def test_plot_writes_a_png_and_prints_the_table(root, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    spec = importlib.util.spec_from_file_location("plot_runs", SCRIPT)
    plot_runs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plot_runs)
    out = tmp_path / "curves.png"
    plot_runs.main([str(root), "--out", str(out)])
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) > 10_000
    width, height = struct.unpack(">II", data[16:24])
    assert width >= 400 and height >= 300
    assert set(rows(capsys.readouterr().out)) == {SHORT, LONG, DIVERGED}


def test_confidence_band_is_the_t_interval():
    values = np.array([[1.0, 2.0, 3.0], [2.0, 4.0, 7.0], [0.0, 3.0, 5.0], [4.0, 4.0, 4.0]])
    mean, lower, upper = report.confidence_band(values)
    low, high = stats.t.interval(0.95, df=3, loc=values.mean(axis=0), scale=stats.sem(values, axis=0))
    np.testing.assert_allclose(mean, [1.75, 3.25, 4.75])
    np.testing.assert_allclose(lower, low)
    np.testing.assert_allclose(upper, high)
    # t_{0.975, 3} = 3.182446...; first column: s = 1.707825, half width = 3.182446 * 1.707825 / 2
    assert upper[0] - mean[0] == pytest.approx(3.1824463 * np.std(values[:, 0], ddof=1) / 2, rel=1e-6)
    single = report.confidence_band(values[:1])
    np.testing.assert_array_equal(single[1], values[0])
    np.testing.assert_array_equal(single[2], values[0])


def test_align_curves_interpolates_within_the_common_range():
    a = (np.array([0, 10, 20, 30]), np.array([0.0, 1.0, 2.0, 3.0]))
    b = (np.array([5, 15, 25]), np.array([10.0, 20.0, 30.0]))
    steps, values = report.align_curves([a, b])
    np.testing.assert_array_equal(steps, [5, 10, 15, 20, 25])
    np.testing.assert_allclose(values, [[0.5, 1.0, 1.5, 2.0, 2.5], [10.0, 15.0, 20.0, 25.0, 30.0]])
    same = report.align_curves([a, (a[0], a[1] * 2)])
    np.testing.assert_array_equal(same[0], a[0])
    np.testing.assert_array_equal(same[1], [a[1], a[1] * 2])


@pytest.mark.parametrize("command", [["-m", "pgrun.report"], [str(SCRIPT)]])
def test_missing_or_empty_directory_exits_2_with_one_line(tmp_path, command):
    prog = "pgrun-report" if "pgrun.report" in command else "plot_runs.py"
    for target in (tmp_path / "nope", tmp_path):
        result = subprocess.run([sys.executable, *command, str(target)], env=ENV, capture_output=True, text=True,
                                timeout=60, check=False)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 2 and result.stdout == "", result.stderr
        assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: ") and str(target) in lines[0], result.stderr
