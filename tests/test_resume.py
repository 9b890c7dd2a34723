"""Checkpoints, exact resume after SIGKILL, and graceful SIGTERM."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import flax.serialization
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
