"""MuJoCo: PPO learns Hopper within a CI budget; the envpool and asynchronous Gymnasium
backends keep the bridge's interface; missing extras and wrong ids are bad input."""

from __future__ import annotations

from pathlib import Path

import gymnasium
import numpy as np
import pytest

from conftest import compose_config, run_cli
from pgrun.config import validate
from pgrun.envs import env_spaces, make_env
from pgrun.envs.gym_bridge import GymVectorEnv
from pgrun.errors import ConfigError
from pgrun.run import run_training

pytest.importorskip("mujoco")


def random_policy_return(env_id: str, episodes: int, seed: int = 0) -> float:
    env = gymnasium.make(env_id)
    env.action_space.seed(seed)
    returns = []
    for episode in range(episodes):
        env.reset(seed=seed + episode)
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total, done = total + reward, terminated or truncated
        returns.append(total)
    env.close()
    return float(np.mean(returns))


def test_ppo_on_hopper_clearly_beats_a_random_policy(tmp_path):
    """40k steps of PPO with the MuJoCo settings (about 35 s here). A random policy scores about 25
    and falls within some 20 steps; the trained one scored about 200 and must score 100 more. With a
    learning rate of 1e-10 (no learning) the same run scored 14, so the margin is not met by chance."""
    random_return = random_policy_return("Hopper-v5", episodes=20)
    cfg = compose_config("algo=ppo", "env=Hopper-v5", "total_timesteps=40960", "log_interval=5", "eval.every=0",
                         "quiet=true", "seed=0")
    summary = run_training(cfg, tmp_path)
    assert summary["backend"] == "gymnasium"
    assert summary["final_return_mean"] >= random_return + 100, (summary["final_return_mean"], random_return)


def test_async_gymnasium_steps_like_the_synchronous_one():
    """Same seeds, same actions: the worker processes produce the synchronous env's transitions."""
    sync, async_ = GymVectorEnv("Hopper-v5", 3), make_env("Hopper-v5", "gymnasium_async", 3)[0]
    try:
        np.testing.assert_array_equal(sync.reset(seed=4), async_.reset(seed=4))
        rng = np.random.default_rng(0)
        ends = 0
        for _ in range(200):
            actions = rng.uniform(-1, 1, (3, 3)).astype(np.float32)
            a, b = sync.step(actions), async_.step(actions)
            for field in ("obs", "rewards", "terminated", "truncated", "final_obs"):
                np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
            ends += int((a.terminated | a.truncated).sum())
        assert ends > 0
    finally:
        sync.close()
        async_.close()


def test_ppo_runs_on_async_gymnasium(tmp_path):
    cfg = compose_config("algo=ppo", "env=Hopper-v5", "env.backend=gymnasium_async", "num_envs=2",
                         "total_timesteps=1024", "log_interval=1", "eval.every=0", "quiet=true")
    summary = run_training(cfg, tmp_path)
    assert summary["backend"] == "gymnasium_async" and np.isfinite(summary["final_return_mean"])


# ------------------------------------------------------------------------------------------ envpool


def test_envpool_ids_are_the_ones_envpool_provides():
    envpool = pytest.importorskip("envpool")
    from pgrun.envs.envpool_bridge import ENVPOOL_IDS

    listed = set(envpool.list_all_envs())
    assert set(ENVPOOL_IDS) <= listed
    tasks = {i.split("-")[0] for i in ENVPOOL_IDS}
    assert {i for i in listed if i.split("-")[0] in tasks} == set(ENVPOOL_IDS)


def test_envpool_spaces_and_time_limits_match_gymnasium():
    pytest.importorskip("envpool")
    for env_id in ("Hopper-v5", "Reacher-v5", "Walker2d-v4"):
        envs, backend = make_env(env_id, "envpool", 2)
        assert backend == "envpool"
        obs_space, act_space = env_spaces(env_id, "gymnasium")
        assert envs.observation_space.shape == obs_space.shape
        np.testing.assert_array_equal(envs.action_space.low, act_space.low)
        np.testing.assert_array_equal(envs.action_space.high, act_space.high)
        assert envs.max_episode_steps == gymnasium.spec(env_id).max_episode_steps
        envs.close()


def test_envpool_truncates_at_the_time_limit_and_reports_the_true_final_observation():
    """Swimmer never terminates: every episode is cut at 1000 steps, the step that cuts it reports the
    last observation of the old episode and the first of the new one, and the new one runs 1000 more."""
    pytest.importorskip("envpool")
    envs, _ = make_env("Swimmer-v5", "envpool", 2)
    first = envs.reset(seed=1)
    actions = np.zeros((2, 2), np.float32)
    for t in range(1, 2001):
        out = envs.step(actions)
        assert not out.terminated.any()
        if t % 1000:
            assert not out.truncated.any()
            np.testing.assert_array_equal(out.obs, out.final_obs)
        else:
            assert out.truncated.all()
            assert not np.allclose(out.obs, out.final_obs)
    envs.close()
    assert first.dtype == np.float32


