"""Step-by-step parity of the pure-JAX classic-control ports with Gymnasium.

Gymnasium is the reference: each test builds Gymnasium's own registered env
(``gymnasium.make``, so the ``TimeLimit`` wrapper is included), copies its
physical state into the port, drives both with the same actions and requires
the same observations, rewards and end-of-episode flags at every step.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pgrun.envs.classic import (
    JAX_PORTS,
    AcrobotState,
    CartPoleState,
    MountainCarState,
    PendulumState,
    make_jax_env,
)
from pgrun.envs.core import Box, Discrete

ENV_IDS = [
    "CartPole-v1",
    "Pendulum-v1",
    "Acrobot-v1",
    "MountainCar-v0",
    "MountainCarContinuous-v0",
]

STATE_CLASSES = {
    "CartPole-v1": CartPoleState,
    "Pendulum-v1": PendulumState,
    "Acrobot-v1": AcrobotState,
    "MountainCar-v0": MountainCarState,
    "MountainCarContinuous-v0": MountainCarState,
}

# The port's step ignores its key (no env here has stochastic dynamics), so one
# key serves every step and keeps the per-step overhead down.
STEP_KEY = jax.random.key(0)
MIN_STEPS = 1000


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _port(env_id):
    """The port and its step function, jitted once per env for the module."""
    env = make_jax_env(env_id)
    return env, jax.jit(env.step)


def _gym_env(env_id):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gymnasium.make(env_id)


def _to_port_state(env_id, physical_state, time):
    """Gymnasium's ``env.unwrapped.state`` as the port's state."""
    cls = STATE_CLASSES[env_id]
    names = [f.name for f in dataclasses.fields(cls) if f.name != "time"]
    values = np.array(physical_state, dtype=np.float64)  # a copy
    if cls is PendulumState:
        # Gymnasium lets the angle grow without bound; the port keeps it in
        # [-pi, pi). Same physical state, and reducing it in float64 before the
        # float32 rounding keeps the copy as precise as the port's own angle.
        values[0] = (values[0] + np.pi) % (2 * np.pi) - np.pi
    assert values.shape == (len(names),), (env_id, values.shape)
    return cls(
        **{n: jnp.float32(v) for n, v in zip(names, values)},
        time=jnp.int32(time),
    )


def _random_action(space, rng):
    if isinstance(space, Discrete):
        return int(rng.integers(space.n))
    # Half again the bounds on either side: about a third of the actions fall
    # outside the box, which exercises the clipping (and, for
    # MountainCarContinuous, a cost charged on the unclipped action).
    return rng.uniform(1.5 * space.low, 1.5 * space.high).astype(np.float32)


# Policies that reach the other kind of episode end than random actions do:
# they keep CartPole up until the time limit, and pump energy into Acrobot and
# both MountainCars until the goal. Pendulum cannot terminate.
def _cartpole_balance(obs, rng):
    x, x_dot, theta, theta_dot = obs
    return int(theta + 0.5 * theta_dot + 0.01 * x + 0.1 * x_dot > 0)


def _acrobot_pump(obs, rng):
    return 2 if obs[5] > 0 else 0


def _mountain_car_pump(obs, rng):
    return 2 if obs[1] >= 0 else 0


def _continuous_pump(obs, rng):
    push = 1.5 if obs[1] >= 0 else -1.5  # beyond the bounds: clipped to +-1
    return np.array([push + rng.normal(0.0, 0.3)], dtype=np.float32)


HEURISTICS = {
    "CartPole-v1": _cartpole_balance,
    "Pendulum-v1": None,
    "Acrobot-v1": _acrobot_pump,
    "MountainCar-v0": _mountain_car_pump,
    "MountainCarContinuous-v0": _continuous_pump,
}


def _policy(env_id, space, episode):
    """Random actions on even episodes, the env's heuristic on odd ones
    (with 10% random actions mixed in, so no two episodes repeat)."""
    heuristic = HEURISTICS[env_id]
    if heuristic is None or episode % 2 == 0:
        return lambda obs, rng: _random_action(space, rng)

    def act(obs, rng):
        if rng.random() < 0.1:
            return _random_action(space, rng)
        return heuristic(obs, rng)

    return act


def _drive(env_id, *, seed, resync_every, rtol, atol, min_steps=MIN_STEPS):
    """Run Gymnasium and the port side by side for whole episodes until at
    least ``min_steps`` steps have been compared.

    The port's state is copied from Gymnasium at every reset (time 0) and, if
    ``resync_every`` is set, every that many steps within an episode too; the
    port then keeps its own step counter, so truncation always comes from the
    port's own ``time``. Returns (steps, terminations, truncations).
    """
    port, step = _port(env_id)
    env = _gym_env(env_id)
    rng = np.random.default_rng(seed)
    n_steps = n_term = n_trunc = 0
    episode = 0
    gym_obs, _ = env.reset(seed=seed)
    while n_steps < min_steps:
        policy = _policy(env_id, port.action_space, episode)
        state = _to_port_state(env_id, env.unwrapped.state, 0)
        t = 0
        while True:
            if resync_every is not None and t > 0 and t % resync_every == 0:
                state = _to_port_state(env_id, env.unwrapped.state, state.time)
            action = policy(gym_obs, rng)
            port_action = (
                np.int32(action) if isinstance(port.action_space, Discrete) else action
            )
            gym_obs, g_rew, g_term, g_trunc, _ = env.step(action)
            obs, state, rew, term, trunc = jax.device_get(
                step(STEP_KEY, state, port_action)
            )
            t += 1
            n_steps += 1

            where = f"{env_id} seed={seed} episode={episode} step={t}"
            assert obs.dtype == np.float32 and obs.shape == gym_obs.shape, where
            assert rew.dtype == np.float32 and rew.shape == (), where
            assert term.dtype == np.bool_ and trunc.dtype == np.bool_, where
            assert int(state.time) == t, where
            np.testing.assert_allclose(obs, gym_obs, rtol=rtol, atol=atol, err_msg=where)
            np.testing.assert_allclose(
                rew, np.float32(g_rew), rtol=rtol, atol=atol, err_msg=where
            )
            assert bool(term) == g_term, where
            # TimeLimit raises truncated even on a terminating last step; the
            # port reports truncation only when the episode did not terminate.
            assert bool(trunc) == (g_trunc and not g_term), where

            if g_term or g_trunc:
                n_term += int(g_term)
                n_trunc += int(g_trunc and not g_term)
                break
        episode += 1
        gym_obs, _ = env.reset()
    env.close()
    return n_steps, n_term, n_trunc


def _check_episode_ends(env_id, n_term, n_trunc):
    assert n_trunc >= 1, f"{env_id}: no episode was truncated"
    if env_id == "Pendulum-v1":
        assert n_term == 0
    else:
        assert n_term >= 1, f"{env_id}: no episode terminated"


# --------------------------------------------------------------------------
# Parity with Gymnasium
# --------------------------------------------------------------------------

# Lock-step: the port's physical state is re-copied from Gymnasium before
# every step, so each comparison isolates one transition from identical
# (float32-rounded) inputs, over whole episodes. What is left is float32
# against Gymnasium's float64 arithmetic: measured at most ~3e-7 beyond
# rtol=1e-5, so atol=1e-6 (tighter than 1e-5) still has a margin.
LOCKSTEP_RTOL, LOCKSTEP_ATOL = 1e-5, 1e-6


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_lockstep_parity(env_id):
    n_steps, n_term, n_trunc = _drive(
        env_id, seed=11, resync_every=1, rtol=LOCKSTEP_RTOL, atol=LOCKSTEP_ATOL
    )
    assert n_steps >= MIN_STEPS
    _check_episode_ends(env_id, n_term, n_trunc)


# Free-running: the port integrates on its own, from each reset onwards.
# The two MountainCars are stable and run whole episodes (200 / 999 steps).
# CartPole (inverted pole), Pendulum (unstable upright position) and Acrobot
# (a chaotic double pendulum) amplify rounding exponentially: Gymnasium itself,
# restarted from its own state merely rounded to float32, drifts from the
# original run by up to ~5e-5 within 25 Pendulum steps and ~2e-4 within 50
# Acrobot steps, and the port also rounds every step. So these three run free
# over windows (re-synced from Gymnasium every `window` steps, step counter
# excepted), short enough that the gap stays well under the tolerance.
# Acrobot is the most sensitive (over 20 steps = 4 s the gap reaches ~2e-5 on
# some seeds), so its windows are checked with atol=1e-4.
FREE_RUN = {  # env_id: (window, atol); rtol is 1e-5 throughout
    "CartPole-v1": (30, 1e-5),
    "Pendulum-v1": (10, 1e-5),
    "Acrobot-v1": (20, 1e-4),
    "MountainCar-v0": (None, 1e-5),
    "MountainCarContinuous-v0": (None, 1e-5),
}


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_free_running_parity(env_id):
    window, atol = FREE_RUN[env_id]
    n_steps, n_term, n_trunc = _drive(
        env_id, seed=23, resync_every=window, rtol=1e-5, atol=atol
    )
    assert n_steps >= MIN_STEPS
    _check_episode_ends(env_id, n_term, n_trunc)


# Policies rarely drive the envs to their edges, so single steps from states
# drawn across (and for Pendulum's unwrapped angle, beyond) the whole state
# space check the rest: Acrobot's speed bounds and angle wrapping, the
# MountainCar walls, Pendulum's speed clip, CartPole near its thresholds.
WIDE_STATES = {  # env_id: (low, high) of the physical state
    "CartPole-v1": ([-2.4, -3.0, -0.21, -3.5], [2.4, 3.0, 0.21, 3.5]),
    "Pendulum-v1": ([-20.0, -8.0], [20.0, 8.0]),
    "Acrobot-v1": (
        [-np.pi, -np.pi, -4 * np.pi, -9 * np.pi],
        [np.pi, np.pi, 4 * np.pi, 9 * np.pi],
    ),
    "MountainCar-v0": ([-1.2, -0.07], [0.6, 0.07]),
    "MountainCarContinuous-v0": ([-1.2, -0.07], [0.6, 0.07]),
}


def _gym_single_steps(env, states, actions):
    """Gymnasium's step from each given physical state."""
    obs, rew, term = [], [], []
    for s, a in zip(states, actions):
        env.reset()  # clears CartPole's steps-beyond-terminated bookkeeping
        env.state = s.copy()
        o, r, t, _, _ = env.step(a)
        obs.append(o)
        rew.append(r)
        term.append(t)
    return np.stack(obs), np.array(rew, dtype=np.float64), np.array(term)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_single_steps_across_state_space(env_id):
    port, _ = _port(env_id)
    env = _gym_env(env_id).unwrapped  # no TimeLimit: every step is a first step
    env.reset(seed=5)
    rng = np.random.default_rng(5)
    low, high = (np.asarray(b) for b in WIDE_STATES[env_id])
    n = 300
    phys = rng.uniform(low, high, size=(n, len(low)))
    if isinstance(port.action_space, Discrete):
        actions = [a for a in range(port.action_space.n) for _ in range(n)]
        phys = np.tile(phys, (port.action_space.n, 1))
    else:
        actions = [_random_action(port.action_space, rng) for _ in range(n)]

    g_obs, g_rew, g_term = _gym_single_steps(env, phys, actions)

    # At the fastest Acrobot states one RK4 step over 0.2 s is so
    # ill-conditioned that Gymnasium's own float64 result moves by up to ~2e-3
    # when its input moves by one float32 rounding (2**-24 relative). So each
    # sample may also differ by up to 10x Gymnasium's own spread under such
    # input perturbations (the port rounds at every operation, not only its
    # input; measured up to ~3x); for well-conditioned samples (all of the other
    # envs) that spread is at most ~1e-6 and the lock-step tolerance governs.
    spread_obs = np.zeros_like(g_obs)
    spread_rew = np.zeros_like(g_rew)
    flag_stable = np.ones_like(g_term)
    for _ in range(4):
        signs = rng.choice([-1.0, 1.0], size=phys.shape)
        p_obs, p_rew, p_term = _gym_single_steps(
            env, phys * (1 + signs * 2.0**-24), actions
        )
        spread_obs = np.maximum(spread_obs, np.abs(p_obs - g_obs))
        spread_rew = np.maximum(spread_rew, np.abs(p_rew - g_rew))
        flag_stable &= p_term == g_term

    states = [_to_port_state(env_id, s, 0) for s in phys]
    batch = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *states)
    acts = jnp.asarray(np.stack(actions)).astype(
        jnp.int32 if isinstance(port.action_space, Discrete) else jnp.float32
    )
    keys = jax.random.split(STEP_KEY, len(actions))
    obs, _, rew, term, trunc = jax.device_get(
        jax.jit(jax.vmap(port.step))(keys, batch, acts)
    )

    def check(actual, desired, spread, what):
        allowed = LOCKSTEP_ATOL + LOCKSTEP_RTOL * np.abs(desired) + 10 * spread
        bad = np.abs(actual - desired) > allowed
        assert not bad.any(), (
            f"{env_id} {what}: {bad.sum()} mismatches, first at "
            f"{np.argwhere(bad)[0]}: {actual[bad][:3]} vs {desired[bad][:3]}"
        )

    check(obs, g_obs, spread_obs, "obs")
    check(rew, g_rew, spread_rew, "reward")
    np.testing.assert_array_equal(term[flag_stable], g_term[flag_stable])
    assert flag_stable.mean() > 0.99
    assert not trunc.any()
    if env_id != "Acrobot-v1":  # only Acrobot has ill-conditioned states
        assert spread_obs.max() < 1e-5 and spread_rew.max() < 1e-4

    # The edges were actually reached.
    if env_id == "Acrobot-v1":
        assert np.any(np.abs(g_obs[:, 4]) == np.float32(4 * np.pi))
        assert np.any(np.abs(g_obs[:, 5]) == np.float32(9 * np.pi))
        assert g_term.any()
    if env_id.startswith("MountainCar"):
        at_wall = (g_obs[:, 0] == np.float32(-1.2)) & (g_obs[:, 1] == 0)
        assert at_wall.any() and g_term.any()
    if env_id == "Pendulum-v1":
        assert np.any(np.abs(g_obs[:, 2]) == 8.0)
    if env_id == "CartPole-v1":
        assert g_term.any() and not g_term.all()


