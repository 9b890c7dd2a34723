"""Every algorithm learns with its defaults, judged by where training ends: a regression
alarm, not a benchmark (scripts/benchmark_learning.py has the real targets).

The final logged point (the mean return of the episodes that ended in the last
logging block), not the best one, must clear a level a random policy cannot
reach, so an algorithm that learns and then collapses fails too.
"""

import pytest

from conftest import compose_config
from pgrun.algos.ppo import KL_BETA_RANGE
from pgrun.run import run_training
from test_learning import logged

# (algo, env, env steps, level the final point must exceed). A uniformly random policy averages
# about 22 on CartPole-v1 and about -1200 on Pendulum-v1 (a final point averages a logging block's
# tens of episodes). Levels sit well below what seeds 1-4 reached at these budgets.
CASES = [
    ("reinforce", "CartPole-v1", 60_000, 100),
    ("a2c", "CartPole-v1", 60_000, 75),
    ("npg", "CartPole-v1", 60_000, 200),
    ("trpo", "CartPole-v1", 60_000, 200),
    ("ppo", "CartPole-v1", 60_000, 150),
    ("ppo", "Pendulum-v1", 150_000, -600),
    ("trpo", "Pendulum-v1", 150_000, -600),
]


@pytest.mark.parametrize("algo,env,steps,level", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_final_return_clears_what_a_random_policy_reaches(tmp_path, algo, env, steps, level):
    cfg = compose_config(f"algo={algo}", f"env={env}", "seed=1", f"total_timesteps={steps}", "quiet=true")
    run_training(cfg, tmp_path)
    curve = logged(tmp_path, "charts/episodic_return")
    final = curve[-1][1]
    assert final > level, f"{algo} on {env}: final mean return {final:.1f} <= {level}; curve {curve}"


@pytest.mark.parametrize("objective", ["kl_adaptive", "kl_fixed", "none"])
def test_ppo_objectives_log_the_beta_their_rule_gives(tmp_path, objective):
    """With one iteration per TensorBoard point, losses/kl_beta is the beta each update used: for
    kl_fixed the configured 0.3 throughout; for kl_adaptive 0.3 first, then each the previous one
    doubled, halved or kept, within [1e-4, 1e4] (the rule's only moves; its inputs are checked against an independently
    recomputed KL in test_ppo_objectives.py), and it does move; for none, no beta at all."""
    cfg = compose_config("algo=ppo", f"algo.objective={objective}", "algo.kl_beta=0.3", "total_timesteps=10240",
                         "log_interval=1", "eval.every=0", "quiet=true")
    run_training(cfg, tmp_path)
    assert len(logged(tmp_path, "losses/ess")) == 20
    if objective == "none":
        with pytest.raises(KeyError):
            logged(tmp_path, "losses/kl_beta")
        return
    beta = [v for _, v in logged(tmp_path, "losses/kl_beta")]
    assert len(beta) == 20 and beta[0] == pytest.approx(0.3, rel=1e-6)
    if objective == "kl_fixed":
        assert all(v == pytest.approx(0.3, rel=1e-6) for v in beta)
    else:
        low, high = KL_BETA_RANGE
        for a, b in zip(beta, beta[1:]):
            assert any(b == pytest.approx(min(max(f * a, low), high), rel=1e-5) for f in (0.5, 1.0, 2.0)), beta
        assert len(set(beta)) > 1, f"beta never moved: {beta}"


def test_natural_gradient_metrics_are_logged(tmp_path):
    """Every health metric of NPG/TRPO is logged once per TensorBoard point. (Whether TRPO's steps keep
    the KL within delta is checked against the KL recomputed from the parameters in test_natural.py.)"""
    cfg = compose_config("algo=trpo", "total_timesteps=20480", "quiet=true", "log_interval=2")
    run_training(cfg, tmp_path)
    for tag in ("natural/cg_residual", "natural/step_norm", "natural/kl", "natural/surrogate_gain",
                "natural/backtracks", "natural/accepted"):
        assert len(logged(tmp_path, tag)) == 5, tag
