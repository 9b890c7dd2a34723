"""PPO's objectives against the formulas they implement.

The clipped surrogate's per-sample value and gradient against the four cases of
the clipped objective, the adaptive-KL rule at its thresholds and its bounds,
the effective sample size against its formula, a real kl_adaptive update whose
stored beta must follow the rule applied to the KL recomputed from the
parameters, the logged health metrics against the last epoch's values, and
every objective's whole loss (clip, kl_adaptive, kl_fixed, none) and its
gradient against the objective written out.
"""

from __future__ import annotations

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import compose_config
from pgrun.algos.common import minibatch_epochs
from pgrun.algos.ppo import KL_BETA_RANGE, adapt_kl_beta, clipped_surrogate, effective_sample_size, make_ppo
from pgrun.rollout import identity_normalizer, make_rollout
from pgrun.train import build, init_train_state

EPS = 0.2


def clip_cases(ratio: np.ndarray, adv: np.ndarray, eps: float):
    """Value and d/dr of L_CLIP per sample, case by case (PPO paper / lecture notes):
    (1+eps) A, flat, if r >= 1+eps and A > 0; (1-eps) A, flat, if r <= 1-eps and A < 0;
    otherwise r A, with slope A."""
    upper = (ratio >= 1 + eps) & (adv > 0)
    lower = (ratio <= 1 - eps) & (adv < 0)
    value = np.where(upper, (1 + eps) * adv, np.where(lower, (1 - eps) * adv, ratio * adv))
    slope = np.where(upper | lower, 0.0, adv)
    return value, slope


def sample_away_from_kinks(n: int, seed: int):
    """Ratios in (0.3, 2) and advantages of both signs, at least 1e-3 from r = 1 +- eps."""
    rng = np.random.default_rng(seed)
    ratio = rng.uniform(0.3, 2.0, 4 * n)
    ratio = ratio[(np.abs(ratio - (1 + EPS)) > 1e-3) & (np.abs(ratio - (1 - EPS)) > 1e-3)][:n]
    adv = rng.normal(size=n) * rng.choice([0.1, 1.0, 10.0], size=n)
    return ratio.astype(np.float32), adv.astype(np.float32)


def test_clipped_surrogate_value_matches_the_four_cases():
    ratio, adv = sample_away_from_kinks(4000, 0)
    expected, _ = clip_cases(ratio.astype(np.float64), adv.astype(np.float64), EPS)
    got = np.asarray(clipped_surrogate(jnp.asarray(ratio), jnp.asarray(adv), EPS))
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_clipped_surrogate_gradient_vanishes_exactly_where_the_clip_binds():
    """Per-sample gradient w.r.t. the ratio and w.r.t. the log-probability:
    zero for (A > 0, r > 1+eps) and (A < 0, r < 1-eps); the gradient of r A
    (A, respectively r A) everywhere else, including the unclipped sides
    (A > 0, r < 1-eps) and (A < 0, r > 1+eps)."""
    ratio, adv = sample_away_from_kinks(4000, 1)
    _, slope = clip_cases(ratio.astype(np.float64), adv.astype(np.float64), EPS)
    d_ratio = jax.vmap(jax.grad(lambda r, a: clipped_surrogate(r, a, EPS)))(jnp.asarray(ratio), jnp.asarray(adv))
    np.testing.assert_allclose(np.asarray(d_ratio), slope, rtol=1e-6, atol=0)

    # Through the log-probability, as the policy sees it: r = exp(logp - logp_old).
    old_logp = np.log(np.random.default_rng(2).uniform(0.05, 0.9, ratio.size)).astype(np.float32)
    logp = (np.log(ratio) + old_logp).astype(np.float32)
    per_sample = lambda lp, lo, a: clipped_surrogate(jnp.exp(lp - lo), a, EPS)
    d_logp = jax.vmap(jax.grad(per_sample))(jnp.asarray(logp), jnp.asarray(old_logp), jnp.asarray(adv))
    r = np.exp(logp.astype(np.float64) - old_logp)
    np.testing.assert_allclose(np.asarray(d_logp), slope * r, rtol=1e-5, atol=1e-6)

    # Every case is represented, so each branch was checked.
    cases = {
        "A>0, r>1+eps (zero)": (adv > 0) & (ratio > 1 + EPS),
        "A<0, r<1-eps (zero)": (adv < 0) & (ratio < 1 - EPS),
        "A>0, r<1+eps": (adv > 0) & (ratio < 1 + EPS),
        "A<0, r>1-eps": (adv < 0) & (ratio > 1 - EPS),
        "A>0, r<1-eps": (adv > 0) & (ratio < 1 - EPS),
        "A<0, r>1+eps": (adv < 0) & (ratio > 1 + EPS),
    }
    for name, where in cases.items():
        assert where.sum() > 50, name
        zero = "zero" in name
        assert np.all((np.asarray(d_ratio)[where] == 0) == zero), name


