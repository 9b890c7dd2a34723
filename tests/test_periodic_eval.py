"""Evaluation during training (``eval.*``): what it measures, and that it leaves training alone.

The claims checked: an evaluation plays the episodes one would get by stepping
the environment by hand with the same policy and statistics; deterministic
evaluation acts with the mode; turning evaluation on changes nothing in
training, on either backend; results reach TensorBoard, ``summary.json`` and
the checkpoint, and survive an interruption and resume; bad keys are bad input.
"""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import compose_config, run_cli
from pgrun import checkpoint, run
from pgrun.normalization import RunningMeanStd
from pgrun.train import EVAL_STREAM, GymLoop, build, compile_run_once, make_jax_evaluation

# CartPole, 4 envs x 128 steps: blocks of 2 iterations (1024 steps), 5 blocks.
SMALL = ("total_timesteps=5120", "log_interval=2", "checkpoint.every=2", "quiet=true", "compile_cache_dir=")


# ---------------------------------------------------------------- hand-made policies


def zeroed(params):
    return jax.tree.map(jnp.zeros_like, params)


def linear_rule_actor(params, weights, gain: float = 0.3):
    """Logits ``(-gain h, +gain h)`` with ``h = tanh(tanh(weights . z))`` of the normalised
    observation ``z``: its mode pushes right exactly when ``weights . z > 0``. With a small gain a
    sampled action often disagrees with the mode."""
    mlp = zeroed(params)["params"]["MLP_0"]
    mlp["Dense_0"]["kernel"] = mlp["Dense_0"]["kernel"].at[:, 0].set(jnp.asarray(weights, jnp.float32))
    mlp["Dense_1"]["kernel"] = mlp["Dense_1"]["kernel"].at[0, 0].set(1.0)
    mlp["Dense_2"]["kernel"] = mlp["Dense_2"]["kernel"].at[0, 0].set(-gain).at[0, 1].set(gain)
    return {"params": {"MLP_0": mlp}}


def constant_actor(params, head_bias):
    """Ignores the observation: the logits (or the Gaussian's mean) are ``head_bias``."""
    actor = zeroed(params)
    actor["params"]["MLP_0"]["Dense_2"]["bias"] = jnp.asarray(head_bias, jnp.float32)
    return actor


def stacked(*trees):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def evaluate(setup, actors, stats, keys):
    """The evaluation program as training compiles it, for members with these actors."""
    params = stacked(*({"actor": a, "critic": setup.policy.init(jax.random.PRNGKey(0))["critic"]} for a in actors))
    program = jax.jit(make_jax_evaluation(setup))
    returns, lengths = compile_run_once(program, params, stats, keys)(params, stats, keys)
    return np.asarray(returns), np.asarray(lengths)


def by_hand(env, choose, stats, key, episodes: int):
    """Episodes stepped one at a time from Python, with the evaluation's keys:
    ``choose(normalised obs) -> env action``."""
    step = jax.jit(env.step)
    returns, lengths = [], []
    for episode_key in jax.random.split(jax.random.fold_in(key, EVAL_STREAM), episodes):
        k_reset, k = jax.random.split(episode_key)
        obs, state = env.reset(k_reset)
        total, length, done = np.float32(0.0), 0, False
        while not done:
            k, _, k_step = jax.random.split(k, 3)
            obs, state, reward, terminated, truncated = step(k_step, state, choose(np.asarray(stats.normalize(obs))))
            total, length, done = total + np.float32(reward), length + 1, bool(terminated | truncated)
        returns.append(float(total))
        lengths.append(length)
    return returns, lengths


def member(tree, i):
    return jax.tree.map(lambda x: x[i], tree)


def test_evaluation_equals_episodes_stepped_by_hand():
    """Three members: episodes that end at different steps, all at the time limit, and all early.
    (The rules are chosen so that float rounding cannot tip an action: a controller that keeps the
    pole balanced for hundreds of steps amplifies one-ulp differences between two compilations.)"""
    setup = build(compose_config("num_seeds=3", "eval.episodes=6", "env.normalize_obs=true", "compile_cache_dir="))
    actor = setup.policy.init(jax.random.PRNGKey(1))["actor"]
    # Statistics far from (0, 1), so an unnormalised observation would act differently.
    odd = RunningMeanStd(jnp.asarray([0.1, 0.0, 0.01, -0.02]), jnp.asarray([1.0, 2.0, 0.3, 4.0]), jnp.asarray(1e3))
    stats = stacked(odd, odd, RunningMeanStd.create((4,)))
    keys = jax.random.split(jax.random.PRNGKey(7), 3)
    weights = [[0.0, 0.0, 1.0, 0.0], [0.0, 0.5, 3.0, 1.0]]
    actors = [linear_rule_actor(actor, w) for w in weights] + [constant_actor(actor, [0.5, 0.0])]
    returns, lengths = evaluate(setup, actors, stats, keys)
    assert returns.shape == lengths.shape == (3, 6)
    rules = [lambda z, w=w: int(np.dot(np.asarray(w, np.float32), z) > 0) for w in weights] + [lambda z: 0]
    for i, rule in enumerate(rules):
        want_returns, want_lengths = by_hand(setup.env, rule, member(stats, i), keys[i], 6)
        assert lengths[i].tolist() == want_lengths, i
        np.testing.assert_array_equal(returns[i], want_returns)
    assert len(set(lengths[0].tolist())) > 2, "episodes should end at different steps"
    assert lengths[1].tolist() == [500] * 6, "the second rule balances until the time limit"
    assert max(lengths[2]) < min(lengths[0]) < 100


