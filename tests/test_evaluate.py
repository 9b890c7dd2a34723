"""pgrun-eval (pgrun.evaluate, pgrun.commands.evaluate): episodes of a saved policy, eval.json, video,
and one-line errors."""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from conftest import compose_config
from pgrun import evaluate as evaluation
from pgrun.errors import ConfigError
from pgrun.evaluate import EvalError, evaluate
from pgrun.run import run_training

EVAL_FIELDS = ("env", "backend", "checkpoint", "seed_index", "deterministic", "episodes", "mean_return",
               "std_return", "returns", "lengths")


def save_config(cfg, run_dir: Path) -> None:
    """What Hydra leaves in a run directory, for runs trained in-process."""
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")


def train(run_dir: Path, *overrides: str) -> Path:
    cfg = compose_config(*overrides, "quiet=true")
    run_training(cfg, run_dir)
    save_config(cfg, run_dir)
    return run_dir


@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory) -> Path:
    return train(tmp_path_factory.mktemp("cartpole"), "env=CartPole-v1", "total_timesteps=20480", "num_seeds=2")


@pytest.fixture(scope="module")
def frozenlake_run(tmp_path_factory) -> Path:
    return train(tmp_path_factory.mktemp("frozenlake"), "env=FrozenLake-v1", "total_timesteps=5120")


def run_eval(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-m", "pgrun.commands.evaluate", *args], env=env, capture_output=True,
                          text=True, timeout=300)


def test_eval_json_holds_n_complete_cartpole_episodes(cartpole_run):
    report = evaluate(cartpole_run, episodes=7)
    written = json.loads((cartpole_run / "eval.json").read_text())
    assert written == report
    for key in EVAL_FIELDS:
        assert key in written, key
    assert written["env"] == "CartPole-v1" and written["backend"] == "jax" and written["checkpoint"] == "final"
    assert written["seed_index"] == 0 and written["deterministic"] is False and written["episodes"] == 7
    assert len(written["returns"]) == len(written["lengths"]) == 7
    assert written["returns"] == [float(n) for n in written["lengths"]]  # CartPole pays 1 per step
    assert all(1 <= n <= 500 for n in written["lengths"])
    assert written["mean_return"] == pytest.approx(sum(written["returns"]) / 7)
    assert not (cartpole_run / "eval.json.tmp").exists()


def test_deterministic_evaluation_is_reproducible(cartpole_run):
    for backend in ("jax", "gymnasium"):
        first = evaluate(cartpole_run, episodes=3, backend=backend, deterministic=True, seed=5)
        second = evaluate(cartpole_run, episodes=3, backend=backend, deterministic=True, seed=5)
        assert first["returns"] == second["returns"] and first["lengths"] == second["lengths"]


def test_port_trained_policy_plays_gymnasium_like_the_port(cartpole_run):
    """The ports step like Gymnasium (only resets differ), so a trained greedy policy's mean returns
    in both agree within four standard errors of their difference."""
    port = evaluate(cartpole_run, episodes=20, backend="jax", deterministic=True)
    reference = evaluate(cartpole_run, episodes=20, backend="gymnasium", deterministic=True)
    assert reference["backend"] == "gymnasium"
    for report in (port, reference):
        assert len(report["lengths"]) == 20 and all(1 <= n <= 500 for n in report["lengths"])
        assert report["returns"] == [float(n) for n in report["lengths"]]
        assert report["mean_return"] > 50  # a random policy averages about 22
    # Same policy, same dynamics: the two means may differ only by sampling error (starts differ).
    a, b = np.asarray(port["returns"]), np.asarray(reference["returns"])
    standard_error = math.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    assert abs(a.mean() - b.mean()) <= 4 * standard_error + 1.0, (port["returns"], reference["returns"])