@pytest.mark.parametrize("ratio, adv, slope", [
    (1.5, 2.0, 0.0), (0.5, -2.0, 0.0),  # clipped: no incentive to move further
    (1.1, 2.0, 2.0), (0.5, 2.0, 2.0),   # A > 0 below the upper clip
    (0.9, -2.0, -2.0), (1.5, -2.0, -2.0),  # A < 0 above the lower clip
    (1.0, 3.0, 3.0), (1.0, -3.0, -3.0),  # at the old policy the gradient is the policy gradient
])
def test_clipped_surrogate_gradient_single_cases(ratio, adv, slope):
    grad = jax.grad(clipped_surrogate)(jnp.float32(ratio), jnp.float32(adv), EPS)
    assert float(grad) == pytest.approx(slope, abs=1e-6)


# ---------------------------------------------------------------------------
# Adaptive KL coefficient and effective sample size
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("target", [0.01, 0.003, 0.2])
@pytest.mark.parametrize("beta", [1.0, 0.25, 3.0])
def test_adapt_kl_beta_thresholds(target, beta):
    """beta x 2 when d > 1.5 d_targ, beta / 2 when d < d_targ / 1.5, else unchanged."""
    hi, lo = 1.5 * target, target / 1.5
    cases = [
        (hi * 1.001, 2 * beta), (hi * 10, 2 * beta),
        (hi * 0.999, beta), (target, beta), (lo * 1.001, beta),
        (lo * 0.999, beta / 2), (0.0, beta / 2),
    ]
    for kl, expected in cases:
        got = adapt_kl_beta(jnp.float32(beta), jnp.float32(kl), target)
        assert float(got) == pytest.approx(expected, rel=1e-6), f"kl={kl}, target={target}: {float(got)} != {expected}"


def test_adapt_kl_beta_stays_in_its_range_and_recovers():
    """Unbounded, at most 150 halvings take beta = 1 to exactly 0 in float32, and
    doubling 0 never recovers. Bounded, 200 halvings stop at the floor, from which doublings
    climb again at once; 200 doublings stop at the ceiling, from which halvings
    come down at once."""
    low, high = KL_BETA_RANGE
    adapt = jax.jit(adapt_kl_beta, static_argnums=2)
    beta = jnp.float32(1.0)
    for _ in range(200):
        beta = adapt(beta, jnp.float32(0.0), 0.01)
    assert float(beta) == pytest.approx(low, rel=1e-6)
    for k in range(1, 4):
        beta = adapt(beta, jnp.float32(1.0), 0.01)
        assert float(beta) == pytest.approx(low * 2**k, rel=1e-6)
    for _ in range(200):
        beta = adapt(beta, jnp.float32(1.0), 0.01)
    assert float(beta) == pytest.approx(high, rel=1e-6)
    beta = adapt(beta, jnp.float32(0.0), 0.01)
    assert float(beta) == pytest.approx(high / 2, rel=1e-6)
    # A beta within the range and a KL within the band stay exactly as they are.
    assert float(adapt(jnp.float32(low), jnp.float32(0.01), 0.01)) == pytest.approx(low, rel=1e-6)


