"""pgrun-report (the pgrun.report library and its command line) and scripts/plot_runs.py on real
runs: a CLI sweep plus runs written in-process.

The directory the report reads holds, at different depths:

* ``sweep/``: ``pgrun -m total_timesteps=6144,8192 seed=0,1`` (Hydra's own run dirs, one seed each);
* ``extra/two-seeds``: ``total_timesteps=6144 num_seeds=2 seed=2`` (two seeds in one run, per-seed
  event folders), so configuration total_timesteps=6144 has 4 seeds from 3 jobs;
* ``extra/diverged``: ``algo.lr=1e30``, which stops with a non-finite loss (status failed);
* ``extra/killed``: a total_timesteps=6144 run whose summary.json is gone, as after a kill.

Every run shares ``algo.anneal_lr=false`` so that runs of one seed count reuse one
compiled program whatever their length, which keeps the module well under a minute.

Across seeds the table gives IQM and mean with 95% stratified bootstrap intervals,
the worst seed and the sample std (pgrun.stats, itself checked against rliable in
test_stats.py); these tests check the table holds exactly those numbers for the
seeds the summaries hold.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import compose_config
from omegaconf import OmegaConf
from scipy import stats as scipy_stats

from pgrun import report, stats
from pgrun.errors import ConfigError
from pgrun.commands import report as report_command
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


def header(markdown: str) -> list[str]:
    line = next(line for line in markdown.splitlines() if line.startswith("| configuration"))
    return [c.strip() for c in line.strip("| ").split(" | ")]


def rows(markdown: str) -> dict[str, list[str]]:
    """Table rows by configuration label."""
    table = [line for line in markdown.splitlines() if line.startswith("| ") and "---" not in line][1:]
    cells = [[c.strip() for c in line.strip("| ").split(" | ")] for line in table]
    return {c[0]: c for c in cells}


def cells(markdown: str) -> dict[str, dict[str, str]]:
    """Table cells by configuration label, then column."""
    names = header(markdown)
    return {label: dict(zip(names, row)) for label, row in rows(markdown).items()}


def has_eval(root: Path) -> bool:
    """Whether some completed seed has an evaluation return (pgrun's periodic evaluation, when on)."""
    return any(r is not None for s in summaries(root) if s["status"] == "completed"
               for r in s.get("eval_returns_per_seed") or [])


def group(prefix: str = "", target: str | None = None) -> list[str]:
    names = [f"{prefix}IQM [95% CI]", f"{prefix}mean [95% CI]", f"{prefix}worst", f"{prefix}std"]
    return names + ([f"{prefix}≥ {target}"] if target else [])


def expected_header(root: Path, target: str | None = None) -> list[str]:
    names = ["configuration", "seeds", *group("", target)]
    if has_eval(root):
        names += ["eval seeds", *group("eval ", target)]
    return names + ["env steps", "jobs"]


def by_label(built: report.Report) -> dict[str, report.Configuration]:
    return {c.label: c for c in built.configurations}


SHORT, LONG, DIVERGED = ("ppo CartPole-v1 algo.lr=0.00025 total_timesteps=6144",
                         "ppo CartPole-v1 algo.lr=0.00025 total_timesteps=8192",
                         "ppo CartPole-v1 algo.lr=1e+30 total_timesteps=6144")


def estimate(value: float, interval: tuple[float, float]) -> str:
    return f"{report.format_number(value)} [{report.format_number(interval[0])}, {report.format_number(interval[1])}]"


def returns_of(root: Path, steps: int, key: str = "returns_per_seed") -> list[float]:
    """The per-seed values of one configuration's completed jobs, read straight from summary.json."""
    done = [s for s in summaries(root) if s["status"] == "completed"]
    return [r for s in done if s["total_timesteps"] == steps and s["lr"] < 1 for r in s[key]]


def test_table_counts_seeds_and_matches_the_summaries(root, capsys):
    report_command.main([str(root)])
    printed = capsys.readouterr().out
    assert (root / "report.md").read_text() == printed
    table = cells(printed)
    assert set(table) == {SHORT, LONG, DIVERGED}
    assert "Common to every configuration: `algo.anneal_lr=false`, `log_interval=2`" in printed
    assert header(printed) == expected_header(root)
    assert "Agarwal et al. (2021)" in printed and "stratified bootstrap" in printed

    keys = [("", "returns_per_seed")] + ([("eval ", "eval_returns_per_seed")] if has_eval(root) else [])
    for label, steps, seeds in ((SHORT, 6144, 4), (LONG, 8192, 2)):
        row = table[label]
        assert row["seeds"] == str(seeds) and row["env steps"] == f"{steps:,d}"
        for prefix, key in keys:
            returns = returns_of(root, steps, key)
            assert len(returns) == seeds and row[f"{prefix}seeds".strip()] == str(seeds)
            # The IQM is scipy's 25% trimmed mean; both intervals are the stratified bootstrap's, seed 0.
            iqm = scipy_stats.trim_mean(returns, 0.25)
            assert row[f"{prefix}IQM [95% CI]"] == estimate(iqm, stats.bootstrap_ci(returns, stats.iqm))
            assert row[f"{prefix}mean [95% CI]"] == estimate(np.mean(returns), stats.bootstrap_ci(returns, np.mean))
            assert row[f"{prefix}worst"] == report.format_number(min(returns))
            assert row[f"{prefix}std"] == report.format_number(np.std(returns, ddof=1))
            for low, high in (stats.bootstrap_ci(returns, stats.iqm), stats.bootstrap_ci(returns, np.mean)):
                assert min(returns) <= low <= high <= max(returns)
    assert table[SHORT]["jobs"].startswith("3 completed; 1 unfinished (no summary.json")
    assert table[LONG]["jobs"] == "2 completed"


def test_target_gives_the_fraction_of_seeds_at_or_above_it(root, capsys):
    returns = sorted(returns_of(root, 6144))
    target = returns[1]  # the two lowest seeds' returns are distinct: 3 of the 4 are at or above it
    assert returns[0] < target
    report_command.main([str(root), "--target", repr(target)])
    printed = capsys.readouterr().out
    column = f"≥ {report.format_number(target)}"
    assert header(printed) == expected_header(root, report.format_number(target))
    table = cells(printed)
    assert table[SHORT][column] == "75% (3/4)"
    hits = sum(r >= target for r in returns_of(root, 8192))
    assert table[LONG][column] == f"{100 * hits / 2:.0f}% ({hits}/2)"
    assert table[DIVERGED][column] == "—"


def test_one_seed_shows_no_interval_and_no_spread(root):
    single = next(p for p in sorted((root / "sweep").iterdir()) if (p / ".hydra" / "config.yaml").is_file())
    (row,) = cells(report.build_report(single).markdown()).values()
    assert row["seeds"] == "1" and row["IQM [95% CI]"] == row["mean [95% CI]"] == row["worst"]
    assert "[" not in row["IQM [95% CI]"] and row["std"] == "—"
    assert "±" not in report.build_report(root).markdown()


def test_evaluation_returns_get_their_own_columns(root, tmp_path):
    copy = tmp_path / "sweep"
    shutil.copytree(root / "sweep", copy)
    for path in copy.rglob("summary.json"):  # what periodic evaluation writes beside the training returns
        summary = json.loads(path.read_text())
        summary["eval_returns_per_seed"] = [500.0 - r for r in summary["returns_per_seed"]]
        path.write_text(json.dumps(summary))
    printed = report.build_report(copy, target=250.0).markdown()
    assert header(printed) == ["configuration", "seeds", *group("", "250"), "eval seeds", *group("eval ", "250"),
                               "env steps", "jobs"]
    assert "`eval_returns_per_seed`" in printed
    for steps in (6144, 8192):
        row = cells(printed)[f"ppo CartPole-v1 total_timesteps={steps}"]  # no run of this copy overrides algo.lr
        evals = [500.0 - r for r in returns_of(copy, steps)]
        assert row["seeds"] == row["eval seeds"] == "2"
        assert row["eval IQM [95% CI]"] == estimate(stats.iqm(evals), stats.bootstrap_ci(evals, stats.iqm))
        assert row["eval worst"] == report.format_number(min(evals))
        hits = sum(e >= 250 for e in evals)
        assert row["eval ≥ 250"] == f"{100 * hits / 2:.0f}% ({hits}/2)"


def test_without_evaluation_there_are_no_eval_columns(root, tmp_path):
    copy = tmp_path / "sweep"
    shutil.copytree(root / "sweep", copy)
    for path in copy.rglob("summary.json"):  # evaluation off: a None per seed, or no key at all
        summary = json.loads(path.read_text())
        summary["eval_returns_per_seed"] = [None] * len(summary["returns_per_seed"])
        path.write_text(json.dumps(summary))
    names = header(report.build_report(copy).markdown())
    assert names == ["configuration", "seeds", *group(), "env steps", "jobs"]


def test_failed_and_unfinished_jobs_are_listed_with_their_error(root):
    markdown = report.build_report(root, target=100.0).markdown()
    row = cells(markdown)[DIVERGED]
    assert row["seeds"] == "0"
    assert all(row[name] == "—" for name in group("", "100"))
    jobs = row["jobs"]
    assert jobs.startswith("1 failed at 0 env steps: ") and "non-finite" in jobs
    section = markdown.split("## Jobs that did not complete", 1)[1]
    assert "`extra/diverged` (seeds 7): failed" in section and "non-finite" in section
    assert "`extra/killed` (seeds 9): unfinished (no summary.json" in section and "last logged at 6,144 env steps" in section


def test_group_by_merges_configurations(root):
    built = report.build_report(root, group_by=["algo.name"])
    (config,) = built.configurations
    assert config.label == "algo.name=ppo" and len(config.final_returns()) == 6
    assert [r.status for r in config.runs].count("failed") == 1


def test_learning_curve_is_the_iqm_with_a_band_within_the_seeds(root):
    config = by_label(report.build_report(root))[SHORT]
    curve = report.learning_curve(config)
    assert curve is not None and curve.num_seeds == 4 and curve.env == "CartPole-v1"
    assert curve.steps[-1] == 6144
    np.testing.assert_allclose(curve.center, scipy_stats.trim_mean(curve.values, 0.25, axis=0))
    assert np.all(curve.lower <= curve.center + 1e-9) and np.all(curve.center <= curve.upper + 1e-9)
    # Resampled seeds: the band never leaves the range the seeds span (a t-band did, on few seeds).
    assert np.all(curve.values.min(axis=0) <= curve.lower) and np.all(curve.upper <= curve.values.max(axis=0))
    assert np.any(curve.upper > curve.lower)
    # The last logged return of each seed is its final return in summary.json.
    finals = [r for _, _, r in config.final_returns()]
    assert curve.center[-1] == pytest.approx(stats.iqm(finals), rel=1e-6)


def load_plot_runs():
    pytest.importorskip("matplotlib")
    spec = importlib.util.spec_from_file_location("plot_runs", SCRIPT)
    plot_runs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plot_runs)
    return plot_runs