def test_envpool_takes_any_reset_seed_pgrun_draws():
    """Evaluation resets with 32-bit seeds and training with seed * 1_000_003; envpool itself
    accepts only int32 seeds, so the bridge folds them (a run crashed at its first evaluation)."""
    pytest.importorskip("envpool")
    envs, _ = make_env("Hopper-v5", "envpool", 2)
    for seed in (3_580_931_407, 2**32 - 1, 5000 * 1_000_003):
        first = envs.reset(seed=seed)
        np.testing.assert_array_equal(envs.reset(seed=seed + 1), envs.reset(seed=seed + 1))
        assert not np.array_equal(first, envs.reset(seed=seed + 1))
    envs.close()


def test_envpool_resets_hopper_in_the_step_it_falls():
    pytest.importorskip("envpool")
    envs, _ = make_env("Hopper-v5", "envpool", 4)
    envs.reset(seed=0)
    rng = np.random.default_rng(0)
    ends = 0
    for _ in range(300):
        out = envs.step(rng.uniform(-1, 1, (4, 3)).astype(np.float32))
        ended = np.flatnonzero(out.terminated)
        ends += ended.size
        # the new episode starts at Hopper's initial height 1.25 (reset noise 0.005); the fallen one did not
        np.testing.assert_allclose(out.obs[ended, 0], 1.25, atol=0.01)
        assert np.all(np.abs(out.final_obs[ended] - out.obs[ended]).max(axis=1) > 0.01)
    envs.close()
    assert ends > 0


def test_ppo_runs_on_envpool(tmp_path):
    pytest.importorskip("envpool")
    cfg = compose_config("algo=ppo", "env=Hopper-v5", "env.backend=envpool", "num_envs=2", "total_timesteps=1024",
                         "log_interval=1", "eval.every=0", "quiet=true")
    summary = run_training(cfg, tmp_path)
    assert summary["backend"] == "envpool" and np.isfinite(summary["final_return_mean"])


# ---------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("args, fragment", [
    (["env=CartPole-v1", "env.backend=envpool"], "CartPole-v1 has no envpool environment"),
    (["env=Hopper-v9", "env.backend=envpool"], "did you mean Hopper-v5"),
])
def test_bad_envpool_input_exits_2_with_one_line_and_no_run_dir(tmp_path: Path, args, fragment):
    run_dir = tmp_path / "run"
    result = run_cli(*args, "total_timesteps=100", f"hydra.run.dir={run_dir}", cwd=tmp_path, timeout=300)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], result.stderr
    assert not run_dir.exists()


def test_envpool_not_installed_says_what_to_install(monkeypatch):
    from pgrun.envs import envpool_bridge

    monkeypatch.setattr(envpool_bridge, "envpool_installed", lambda: False)
    cfg = compose_config("env=Hopper-v5", "env.backend=envpool")
    with pytest.raises(ConfigError, match=r"pip install 'pgrun\[envpool\]'"):
        validate(cfg)


def test_a_missing_simulator_extra_says_what_to_install():
    """A Gymnasium id whose simulator package is absent (as MuJoCo's is without the extra)."""
    from pgrun.envs import provided_ids

    env_id = "PgrunNeedsAnExtra-v0"
    gymnasium.register(env_id, entry_point=f"{__name__}:_needs_an_extra")
    provided_ids.cache_clear()  # the registry's id lists are cached
    try:
        for backend in ("gymnasium", "gymnasium_async"):
            with pytest.raises(ConfigError, match=r"pip install 'pgrun\[mujoco\]'"):
                make_env(env_id, backend, 2)
        with pytest.raises(ConfigError, match=r"pip install 'pgrun\[mujoco\]'"):
            env_spaces(env_id, "gymnasium")
    finally:
        del gymnasium.registry[env_id]
        provided_ids.cache_clear()


def _needs_an_extra(**kwargs):
    raise gymnasium.error.DependencyNotInstalled("MuJoCo is not installed, run `pip install \"gymnasium[mujoco]\"`")


# ------------------------------------------------------------------------------------------- Brax
# Brax compiles slowly on a CPU (minutes for a run here), so these use the smallest budgets.


def test_brax_hopper_resets_steps_and_cuts_episodes_at_the_time_limit():
    pytest.importorskip("brax")
    import jax
    import jax.numpy as jnp

    env, backend = make_env("brax/hopper", "brax", 1)
    assert backend == "brax" and env.observation_space.shape == (11,) and env.action_space.shape == (3,)
    obs, state = jax.jit(env.reset)(jax.random.PRNGKey(0))
    assert obs.shape == (11,) and obs.dtype == jnp.float32
    step = jax.jit(env.step)
    obs, state, reward, terminated, truncated = step(jax.random.PRNGKey(1), state, jnp.zeros(3))
    assert obs.shape == (11,) and reward.dtype == jnp.float32 and int(state.time) == 1
    assert not bool(terminated) and not bool(truncated)
    last = state.replace(time=jnp.asarray(env.max_episode_steps - 1, jnp.int32))
    _, _, _, terminated, truncated = step(jax.random.PRNGKey(2), last, jnp.zeros(3))
    assert bool(truncated) and not bool(terminated)


