"""Progress output: a live line on a terminal, plain lines elsewhere, silence when quiet."""

import math

from pgrun.logger import Progress


def test_live_progress_rewrites_one_line(capsys):
    progress = Progress("ppo CartPole-v1", 1000, quiet=False, live=True)
    progress.update(500, 42.0, 1000.0)
    progress.update(1000, 50.0, 1000.0, force=True)
    out = capsys.readouterr().out
    assert out.count("\r") == 2 and out.endswith("\n") and out.count("\n") == 1
    assert "ETA 0s" in out and "return 50.0" in out


def test_plain_progress_prints_whole_lines_at_most_every_few_seconds(capsys):
    progress = Progress("a2c Acrobot-v1", 1000, quiet=False, live=False)
    progress.update(100, math.nan, 500.0)
    progress.update(150, -300.0, 500.0)  # too soon after the previous line, in the same tenth: skipped
    progress.update(1000, -90.0, 500.0, force=True)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and "\r" not in "".join(lines)
    assert "return n/a" in lines[0] and "return -90.0" in lines[1]


def test_plain_progress_reports_every_tenth_of_a_fast_run(capsys):
    """A run shorter than the interval still shows its course: one line per tenth reached."""
    progress = Progress("ppo CartPole-v1", 1000, quiet=False, live=False)
    for steps in range(50, 1001, 50):
        progress.update(steps, 10.0, 1e6, force=steps == 1000)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("(")[1].split("%")[0].strip() for line in lines] == [
        "5.0", "10.0", "20.0", "30.0", "40.0", "50.0", "60.0", "70.0", "80.0", "90.0", "100.0"]


def test_quiet_prints_nothing(capsys):
    progress = Progress("ppo CartPole-v1", 1000, quiet=True, live=True)
    progress.update(1000, 1.0, 1.0, force=True)
    assert capsys.readouterr().out == ""


def test_eta_counts_every_member(capsys):
    """Steps are per member and the rate is all members' together: 4 members at 1,000 steps/s
    in all have 500 steps each left, so 2 s (a run once showed a fifth of its ETA with 5 seeds)."""
    progress = Progress("ppo Hopper-v5", 1000, quiet=False, live=False, members=4)
    progress.update(500, 1.0, 1000.0, force=True)
    assert "ETA 2s" in capsys.readouterr().out
