"""PPO actually learns: CartPole-v1 with the default configuration."""

from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import compose_config
from pgrun.run import run_training


def logged(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    events = EventAccumulator(str(run_dir))
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


def test_ppo_reaches_400_on_cartpole_within_150k_steps(tmp_path):
    cfg = compose_config("algo=ppo", "env=CartPole-v1", "seed=0", "total_timesteps=150000", "quiet=true")
    summary = run_training(cfg, tmp_path)
    curve = logged(tmp_path, "charts/episodic_return")
    assert summary["env_steps"] <= 155_000 and curve[-1][0] == summary["env_steps"]
    best_step, best = max(curve, key=lambda point: point[1])
    # The mean return over the episodes that ended in one logging block (5,120 steps).
    assert best >= 400, f"best mean return {best:.1f} (at step {best_step}); curve {curve}"
    # A random policy averages about 22 on CartPole; the start of the curve must show it.
    assert curve[0][1] < 100


def test_returns_and_lengths_are_recorded_separately(tmp_path):
    """On Pendulum every episode lasts 200 steps and every reward is negative."""
    cfg = compose_config("env=Pendulum-v1", "total_timesteps=20480", "quiet=true", "num_seeds=2")
    summary = run_training(cfg, tmp_path)
    assert all(r < 0 for r in summary["returns_per_seed"])
    lengths = [v for _, v in logged(tmp_path / "seed_0", "charts/episodic_length")]
    assert lengths and all(length == 200 for length in lengths)
    returns = [v for _, v in logged(tmp_path / "seed_0", "charts/episodic_return")]
    assert all(r < 0 for r in returns)