def test_ppo_trains_on_brax_and_evaluates_its_checkpoint(tmp_path):
    pytest.importorskip("brax")
    import json

    from pgrun.evaluate import evaluate

    cfg = compose_config("algo=ppo", "env=brax/hopper", "num_envs=4", "algo.num_steps=16", "algo.num_minibatches=2",
                         "algo.update_epochs=1", "total_timesteps=128", "log_interval=1", "eval.episodes=2",
                         "quiet=true")
    from omegaconf import OmegaConf

    (tmp_path / ".hydra").mkdir()
    OmegaConf.save(cfg, tmp_path / ".hydra" / "config.yaml")  # as the command line's Hydra writes it
    summary = run_training(cfg, tmp_path)
    assert summary["backend"] == "brax" and summary["env_steps"] == 128
    assert all(np.isfinite(r) for r in summary["eval_returns_per_seed"])
    report = evaluate(tmp_path, episodes=2)
    assert report["backend"] == "brax" and json.loads((tmp_path / "eval.json").read_text())["backend"] == "brax"


def test_brax_not_installed_says_what_to_install(monkeypatch):
    from pgrun.envs import brax_backend

    monkeypatch.setattr(brax_backend, "brax_installed", lambda: False)
    with pytest.raises(ConfigError, match=r"pip install 'pgrun\[brax\]'"):
        validate(compose_config("env=brax/hopper"))


def test_an_unknown_brax_task_is_bad_input(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli("env=brax/hoper", f"hydra.run.dir={run_dir}", cwd=tmp_path, timeout=300)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "unknown environment 'brax/hoper'" in lines[0], result.stderr
    assert not run_dir.exists()


def test_a_brax_run_stopped_and_resumed_ends_as_an_uninterrupted_one(tmp_path, monkeypatch):
    """Brax's state lives in the compiled loop like the classic ports', so a checkpoint holds the
    environments too: stopped by SIGTERM after 2 of 4 iterations and resumed, the run ends with the
    same parameters and environment state as one that was never stopped."""
    pytest.importorskip("brax")
    import os
    import signal

    import jax

    from pgrun import checkpoint
    from pgrun.errors import TrainingInterrupted
    from pgrun.run import enable_compile_cache
    from pgrun.train import JaxLoop

    cache = tmp_path / "cache"  # the later runs reuse the first one's compile (minutes for Brax on a CPU)
    enable_compile_cache(str(cache))
    cfg = compose_config("algo=ppo", "env=brax/hopper", "num_envs=4", "algo.num_steps=16", "algo.num_minibatches=2",
                         "algo.update_epochs=1", "total_timesteps=256", "log_interval=1", "checkpoint.every=1",
                         "eval.every=0", "quiet=true", f"compile_cache_dir={cache}")
    run_training(cfg, tmp_path / "whole")

    run_block = JaxLoop.run_block

    def stop_after_two(loop, runner, iterations=None):
        runner, metrics = run_block(loop, runner, iterations)
        if int(runner.train.iteration[0]) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return runner, metrics

    monkeypatch.setattr(JaxLoop, "run_block", stop_after_two)
    with pytest.raises(TrainingInterrupted):
        run_training(cfg, tmp_path / "resumed")
    monkeypatch.setattr(JaxLoop, "run_block", run_block)
    summary = run_training(cfg, tmp_path / "resumed", resume=True)
    assert summary["resumed"] and summary["env_steps"] == 256

    def final(run: str) -> list:
        return jax.tree.leaves(checkpoint.read(tmp_path / run / "checkpoints" / "final.msgpack")["state"])

    for whole, resumed in zip(final("whole"), final("resumed"), strict=True):
        np.testing.assert_allclose(np.asarray(resumed), np.asarray(whole), rtol=1e-5, atol=1e-6)


def test_the_speed_benchmark_runs_small_and_accounts_for_an_iterations_time():
    """scripts/benchmark_mujoco_speed.py at a tiny size: both tables, every rate positive, and the
    parts of an iteration (stepping, acting, learning) measured, with the bound they imply."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "scripts/benchmark_mujoco_speed.py", "--steps", "2048", "--raw-steps", "20",
                           "--backends", "gymnasium", "--no-sb3", "--profile-iterations", "1"],
                          cwd=root, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| gymnasium |")]
    assert len(rows) == 2, done.stdout
    speed, parts = ([cell.strip().rstrip("%").replace(",", "") for cell in row.split("|")[2:-1]] for row in rows)
    assert all(float(cell) > 0 for cell in speed)
    raw_ms, stepping, acting, learning, bound = map(float, parts)
    assert min(raw_ms, stepping, acting, learning) > 0
    assert bound == pytest.approx(100 * raw_ms / (raw_ms + learning), abs=1)
