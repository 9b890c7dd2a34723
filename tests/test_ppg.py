"""PPG against the algorithm it implements (Cobbe et al., 2020, algorithm 1).

The actor's hidden features against a forward pass written from its parameter
tree; the joint loss's gradient against backpropagation written out by hand in
float64; the cloning KL (zero with a zero gradient where the auxiliary phase
starts, pulling a perturbed policy back); the schedule (the auxiliary phase on
exactly every n_pi-th iteration, its buffer holding exactly the last n_pi
rollouts, its losses those of that data); a dominant cloning weight that keeps
the policy while the auxiliary head learns; the phase staying a branch (not a
select of both branches) when members are vmapped; validation; and a short
CartPole run that learns and logs the PPG metrics.
"""

from __future__ import annotations

import math

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import compose_config
from test_learning import logged
import pgrun.algos.ppg as ppg
from pgrun.algos.common import gae_targets
from pgrun.algos.ppg import actor_with_features, init_aux_head, joint_loss
from pgrun.config import validate
from pgrun.distributions import Categorical
from pgrun.envs.core import Box, Discrete
from pgrun.errors import ConfigError
from pgrun.policies import make_policy
from pgrun.run import run_training
from pgrun.train import build, compile_run_once, init_train_state
from pgrun.types import Batch


def numpy_features(actor_params, obs: np.ndarray) -> np.ndarray:
    """The last hidden layer of the actor's tanh MLP, layer by layer from its parameter tree."""
    layers = actor_params["params"]["MLP_0"]
    x = np.asarray(obs, np.float64)
    for i in range(len(layers) - 1):  # every Dense but the head
        x = np.tanh(x @ np.asarray(layers[f"Dense_{i}"]["kernel"], np.float64) + np.asarray(layers[f"Dense_{i}"]["bias"]))
    return x


def head_of(actor_params):
    layers = actor_params["params"]["MLP_0"]
    head = layers[f"Dense_{len(layers) - 1}"]
    return np.asarray(head["kernel"], np.float64), np.asarray(head["bias"], np.float64)


@pytest.mark.parametrize("space,bounded", [(Discrete(3), False), (Box(-np.ones(2), np.ones(2)), False),
                                           (Box(-np.ones(2), np.ones(2)), True)],
                         ids=["categorical", "gaussian", "gaussian-bounded"])
