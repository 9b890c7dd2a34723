"""Playing whole episodes with a policy, as an evaluation does.

Shared by the evaluations during training (pgrun.train) and by pgrun-eval
(pgrun.evaluate), so both measure the same thing: actions are the policy's
mode or a sample, observations are normalised with statistics the episode
never updates, and an episode is played until it ends.
"""

from __future__ import annotations

from typing import Any, Callable

# Safety net for Gymnasium ids registered without a time limit.
MAX_EPISODE_STEPS = 100_000


def choose_action(dist: Any, key: Any, deterministic: bool) -> Any:
    """The distribution's mode, or a sample from it."""
    return dist.mode() if deterministic else dist.sample(key)


def make_acting(policy: Any, normalize: Callable, deterministic: bool) -> Callable:
    """``acting(params, obs_stats, obs, key) -> env_action``: how a saved policy acts,
    shared by ``pgrun-eval`` and the evaluations during training so both measure the same thing.
    Observations are normalised with the given statistics, which it never updates."""

    def acting(params, obs_stats, obs, key):
        dist = policy.dist(params["actor"], normalize(obs_stats, obs))
        return policy.to_env_action(choose_action(dist, key, deterministic))

    return acting


def make_keyed_acting(policy: Any, normalize: Callable, deterministic: bool) -> Callable:
    """``act(params, obs_stats, obs, key) -> (env_action, key)``: :func:`make_acting` carrying its
    key from step to step, for loops on the host (Gymnasium) that step one action at a time."""
    import jax

    acting = make_acting(policy, normalize, deterministic)

    def act(params, obs_stats, obs, key):
        key, k_act = jax.random.split(key)
        return acting(params, obs_stats, obs, k_act), key

    return act


def make_jax_episode(env: Any, policy: Any, normalize: Callable, deterministic: bool) -> Callable:
    """``episode(params, obs_stats, key) -> (return, length)``: one whole episode on a JAX port.

    A ``while_loop`` that stops when the episode terminates or hits the port's
    own time limit; vmapped, it runs until the longest episode ends, and the
    finished ones keep their totals.
    """
    import jax  # here, not at the top: pgrun-eval's argument parsing should not wait for JAX
    import jax.numpy as jnp

    acting = make_acting(policy, normalize, deterministic)

    def episode(params, obs_stats, key):
        k_reset, key = jax.random.split(key)
        obs, state = env.reset(k_reset)

        def body(carry):
            state, obs, key, total, length, _ = carry
            key, k_act, k_step = jax.random.split(key, 3)
            obs, state, reward, terminated, truncated = env.step(k_step, state, acting(params, obs_stats, obs, k_act))
            return state, obs, key, total + reward, length + 1, terminated | truncated

        carry = (state, obs, key, jnp.float32(0.0), jnp.int32(0), jnp.bool_(False))
        *_, total, length, _ = jax.lax.while_loop(lambda c: ~c[-1], body, carry)
        return total, length

    return episode