def test_effective_sample_size():
    """ESS = (sum w)^2 / (n sum w^2): 1 for equal weights, -> 1/n when one weight
    dominates, scale invariant, and in [1/n, 1] (Cauchy-Schwarz)."""
    n = 64
    np.testing.assert_allclose(float(effective_sample_size(jnp.full((n,), 0.7))), 1.0, rtol=1e-6)
    dominated = jnp.ones((n,)).at[5].set(1e6)
    np.testing.assert_allclose(float(effective_sample_size(dominated)), 1.0 / n, rtol=1e-3)
    rng = np.random.default_rng(0)
    for sigma in [0.1, 0.5, 1.5]:
        w = rng.lognormal(0.0, sigma, size=(16, 8))
        expected = w.sum() ** 2 / (w.size * (w**2).sum())
        got = float(effective_sample_size(jnp.asarray(w, jnp.float32)))
        np.testing.assert_allclose(got, expected, rtol=1e-5)
        np.testing.assert_allclose(float(effective_sample_size(jnp.asarray(3.0 * w, jnp.float32))), expected,
                                   rtol=1e-5)
        assert 1.0 / w.size <= got <= 1.0
    # Lognormal weights with sigma: E[w]^2 / E[w^2] = exp(-sigma^2), the large-n limit.
    w = rng.lognormal(0.0, 0.5, size=200_000)
    np.testing.assert_allclose(float(effective_sample_size(jnp.asarray(w, jnp.float32))), np.exp(-0.25), rtol=1e-2)


# ---------------------------------------------------------------------------
# A real kl_adaptive update
# ---------------------------------------------------------------------------

COMMON = ("algo=ppo", "algo.objective=kl_adaptive", "env=CartPole-v1", "num_envs=4", "algo.num_steps=64",
          "algo.hidden_sizes=[32,32]", "total_timesteps=2560")


def mean_categorical_kl(old_logits, new_logits) -> float:
    p = np.asarray(old_logits, np.float64)
    q = np.asarray(new_logits, np.float64)
    logp = p - np.logaddexp.reduce(p, -1, keepdims=True)
    logq = q - np.logaddexp.reduce(q, -1, keepdims=True)
    return float(np.mean(np.sum(np.exp(logp) * (logp - logq), -1)))


def rule(beta: float, kl: float, target: float) -> float:
    if kl > 1.5 * target:
        return 2 * beta
    if kl < target / 1.5:
        return beta / 2
    return beta


def test_kl_adaptive_update_stores_the_beta_the_rule_gives():
    """After one PPO kl_adaptive update the stored beta is the rule applied to the
    mean KL(pi_old || pi_new) over the batch, recomputed here from the parameters.
    kl_target only decides the stored beta, not the update, so the same update is
    repeated with targets placed 3-4% either side of both thresholds around the
    measured KL: beta must double, stay, stay, halve exactly as the rule says, which
    fails if the update measured the KL a few percent differently."""
    setup = build(compose_config(*COMMON))
    cfg = setup.cfg.algo
    state = init_train_state(setup, jax.random.PRNGKey(0))
    beta0 = float(state.algo_state["kl_beta"])
    assert beta0 == cfg.kl_beta
    obs, env_state = jax.vmap(setup.env.reset)(jax.random.split(jax.random.PRNGKey(1), 4))
    rollout = jax.jit(make_rollout(setup.env, setup.policy, identity_normalizer, cfg.num_steps))
    batch = rollout(state.params, state.obs_stats, env_state, obs, jax.random.PRNGKey(2))[2]
    flat_obs = batch.obs.reshape(-1, batch.obs.shape[-1])

    # make_ppo (what make_algorithm builds for algo=ppo) from this config and the run's
    # iteration count; kl_target is a traced hyperparameter of the state, so one
    # compilation serves every target.
    update = make_ppo(cfg, setup.policy, 10).update

    @jax.jit
    def update_with_target(target):
        with_target = state.replace(hparams={**state.hparams, "kl_target": target})
        return update(with_target, batch, jax.random.PRNGKey(3))[0]

    def measured_kl(new_state):
        return mean_categorical_kl(setup.policy.dist(state.params["actor"], flat_obs).logits,
                                   setup.policy.dist(new_state.params["actor"], flat_obs).logits)

    # First the configured target (0.01), far from both thresholds.
    new_state = update_with_target(jnp.float32(cfg.kl_target))
    kl = measured_kl(new_state)
    assert kl > 0
    assert min(abs(kl / (1.5 * cfg.kl_target) - 1), abs(kl * 1.5 / cfg.kl_target - 1)) > 0.03
    np.testing.assert_allclose(float(new_state.algo_state["kl_beta"]), rule(beta0, kl, cfg.kl_target),
                               rtol=1e-6, err_msg=f"KL {kl}, target {cfg.kl_target}")

    outcomes = {}
    for target in [kl / 1.55, kl / 1.45, kl * 1.45, kl * 1.55]:
        other = update_with_target(jnp.float32(target))
        np.testing.assert_allclose(measured_kl(other), kl, rtol=1e-4)  # the same update
        expected = rule(beta0, kl, target)
        outcomes[target] = expected / beta0
        np.testing.assert_allclose(float(other.algo_state["kl_beta"]), expected, rtol=1e-6,
                                   err_msg=f"KL {kl}, target {target}")
    assert list(outcomes.values()) == [2.0, 1.0, 1.0, 0.5]