def test_deterministic_evaluation_acts_with_the_mode():
    # CartPole: logits (0, 0.5) -- the mode always pushes right, a sample pushes left 38% of the time.
    keys = jax.random.split(jax.random.PRNGKey(3), 1)
    stats = stacked(RunningMeanStd.create((4,)))
    found = {}
    for deterministic in (True, False):
        setup = build(compose_config(f"eval.deterministic={deterministic}", "eval.episodes=8", "compile_cache_dir="))
        actor = constant_actor(setup.policy.init(jax.random.PRNGKey(0))["actor"], [0.0, 0.5])
        found[deterministic] = evaluate(setup, [actor], stats, keys)[1][0].tolist()
    always_right = by_hand(setup.env, lambda z: 1, member(stats, 0), keys[0], 8)[1]
    assert found[True] == always_right
    assert all(8 <= n <= 11 for n in always_right), always_right  # the pole falls within about 10 steps
    assert found[False] != always_right

    # Pendulum: a Gaussian of mean 0 and std 1; the mode applies no torque in every step.
    setup = build(compose_config("env=Pendulum-v1", "eval.episodes=3", "compile_cache_dir="))
    actor = constant_actor(setup.policy.init(jax.random.PRNGKey(0))["actor"], [0.0])
    stats = stacked(RunningMeanStd.create((3,)))
    returns, lengths = evaluate(setup, [actor], stats, keys)
    want_returns, want_lengths = by_hand(setup.env, lambda z: jnp.zeros(1), member(stats, 0), keys[0], 3)
    assert lengths[0].tolist() == want_lengths == [200] * 3
    np.testing.assert_allclose(returns[0], want_returns, rtol=1e-5)


# ---------------------------------------------------------------- whole runs


def train(run_dir: Path, *overrides: str) -> dict:
    return run.run_training(compose_config(*SMALL, *overrides), run_dir)


def final_state(run_dir: Path) -> list[np.ndarray]:
    return jax.tree.leaves(checkpoint.read(run_dir / checkpoint.DIRECTORY / checkpoint.FINAL)["state"])


def scalars(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    events = EventAccumulator(str(run_dir))
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)] if tag in events.Tags()["scalars"] else []


@pytest.fixture(scope="module")
def jax_runs(tmp_path_factory):
    """Two seeds on the JAX port, evaluation off and on (eval.every=5: rounded down to 2 blocks)."""
    base = tmp_path_factory.mktemp("jax")
    off = train(base / "off", "num_seeds=2", "eval.every=0")
    on = train(base / "on", "num_seeds=2", "eval.every=5")
    return base, off, on


def assert_same_training(dir_a: Path, summary_a: dict, dir_b: Path, summary_b: dict) -> None:
    a, b = final_state(dir_a), final_state(dir_b)
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b)), "training state differs"
    assert summary_a["returns_per_seed"] == summary_b["returns_per_seed"]
    for seed_dir in ("seed_0", "seed_1") if len(summary_a["seeds"]) > 1 else ("",):
        assert scalars(dir_a / seed_dir, "charts/episodic_return") == scalars(dir_b / seed_dir, "charts/episodic_return")
        assert scalars(dir_a / seed_dir, "losses/policy_loss") == scalars(dir_b / seed_dir, "losses/policy_loss")


def test_training_is_the_same_with_evaluation_on_or_off(jax_runs):
    base, off, on = jax_runs
    assert_same_training(base / "off", off, base / "on", on)


def test_evaluations_are_logged_and_summarised(jax_runs):
    base, off, on = jax_runs
    assert off["eval_returns_per_seed"] == [None, None] and off["eval_return_mean"] is None
    assert scalars(base / "off" / "seed_0", "eval/episodic_return") == []
    per_seed = []
    for seed_dir in ("seed_0", "seed_1"):
        returns = scalars(base / "on" / seed_dir, "eval/episodic_return")
        lengths = scalars(base / "on" / seed_dir, "eval/episodic_length")
        # every 2 blocks (2048 steps), and after the last block
        assert [s for s, _ in returns] == [s for s, _ in lengths] == [2048, 4096, 5120]
        assert all(r == n and 8 <= r <= 500 for (_, r), (_, n) in zip(returns, lengths))  # CartPole: 1 per step
        per_seed.append(returns[-1][1])
    assert on["eval_returns_per_seed"] == pytest.approx(per_seed)
    assert on["eval_return_mean"] == pytest.approx(np.mean(per_seed))
    on_disk = json.loads((base / "on" / "summary.json").read_text())
    assert on_disk["eval_returns_per_seed"] == on["eval_returns_per_seed"]


