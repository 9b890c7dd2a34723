"""On-policy MDPO against the mirror-descent step it approximates.

The loss's gradient against the analytic gradient of
E[r A] - beta KL(pi || pi_old) + c_e H - c_v L_V for a tabular softmax policy
(written out by hand here), and against jax.grad of the same objective written
independently for the Gaussian network policy; the KL coefficient's schedules
against their formulas, and the update against the schedule; the two limits of
beta (huge: the policy barely moves; zero: PPO's plain importance-sampled
surrogate step, parameter for parameter); a short run that logs its metrics;
validation; and a short learning run on CartPole.
"""

from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import compose_config
from pgrun.algos.mdpo import kl_coefficient, make_mdpo, make_mdpo_loss
from pgrun.algos.ppo import make_ppo
from pgrun.config import algo_hparams, validate
from pgrun.distributions import Categorical
from pgrun.errors import ConfigError
from pgrun.rollout import identity_normalizer, make_rollout
from pgrun.run import run_training
from pgrun.train import build, init_train_state
from test_learning import logged

# ---------------------------------------------------------------------------
# The loss's gradient
# ---------------------------------------------------------------------------


class TabularSoftmax:
    """pi(.|s) = softmax(logits[s]) and V(s) = v[s] over integer states: the smallest
    policy whose gradient can be written out by hand."""

    def dist(self, actor_params, obs):
        return Categorical(actor_params["logits"][obs])

    def value(self, critic_params, obs):
        return critic_params["v"][obs]


def log_softmax(z: np.ndarray) -> np.ndarray:
    return z - np.logaddexp.reduce(z, axis=-1, keepdims=True)


def analytic_loss_gradient(logits, old_logits, v, states, actions, advantages, targets, beta, ent_coef, vf_coef):
    """d/d(logits, v) of -(mean_i [r_i A_i - beta KL_i + c_e H_i]) + c_v 0.5 mean_i (V(s_i) - G_i)^2, in float64.

    Per sample, with pi = softmax(z_s), q = softmax(z_old_s) and e_a the one-hot of a:
    d r / dz = r (e_a - pi); d KL(pi || q) / dz = pi * (log pi - log q - KL); d H / dz = -pi * (log pi + H).
    """
    n = len(states)
    grad_z, grad_v = np.zeros_like(logits), np.zeros_like(v)
    for s, a, adv, target in zip(states, actions, advantages, targets):
        log_pi, log_q = log_softmax(logits[s]), log_softmax(old_logits[s])
        pi = np.exp(log_pi)
        ratio = math.exp(log_pi[a] - log_q[a])
        kl = np.sum(pi * (log_pi - log_q))
        entropy = -np.sum(pi * log_pi)
        one_hot = np.eye(len(pi))[a]
        d_objective = adv * ratio * (one_hot - pi) - beta * pi * (log_pi - log_q - kl) - ent_coef * pi * (log_pi + entropy)
        grad_z[s] -= d_objective / n
        grad_v[s] += vf_coef * (v[s] - target) / n
    return grad_z, grad_v


@pytest.mark.parametrize("beta", [0.0, 0.7, 5.0])
def test_loss_gradient_matches_the_analytic_softmax_gradient(beta):
    rng = np.random.default_rng(0)
    num_states, num_actions, n = 5, 3, 40
    old_logits = rng.normal(size=(num_states, num_actions))
    logits = old_logits + 0.5 * rng.normal(size=(num_states, num_actions))  # away from pi_old: the KL term acts
    v = rng.normal(size=num_states)
    states = rng.integers(0, num_states, n)
    actions = rng.integers(0, num_actions, n)
    advantages = rng.normal(size=n)
    targets = rng.normal(size=n)
    ent_coef, vf_coef = 0.05, 0.5

    f32 = lambda x: jnp.asarray(x, jnp.float32)
    old_log_probs = log_softmax(old_logits)[states, actions]
    minibatch = (jnp.asarray(states), jnp.asarray(actions), f32(old_log_probs), Categorical(f32(old_logits[states])),
                 f32(v[states]), f32(advantages), f32(targets))
    cfg = SimpleNamespace(norm_adv=False, clip_vloss=False)
    loss = make_mdpo_loss(TabularSoftmax(), cfg)
    hp = {"vf_coef": jnp.float32(vf_coef), "ent_coef": jnp.float32(ent_coef), "vf_clip": jnp.float32(0.2)}
    params = {"actor": {"logits": f32(logits)}, "critic": {"v": f32(v)}}
    grads, _ = jax.grad(loss, has_aux=True)(params, hp, jnp.float32(beta), minibatch)

    expected_z, expected_v = analytic_loss_gradient(logits, old_logits, v, states, actions, advantages, targets,
                                                    beta, ent_coef, vf_coef)
    np.testing.assert_allclose(np.asarray(grads["actor"]["logits"]), expected_z, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.asarray(grads["critic"]["v"]), expected_v, rtol=1e-4, atol=1e-6)