def test_plot_writes_a_png_and_prints_the_table(root, tmp_path, capsys):
    out = tmp_path / "curves.png"
    load_plot_runs().main([str(root), "--out", str(out)])
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) > 10_000
    width, height = struct.unpack(">II", data[16:24])
    assert width >= 400 and height >= 300
    assert set(rows(capsys.readouterr().out)) == {SHORT, LONG, DIVERGED}


def svg_texts(path: Path) -> set[str]:
    """The figure's texts: matplotlib draws text as paths in SVG, each after a comment holding its string."""
    text = path.read_text()
    assert text.lstrip().startswith("<?xml") and "<svg" in text
    return set(re.findall(r"<!-- (.*?) -->", text))


def test_plot_format_follows_the_extension_and_draws_the_profile(root, tmp_path, capsys):
    curves, profile = tmp_path / "curves.pdf", tmp_path / "profile.svg"
    load_plot_runs().main([str(root), "--out", str(curves), "--profile", str(profile), "--target", "100"])
    assert curves.read_bytes().startswith(b"%PDF")
    texts = svg_texts(profile)
    assert {"CartPole-v1", "final episodic return threshold τ", "fraction of seeds with final return ≥ τ",
            "target 100", f"{SHORT} (n=4)", f"{LONG} (n=2)"} <= texts
    assert "≥ 100" in capsys.readouterr().out
    svg_curves = tmp_path / "curves.svg"
    load_plot_runs().main([str(root), "--out", str(svg_curves)])
    texts = svg_texts(svg_curves)
    assert {"CartPole-v1", "environment steps", "episodic return", f"{SHORT} (n=4)"} <= texts
    assert any("IQM over seeds" in t for t in texts)