def test_gymnasium_bridge_evaluates_on_host_envs_of_its_own(tmp_path):
    off = train(tmp_path / "off", "env.backend=gymnasium", "eval.every=0")
    on = train(tmp_path / "on", "env.backend=gymnasium", "eval.every=1")  # rounded up to every block
    assert_same_training(tmp_path / "off", off, tmp_path / "on", on)
    returns = scalars(tmp_path / "on", "eval/episodic_return")
    assert [s for s, _ in returns] == [1024 * (i + 1) for i in range(5)]
    assert on["eval_returns_per_seed"] == [pytest.approx(returns[-1][1])]


def test_gymnasium_evaluation_acts_with_the_mode():
    setup = build(compose_config("env.backend=gymnasium", "eval.episodes=4", "compile_cache_dir="))
    evaluation = GymLoop(setup)._evaluate
    actor = constant_actor(setup.policy.init(jax.random.PRNGKey(0))["actor"], [0.0, 0.5])  # mode: push right
    train_state = build_train_state(setup, actor)
    results = evaluation(train_state, jax.random.split(jax.random.PRNGKey(0), 1))
    import gymnasium

    env = gymnasium.make("CartPole-v1")
    seed = evaluation.reset_seed(0)
    want = []
    for i in range(4):
        env.reset(seed=seed + i)
        length, done = 0, False
        while not done:
            _, _, terminated, truncated, _ = env.step(1)
            length, done = length + 1, terminated or truncated
        want.append(length)
    assert results["eval_lengths"][0].tolist() == want
    assert results["eval_returns"][0].tolist() == [float(n) for n in want]


def build_train_state(setup, actor):
    from pgrun.train import init_train_state

    state = init_train_state(setup, jax.random.PRNGKey(0))
    return jax.tree.map(lambda x: x[None], state.replace(params={**state.params, "actor": actor}))


def test_evaluations_survive_an_interruption_and_resume(jax_runs, tmp_path, monkeypatch):
    base, _, reference = jax_runs
    cfg = compose_config(*SMALL, "num_seeds=2", "eval.every=5")
    make_loop = run.make_loop

    def interrupted_loop(setup):
        """A loop that receives SIGTERM during its third block (after the first evaluation)."""
        loop, blocks = make_loop(setup), []
        run_block = loop.run_block

        def counting(runner, iterations=None):
            blocks.append(1)
            if len(blocks) == 3:
                signal.raise_signal(signal.SIGTERM)
            return run_block(runner, iterations)

        loop.run_block = counting
        return loop

    run_dir = tmp_path / "run"
    monkeypatch.setattr(run, "make_loop", interrupted_loop)
    with pytest.raises(run.TrainingInterrupted):
        run.run_training(cfg, run_dir)
    monkeypatch.setattr(run, "make_loop", make_loop)
    stopped = json.loads((run_dir / "summary.json").read_text())
    assert stopped["status"] == "interrupted" and stopped["env_steps"] == 3072
    first = [scalars(base / "on" / d, "eval/episodic_return")[0][1] for d in ("seed_0", "seed_1")]
    assert stopped["eval_returns_per_seed"] == pytest.approx(first)
    meta = checkpoint.read(run_dir / checkpoint.DIRECTORY / checkpoint.LATEST)["meta"]
    np.testing.assert_allclose(meta["eval_return"], first)

    resumed = run.run_training(cfg, run_dir, resume=True)
    assert_same_training(base / "on", reference, run_dir, resumed)
    assert resumed["eval_returns_per_seed"] == reference["eval_returns_per_seed"]
    for seed_dir in ("seed_0", "seed_1"):
        assert scalars(run_dir / seed_dir, "eval/episodic_return") == scalars(base / "on" / seed_dir,
                                                                               "eval/episodic_return")

    # A resume with no block left to train reports the evaluation from the checkpoint alone.
    finished = tmp_path / "finished"
    shutil.copytree(base / "on", finished)
    again = run.run_training(cfg, finished, resume=True)
    assert again["eval_returns_per_seed"] == reference["eval_returns_per_seed"]


@pytest.mark.parametrize("args,fragment", [
    (["eval.every=-1"], "eval.every=-1 must be 0 (off) or a positive number"),
    (["eval.episodes=0"], "eval.episodes=0 must be at least 1"),
    (["eval.deterministic=maybe"], "eval.deterministic=maybe"),
    (["eval.often=1"], "unknown config key 'eval.often'"),
])
def test_bad_eval_keys_exit_2_with_one_line(tmp_path, args, fragment):
    result = run_cli(*args, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, timeout=120)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith("pgrun: error:") and fragment in lines[0], lines[0]
    assert not (tmp_path / "run").exists()