def test_actor_features_are_the_input_of_the_policy_head(space, bounded):
    policy = make_policy(Box(-np.ones(5), np.ones(5)), space, [16, 8], "tanh", bounded)
    params = policy.init(jax.random.PRNGKey(0))
    obs = jax.random.normal(jax.random.PRNGKey(1), (32, 5))
    dist, features = jax.jit(lambda p, o: actor_with_features(policy, p, o))(params["actor"], obs)
    expected_features = numpy_features(params["actor"], obs)
    np.testing.assert_allclose(np.asarray(features), expected_features, rtol=1e-5, atol=1e-6)
    kernel, bias = head_of(params["actor"])
    head_out = expected_features @ kernel + bias
    reference = policy.dist(params["actor"], obs)
    if isinstance(reference, Categorical):
        np.testing.assert_allclose(np.asarray(dist.logits), head_out, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(np.asarray(dist.logits), np.asarray(reference.logits))
    else:
        np.testing.assert_allclose(np.asarray(dist.mean), np.tanh(head_out) if bounded else head_out,
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(np.asarray(dist.mean), np.asarray(reference.mean))


def small_categorical_problem(seed: int = 0):
    """A 2-layer tanh actor over 3 actions, a nonzero auxiliary head, 12 states and an old policy."""
    policy = make_policy(Box(-np.ones(4), np.ones(4)), Discrete(3), [5, 6], "tanh")
    keys = jax.random.split(jax.random.PRNGKey(seed), 6)
    actor = policy.init(keys[0])["actor"]
    # larger head weights than the 0.01-gain initialisation, so every term carries weight
    actor = jax.tree.map(lambda x: x * 20.0 if x.shape == (6, 3) else x, actor)
    head = {"kernel": jax.random.normal(keys[1], (6, 1)), "bias": jnp.asarray([0.3])}
    obs = jax.random.normal(keys[2], (12, 4))
    targets = jax.random.normal(keys[3], (12,)) * 2.0
    old = Categorical(jax.random.normal(keys[4], (12, 3)))
    return policy, actor, head, obs, targets, old


def hand_backprop(actor, head, obs, targets, old_logits, beta):
    """d/d(params) of 0.5 mean((w.h + b - y)^2) + beta mean KL(p_old || softmax(logits)), in float64."""
    p = {k: {n: np.asarray(v, np.float64) for n, v in layer.items()} for k, layer in actor["params"]["MLP_0"].items()}
    x, y, n = np.asarray(obs, np.float64), np.asarray(targets, np.float64), obs.shape[0]
    h0 = np.tanh(x @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"])
    h1 = np.tanh(h0 @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"])
    logits = h1 @ p["Dense_2"]["kernel"] + p["Dense_2"]["bias"]
    w, b = np.asarray(head["kernel"], np.float64), np.asarray(head["bias"], np.float64)
    v = (h1 @ w + b)[:, 0]
    q = np.exp(logits - logits.max(1, keepdims=True))
    q /= q.sum(1, keepdims=True)
    p_old = np.exp(old_logits - old_logits.max(1, keepdims=True))
    p_old /= p_old.sum(1, keepdims=True)
    d_v = (v - y)[:, None] / n  # d(0.5 mean (v - y)^2) / dv
    d_logits = beta * (q - p_old) / n  # d(-sum p_old log softmax) / dlogits = softmax - p_old
    d_h1 = d_v @ w.T + d_logits @ p["Dense_2"]["kernel"].T
    d_z1 = d_h1 * (1 - h1**2)
    d_h0 = d_z1 @ p["Dense_1"]["kernel"].T
    d_z0 = d_h0 * (1 - h0**2)
    grads = {"Dense_0": {"kernel": x.T @ d_z0, "bias": d_z0.sum(0)},
             "Dense_1": {"kernel": h0.T @ d_z1, "bias": d_z1.sum(0)},
             "Dense_2": {"kernel": h1.T @ d_logits, "bias": d_logits.sum(0)}}
    return grads, {"kernel": h1.T @ d_v, "bias": d_v.sum(0)}


@pytest.mark.parametrize("beta", [0.0, 1.0, 7.5])
def test_joint_loss_gradient_matches_backpropagation_by_hand(beta):
    policy, actor, head, obs, targets, old = small_categorical_problem()
    loss = lambda a, h: joint_loss(policy, a, h, obs, targets, old, beta)[0]
    g_actor, g_head = jax.jit(jax.grad(loss, argnums=(0, 1)))(actor, head)
    want_actor, want_head = hand_backprop(actor, head, obs, targets, np.asarray(old.logits, np.float64), beta)
    for name, layer in want_actor.items():
        for leaf, want in layer.items():
            got = np.asarray(g_actor["params"]["MLP_0"][name][leaf])
            np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-6, err_msg=f"{name}/{leaf}")
    for leaf, want in want_head.items():
        np.testing.assert_allclose(np.asarray(g_head[leaf]), want, rtol=2e-4, atol=1e-6, err_msg=f"head/{leaf}")


def test_cloning_kl_is_zero_at_the_phase_start_and_pulls_a_perturbed_policy_back():
    policy, actor, head, obs, targets, _ = small_categorical_problem(1)
    old = jax.lax.stop_gradient(policy.dist(actor, obs))  # pi_old: the policy as the phase starts
    kl_of = lambda a: joint_loss(policy, a, head, obs, targets, old, 1.0)[1][1]
    kl, kl_grad = jax.jit(kl_of), jax.jit(jax.grad(kl_of))
    assert abs(float(kl(actor))) < 1e-7
    grad_at_start = kl_grad(actor)
    assert max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(grad_at_start)) < 1e-6
    # So at the start the joint loss's gradient is the auxiliary loss's alone.
    joint_grad = jax.jit(jax.grad(lambda a, beta: joint_loss(policy, a, head, obs, targets, old, beta)[0]))
    aux_only, joint = joint_grad(actor, 0.0), joint_grad(actor, 100.0)
    for a, j in zip(jax.tree.leaves(aux_only), jax.tree.leaves(joint)):
        np.testing.assert_allclose(np.asarray(j), np.asarray(a), rtol=1e-4, atol=1e-6)

    leaves, treedef = jax.tree.flatten(actor)
    keys = jax.random.split(jax.random.PRNGKey(7), len(leaves))
    delta = treedef.unflatten([0.05 * jax.random.normal(k, x.shape) for k, x in zip(keys, leaves)])
    perturbed = jax.tree.map(jnp.add, actor, delta)
    assert float(kl(perturbed)) > 1e-5
    grad = kl_grad(perturbed)
    # The gradient points away from the old policy: descending it moves back towards it.
    inner = sum(float(jnp.vdot(g, d)) for g, d in zip(jax.tree.leaves(grad), jax.tree.leaves(delta)))
    assert inner > 0
    back = jax.tree.map(lambda p, g: p - 0.5 * g, perturbed, grad)
    assert float(kl(back)) < float(kl(perturbed))


# ---------------------------------------------------------------- the schedule, through the real update

SMALL = ("algo=ppg", "env=CartPole-v1", "num_envs=2", "algo.num_steps=8", "algo.num_minibatches=2",
         "algo.n_pi=3", "algo.anneal_lr=false")
N_PI = 3


class Compiled:
    """A small PPG setup and its jitted update (compiled once for the tests that share it)."""

    def __init__(self, *overrides: str):
        self.setup = build(compose_config(*SMALL, *overrides))
        self.policy = self.setup.policy
        self._compiled = None
        self.random_batch = jax.jit(batch_maker(self.setup))

    def update(self, state, batch, key):
        """The update, compiled at its first call for the least compile time (the tests'
        problems are tiny, so run time hardly matters)."""
        if self._compiled is None:
            self._compiled = compile_run_once(jax.jit(self.setup.algorithm.update), state, batch, key)
        return self._compiled(state, batch, key)


@pytest.fixture(scope="module")
def one_step_phase():
    """The auxiliary phase as one epoch of one minibatch: its logged losses are those at its start."""
    return Compiled("algo.aux_epochs=1", "algo.aux_num_minibatches=1")


@pytest.fixture(scope="module")
def phases_only():
    """The same update without an auxiliary phase (aux_epochs = 0)."""
    return Compiled("algo.aux_epochs=0", "algo.aux_num_minibatches=1")


def batch_maker(setup):
    """``make(actor_params, key) -> Batch``: a rollout of random states, rewards and endings,
    with actions and log-probabilities of the given actor (so the first policy epoch starts
    at ratio 1)."""
    steps, envs, obs_dim = setup.cfg.algo.num_steps, setup.cfg.num_envs, setup.policy.obs_dim

    def make(actor_params, key):
        k_obs, k_next, k_act, k_rew, k_end = jax.random.split(key, 5)
        obs = jax.random.normal(k_obs, (steps, envs, obs_dim))
        dist = setup.policy.dist(actor_params, obs)
        actions = dist.sample(k_act)
        ended = jax.random.bernoulli(k_end, 0.1, (steps, envs))
        return Batch(obs, actions, dist.log_prob(actions), jax.random.uniform(k_rew, (steps, envs)), ended, ended,
                     jax.random.normal(k_next, (steps, envs, obs_dim)))

    return make


def fresh_state(setup, seed: int):
    key = jax.random.PRNGKey(seed)
    return compile_run_once(jax.jit(lambda k: init_train_state(setup, k)), key)(key)


def flat(tree) -> np.ndarray:
    return np.asarray(jax.flatten_util.ravel_pytree(tree)[0])


def test_aux_phase_runs_every_n_pi_iterations_on_exactly_the_last_n_pi_rollouts(one_step_phase, phases_only):
    """Seven iterations fed by hand: the phase runs after iterations 3 and 6 only; each
    buffer slot holds the observations and value targets of the batch fed there; and the
    phase's logged losses are those of its whole dataset at the parameters the policy and
    value phases left (one epoch of one minibatch): L_value of the critic and L_aux of the
    head on exactly the last n_pi rollouts, and a cloning KL of 0."""
    policy, setup = one_step_phase.policy, one_step_phase.setup
    state = fresh_state(setup, 0)
    hp = state.hparams
    fed_obs, fed_targets = [], []
    for i in range(7):
        k_batch, k_update = jax.random.split(jax.random.PRNGKey(100 + i))
        batch = one_step_phase.random_batch(state.params["actor"], k_batch)
        targets = gae_targets(policy, state.params["critic"], batch, hp["gamma"], hp["gae_lambda"])[2]
        fed_obs.append(np.asarray(batch.obs).reshape(-1, policy.obs_dim))
        fed_targets.append(np.asarray(targets).reshape(-1))
        after_phases, _ = phases_only.update(state, batch, k_update)
        new, metrics = one_step_phase.update(state, batch, k_update)

        buffer = new.algo_state["buffer"]
        np.testing.assert_array_equal(np.asarray(buffer.obs[i % N_PI]), fed_obs[-1])
        np.testing.assert_allclose(np.asarray(buffer.targets[i % N_PI]), fed_targets[-1], rtol=1e-6, atol=1e-6)
        ran = i % N_PI == N_PI - 1
        assert float(metrics["ppg/aux_phase"]) == float(ran), f"iteration {i}"
        if ran:
            # the buffer holds the last n_pi rollouts, in the order they came
            obs, y = np.concatenate(fed_obs[-N_PI:]), np.concatenate(fed_targets[-N_PI:])
            np.testing.assert_array_equal(np.asarray(buffer.obs).reshape(-1, policy.obs_dim), obs)
            critic = after_phases.params["critic"]
            want_critic = 0.5 * np.mean((np.asarray(policy.value(critic, obs), np.float64) - y) ** 2)
            w, b = (np.asarray(state.algo_state["aux_head"][k], np.float64) for k in ("kernel", "bias"))
            v_aux = (numpy_features(after_phases.params["actor"], obs) @ w + b)[:, 0]
            want_aux = 0.5 * np.mean((v_aux - y) ** 2)
            assert float(metrics["ppg/aux_critic_loss"]) == pytest.approx(want_critic, rel=1e-4)
            assert float(metrics["ppg/aux_value_loss"]) == pytest.approx(want_aux, rel=1e-4)
            assert abs(float(metrics["ppg/bc_kl"])) < 1e-6
            # and it trained the critic and the head (the actor's gradient is 0 at the first
            # phase's zero head and zero KL; it moves from the second phase on)
            assert not np.allclose(flat(new.params["critic"]), flat(after_phases.params["critic"]))
            assert not np.allclose(flat(new.algo_state["aux_head"]), flat(state.algo_state["aux_head"]))
            if i > N_PI:
                assert not np.allclose(flat(new.params["actor"]), flat(after_phases.params["actor"]))
        else:
            # no phase: exactly the policy and value phases, the head untouched
            np.testing.assert_array_equal(flat(new.params), flat(after_phases.params))
            np.testing.assert_array_equal(flat(new.algo_state["aux_head"]), flat(state.algo_state["aux_head"]))
        state = new.replace(iteration=new.iteration + 1)


def test_dominant_cloning_keeps_the_policy_while_the_aux_head_learns(phases_only):
    """The second auxiliary phase (6 epochs x 4 minibatches, step size 3e-3), run from one
    state with beta_clone = 1e4 and with 0. Adam's steps do not shrink with the weight, so
    "unchanged" holds to within what steps of that size allow: a mean KL under 1e-3 and no
    action probability moved by 0.05, while without cloning the KL is 20 times larger. The
    auxiliary head's loss on the buffer falls by a fifth either way. With aux_epochs = 0 no
    phase runs at all: the update is the policy and value phases alone."""
    long_phase = Compiled("algo.aux_epochs=6", "algo.aux_num_minibatches=4")
    policy, setup = long_phase.policy, long_phase.setup
    state = fresh_state(setup, 3)
    state = state.replace(hparams={**state.hparams, "lr": jnp.asarray(3e-3, jnp.float32)})
    batches = [long_phase.random_batch(state.params["actor"], jax.random.PRNGKey(200 + i)) for i in range(2 * N_PI)]
    for i, batch in enumerate(batches[:-1]):
        state, _ = long_phase.update(state, batch, jax.random.PRNGKey(i))
        state = state.replace(iteration=state.iteration + 1)

    reference, ref_metrics = phases_only.update(state, batches[-1], jax.random.PRNGKey(9))
    assert float(ref_metrics["ppg/aux_phase"]) == 0.0
    np.testing.assert_array_equal(flat(reference.algo_state["aux_head"]), flat(state.algo_state["aux_head"]))
    obs = reference.algo_state["buffer"].obs.reshape(-1, policy.obs_dim)
    y = reference.algo_state["buffer"].targets.reshape(-1)

    def head_loss(actor, head) -> float:
        _, features = actor_with_features(policy, actor, obs)
        return float(0.5 * jnp.mean((ppg.aux_value(head, features) - y) ** 2))

    before = head_loss(reference.params["actor"], state.algo_state["aux_head"])
    probs = lambda actor: np.asarray(jax.nn.softmax(policy.dist(actor, obs).logits))
    kls = {}
    for beta in (0.0, 1e4):
        hp = {**state.hparams, "beta_clone": jnp.asarray(beta, jnp.float32)}
        new, metrics = long_phase.update(state.replace(hparams=hp), batches[-1], jax.random.PRNGKey(9))
        assert float(metrics["ppg/aux_phase"]) == 1.0
        kls[beta] = mean_kl(policy, reference.params["actor"], new.params["actor"], obs)
        assert head_loss(new.params["actor"], new.algo_state["aux_head"]) < 0.8 * before, beta
        if beta > 0:
            assert np.max(np.abs(probs(new.params["actor"]) - probs(reference.params["actor"]))) < 0.05
    assert kls[1e4] < 1e-3, kls
    assert kls[0.0] > 20 * kls[1e4], kls


def mean_kl(policy, actor_a, actor_b, obs) -> float:
    return float(jnp.mean(policy.dist(actor_a, obs).kl(policy.dist(actor_b, obs))))


def test_the_aux_phase_stays_a_branch_when_members_are_vmapped(one_step_phase):
    """Under vmap over members, a cond on each member's own iteration would become a select
    that runs the auxiliary phase every iteration; the shared iteration keeps it a cond, and
    each member's result is its own update's."""
    setup = one_step_phase.setup
    states = jax.jit(jax.vmap(lambda k: init_train_state(setup, k)))(jax.random.split(jax.random.PRNGKey(0), 2))
    states = states.replace(iteration=states.iteration + N_PI - 1)
    make_batch = batch_maker(setup)
    batch = jax.jit(jax.vmap(lambda k: make_batch(setup.policy.init(k)["actor"], k)))(
        jax.random.split(jax.random.PRNGKey(1), 2))
    keys = jax.random.split(jax.random.PRNGKey(2), 2)

    def has_cond() -> bool:
        return "cond[" in str(jax.make_jaxpr(jax.vmap(setup.algorithm.update))(states, batch, keys))

    assert has_cond()
    with pytest.MonkeyPatch.context() as patch:  # the iteration as each member's own value
        patch.setattr(ppg, "same_for_all_members", lambda x: x)
        assert not has_cond()

    out, metrics = compile_run_once(jax.jit(jax.vmap(setup.algorithm.update)), states, batch, keys)(states, batch, keys)
    assert np.all(np.asarray(metrics["ppg/aux_phase"]) == 1.0)
    for m in range(2):
        single, single_metrics = one_step_phase.update(*jax.tree.map(lambda x: x[m], (states, batch, keys)))
        assert float(metrics["ppg/aux_critic_loss"][m]) == pytest.approx(float(single_metrics["ppg/aux_critic_loss"]),
                                                                        rel=1e-5)
        np.testing.assert_allclose(flat(jax.tree.map(lambda x: x[m], out.params)), flat(single.params),
                                   rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------- validation and a real run


@pytest.mark.parametrize("override,message", [
    ("algo.n_pi=0", "algo.n_pi=0 must be at least 1"),
    ("algo.aux_epochs=-1", "algo.aux_epochs=-1 must be 0"),
    ("algo.policy_epochs=0", "algo.policy_epochs=0 must be at least 1"),
    ("algo.value_epochs=0", "algo.value_epochs=0 must be at least 1"),
    ("algo.aux_num_minibatches=7", "does not split into algo.aux_num_minibatches=7"),
    ("algo.num_minibatches=3", "does not split into algo.num_minibatches=3"),
    ("algo.beta_clone=-1", "algo.beta_clone=-1.0 must be non-negative"),
])
def test_bad_values_are_refused_in_one_line(override, message):
    with pytest.raises(ConfigError) as error:
        validate(compose_config("algo=ppg", override))
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory):
    """CartPole-v1, seed 1, 61,440 steps with the defaults: 120 iterations, 7 auxiliary phases."""
    run_dir = tmp_path_factory.mktemp("ppg_cartpole")
    cfg = compose_config("algo=ppg", "env=CartPole-v1", "seed=1", "total_timesteps=61440", "quiet=true")
    return run_training(cfg, run_dir), run_dir


def test_a_run_logs_the_ppg_metrics_and_stays_finite(cartpole_run):
    summary, run_dir = cartpole_run
    tags = ["losses/policy_loss", "losses/value_loss", "losses/entropy", "losses/approx_kl",
            "losses/clip_fraction", "losses/explained_variance", "charts/learning_rate",
            "ppg/aux_value_loss", "ppg/bc_kl", "ppg/aux_critic_loss", "ppg/aux_phase"]
    for tag in tags:
        values = [v for _, v in logged(run_dir, tag)]
        assert values and all(math.isfinite(v) for v in values), tag
    # block means of a 0/1 flag over 10 iterations: 120 iterations hold 120 // 16 = 7 phases
    phases = sum(10 * v for _, v in logged(run_dir, "ppg/aux_phase"))
    assert round(phases) == 120 // 16
    assert max(v for _, v in logged(run_dir, "ppg/aux_value_loss")) > 0


def test_ppg_learns_cartpole(cartpole_run):
    summary, run_dir = cartpole_run
    curve = logged(run_dir, "charts/episodic_return")
    assert curve[0][1] < 100  # a random policy averages about 22
    best = max(v for _, v in curve)
    assert best >= 350, curve
    assert summary["eval_return_mean"] >= 350, summary