# --------------------------------------------------------------------------
# Spaces, resets, batching, registry
# --------------------------------------------------------------------------


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_spaces_match_gymnasium(env_id):
    port, _ = _port(env_id)
    env = _gym_env(env_id)
    assert port.id == env_id
    assert port.max_episode_steps == env.spec.max_episode_steps

    assert isinstance(port.observation_space, Box)
    gym_obs = env.observation_space
    assert port.observation_space.shape == gym_obs.shape
    assert port.observation_space.low.dtype == np.float32 == gym_obs.dtype
    assert port.observation_space.high.dtype == np.float32
    np.testing.assert_array_equal(port.observation_space.low, gym_obs.low)
    np.testing.assert_array_equal(port.observation_space.high, gym_obs.high)

    gym_act = env.action_space
    if isinstance(gym_act, gymnasium.spaces.Discrete):
        assert isinstance(port.action_space, Discrete)
        assert port.action_space.n == gym_act.n
    else:
        assert isinstance(port.action_space, Box)
        assert port.action_space.shape == gym_act.shape == (1,)
        assert port.action_space.low.dtype == np.float32 == gym_act.dtype
        np.testing.assert_array_equal(port.action_space.low, gym_act.low)
        np.testing.assert_array_equal(port.action_space.high, gym_act.high)

    obs, state = port.reset(jax.random.key(0))
    assert obs.shape == gym_obs.shape and obs.dtype == jnp.float32
    assert state.time.dtype == jnp.int32 and state.time.shape == ()
    env.close()