def test_plot_refuses_an_extension_it_cannot_write(root, tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), str(root), "--out", str(tmp_path / "curves.xyz")],
                            env=ENV, capture_output=True, text=True, timeout=120, check=False)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and result.stdout == "", result.stderr
    assert len(lines) == 1 and "curves.xyz" in lines[0] and ".pdf" in lines[0], result.stderr


def test_align_curves_interpolates_within_the_common_range():
    a = (np.array([0, 10, 20, 30]), np.array([0.0, 1.0, 2.0, 3.0]))
    b = (np.array([5, 15, 25]), np.array([10.0, 20.0, 30.0]))
    steps, values = report.align_curves([a, b])
    np.testing.assert_array_equal(steps, [5, 10, 15, 20, 25])
    np.testing.assert_allclose(values, [[0.5, 1.0, 1.5, 2.0, 2.5], [10.0, 15.0, 20.0, 25.0, 30.0]])
    same = report.align_curves([a, (a[0], a[1] * 2)])
    np.testing.assert_array_equal(same[0], a[0])
    np.testing.assert_array_equal(same[1], [a[1], a[1] * 2])


@pytest.mark.parametrize("command", [["-m", "pgrun.commands.report"], [str(SCRIPT)]])
def test_missing_or_empty_directory_exits_2_with_one_line(tmp_path, command):
    prog = "pgrun-report" if "pgrun.commands.report" in command else "plot_runs.py"
    for target in (tmp_path / "nope", tmp_path):
        result = subprocess.run([sys.executable, *command, str(target)], env=ENV, capture_output=True, text=True,
                                timeout=60, check=False)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 2 and result.stdout == "", result.stderr
        assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: ") and str(target) in lines[0], result.stderr