# ---------------------------------------------------------------------------
# Logged health metrics: the last epoch's mean
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("last_epoch_metrics", [False, True])
def test_minibatch_epochs_averages_all_steps_or_the_last_epoch(last_epoch_metrics):
    """A step whose metric is its own index (0, 1, ... in scan order): the mean over
    every step is (E M - 1) / 2 (what NPG and TRPO's critic fit log), over the last
    epoch's M steps it is (E - 1) M + (M - 1) / 2."""
    epochs, minibatches = 3, 4

    def step(count, minibatch):
        return count + 1, {"index": count.astype(jnp.float32), "samples": jnp.float32(minibatch.shape[0])}

    count, metrics = minibatch_epochs(step, jnp.int32(0), jnp.arange(24.0), jax.random.PRNGKey(0), epochs,
                                      minibatches, last_epoch_metrics=last_epoch_metrics)
    assert int(count) == epochs * minibatches
    expected = (epochs - 1) * minibatches + (minibatches - 1) / 2 if last_epoch_metrics else \
        (epochs * minibatches - 1) / 2
    assert float(metrics["index"]) == expected
    assert float(metrics["samples"]) == 24 / minibatches


def ratio_metrics(policy, old_params, params, batch, clip_eps: float) -> dict[str, float]:
    """approx_kl, clip_fraction and ess over the whole batch, in float64 from the logits."""
    obs = batch.obs.reshape(-1, batch.obs.shape[-1])
    logits = np.asarray(policy.dist(params["actor"], obs).logits, np.float64)
    log_pi = logits - np.logaddexp.reduce(logits, -1, keepdims=True)
    log_ratio = np.take_along_axis(log_pi, np.asarray(batch.actions).reshape(-1, 1), -1)[:, 0] \
        - np.asarray(batch.log_probs, np.float64).reshape(-1)
    ratio = np.exp(log_ratio)
    return {"losses/approx_kl": float(np.mean(ratio - 1 - log_ratio)),
            "losses/clip_fraction": float(np.mean(np.abs(ratio - 1) > clip_eps)),
            "losses/ess": float(ratio.sum() ** 2 / (ratio.size * (ratio**2).sum()))}


def test_ppo_logs_the_last_epochs_ratio_metrics():
    """With one minibatch per epoch, epoch k (counting from 0) sees the whole batch
    at the parameters k full-batch steps from the start, which an update of k epochs
    produces. The logged approx_kl, clip_fraction and ess of a 4-epoch update are
    those of the last epoch, computed here from the parameters after 3 epochs; the
    mean over all four epochs (the first at ratio 1) is far smaller."""
    epochs, clip_eps = 4, 0.02
    setup = build(compose_config("algo=ppo", "env=CartPole-v1", "num_envs=4", "algo.num_steps=64",
                                 "algo.hidden_sizes=[32,32]", "total_timesteps=2560", "algo.num_minibatches=1",
                                 f"algo.update_epochs={epochs}", "algo.lr=0.001", f"algo.clip_eps={clip_eps}",
                                 "algo.anneal_lr=false"))
    state = init_train_state(setup, jax.random.PRNGKey(0))
    obs, env_state = jax.vmap(setup.env.reset)(jax.random.split(jax.random.PRNGKey(1), 4))
    rollout = jax.jit(make_rollout(setup.env, setup.policy, identity_normalizer, 64))
    batch = rollout(state.params, state.obs_stats, env_state, obs, jax.random.PRNGKey(2))[2]

    def update(num_epochs):
        cfg = copy.deepcopy(setup.cfg.algo)
        cfg.update_epochs = num_epochs
        return jax.jit(make_ppo(cfg, setup.policy, 10).update)(state, batch, jax.random.PRNGKey(3))

    per_epoch = [ratio_metrics(setup.policy, state.params, state.params, batch, clip_eps)]
    per_epoch += [ratio_metrics(setup.policy, state.params, update(k)[0].params, batch, clip_eps)
                  for k in range(1, epochs)]
    _, logged = update(epochs)
    last = per_epoch[-1]
    assert last["losses/clip_fraction"] > 0.1 and last["losses/approx_kl"] > 5e-5
    np.testing.assert_allclose(float(logged["losses/approx_kl"]), last["losses/approx_kl"], rtol=1e-3)
    np.testing.assert_allclose(float(logged["losses/ess"]), last["losses/ess"], rtol=1e-4)
    # float32 against float64: a ratio within rounding of 1 +- eps could count either way.
    assert abs(float(logged["losses/clip_fraction"]) - last["losses/clip_fraction"]) <= 1.5 / 256
    for name in ("losses/approx_kl", "losses/clip_fraction"):
        all_epochs = np.mean([m[name] for m in per_epoch])
        assert float(logged[name]) > 1.2 * all_epochs, (name, float(logged[name]), all_epochs)