def greedy_gymnasium_episodes(run_dir: Path, seed: int, episodes: int, normalize: bool = True):
    """(returns, lengths) of the first member's saved policy played greedily in gymnasium.make's
    CartPole-v1, written out: the first episode reset with ``seed``, the others continuing the
    environment's generator; observations standardised with the saved running mean and variance
    (clipped to +-10) when ``normalize``; the action the largest logit's."""
    import gymnasium
    import jax

    from pgrun import checkpoint
    from pgrun.envs import make_env
    from pgrun.policies import make_policy

    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    train_state = checkpoint.read(run_dir / checkpoint.DIRECTORY / checkpoint.FINAL)["state"]["train"]
    first = jax.tree.map(lambda x: np.asarray(x)[0], train_state)
    port, _ = make_env("CartPole-v1", "jax", 1)
    policy = make_policy(port.observation_space, port.action_space, cfg.algo.hidden_sizes, cfg.algo.activation)
    mean, var = first["obs_stats"]["mean"], first["obs_stats"]["var"]
    logits_of = jax.jit(lambda actor, x: policy.actor.apply(actor, x).logits)
    env = gymnasium.make("CartPole-v1")
    returns, lengths = [], []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed if i == 0 else None)
        total, length, done = 0.0, 0, False
        while not done:
            x = np.clip((obs - mean) / np.sqrt(var + 1e-8), -10, 10) if normalize else obs
            logits = np.asarray(logits_of(first["params"]["actor"], x[None].astype(np.float32)))[0]
            obs, reward, terminated, truncated, _ = env.step(int(np.argmax(logits)))
            total, length, done = total + reward, length + 1, terminated or truncated
        returns.append(total)
        lengths.append(length)
    env.close()
    return returns, lengths


def test_deterministic_evaluation_plays_the_mode_and_sampling_does_not(cartpole_run, tmp_path):
    """--deterministic plays the policy's most likely action: its episodes are those of the greedy
    policy played by hand. The saved policy's logits are scaled down (same greedy action, choice
    probabilities near one half), so sampled episodes from the same starts come out different."""
    import flax.serialization

    from pgrun import checkpoint

    run_dir = tmp_path / "run"
    shutil.copytree(cartpole_run, run_dir)
    path = run_dir / checkpoint.DIRECTORY / checkpoint.FINAL
    raw = checkpoint.read(path)
    head = raw["state"]["train"]["params"]["actor"]["params"]["MLP_0"]["Dense_2"]
    head["kernel"], head["bias"] = head["kernel"] * 0.02, head["bias"] * 0.02
    path.write_bytes(flax.serialization.to_bytes(raw))

    want_returns, want_lengths = greedy_gymnasium_episodes(run_dir, seed=5, episodes=4, normalize=False)
    greedy = evaluate(run_dir, episodes=4, backend="gymnasium", deterministic=True, seed=5)
    assert greedy["lengths"] == want_lengths and greedy["returns"] == want_returns
    sampled = evaluate(run_dir, episodes=4, backend="gymnasium", deterministic=False, seed=5)
    assert sampled["lengths"] != want_lengths, "sampling played the greedy episodes"


def test_evaluation_normalises_observations_with_the_saved_statistics(tmp_path):
    """A run trained with env.normalize_obs: pgrun-eval's greedy episodes in Gymnasium are those of
    the policy fed observations standardised with the checkpoint's running statistics, and not
    those of the same policy fed raw observations."""
    run_dir = train(tmp_path / "normalised", "env=CartPole-v1", "env.normalize_obs=true", "total_timesteps=10240",
                    "eval.every=0")
    report = evaluate(run_dir, episodes=4, backend="gymnasium", deterministic=True, seed=11)
    want_returns, want_lengths = greedy_gymnasium_episodes(run_dir, seed=11, episodes=4)
    assert report["lengths"] == want_lengths and report["returns"] == want_returns
    raw_lengths = greedy_gymnasium_episodes(run_dir, seed=11, episodes=4, normalize=False)[1]
    assert raw_lengths != want_lengths, "the statistics made no difference: the test shows nothing"


def test_other_seeds_and_the_latest_checkpoint(cartpole_run):
    report = evaluate(cartpole_run, episodes=2, seed_index=1, checkpoint="latest")
    assert report["seed_index"] == 1 and report["checkpoint"] == "latest" and report["trained_seed"] == 1
    with pytest.raises(EvalError, match="out of range"):
        evaluate(cartpole_run, seed_index=2)


def test_bridge_env_evaluates_in_gymnasium_with_one_hot_observations(frozenlake_run):
    report = evaluate(frozenlake_run, episodes=5, deterministic=True)
    assert report["backend"] == "gymnasium" and report["env"] == "FrozenLake-v1"
    assert len(report["returns"]) == 5 and all(r in (0.0, 1.0) for r in report["returns"])
    assert all(1 <= n <= 100 for n in report["lengths"])  # FrozenLake-v1's time limit
    with pytest.raises(EvalError, match="no JAX port"):
        evaluate(frozenlake_run, backend="jax")