def gaussian_objective(policy, actor_params, obs, actions, old_mean, old_log_std, advantages, beta):
    """E[r A] - beta E[KL(N(mu, s^2) || N(mu_old, s_old^2))] for the network's Gaussian, each term written
    from its formula: r = exp(log N(a; mu, s) - log N(a; mu_old, s_old)), summed over action dimensions, and
    KL = log(s_old / s) + (s^2 + (mu - mu_old)^2) / (2 s_old^2) - 1/2, with advantages standardised."""
    params = actor_params["params"]
    mean = policy.actor.apply(actor_params, obs).mean
    log_std = jnp.broadcast_to(params["log_std"], mean.shape)
    log_density = lambda a, m, ls: -0.5 * ((a - m) / jnp.exp(ls)) ** 2 - ls - 0.5 * jnp.log(2 * jnp.pi)
    ratio = jnp.exp(jnp.sum(log_density(actions, mean, log_std) - log_density(actions, old_mean, old_log_std), -1))
    kl = jnp.sum(old_log_std - log_std + (jnp.exp(2 * log_std) + (mean - old_mean) ** 2)
                 / (2 * jnp.exp(2 * old_log_std)) - 0.5, -1)
    adv = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    return jnp.mean(ratio * adv) - beta * jnp.mean(kl)


def test_loss_gradient_on_the_gaussian_network_matches_the_objective_written_out():
    """The actor's gradient of the module's loss (no entropy bonus) is minus the gradient of
    E[r A] - beta KL(new || old) written independently; KL(old || new) there would differ."""
    setup = build(compose_config("algo=mdpo", "env=Pendulum-v1", "algo.hidden_sizes=[16]", "algo.ent_coef=0.0",
                                 "num_envs=2", "algo.num_steps=8", "total_timesteps=1024"))
    policy = setup.policy
    state = init_train_state(setup, jax.random.PRNGKey(0))
    old_actor = state.params["actor"]
    # A new policy away from the old one: shifted weights and a different log-std.
    noise = jax.tree.map(lambda x: 0.3 * jax.random.normal(jax.random.PRNGKey(1), x.shape), old_actor)
    actor = jax.tree.map(jnp.add, old_actor, noise)
    params = {**state.params, "actor": actor}

    n = 64
    obs = jax.random.normal(jax.random.PRNGKey(2), (n, policy.obs_dim))
    old_dist = policy.dist(old_actor, obs)
    actions = old_dist.sample(jax.random.PRNGKey(3))
    advantages = jax.random.normal(jax.random.PRNGKey(4), (n,))
    minibatch = (obs, actions, old_dist.log_prob(actions), old_dist, jnp.zeros(n), advantages, jnp.zeros(n))
    beta = jnp.float32(2.5)

    grads, _ = jax.grad(make_mdpo_loss(policy, setup.cfg.algo), has_aux=True)(params, state.hparams, beta, minibatch)
    expected = jax.grad(gaussian_objective, argnums=1)(policy, actor, obs, actions, old_dist.mean,
                                                       old_dist.log_std, advantages, beta)
    got, want = jax.tree.leaves(grads["actor"]), jax.tree.leaves(expected)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_allclose(np.asarray(g), -np.asarray(w), rtol=2e-3, atol=1e-5)


# ---------------------------------------------------------------------------
# The KL coefficient's schedule
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [1.0, 100.0])
def test_schedules_follow_their_formulas(scale):
    num_iterations = 50
    for k in [0, 1, 2, 9, 24, 49]:
        inverse = float(kl_coefficient("inverse_step", jnp.float32(scale), jnp.int32(k), num_iterations))
        np.testing.assert_allclose(inverse, scale / (k + 1), rtol=1e-6)
        annealed = float(kl_coefficient("annealed_step_size", jnp.float32(scale), jnp.int32(k), num_iterations))
        np.testing.assert_allclose(annealed, scale / (1 - k / num_iterations), rtol=1e-6)
    # Past the run's end the annealed step size stays at 1 / K: finite and positive.
    late = float(kl_coefficient("annealed_step_size", jnp.float32(scale), jnp.int32(80), num_iterations))
    np.testing.assert_allclose(late, scale * num_iterations, rtol=1e-6)