def test_clipped_value_loss_and_its_gradient_follow_the_formula():
    """0.5 mean(max((V - G)^2, (V_old + clip(V - V_old, -eps, eps) - G)^2)), checked per sample against
    numpy, with the gradient zero exactly where the clipped term is the larger and V has moved past eps."""
    from pgrun.algos.ppo import clipped_value_loss, squared_error

    eps = 0.2
    old = np.array([0.0, 0.0, 0.0, 1.0, 1.0], np.float32)
    values = np.array([0.1, 0.5, -0.5, 1.5, 0.9], np.float32)
    targets = np.array([1.0, 1.0, 1.0, 0.0, 2.0], np.float32)
    clipped = old + np.clip(values - old, -eps, eps)
    unclipped_sq, clipped_sq = (values - targets) ** 2, (clipped - targets) ** 2
    expected = 0.5 * np.mean(np.maximum(unclipped_sq, clipped_sq))
    assert float(clipped_value_loss(jnp.asarray(values), jnp.asarray(old), jnp.asarray(targets), eps)) == \
        pytest.approx(expected, rel=1e-6)
    grad = np.asarray(jax.grad(clipped_value_loss)(jnp.asarray(values), jnp.asarray(old), jnp.asarray(targets), eps))
    inside = np.abs(values - old) < eps
    by_hand = np.where(unclipped_sq >= clipped_sq, values - targets, np.where(inside, clipped - targets, 0.0))
    np.testing.assert_allclose(grad, by_hand / values.size, rtol=1e-6, atol=1e-7)
    assert grad[1] == 0.0  # moved 0.5 toward the target: the clipped error is larger and flat
    assert float(squared_error(jnp.asarray(values), jnp.asarray(targets))) == \
        pytest.approx(0.5 * np.mean(unclipped_sq), rel=1e-6)


# ---------------------------------------------------------------------------
# Every objective's loss against its formula written out
# ---------------------------------------------------------------------------


class _Captured(Exception):
    pass


def ppo_loss_of(cfg, policy, state, monkeypatch):
    """The loss-gradient function ``grad_fn(params, hparams, beta, minibatch) -> (grads, metrics)``
    that PPO's update hands its minibatch epochs, taken from a real update call."""
    from pgrun.algos import ppo

    grabbed = {}

    def capture(policy, optimizer, grad_fn, *rest):
        grabbed["grad_fn"] = grad_fn
        raise _Captured

    monkeypatch.setattr(ppo, "surrogate_epochs", capture)
    with pytest.raises(_Captured):
        make_ppo(cfg, policy, 10).update(state, None, jax.random.PRNGKey(0))
    return grabbed["grad_fn"]


