"""Checkpoints, exact resume after SIGKILL, and graceful SIGTERM; resume of observation statistics,
PPO's KL beta, several seeds, a vectorised sweep, TRPO and the Gymnasium bridge."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import flax.serialization
import pytest
import jax
import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import run_cli
from pgrun import checkpoint

ARGS = ["total_timesteps=153600", "log_interval=5", "checkpoint.every=10", "quiet=true"]
POINTS = 153600 // (4 * 128 * 5)  # logging blocks of 5 iterations x 512 steps


def start(run_dir: Path, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pgrun", *ARGS, f"hydra.run.dir={run_dir}"], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_progress(run_dir: Path, process: subprocess.Popen, min_blocks: int = 2, timeout: float = 180) -> None:
    """Until a checkpoint after ``min_blocks`` logging blocks is on disk."""
    latest = run_dir / checkpoint.DIRECTORY / checkpoint.LATEST
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert process.poll() is None, "the run ended before it could be stopped"
        try:
            if latest.exists() and int(checkpoint.read(latest)["meta"]["blocks_done"]) >= min_blocks:
                return
        except Exception:  # being replaced right now
            pass
        time.sleep(0.2)
    raise AssertionError("no checkpoint appeared")


def final_leaves(run_dir: Path) -> list[np.ndarray]:
    return jax.tree.leaves(checkpoint.read(run_dir / checkpoint.DIRECTORY / checkpoint.FINAL)["state"])


def logged_steps(run_dir: Path) -> list[int]:
    events = EventAccumulator(str(run_dir))
    events.Reload()
    return [e.step for e in events.Scalars("charts/episodic_return")]


def test_resume_after_sigkill_is_exact(tmp_path):
    reference = tmp_path / "reference"
    assert run_cli(*ARGS, f"hydra.run.dir={reference}", cwd=tmp_path).returncode == 0

    killed = tmp_path / "killed"
    process = start(killed, tmp_path)
    wait_for_progress(killed, process)
    process.kill()
    process.wait()
    assert not (killed / checkpoint.DIRECTORY / checkpoint.FINAL).exists(), "killed too late to test resume"

    result = run_cli(f"resume={killed}", "quiet=true", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    a, b = final_leaves(reference), final_leaves(killed)
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b)), "resumed state differs"
    ref_summary = json.loads((reference / "summary.json").read_text())
    summary = json.loads((killed / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["resumed"] is True
    assert summary["returns_per_seed"] == ref_summary["returns_per_seed"]
    steps = logged_steps(killed)
    assert steps == [2560 * (i + 1) for i in range(POINTS)], "TensorBoard must have no duplicated or missing steps"


def test_sigterm_saves_and_exits_nonzero_then_resumes(tmp_path):
    run_dir = tmp_path / "run"
    process = start(run_dir, tmp_path)
    wait_for_progress(run_dir, process)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "SIGTERM" in lines[0] and "resume=" in lines[0], stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted" and 0 < summary["env_steps"] < 153600
    saved = checkpoint.read(run_dir / checkpoint.DIRECTORY / checkpoint.LATEST)
    assert int(saved["meta"]["blocks_done"]) * 2560 == summary["env_steps"]

    # A checkpoint of another layout (here: Adam's moments per layer, as older versions kept them)
    # is refused with one line and exit 2, and leaves the run resumable.
    latest = run_dir / checkpoint.DIRECTORY / checkpoint.LATEST
    good = latest.read_bytes()
    raw = checkpoint.read(latest)
    adam = raw["state"]["train"]["opt_state"]["inner_state"]["1"]["0"]
    adam["mu"] = {"actor": adam["mu"][:, :10], "critic": adam["mu"][:, 10:]}
    latest.write_bytes(flax.serialization.to_bytes(raw))
    result = run_cli(f"resume={run_dir}", cwd=tmp_path, timeout=120)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and "does not match" in lines[0], result.stderr
    latest.write_bytes(good)

    result = run_cli(f"resume={run_dir}", "devices=1", cwd=tmp_path)  # the device count may change on resume
    assert result.returncode == 0, result.stderr
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "completed"


def test_ctrl_c_saves_and_exits_130(tmp_path):
    """Ctrl-C (SIGINT) stops the run at the end of a block like SIGTERM does, but exits 128 + 2 = 130:
    one line naming the signal and how to resume, status interrupted, a checkpoint of where it stopped."""
    run_dir = tmp_path / "run"
    process = start(run_dir, tmp_path)
    wait_for_progress(run_dir, process, min_blocks=1)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "SIGINT" in lines[0] and f"resume={run_dir}" in lines[0], stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted" and 0 < summary["env_steps"] < 153600
    saved = checkpoint.read(run_dir / checkpoint.DIRECTORY / checkpoint.LATEST)
    assert int(saved["meta"]["blocks_done"]) * 2560 == summary["env_steps"]


def test_resume_rejects_bad_directories(tmp_path):
    (tmp_path / "empty").mkdir()
    cases = [
        (["resume=" + str(tmp_path / "missing")], "no such directory"),
        (["resume=" + str(tmp_path / "empty")], "not a pgrun run directory"),
        (["resume=" + str(tmp_path / "empty"), "algo.lr=0.1"], "cannot be changed"),
    ]
    for args, fragment in cases:
        result = run_cli(*args, cwd=tmp_path, timeout=120)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 2 and len(lines) == 1 and fragment in lines[0], (args, result.stderr)
    os.makedirs(tmp_path / "nockpt" / ".hydra")
    (tmp_path / "nockpt" / ".hydra" / "config.yaml").write_text("seed: 0\n")
    result = run_cli("resume=" + str(tmp_path / "nockpt"), cwd=tmp_path, timeout=120)
    assert result.returncode == 2 and "no checkpoint" in result.stderr


def test_resume_refuses_a_run_saved_without_todays_keys(tmp_path):
    """A run whose saved config predates keys this version needs gets one line and exit 2,
    not a traceback (its checkpoint could not be restored either)."""
    from omegaconf import OmegaConf

    from conftest import compose_config, run_cli

    run_dir = tmp_path / "old"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / "checkpoints").mkdir()
    (run_dir / "checkpoints" / "latest.msgpack").write_bytes(b"")
    cfg = OmegaConf.to_container(compose_config("algo=ppo"), resolve=True)
    del cfg["env"]["normalize_reward"], cfg["algo"]["clip_vloss"]
    OmegaConf.save(OmegaConf.create(cfg), run_dir / ".hydra" / "config.yaml")
    result = run_cli(f"resume={run_dir}", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "another version" in lines[0] and "algo.clip_vloss" in lines[0], lines
    assert "env.normalize_reward" in lines[0]


# ---------------------------------------------------------------------------------------------------
# Interrupted and resumed in-process, for what the SIGKILL test above does not reach: observation
# statistics, PPO's adaptive KL beta, several seeds, a vectorised sweep, TRPO and the Gymnasium bridge.
# ---------------------------------------------------------------------------------------------------

SMALL = ["num_envs=2", "algo.num_steps=16", "log_interval=2", "total_timesteps=256", "eval.every=0",
         "quiet=true"]  # 8 iterations in 4 blocks
PPO_SMALL = ["algo.num_minibatches=2", "algo.update_epochs=2"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> str:
    """One compilation cache for the module: the reference, interrupted and resumed runs of a case
    compile one program."""
    return f"compile_cache_dir={tmp_path_factory.mktemp('xla')}"


def interrupt_in_block(blocks: int, monkeypatch) -> None:
    """Make the next run receive SIGTERM while it trains block ``blocks`` (it stops after that block)."""
    from pgrun import run

    make_loop = run.make_loop

    def interrupted_loop(setup):
        loop, calls = make_loop(setup), []
        run_block = loop.run_block

        def counting(runner, iterations=None):
            calls.append(1)
            if len(calls) == blocks:
                signal.raise_signal(signal.SIGTERM)
            return run_block(runner, iterations)

        loop.run_block = counting
        return loop

    monkeypatch.setattr(run, "make_loop", interrupted_loop)


def interrupted_then_resumed(cfg, run_dir: Path, monkeypatch, blocks: int = 2) -> dict:
    """Train ``cfg`` in ``run_dir``, stopped by SIGTERM after ``blocks`` blocks, then resume it to
    the end. Returns the raw checkpoint written at the interruption."""
    from pgrun import run

    with monkeypatch.context() as patch:
        interrupt_in_block(blocks, patch)
        with pytest.raises(run.TrainingInterrupted):
            run.run_training(cfg, run_dir)
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "interrupted"
    saved = checkpoint.read(run_dir / checkpoint.DIRECTORY / checkpoint.LATEST)
    assert int(saved["meta"]["blocks_done"]) == blocks
    summary = run.run_training(cfg, run_dir, resume=True)
    assert summary["status"] == "completed" and summary["resumed"] is True
    return saved


RESUME_CASES = {
    # observation statistics, the adaptive KL beta, and two points of a vectorised sweep times two seeds
    "ppo-kl_adaptive-obs_stats-sweep_2x2": ["algo=ppo", *PPO_SMALL, "algo.objective=kl_adaptive",
                                            "env.normalize_obs=true", "sweep.vmap={algo.lr: [0.001, 0.003]}",
                                            "num_seeds=2"],
    "trpo-pendulum": ["algo=trpo", "env=Pendulum-v1", "algo.vf_minibatches=2"],
}


@pytest.mark.parametrize("case", RESUME_CASES)
def test_interrupted_and_resumed_equals_uninterrupted(tmp_path, monkeypatch, cache, case):
    """SIGTERM after block 2 of 4, then resume: the final state (parameters, optimiser, observation
    and return statistics, KL beta, environments, keys, for every member) is bit-for-bit that of an
    uninterrupted run, and so are the returns. The interruption's checkpoint holds state that a resume
    which re-initialised it would get wrong: statistics of real observations, a KL beta the rule has
    moved, members that differ."""
    from pgrun.run import run_training

    from conftest import compose_config

    cfg = compose_config(*SMALL, *RESUME_CASES[case], cache)
    reference = run_training(cfg, tmp_path / "reference")
    saved = interrupted_then_resumed(cfg, tmp_path / "resumed", monkeypatch)
    resumed = json.loads((tmp_path / "resumed" / "summary.json").read_text())

    a, b = final_leaves(tmp_path / "reference"), final_leaves(tmp_path / "resumed")
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert resumed["returns_per_seed"] == reference["returns_per_seed"]
    assert resumed["env_steps"] == reference["env_steps"] == 256

    train = saved["state"]["train"]
    members = len(reference["returns_per_seed"])
    params = np.concatenate([np.asarray(x).reshape(members, -1) for x in jax.tree.leaves(train["params"])], 1)
    assert all(not np.array_equal(params[0], params[i]) for i in range(1, members))
    if cfg.env.normalize_obs:
        assert np.all(np.asarray(train["obs_stats"]["count"]) > 64)
        assert np.all(np.abs(np.asarray(train["obs_stats"]["mean"])) > 0)
    if cfg.algo.name == "ppo" and cfg.algo.objective == "kl_adaptive":
        beta = np.asarray(train["algo_state"]["kl_beta"])
        assert np.all(beta != cfg.algo.kl_beta), f"the KL beta never moved from {cfg.algo.kl_beta}: {beta}"


def test_bridge_resume_restarts_the_episodes_and_continues_the_learner(tmp_path, monkeypatch, cache):
    """On the Gymnasium bridge the host environments cannot be saved (README: their episodes
    restart on resume). A resumed run equals the saved learner -- parameters, optimiser, statistics,
    key -- with its unfinished episodes' counters cleared, trained on for the remaining blocks from
    environments reset with the run's seed; its TensorBoard points are neither duplicated nor missing."""
    from pgrun.checkpoint import restore_into
    from pgrun.run import run_training
    from pgrun.train import GymRunner, build, make_loop

    from conftest import compose_config

    cfg = compose_config(*SMALL, *PPO_SMALL, "env.backend=gymnasium", "env.normalize_obs=true", cache)
    run_dir = tmp_path / "resumed"
    saved = interrupted_then_resumed(cfg, run_dir, monkeypatch)
    assert logged_steps(run_dir) == [64, 128, 192, 256]

    setup = build(cfg)
    loop = make_loop(setup)
    fresh = loop.start()  # host environments reset with the run's seed
    train = restore_into(fresh.train, saved["state"]["train"])
    assert np.any(np.asarray(train.episodes.lengths) > 0)  # unfinished episodes at the interruption
    train = train.replace(episodes=jax.tree.map(np.zeros_like, train.episodes),
                          reward_scaler=train.reward_scaler.replace(returns=np.zeros_like(train.reward_scaler.returns)))
    runner = GymRunner(train, fresh.obs, saved["state"]["key"])
    expected_returns = []
    for _ in range(2):
        runner, metrics = loop.run_block(runner)
        expected_returns.append(float(np.sum(metrics["episode_return_sum"]) / np.sum(metrics["episode_count"])))
    events = EventAccumulator(str(run_dir))
    events.Reload()
    logged = [(e.step, e.value) for e in events.Scalars("charts/episodic_return")][2:]
    assert [step for step, _ in logged] == [192, 256]
    np.testing.assert_allclose([value for _, value in logged], expected_returns, rtol=1e-6)
    want = jax.tree.leaves(jax.device_get(runner.train))
    final = checkpoint.read(run_dir / checkpoint.DIRECTORY / checkpoint.FINAL)["state"]["train"]
    got = jax.tree.leaves(restore_into(runner.train, final))
    assert len(got) == len(want)
    for x, y in zip(got, want):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
