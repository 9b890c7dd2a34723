"""Every algorithm learns CartPole-v1 a little with its defaults (a regression
alarm, not a benchmark: see scripts/benchmark_learning.py for the real targets)."""

import pytest

from conftest import compose_config
from pgrun.run import run_training
from test_learning import logged

# (algo, env steps, best mean return the run must reach). A uniformly random
# policy averages about 22 on CartPole-v1.
SMOKE = [
    ("reinforce", 60_000, 60),
    ("a2c", 60_000, 100),
    ("npg", 60_000, 100),
    ("trpo", 60_000, 100),
    ("ppo", 60_000, 100),
]


@pytest.mark.parametrize("algo,steps,threshold", SMOKE, ids=[s[0] for s in SMOKE])
def test_algorithm_improves_on_cartpole(tmp_path, algo, steps, threshold):
    cfg = compose_config(f"algo={algo}", "env=CartPole-v1", "seed=1", f"total_timesteps={steps}", "quiet=true")
    summary = run_training(cfg, tmp_path)
    curve = logged(tmp_path, "charts/episodic_return")
    best = max(value for _, value in curve)
    assert best >= threshold, f"{algo}: best mean return {best:.1f} < {threshold}; curve {curve}"
    assert summary["status"] == "completed"


@pytest.mark.parametrize("objective", ["kl_adaptive", "kl_fixed", "none"])
def test_ppo_objectives_run_and_log_their_metrics(tmp_path, objective):
    cfg = compose_config("algo=ppo", f"algo.objective={objective}", "total_timesteps=20480", "quiet=true")
    run_training(cfg, tmp_path)
    ess = logged(tmp_path, "losses/ess")
    assert ess and all(0.0 < v <= 1.0 + 1e-6 for _, v in ess)
    if objective != "none":
        beta = [v for _, v in logged(tmp_path, "losses/kl_beta")]
        assert beta and all(v > 0 for v in beta)
        if objective == "kl_fixed":
            assert all(v == pytest.approx(1.0) for v in beta)


def test_natural_gradient_metrics_are_logged(tmp_path):
    cfg = compose_config("algo=trpo", "total_timesteps=20480", "quiet=true", "log_interval=2")
    run_training(cfg, tmp_path)
    for tag in ("natural/cg_residual", "natural/step_norm", "natural/kl", "natural/surrogate_gain",
                "natural/backtracks", "natural/accepted"):
        assert len(logged(tmp_path, tag)) == 5, tag
    kls = [v for _, v in logged(tmp_path, "natural/kl")]
    assert all(kl <= 0.01 + 1e-6 for kl in kls), kls