SMALL = ("env=CartPole-v1", "num_envs=4", "algo.num_steps=64", "algo.hidden_sizes=[32,32]", "total_timesteps=2560")


@pytest.fixture(scope="module")
def cartpole():
    """A small CartPole setup, a fresh learner and one rollout of it, shared by the update tests."""
    setup = build(compose_config("algo=mdpo", *SMALL))
    state = init_train_state(setup, jax.random.PRNGKey(0))
    obs, env_state = jax.vmap(setup.env.reset)(jax.random.split(jax.random.PRNGKey(1), setup.cfg.num_envs))
    rollout = jax.jit(make_rollout(setup.env, setup.policy, identity_normalizer, setup.cfg.algo.num_steps))
    batch = rollout(state.params, state.obs_stats, env_state, obs, jax.random.PRNGKey(2))[2]
    return setup, state, batch


def with_hparams(state, **values):
    return state.replace(hparams={**state.hparams, **{k: jnp.float32(v) for k, v in values.items()}})


def mean_reverse_kl(policy, old_params, new_params, batch) -> float:
    """Mean KL(pi_new || pi_old) over the batch's states, in float64 from the logits."""
    obs = batch.obs.reshape(-1, batch.obs.shape[-1])
    log_new = log_softmax(np.asarray(policy.dist(new_params["actor"], obs).logits, np.float64))
    log_old = log_softmax(np.asarray(policy.dist(old_params["actor"], obs).logits, np.float64))
    return float(np.mean(np.sum(np.exp(log_new) * (log_new - log_old), -1)))