def no_exit(code=0):
    raise AssertionError(f"the library called sys.exit({code})")


def test_library_returns_data_without_the_command_line(root, monkeypatch, capsys):
    """Scripts and notebooks call pgrun.report directly: data back, nothing printed, no exit."""
    monkeypatch.setattr(sys, "exit", no_exit)
    assert not hasattr(report, "main") and not hasattr(report, "argument_parser")
    runs = report.load_runs(root)
    assert {run.status for run in runs} == {"completed", "failed", "unfinished"}
    configurations, common = report.group_runs(runs)
    assert {c.label for c in configurations} == {SHORT, LONG, DIVERGED}
    assert ("algo.anneal_lr", "false") in common
    built = report.build_report(root, target=100.0)
    assert built.target == 100.0 and len(built.runs) == len(runs)
    assert by_label(built)[LONG].final_returns() and built.markdown().startswith(f"# pgrun report: {root}")
    assert capsys.readouterr() == ("", "")


def test_library_raises_report_error_for_bad_input(root, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "exit", no_exit)
    for target, fragment in ((tmp_path / "nope", "no such directory"), (tmp_path, "holds no runs")):
        with pytest.raises(report.ReportError, match=fragment):
            report.build_report(target)
    with pytest.raises(report.ReportError, match="--group-by algo.nope"):
        report.build_report(root, group_by=["algo.nope"])
    assert issubclass(report.ReportError, ConfigError)  # the commands give it exit code 2
    assert capsys.readouterr() == ("", "")


def test_unreadable_files_become_a_status(tmp_path):
    """A run whose summary.json is garbage is listed as unreadable, not an exception."""
    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    OmegaConf.save(compose_config(), run_dir / ".hydra" / "config.yaml")
    (run_dir / ".hydra" / "overrides.yaml").write_text("{not: a list}\n")
    (run_dir / "summary.json").write_text("{oops")
    (run,) = report.load_runs(tmp_path)
    assert run.status == "unreadable" and run.error.startswith("cannot read summary.json:")
    assert run.overrides == [] and run.seeds == [0]
    (run_dir / ".hydra" / "config.yaml").write_text("- a list\n")
    (run,) = report.load_runs(tmp_path)
    assert run.status == "unreadable" and run.error == ".hydra/config.yaml is not a mapping"
