"""Vectorised sweeps (``sweep.vmap``): many hyperparameter values in one compiled program.

The claims checked: each member trains with its own values (it matches a
separate run with that value, for one block and, points times seeds, over several), the values are inputs of the program rather
than constants baked into it (two configs that differ only in them lower to
the same program), every point is logged as a run of its own with its own
saved config, and malformed sweeps are bad input.
"""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from omegaconf import OmegaConf

from conftest import compose_config, run_cli
from pgrun.config import ConfigError, sweep_points, sweepable_keys, validate
from pgrun.report import build_report
from pgrun.train import JaxLoop, build

SMALL = ("num_envs=2", "algo.num_steps=32", "log_interval=2", "total_timesteps=256",
         "compile_cache_dir=")


def _params_after_one_block(*overrides: str):
    loop = JaxLoop(build(compose_config(*SMALL, *overrides)))
    runner, _ = loop.run_block(loop.start())
    return jax.device_get(runner.train.params), jax.device_get(runner.train.hparams)


@pytest.mark.parametrize("algo,key,values", [("ppo", "algo.lr", (1e-3, 3e-2)),
                                             ("ppo", "algo.clip_eps", (0.01, 0.5)),  # at lr 0.03 it clips
                                             ("trpo", "algo.delta", (0.001, 0.05)),
                                             ("a2c", "algo.gamma", (0.5, 0.99))])
def test_each_member_trains_like_a_separate_run_with_its_value(algo, key, values):
    fixed = (f"algo={algo}",) + (("algo.lr=0.03",) if key == "algo.clip_eps" else ())
    swept, hparams = _params_after_one_block(*fixed, f"sweep.vmap={{{key}: [{values[0]},{values[1]}]}}")
    bare = key.split(".", 1)[1]
    np.testing.assert_allclose(hparams[bare], np.asarray(values, np.float32))
    for i, value in enumerate(values):
        alone, _ = _params_after_one_block(*fixed, f"{key}={value}")
        for got, want in zip(jax.tree.leaves(swept), jax.tree.leaves(alone), strict=True):
            np.testing.assert_allclose(got[i], want[0], rtol=2e-4, atol=2e-6)
    # and the two values really lead to different policies
    first, second = (np.concatenate([np.ravel(x[i]) for x in jax.tree.leaves(swept)]) for i in (0, 1))
    assert np.max(np.abs(first - second)) > 1e-4


def test_values_are_inputs_of_the_program_not_constants():
    def program_text(*overrides):
        loop = JaxLoop(build(compose_config(*SMALL, *overrides)))
        return loop._block.lower(loop.start()).as_text()

    base = program_text("algo.lr=3e-4", "algo.gamma=0.99", "algo.clip_eps=0.2", "algo.ent_coef=0.01")
    other = program_text("algo.lr=1e-3", "algo.gamma=0.9", "algo.clip_eps=0.1", "algo.ent_coef=0.0")
    assert base == other


@pytest.mark.parametrize("algo", ["ppo", "trpo", "reinforce"])
def test_no_program_calls_into_lapack(algo):
    """jaxlib 0.10's CPU LAPACK kernels split a batch over XLA's thread pool and block on it from a pool
    thread; two such calls at once (the actor's and critic's orthogonal init, per member) hang a two-thread
    pool. The initialisation and the training block must lower to plain XLA operations only."""
    loop = JaxLoop(build(compose_config(*SMALL, f"algo={algo}", "env=Pendulum-v1", "num_seeds=3")))
    init, args = loop.initializer()
    for program in (init.lower(*args), loop._block.lower(jax.eval_shape(init, *args))):
        assert "custom_call" not in program.as_text()


def test_points_are_the_product_of_the_listed_values():
    cfg = compose_config("sweep.vmap={algo.lr: [1e-4, 1e-3], algo.gamma: [0.9, 0.95, 0.99]}", "num_seeds=2")
    points = sweep_points(cfg)
    assert len(points) == 6 and points[0] == {"algo.lr": 1e-4, "algo.gamma": 0.9}
    assert {(p["algo.lr"], p["algo.gamma"]) for p in points} == {(a, b) for a in (1e-4, 1e-3) for b in (0.9, 0.95, 0.99)}
    assert len(build(cfg).members) == 12
    assert sweep_points(compose_config()) == [{}]


def test_only_real_valued_keys_can_be_vectorised():
    assert "algo.lr" in sweepable_keys("ppo") and "algo.delta" in sweepable_keys("trpo")
    assert "algo.num_minibatches" not in sweepable_keys("ppo") and "algo.cg_iters" not in sweepable_keys("npg")
    with pytest.raises(ConfigError, match="gamma=1.5 must lie in"):
        validate(compose_config("sweep.vmap={algo.gamma: [0.9, 1.5]}"))