def test_cli_video_writes_an_animation_and_tensorboard_event(cartpole_run):
    from PIL import Image

    result = run_eval(str(cartpole_run), "--video", "--episodes", "2", "--deterministic", "--backend", "gymnasium")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("eval CartPole-v1 (gymnasium, 2 episodes, deterministic): return ")
    assert "video:" in result.stdout
    report = json.loads((cartpole_run / "eval.json").read_text())
    video = cartpole_run / report["video"]["path"]
    assert video.parent == cartpole_run / "videos" and video.stat().st_size > 0
    if video.suffix == ".gif":
        with Image.open(video) as gif:
            assert gif.n_frames > 1
    assert report["video"]["frames"] > 1
    events = list((cartpole_run / "eval").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(cartpole_run / "eval"), size_guidance={"images": 0})
    accumulator.Reload()
    assert "eval/video" in accumulator.Tags()["images"]


def fake_run(tmp_path: Path, env_id: str = "CartPole-v1", checkpoints=("latest",)) -> Path:
    """A run directory with a config and (empty) checkpoint files: enough to reach each input check."""
    run_dir = tmp_path / "run"
    save_config(compose_config(f"env={env_id}"), run_dir)
    (run_dir / "checkpoints").mkdir()
    for name in checkpoints:
        (run_dir / "checkpoints" / f"{name}.msgpack").write_bytes(b"")
    return run_dir


@pytest.mark.parametrize("case", ["missing", "not_a_run", "no_final", "no_checkpoints", "episodes",
                                  "seed_index", "jax_without_port", "bad_flag"])
def test_cli_errors_are_one_line_with_exit_code_2(tmp_path, case):
    if case == "missing":
        args, expect = [str(tmp_path / "nowhere")], "no such directory"
    elif case == "not_a_run":
        args, expect = [str(tmp_path)], "not a pgrun run directory"
    elif case == "no_final":
        args, expect = [str(fake_run(tmp_path))], "--checkpoint latest"
    elif case == "no_checkpoints":
        args, expect = [str(fake_run(tmp_path, checkpoints=())), "--checkpoint", "latest"], "latest.msgpack"
    elif case == "episodes":
        args, expect = [str(fake_run(tmp_path, checkpoints=("final",))), "--episodes", "0"], "--episodes"
    elif case == "seed_index":
        args, expect = [str(fake_run(tmp_path, checkpoints=("final",))), "--seed-index", "1"], "out of range"
    elif case == "jax_without_port":
        args = [str(fake_run(tmp_path, "FrozenLake-v1", ("final",))), "--backend", "jax"]
        expect = "--backend gymnasium"
    else:
        args, expect = [str(tmp_path), "--backend", "torch"], "invalid choice"
    result = run_eval(*args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("pgrun-eval: error:") and expect in lines[0], result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert not any(run_dir.name == "eval.json" for run_dir in tmp_path.rglob("*"))


def test_library_raises_instead_of_exiting(tmp_path, monkeypatch, capsys):
    """pgrun.evaluate is usable from scripts: bad input raises EvalError, nothing is printed, nothing exits."""

    def no_exit(code=0):
        raise AssertionError(f"the library called sys.exit({code})")

    monkeypatch.setattr(sys, "exit", no_exit)
    assert not hasattr(evaluation, "main") and issubclass(EvalError, ConfigError)
    with pytest.raises(EvalError, match="no such directory"):
        evaluate(tmp_path / "nowhere")
    with pytest.raises(EvalError, match="--episodes must be at least 1"):
        evaluate(tmp_path, episodes=0)
    with pytest.raises(EvalError, match="--checkpoint must be one of final, latest"):
        evaluate(tmp_path, checkpoint="best")
    run_dir = fake_run(tmp_path, checkpoints=("final",))
    with pytest.raises(EvalError, match="cannot load .*final.msgpack"):
        evaluate(run_dir)  # an empty checkpoint file
    assert capsys.readouterr() == ("", "")
    assert not (run_dir / "eval.json").exists()


def test_checkpoint_names_are_the_run_folders():
    from pgrun.run_folder import CHECKPOINT_NAMES

    assert evaluation.CHECKPOINTS == CHECKPOINT_NAMES