@pytest.mark.parametrize("schedule", ["inverse_step", "annealed_step_size"])
def test_update_uses_the_scheduled_beta_of_its_iteration(cartpole, schedule):
    """At iteration k with scale c the update is the one of iteration 0 with the scale that gives
    beta_0 = beta_k (every schedule has beta_0 = c), and it logs that beta and the mean KL(new || old)."""
    setup, state, batch = cartpole
    cfg = copy.deepcopy(setup.cfg.algo)
    cfg.beta_schedule = schedule
    num_iterations, k, scale = 20, 7, 3.0
    expected_beta = scale / (k + 1) if schedule == "inverse_step" else scale / (1 - k / num_iterations)
    update = jax.jit(make_mdpo(cfg, setup.policy, num_iterations).update)

    def run(iteration, beta_scale):
        return update(with_hparams(state, beta_scale=beta_scale).replace(iteration=jnp.int32(iteration)), batch,
                      jax.random.PRNGKey(3))

    late, late_metrics = run(k, scale)
    first, first_metrics = run(0, expected_beta)
    np.testing.assert_allclose(float(late_metrics["mdpo/beta"]), expected_beta, rtol=1e-6)
    np.testing.assert_allclose(float(first_metrics["mdpo/beta"]), expected_beta, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(late.params), jax.tree.leaves(first.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)
    # A different beta gives a different update: the comparison above can fail.
    other, _ = run(0, 10 * expected_beta)
    assert not np.allclose(np.asarray(jax.tree.leaves(other.params["actor"])[0]),
                           np.asarray(jax.tree.leaves(first.params["actor"])[0]), rtol=0, atol=1e-7)
    kl = mean_reverse_kl(setup.policy, state.params, late.params, batch)
    assert kl > 0
    np.testing.assert_allclose(float(late_metrics["mdpo/kl_new_old"]), kl, rtol=1e-3)


# ---------------------------------------------------------------------------
# The limits of beta
# ---------------------------------------------------------------------------


def test_huge_beta_barely_moves_the_policy(cartpole):
    """The mirror-descent step's argmax tends to pi_old as beta grows: with beta = 1e6 the mean
    KL(new || old) after the update is a small fraction of the unpenalised update's."""
    setup, state, batch = cartpole
    update = jax.jit(make_mdpo(setup.cfg.algo, setup.policy, 10).update)

    def kl_after(beta_scale):
        new, _ = update(with_hparams(state, beta_scale=beta_scale), batch, jax.random.PRNGKey(3))
        return mean_reverse_kl(setup.policy, state.params, new.params, batch)

    free, moderate, huge = kl_after(0.0), kl_after(30.0), kl_after(1e6)
    assert free > 1e-4
    assert huge < 0.02 * free, (huge, free)
    assert huge < moderate < free, (huge, moderate, free)


def test_zero_beta_is_the_plain_importance_sampled_surrogate_step(cartpole):
    """beta = 0 leaves E[r A] (unclipped) with the same value loss and entropy bonus: the update
    must equal PPO's objective=none update from the same state, batch and key, parameter for parameter."""
    setup, state, batch = cartpole
    mdpo_cfg = setup.cfg.algo
    ppo_cfg = compose_config("algo=ppo", "algo.objective=none", f"algo.clip_eps={mdpo_cfg.vf_clip}", *SMALL).algo
    for key in ("lr", "gamma", "gae_lambda", "update_epochs", "num_minibatches", "ent_coef", "vf_coef", "max_grad_norm",
                "anneal_lr", "norm_adv", "clip_vloss", "hidden_sizes", "activation"):
        assert mdpo_cfg[key] == ppo_cfg[key], key
    # A large step, so the ratio leaves PPO's clip range: a clipped surrogate would differ.
    lr = 0.01
    ppo_state = with_hparams(state.replace(hparams={k: jnp.float32(v) for k, v in algo_hparams(ppo_cfg).items()}), lr=lr)

    mdpo_new, _ = jax.jit(make_mdpo(mdpo_cfg, setup.policy, 10).update)(
        with_hparams(state, beta_scale=0.0, lr=lr), batch, jax.random.PRNGKey(3))
    ppo_new, _ = jax.jit(make_ppo(ppo_cfg, setup.policy, 10).update)(ppo_state, batch, jax.random.PRNGKey(3))
    obs = batch.obs.reshape(-1, batch.obs.shape[-1])
    new_log_probs = setup.policy.dist(mdpo_new.params["actor"], obs).log_prob(batch.actions.reshape(-1))
    ratio = np.exp(np.asarray(new_log_probs) - np.asarray(batch.log_probs).reshape(-1))
    assert np.mean(np.abs(ratio - 1) > 0.2) > 0.05
    moved = 0.0
    for m, q, start in zip(jax.tree.leaves(mdpo_new.params), jax.tree.leaves(ppo_new.params),
                           jax.tree.leaves(state.params)):
        np.testing.assert_allclose(np.asarray(m), np.asarray(q), rtol=1e-5, atol=1e-6)
        moved = max(moved, float(jnp.max(jnp.abs(m - start))))
    assert moved > 1e-4  # both updates moved the parameters


# ---------------------------------------------------------------------------
# Runs, validation, learning
# ---------------------------------------------------------------------------


def test_short_run_logs_finite_metrics_and_the_scheduled_beta(tmp_path):
    """Each logged point is the mean over its block of log_interval iterations, so the logged beta
    of block j is the mean of c / (k + 1) over k = 10 j, ..., 10 j + 9."""
    cfg = compose_config("algo=mdpo", "total_timesteps=20480", "quiet=true", "log_interval=10")
    run_training(cfg, tmp_path)
    for tag in ("mdpo/beta", "mdpo/kl_new_old", "mdpo/surrogate", "losses/approx_kl", "losses/policy_loss",
                "losses/value_loss", "losses/entropy", "losses/ess", "losses/explained_variance",
                "charts/learning_rate"):
        points = logged(tmp_path, tag)
        assert len(points) == 4, tag
        assert all(math.isfinite(v) for _, v in points), tag
    assert all(v > 0 for _, v in logged(tmp_path, "mdpo/kl_new_old"))
    scale = cfg.algo.beta_scale
    for j, (_, beta) in enumerate(logged(tmp_path, "mdpo/beta")):
        expected = np.mean([scale / (k + 1) for k in range(10 * j, 10 * j + 10)])
        assert beta == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("override, named", [
    ("algo.beta_schedule=cosine", "algo.beta_schedule=cosine"),
    ("algo.beta_scale=-1.0", "algo.beta_scale=-1.0"),
    ("algo.vf_clip=0.0", "algo.vf_clip=0.0"),
    ("algo.num_minibatches=5", "algo.num_minibatches=5"),
])
def test_bad_values_are_one_line_config_errors(override, named):
    with pytest.raises(ConfigError) as error:
        validate(compose_config("algo=mdpo", override))
    message = str(error.value)
    assert named in message and "\n" not in message


def test_mdpo_learns_cartpole(tmp_path):
    cfg = compose_config("algo=mdpo", "env=CartPole-v1", "seed=1", "total_timesteps=60000", "quiet=true")
    run_training(cfg, tmp_path)
    curve = logged(tmp_path, "charts/episodic_return")
    assert curve[0][1] < 100  # starts near random (about 22)
    assert curve[-1][1] > 200, curve