@pytest.mark.parametrize("override,expected", [
    ("sweep.vmap={algo.num_steps: [64, 128]}", "cannot vary 'algo.num_steps'"),
    ("sweep.vmap={algo.lr: []}", "needs a non-empty list"),
    ("sweep.vmap={algo.lr: [1e-3, abc]}", "is not a number"),
    ("sweep.vmap={algo.lr: [1e-3, 1e-3]}", "lists a value twice"),
    ("sweep.vmap={algo.clip_eps: [0.1, -0.2]}", "clip_eps=-0.2 must be positive"),
    ("sweep.vmap=3", "is not a mapping"),
])
def test_malformed_sweeps_are_bad_input(tmp_path, override, expected):
    run_dir = tmp_path / "run"
    result = run_cli(override, f"hydra.run.dir={run_dir}", cwd=tmp_path, timeout=120)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and expected in lines[0], result.stderr
    assert not run_dir.exists()


def test_cli_logs_every_point_as_its_own_run(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli("sweep.vmap={algo.lr: [1e-4, 2e-3]}", "num_seeds=2", "total_timesteps=4096", "log_interval=2",
                     f"hydra.run.dir={run_dir}", cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr
    top = json.loads((run_dir / "summary.json").read_text())
    assert top["status"] == "completed" and len(top["returns_per_seed"]) == 4
    assert [p["point"] for p in top["points"]] == [{"algo.lr": 1e-4}, {"algo.lr": 2e-3}]
    for value in (1e-4, 2e-3):
        point = run_dir / f"algo.lr={value:g}"
        config = OmegaConf.load(point / ".hydra" / "config.yaml")
        assert config.algo.lr == pytest.approx(value) and config.sweep.vmap is None
        assert f"algo.lr={value!r}" in OmegaConf.load(point / ".hydra" / "overrides.yaml")
        summary = json.loads((point / "summary.json").read_text())
        assert summary["seeds"] == [0, 1] and summary["sweep_point"] == {"algo.lr": value}
        for seed in (0, 1):
            assert list((point / f"seed_{seed}").glob("events.out.tfevents.*"))
    report = build_report(run_dir)
    assert sorted(len(c.final_returns()) for c in report.configurations) == [2, 2]
    assert "algo.lr=0.002" in report.markdown()


def test_a_diverging_member_fails_alone(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli("sweep.vmap={algo.lr: [3e-4, 1e30]}", "total_timesteps=8192", "log_interval=2",
                     f"hydra.run.dir={run_dir}", cwd=tmp_path, timeout=600)
    assert result.returncode == 1, result.stderr
    assert "1 of 2 members failed" in result.stderr and "algo.lr=1e+30" in result.stderr
    good = json.loads((run_dir / "algo.lr=0.0003" / "summary.json").read_text())
    bad = json.loads((run_dir / "algo.lr=1e+30" / "summary.json").read_text())
    assert good["status"] == "completed" and good["final_return_mean"] is not None
    assert good["env_steps"] >= 8192
    assert bad["status"] == "failed" and "non-finite" in bad["error"]


def test_points_times_seeds_each_train_like_their_own_run(tmp_path):
    """Two learning rates x two seeds over three blocks: member (point p, seed s), at index
    p * num_seeds + s, ends where a separate run with that learning rate ends for seed s, up to
    rounding (Adam at lr 0.03 amplifies it to ~2e-5 here) -- seeds and points are not mixed up, and
    every two members differ by far more than that."""
    from pgrun.run import enable_compile_cache

    enable_compile_cache(str(tmp_path / "xla"))  # the two separate runs share one program
    values, seeds = (1e-3, 3e-2), (0, 1)
    base = ("num_envs=2", "algo.num_steps=16", "log_interval=2", "total_timesteps=192", "eval.every=0",
            "algo.anneal_lr=false", f"num_seeds={len(seeds)}", "seed=0")

    def params_after_the_run(*overrides):
        setup = build(compose_config(*base, *overrides))
        loop = JaxLoop(setup)
        runner = loop.start()
        for _ in range(setup.num_blocks):
            runner, _ = loop.run_block(runner)
        assert int(jax.device_get(runner.train.iteration)[0]) == 6
        return [np.asarray(x) for x in jax.tree.leaves(jax.device_get(runner.train.params))]

    swept = params_after_the_run(f"sweep.vmap={{algo.lr: [{values[0]}, {values[1]}]}}")
    assert swept[0].shape[0] == len(values) * len(seeds)
    for p, value in enumerate(values):
        alone = params_after_the_run(f"algo.lr={value}")
        for s in seeds:
            for got, want in zip(swept, alone, strict=True):
                np.testing.assert_allclose(got[p * len(seeds) + s], want[s], rtol=1e-3, atol=1e-4,
                                           err_msg=f"lr={value}, seed {s}")
    flat = [np.concatenate([x[m].ravel() for x in swept]) for m in range(len(values) * len(seeds))]
    for i in range(len(flat)):
        for j in range(i):
            assert np.max(np.abs(flat[i] - flat[j])) > 1e-2, (i, j)  # far beyond the rounding allowed
