"""Budgets: a run ends at the first whole iteration at or past ``total_timesteps``, whatever its
logging blocks; a short last block skips its surplus iterations inside the one compiled block."""

from pathlib import Path

import jax
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import compose_config
from pgrun import checkpoint
from pgrun.config import Schedule, schedule
from pgrun.run import run_training

# CartPole, 2 envs x 16 steps = 32 steps per iteration; 200 steps need 7 iterations (224 steps)
TINY = ["num_envs=2", "algo.num_steps=16", "algo.num_minibatches=2", "algo.update_epochs=2", "total_timesteps=200",
        "eval.every=0", "quiet=true", "compile_cache_dir="]


def test_schedule_ends_at_the_first_whole_iteration_past_the_budget():
    run = Schedule(total=7, block_len=4)
    assert run.num_blocks == 2
    assert [run.iterations_in(b) for b in range(2)] == [4, 3]
    assert [run.iterations_done(b) for b in range(3)] == [0, 4, 7]
    # PPO (4 envs x 128) and TRPO (its own batch) asked for the same 50,000 steps get it to within one batch,
    # whatever their logging blocks (they used to round up to whole blocks: 51,200 and 61,440)
    for algo in ("ppo", "trpo", "a2c", "reinforce"):
        cfg = compose_config(f"algo={algo}", "total_timesteps=50000")
        batch = cfg.num_envs * cfg.algo.num_steps
        steps = schedule(cfg).total * batch
        assert 50_000 <= steps < 50_000 + batch, (algo, steps, batch)


def train(tmp_path: Path, name: str, *overrides: str) -> tuple[dict, dict]:
    cfg = compose_config(*TINY, *overrides)
    summary = run_training(cfg, tmp_path / name)
    state = checkpoint.read(tmp_path / name / checkpoint.DIRECTORY / checkpoint.FINAL)["state"]
    return summary, state


def logged_steps(run_dir: Path, tag: str = "charts/sps") -> list[int]:
    """The steps of the first member's points (its event files sit in a folder of their own with several seeds)."""
    member_dir = sorted(p.parent for p in run_dir.rglob("events.out.tfevents.*"))[0]
    events = EventAccumulator(str(member_dir), size_guidance={"scalars": 0})
    events.Reload()
    return [e.step for e in events.Scalars(tag)]


@pytest.mark.parametrize("seeds", [1, 2])  # one seed: a real lax.cond; several: a select under the vmap
def test_a_short_last_block_trains_exactly_the_iterations_it_owes(tmp_path, seeds):
    """7 iterations in blocks of 4 (the last one short) end where 7 iterations in one block end:
    the skipped iteration changed nothing, and the logs and summary say 224 steps."""
    short, short_state = train(tmp_path, "short", "log_interval=4", f"num_seeds={seeds}")
    whole, whole_state = train(tmp_path, "whole", "log_interval=7", f"num_seeds={seeds}")
    assert short["env_steps"] == whole["env_steps"] == 224
    assert short["iterations"] == 7
    assert np.all(np.asarray(short_state["train"]["iteration"]) == 7)
    for a, b in zip(jax.tree.leaves(short_state["train"]["params"]), jax.tree.leaves(whole_state["train"]["params"]),
                    strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    assert logged_steps(tmp_path / "short") == [128, 224]


def test_the_host_loop_runs_only_the_iterations_it_owes(tmp_path):
    summary, state = train(tmp_path, "bridge", "log_interval=4", "env.backend=gymnasium")
    assert summary["env_steps"] == 224 and summary["iterations"] == 7
    assert int(np.asarray(state["train"]["iteration"])[0]) == 7
    assert logged_steps(tmp_path / "bridge") == [128, 224]


def test_learning_rate_anneals_to_zero_at_the_last_iteration(tmp_path):
    """Annealing counts the run's iterations, not whole blocks. Here 7 iterations of 2 epochs x 2
    minibatches are 28 optimiser steps, and step k (from 0) uses lr x (1 - k/28); each iteration
    logs the rate of its last step (4i - 1), and the last block's point is the mean over
    iterations 5-7: lr x (9 + 5 + 1) / 3 / 28. Rounded up to 8 iterations it would be 9/32."""
    train(tmp_path, "anneal", "log_interval=4", "algo.anneal_lr=true")
    events = EventAccumulator(str(tmp_path / "anneal"), size_guidance={"scalars": 0})
    events.Reload()
    lr = {e.step: e.value for e in events.Scalars("charts/learning_rate")}
    assert lr[224] == pytest.approx(compose_config(*TINY).algo.lr * 5 / 28, rel=1e-4)