def written_out_ppo_loss(policy, params, objective, beta, hp, minibatch):
    """(total loss, policy loss) of PPO for a categorical policy, from the formulas:
    r = pi(a|s) / pi_old(a|s) from softmaxes, A standardised over the minibatch,
    clip: -E[min(r A, clip(r, 1-eps, 1+eps) A)]; kl_*: -E[r A] + beta E[sum_a pi_old (log pi_old - log pi)];
    none: -E[r A]; plus vf_coef 0.5 E[(V - G)^2] minus ent_coef E[-sum_a pi log pi]."""
    obs, actions, old_log_probs, old_dist, _, advantages, targets = minibatch
    log_pi = jax.nn.log_softmax(policy.actor.apply(params["actor"], obs).logits)
    log_pi_old = jax.nn.log_softmax(old_dist.logits)
    ratio = jnp.exp(jnp.take_along_axis(log_pi, actions[:, None], -1)[:, 0] - old_log_probs)
    adv = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    eps = hp["clip_eps"]
    if objective == "clip":
        policy_loss = -jnp.mean(jnp.minimum(ratio * adv, jnp.clip(ratio, 1 - eps, 1 + eps) * adv))
    else:
        policy_loss = -jnp.mean(ratio * adv)
    if objective in ("kl_adaptive", "kl_fixed"):
        kl = jnp.mean(jnp.sum(jnp.exp(log_pi_old) * (log_pi_old - log_pi), -1))
        policy_loss = policy_loss + beta * kl
    values = policy.critic.apply(params["critic"], obs)[..., 0]
    value_loss = 0.5 * jnp.mean((values - targets) ** 2)
    entropy = jnp.mean(-jnp.sum(jnp.exp(log_pi) * log_pi, -1))
    return policy_loss + hp["vf_coef"] * value_loss - hp["ent_coef"] * entropy, policy_loss


@pytest.mark.parametrize("objective", ["clip", "kl_adaptive", "kl_fixed", "none"])
def test_each_objectives_loss_and_gradient_follow_its_formula(objective, monkeypatch):
    """For a new policy away from the old one (so the KL term and the clipping act), the policy loss
    PPO reports and the gradient of its whole loss, actor and critic, equal those of the objective
    written out above. A penalty of the wrong sign, KL(new || old) for KL(old || new), a missing
    clip or standardisation, or a wrong value or entropy weight all fail."""
    setup = build(compose_config("algo=ppo", f"algo.objective={objective}", "env=CartPole-v1",
                                 "algo.hidden_sizes=[16]", "algo.clip_vloss=false", "algo.ent_coef=0.05",
                                 "algo.kl_beta=0.7", "num_envs=2", "algo.num_steps=16", "total_timesteps=320"))
    policy, state = setup.policy, init_train_state(setup, jax.random.PRNGKey(0))
    grad_fn = ppo_loss_of(setup.cfg.algo, policy, state, monkeypatch)

    old = state.params
    noise = jax.tree.map(lambda x: 0.5 * jax.random.normal(jax.random.PRNGKey(1), x.shape), old)
    params = jax.tree.map(jnp.add, old, noise)
    n = 64
    obs = jax.random.normal(jax.random.PRNGKey(2), (n, policy.obs_dim))
    old_dist = policy.dist(old["actor"], obs)
    actions = old_dist.sample(jax.random.PRNGKey(3))
    advantages = 2.0 + jax.random.normal(jax.random.PRNGKey(4), (n,))  # standardisation matters
    targets = jax.random.normal(jax.random.PRNGKey(5), (n,))
    minibatch = (obs, actions, old_dist.log_prob(actions), old_dist, jnp.zeros(n), advantages, targets)
    beta = jnp.float32(0.7) if objective != "clip" else jnp.float32(0.0)

    grads, metrics = grad_fn(params, state.hparams, beta, minibatch)
    (_, policy_loss), want = jax.value_and_grad(
        lambda p: written_out_ppo_loss(policy, p, objective, beta, state.hparams, minibatch), has_aux=True)(params)
    np.testing.assert_allclose(float(metrics["losses/policy_loss"]), float(policy_loss), rtol=1e-5, atol=1e-6)
    got_leaves, want_leaves = jax.tree.leaves(grads), jax.tree.leaves(want)
    assert len(got_leaves) == len(want_leaves)
    for g, w in zip(got_leaves, want_leaves):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-4, atol=1e-6)

    # The cases the formula separates really occur here: clipped samples, and a KL far from zero.
    ratio = np.exp(np.asarray(policy.dist(params["actor"], obs).log_prob(actions) - old_dist.log_prob(actions)))
    assert np.mean(np.abs(ratio - 1) > 0.2) > 0.2
    assert float(jnp.mean(old_dist.kl(policy.dist(params["actor"], obs)))) > 0.05
