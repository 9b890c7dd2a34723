"""Malformed invocations: each exits 2 with one line naming the problem and the
fix, no traceback, and leaves no run directory behind."""

from pathlib import Path

import pytest

from conftest import run_cli

CASES = [
    # (arguments, fragment the one-line message must contain)
    (["algo=sac"], "unknown algorithm 'sac'"),
    (["env=CartPol-v1"], "did you mean CartPole-v1"),
    (["env=NoSuchEnv-v0"], "unknown environment 'NoSuchEnv-v0'"),
    (["algo.lr=abc"], "algo.lr=abc: algo.lr takes a number, e.g. algo.lr=3e-4"),
    (["seed=1.5"], "seed=1.5: seed takes a whole number"),
    (["num_envs=many"], "num_envs=many: num_envs takes a whole number"),
    (["quiet=maybe"], "quiet=maybe: quiet takes true or false"),
    (["algo.hidden_sizes=64"], "algo.hidden_sizes takes a list, e.g. algo.hidden_sizes=[64,64]"),
    (["algo.foo=1"], "unknown config key 'algo.foo'"),
    (["foo=1"], "unknown config key 'foo'"),
    (["algo.lrr=1e-3"], "unknown config key 'algo.lrr' (did you mean algo.lr"),
    (["seeed=3"], "unknown config key 'seeed' (did you mean seed"),
    (["algo.gamma=1.5"], "algo.gamma=1.5 must lie in [0, 1]"),
    (["algo.clip_eps=-0.1"], "algo.clip_eps=-0.1 must be positive"),
    (["num_envs=0"], "num_envs=0 must be at least 1"),
    (["total_timesteps=-5"], "total_timesteps=-5 must be positive"),
    (["num_seeds=0"], "num_seeds=0 must be at least 1"),
    (["seed=-1"], "seed=-1 with num_seeds=1 leaves the seeds' range"),
    (["seed=4294967295", "num_seeds=2"], "leaves the seeds' range 0 .. 4294967295"),
    (["algo.lr=0"], "algo.lr=0.0 must be positive"),
    (["algo.num_minibatches=3"], "does not split into algo.num_minibatches=3"),
    (["algo.activation=swish"], "algo.activation=swish is not valid"),
    (["algo.hidden_sizes=[]"], "needs at least one layer"),
    (["env.backend=cuda"], "env.backend=cuda is not valid"),
    (["env=FrozenLake-v1", "env.backend=jax"], "has no JAX port"),
    (["env=Blackjack-v1"], "is not supported"),
    (["algo.objective=trust"], "algo.objective=trust is not valid"),
    (["algo=reinforce", "algo.baseline=critic"], "algo.baseline=critic is not valid"),
    (["algo=trpo", "algo.delta=0"], "algo.delta=0.0 must be positive"),
    (["algo=trpo", "algo.backtrack_coef=1.5"], "algo.backtrack_coef=1.5 must lie in (0, 1)"),
    (["algo=npg", "algo.vf_minibatches=7"], "algo.vf_minibatches=7 must divide"),
    (["log_interval=0"], "log_interval=0 must be at least 1"),
    (["num_envs=100000000"], "more entries than the program can index"),
    (["hydra.run.dir=/proc/pgrun-cannot-exist/run"], "cannot write"),
]


@pytest.mark.parametrize("args,fragment", CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_input_exits_2_with_one_line_and_no_run_dir(tmp_path: Path, args, fragment):
    run_dir = tmp_path / "run"
    extra = [] if any(a.startswith("hydra.run.dir") for a in args) else [f"hydra.run.dir={run_dir}"]
    result = run_cli(*args, *extra, cwd=tmp_path, timeout=120)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("pgrun: error:") and fragment in lines[0], lines[0]
    assert "Traceback" not in result.stderr
    assert not run_dir.exists(), "bad input must not leave a run directory"
    assert not (tmp_path / "outputs").exists()


def test_whole_number_floats_are_accepted_for_integer_keys(tmp_path: Path):
    """``total_timesteps=2.048e3`` means 2048: it trains instead of failing on the float's type."""
    import json

    run_dir = tmp_path / "run"
    result = run_cli("total_timesteps=2.048e3", "num_envs=2e0", "algo.num_steps=64", "log_interval=1",
                     "quiet=true", "eval.every=0", f"hydra.run.dir={run_dir}", cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["env_steps"] == 2048 and summary["iterations"] == 16
