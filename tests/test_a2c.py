"""A2C's update against its definition: one Adam step, after global-norm clipping, down the gradient of
-E[log pi(a|s) A] + vf_coef 0.5 E[(V(s) - G)^2] - ent_coef E[H(pi(.|s))], with A and G = A + V
GAE(lambda) advantages and targets computed from the critic before the step (lambda = 1: n-step returns).
Everything here is recomputed by hand from a real CartPole rollout."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from conftest import compose_config, gae_by_hand
from pgrun.algos import a2c
from pgrun.rollout import identity_normalizer, make_rollout
from pgrun.train import build, init_train_state


@pytest.mark.parametrize("gae_lambda", [1.0, 0.9])
def test_a2c_takes_one_clipped_adam_step_down_its_loss(gae_lambda, monkeypatch):
    """The gradient A2C steps along equals the gradient of the loss written out (policy, value and
    entropy terms, advantages from a hand GAE loop), and the new parameters are Adam's first step
    down it: theta - lr g_c / (|g_c| + 1e-5), g_c the gradient clipped to max_grad_norm. A loss of the
    wrong sign, a wrong weight or bootstrap, or a step up the loss fails."""
    setup = build(compose_config("algo=a2c", "env=CartPole-v1", "algo.hidden_sizes=[16]", "num_envs=2",
                                 "algo.num_steps=64", f"algo.gae_lambda={gae_lambda}", "algo.ent_coef=0.05",
                                 "algo.vf_coef=0.4", "total_timesteps=1280"))
    cfg, policy = setup.cfg.algo, setup.policy
    state = init_train_state(setup, jax.random.PRNGKey(0))
    obs, env_state = jax.vmap(setup.env.reset)(jax.random.split(jax.random.PRNGKey(1), 2))
    batch = jax.jit(make_rollout(setup.env, policy, identity_normalizer, cfg.num_steps))(
        state.params, state.obs_stats, env_state, obs, jax.random.PRNGKey(2))[2]
    assert np.asarray(batch.dones).sum() >= 2  # episode ends are inside the batch

    stepped = []
    optimizer_step = a2c.optimizer_step

    def recording(optimizer, grads, *rest):
        stepped.append(grads)
        return optimizer_step(optimizer, grads, *rest)

    monkeypatch.setattr(a2c, "optimizer_step", recording)
    new_state, _ = a2c.make_a2c(cfg, policy, 20).update(state, batch, jax.random.PRNGKey(3))
    assert len(stepped) == 1

    f64 = lambda x: np.asarray(x, np.float64)
    critic = lambda o: f64(policy.value(state.params["critic"], o))
    adv = gae_by_hand(f64(batch.rewards), critic(batch.obs), critic(batch.next_obs), f64(batch.terminated),
                      f64(batch.dones), cfg.gamma, gae_lambda)
    targets = adv + critic(batch.obs)
    flat = lambda x: jnp.asarray(np.asarray(x).reshape((-1,) + np.shape(x)[2:]))
    o, a, A, G = flat(batch.obs), flat(batch.actions), flat(adv.astype(np.float32)), flat(targets.astype(np.float32))

    def loss(params):
        log_pi = jax.nn.log_softmax(policy.actor.apply(params["actor"], o).logits)
        policy_term = -jnp.mean(jnp.take_along_axis(log_pi, a[:, None], -1)[:, 0] * A)
        value_term = 0.5 * jnp.mean((policy.critic.apply(params["critic"], o)[:, 0] - G) ** 2)
        entropy = jnp.mean(-jnp.sum(jnp.exp(log_pi) * log_pi, -1))
        return policy_term + cfg.vf_coef * value_term - cfg.ent_coef * entropy

    want = jax.grad(loss)(state.params)
    g, unravel = ravel_pytree(want)
    np.testing.assert_allclose(ravel_pytree(stepped[0])[0], g, rtol=2e-4, atol=1e-6)

    g = f64(g)
    clipped = g * min(1.0, cfg.max_grad_norm / np.linalg.norm(g))
    expected = f64(ravel_pytree(state.params)[0]) - cfg.lr * clipped / (np.abs(clipped) + 1e-5)
    np.testing.assert_allclose(f64(ravel_pytree(new_state.params)[0]), expected, rtol=1e-5, atol=1e-7)