# Gymnasium's reset distributions (uniform over these ranges), expressed on the
# observation: CartPole all four in [-0.05, 0.05]; Pendulum angle in
# [-pi, pi] (so cos/sin anywhere) and speed in [-1, 1]; Acrobot both angles and
# speeds in [-0.1, 0.1]; MountainCar position in [-0.6, -0.4] at rest.
_C, _S = math.cos(0.1), math.sin(0.1)
RESET_BOUNDS = {
    "CartPole-v1": ([-0.05] * 4, [0.05] * 4),
    "Pendulum-v1": ([-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]),
    "Acrobot-v1": ([_C, -_S, _C, -_S, -0.1, -0.1], [1.0, _S, 1.0, _S, 0.1, 0.1]),
    "MountainCar-v0": ([-0.6, 0.0], [-0.4, 0.0]),
    "MountainCarContinuous-v0": ([-0.6, 0.0], [-0.4, 0.0]),
}


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_reset_distribution(env_id):
    low, high = (np.asarray(b, dtype=np.float32) for b in RESET_BOUNDS[env_id])
    eps = 1e-6

    # The bounds are Gymnasium's: its own resets stay inside them.
    env = _gym_env(env_id)
    gym_obs = np.stack([env.reset(seed=s)[0] for s in range(200)])
    env.close()
    assert np.all(gym_obs >= low - eps) and np.all(gym_obs <= high + eps)

    port, _ = _port(env_id)
    obs, state = jax.jit(jax.vmap(port.reset))(jax.random.split(jax.random.key(1), 4000))
    obs = np.asarray(obs)
    assert obs.dtype == np.float32
    assert np.all(obs >= low - eps) and np.all(obs <= high + eps)
    # ... and the port covers the whole range, not just part of it.
    spread = high - low
    np.testing.assert_array_less(obs.min(axis=0), low + 0.05 * spread + eps)
    np.testing.assert_array_less(high - 0.05 * spread - eps, obs.max(axis=0))
    np.testing.assert_array_equal(np.asarray(state.time), 0)
    # Observations are a function of the state and start inside the space.
    assert np.all(obs >= port.observation_space.low)
    assert np.all(obs <= port.observation_space.high)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_vmap_reset_and_step(env_id):
    port, step = _port(env_id)
    batch = 16
    keys = jax.random.split(jax.random.key(2), batch)
    obs, state = jax.vmap(port.reset)(keys)
    assert obs.shape == (batch, *port.observation_space.shape)
    assert obs.dtype == jnp.float32
    assert state.time.shape == (batch,) and state.time.dtype == jnp.int32

    rng = np.random.default_rng(0)
    actions = np.stack([_random_action(port.action_space, rng) for _ in range(batch)])
    if isinstance(port.action_space, Discrete):
        actions = actions.astype(np.int32)
    step_keys = jax.random.split(jax.random.key(3), batch)
    out = jax.jit(jax.vmap(port.step))(step_keys, state, jnp.asarray(actions))
    b_obs, b_state, b_rew, b_term, b_trunc = out
    assert b_obs.shape == obs.shape and b_obs.dtype == jnp.float32
    assert b_rew.shape == (batch,) and b_rew.dtype == jnp.float32
    assert b_term.shape == (batch,) and b_term.dtype == jnp.bool_
    assert b_trunc.shape == (batch,) and b_trunc.dtype == jnp.bool_
    np.testing.assert_array_equal(np.asarray(b_state.time), 1)

    # Batched results agree with the unbatched step, element by element.
    for i in range(0, batch, 5):
        s_i = jax.tree_util.tree_map(lambda x: x[i], state)
        o, _, r, te, tr = step(step_keys[i], s_i, jnp.asarray(actions[i]))
        np.testing.assert_allclose(np.asarray(b_obs[i]), np.asarray(o), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(float(b_rew[i]), float(r), rtol=1e-6, atol=1e-7)
        assert bool(b_term[i]) == bool(te) and bool(b_trunc[i]) == bool(tr)


def test_time_limit_truncates_only_non_terminal_steps():
    port, step = _port("CartPole-v1")
    limit = port.max_episode_steps
    # Upright and at rest one step before the limit: the last step truncates.
    upright = CartPoleState(
        x=jnp.float32(0.0),
        x_dot=jnp.float32(0.0),
        theta=jnp.float32(0.0),
        theta_dot=jnp.float32(0.0),
        time=jnp.int32(limit - 1),
    )
    _, s, _, term, trunc = step(STEP_KEY, upright, jnp.int32(1))
    assert not bool(term) and bool(trunc) and int(s.time) == limit
    # Falling over on that same last step is a termination, not a truncation.
    falling = upright.replace(theta=jnp.float32(0.2), theta_dot=jnp.float32(2.0))
    _, _, rew, term, trunc = step(STEP_KEY, falling, jnp.int32(1))
    assert bool(term) and not bool(trunc)
    assert float(rew) == 1.0  # CartPole pays 1.0 on the terminating step too


def test_registry():
    assert set(JAX_PORTS) == set(ENV_IDS)
    for env_id, cls in JAX_PORTS.items():
        env = make_jax_env(env_id)
        assert isinstance(env, cls) and env.id == env_id
    for missing in ("CartPole-v0", "LunarLander-v3", "not-an-env"):
        with pytest.raises(KeyError):
            make_jax_env(missing)
