"""Pure-JAX ports of Gymnasium's classic-control environments.

Gymnasium steps these environments one at a time in NumPy, which makes the
environment, not the policy, the bottleneck of small policy-gradient runs.
These ports keep Gymnasium's physics, observations, rewards, termination rules,
reset ranges and registered time limits, but run in float32 as pure functions,
so thousands of them can be ``vmap``-ed and scanned on an accelerator.
The random streams differ from Gymnasium's, and Pendulum stores its angle
modulo 2*pi; neither changes what an agent observes or is rewarded.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from pgrun.envs.core import Box, Discrete, Env

__all__ = [
    "Acrobot",
    "AcrobotState",
    "CartPole",
    "CartPoleState",
    "JAX_PORTS",
    "MountainCar",
    "MountainCarContinuous",
    "MountainCarState",
    "Pendulum",
    "PendulumState",
    "make_jax_env",
]

_F32 = jnp.float32


def _time_limit(terminated, time, max_episode_steps):
    """Gymnasium's ``TimeLimit``, but only reporting truncation when the
    episode did not terminate on the same step."""
    return (time >= max_episode_steps) & ~terminated


def _uniform(key, shape, low, high):
    return jax.random.uniform(key, shape, dtype=_F32, minval=low, maxval=high)


# --------------------------------------------------------------------------
# CartPole-v1
# --------------------------------------------------------------------------


@struct.dataclass
class CartPoleState:
    """Cart position and velocity, pole angle and angular velocity, steps taken."""

    x: jax.Array
    x_dot: jax.Array
    theta: jax.Array
    theta_dot: jax.Array
    time: jax.Array


class CartPole:
    """CartPole-v1: balance a pole on a cart pushed left or right.

    Explicit-Euler integration and reward 1.0 on every step, the terminating
    step included, as Gymnasium does by default.
    """

    id = "CartPole-v1"
    max_episode_steps = 500

    gravity = 9.8
    masscart = 1.0
    masspole = 0.1
    total_mass = masspole + masscart
    length = 0.5  # half the pole's length
    polemass_length = masspole * length
    force_mag = 10.0
    tau = 0.02
    theta_threshold_radians = 12 * 2 * math.pi / 360
    x_threshold = 2.4

    _high = np.array(
        [x_threshold * 2, np.inf, theta_threshold_radians * 2, np.inf],
        dtype=np.float32,
    )
    observation_space = Box(low=-_high, high=_high)
    action_space = Discrete(2)

    @staticmethod
    def _obs(state: CartPoleState) -> jax.Array:
        return jnp.stack([state.x, state.x_dot, state.theta, state.theta_dot]).astype(
            _F32
        )

    def reset(self, key):
        s = _uniform(key, (4,), -0.05, 0.05)
        state = CartPoleState(
            x=s[0], x_dot=s[1], theta=s[2], theta_dot=s[3], time=jnp.int32(0)
        )
        return self._obs(state), state

    def step(self, key, state: CartPoleState, action):
        del key  # deterministic dynamics
        force = jnp.where(jnp.asarray(action) == 1, self.force_mag, -self.force_mag)
        force = force.astype(_F32)
        costheta = jnp.cos(state.theta)
        sintheta = jnp.sin(state.theta)
        temp = (
            force + self.polemass_length * jnp.square(state.theta_dot) * sintheta
        ) / self.total_mass
        thetaacc = (self.gravity * sintheta - costheta * temp) / (
            self.length
            * (4.0 / 3.0 - self.masspole * jnp.square(costheta) / self.total_mass)
        )
        xacc = temp - self.polemass_length * thetaacc * costheta / self.total_mass

        x = state.x + self.tau * state.x_dot
        x_dot = state.x_dot + self.tau * xacc
        theta = state.theta + self.tau * state.theta_dot
        theta_dot = state.theta_dot + self.tau * thetaacc
        time = state.time + 1
        new_state = CartPoleState(
            x=x, x_dot=x_dot, theta=theta, theta_dot=theta_dot, time=time
        )

        terminated = (
            (x < -self.x_threshold)
            | (x > self.x_threshold)
            | (theta < -self.theta_threshold_radians)
            | (theta > self.theta_threshold_radians)
        )
        truncated = _time_limit(terminated, time, self.max_episode_steps)
        reward = jnp.float32(1.0)
        return self._obs(new_state), new_state, reward, terminated, truncated


# --------------------------------------------------------------------------
# Pendulum-v1
# --------------------------------------------------------------------------


@struct.dataclass
class PendulumState:
    """Angle, angular velocity and steps taken."""

    theta: jax.Array
    theta_dot: jax.Array
    time: jax.Array


def _angle_normalize(x):
    return jnp.mod(x + jnp.pi, 2 * jnp.pi) - jnp.pi


class Pendulum:
    """Pendulum-v1: swing up and hold an under-powered pendulum.

    The cost uses the pre-step angle and speed with the clipped torque; the
    episode never terminates, only the time limit ends it. Unlike Gymnasium,
    the stored angle is kept in [-pi, pi), which changes neither observation
    nor cost but keeps float32 precise while the pendulum spins.
    """

    id = "Pendulum-v1"
    max_episode_steps = 200

    max_speed = 8.0
    max_torque = 2.0
    dt = 0.05
    g = 10.0
    m = 1.0
    l = 1.0  # noqa: E741 (Gymnasium's name)

    observation_space = Box(
        low=-np.array([1.0, 1.0, max_speed], dtype=np.float32),
        high=np.array([1.0, 1.0, max_speed], dtype=np.float32),
    )
    action_space = Box(
        low=np.full((1,), -max_torque, dtype=np.float32),
        high=np.full((1,), max_torque, dtype=np.float32),
    )

    @staticmethod
    def _obs(state: PendulumState) -> jax.Array:
        return jnp.stack(
            [jnp.cos(state.theta), jnp.sin(state.theta), state.theta_dot]
        ).astype(_F32)

    def reset(self, key):
        s = _uniform(key, (2,), jnp.array([-jnp.pi, -1.0]), jnp.array([jnp.pi, 1.0]))
        state = PendulumState(theta=s[0], theta_dot=s[1], time=jnp.int32(0))
        return self._obs(state), state

    def step(self, key, state: PendulumState, action):
        del key
        u = jnp.clip(
            jnp.reshape(jnp.asarray(action, _F32), ()), -self.max_torque, self.max_torque
        )
        th, thdot = state.theta, state.theta_dot
        costs = _angle_normalize(th) ** 2 + 0.1 * thdot**2 + 0.001 * u**2

        newthdot = (
            thdot
            + (
                3 * self.g / (2 * self.l) * jnp.sin(th)
                + 3.0 / (self.m * self.l**2) * u
            )
            * self.dt
        )
        newthdot = jnp.clip(newthdot, -self.max_speed, self.max_speed)
        # Kept in [-pi, pi): observation and cost only see the angle modulo
        # 2*pi, and a float32 angle left to grow while the pendulum spins
        # loses resolution (float32 spacing is 7.6e-6 at 100 rad).
        newth = _angle_normalize(th + newthdot * self.dt)
        time = state.time + 1
        new_state = PendulumState(theta=newth, theta_dot=newthdot, time=time)

        terminated = jnp.bool_(False)
        truncated = _time_limit(terminated, time, self.max_episode_steps)
        return self._obs(new_state), new_state, (-costs).astype(_F32), terminated, truncated


# --------------------------------------------------------------------------
# Acrobot-v1
# --------------------------------------------------------------------------


@struct.dataclass
class AcrobotState:
    """The two joint angles and their velocities, and steps taken."""

    theta1: jax.Array
    theta2: jax.Array
    dtheta1: jax.Array
    dtheta2: jax.Array
    time: jax.Array


def _wrap(x, m, big_m):
    """Shift ``x`` by whole periods into ``[m, M]``, like Gymnasium's loop."""
    diff = big_m - m
    x = jnp.where(x > big_m, x - diff * jnp.ceil((x - big_m) / diff), x)
    x = jnp.where(x < m, x + diff * jnp.ceil((m - x) / diff), x)
    return x


class Acrobot:
    """Acrobot-v1: swing the tip of a two-link chain above a line.

    The "book" dynamics, one RK4 step over ``dt = 0.2``, angles wrapped to
    [-pi, pi] and speeds bounded afterwards; no torque noise (Gymnasium's
    default). Reward is -1 per step and 0 on the step that reaches the goal.
    """

    id = "Acrobot-v1"
    max_episode_steps = 500

    dt = 0.2
    LINK_LENGTH_1 = 1.0
    LINK_MASS_1 = 1.0
    LINK_MASS_2 = 1.0
    LINK_COM_POS_1 = 0.5
    LINK_COM_POS_2 = 0.5
    LINK_MOI = 1.0
    MAX_VEL_1 = 4 * math.pi
    MAX_VEL_2 = 9 * math.pi
    g = 9.8

    _high = np.array([1.0, 1.0, 1.0, 1.0, MAX_VEL_1, MAX_VEL_2], dtype=np.float32)
    observation_space = Box(low=-_high, high=_high)
    action_space = Discrete(3)

    @staticmethod
    def _obs(state: AcrobotState) -> jax.Array:
        return jnp.stack(
            [
                jnp.cos(state.theta1),
                jnp.sin(state.theta1),
                jnp.cos(state.theta2),
                jnp.sin(state.theta2),
                state.dtheta1,
                state.dtheta2,
            ]
        ).astype(_F32)

    def reset(self, key):
        s = _uniform(key, (4,), -0.1, 0.1)
        state = AcrobotState(
            theta1=s[0], theta2=s[1], dtheta1=s[2], dtheta2=s[3], time=jnp.int32(0)
        )
        return self._obs(state), state

    def _dsdt(self, s, torque):
        m1, m2 = self.LINK_MASS_1, self.LINK_MASS_2
        l1 = self.LINK_LENGTH_1
        lc1, lc2 = self.LINK_COM_POS_1, self.LINK_COM_POS_2
        i1 = i2 = self.LINK_MOI
        g = self.g
        theta1, theta2, dtheta1, dtheta2 = s[0], s[1], s[2], s[3]
        d1 = (
            m1 * lc1**2
            + m2 * (l1**2 + lc2**2 + 2 * l1 * lc2 * jnp.cos(theta2))
            + i1
            + i2
        )
        d2 = m2 * (lc2**2 + l1 * lc2 * jnp.cos(theta2)) + i2
        # cos(a - pi/2) == sin(a), written as sin to avoid float32 cancellation.
        phi2 = m2 * lc2 * g * jnp.sin(theta1 + theta2)
        phi1 = (
            -m2 * l1 * lc2 * dtheta2**2 * jnp.sin(theta2)
            - 2 * m2 * l1 * lc2 * dtheta2 * dtheta1 * jnp.sin(theta2)
            + (m1 * lc1 + m2 * l1) * g * jnp.sin(theta1)
            + phi2
        )
        ddtheta2 = (
            torque
            + d2 / d1 * phi1
            - m2 * l1 * lc2 * dtheta1**2 * jnp.sin(theta2)
            - phi2
        ) / (m2 * lc2**2 + i2 - d2**2 / d1)
        ddtheta1 = -(d2 * ddtheta2 + phi1) / d1
        return jnp.stack([dtheta1, dtheta2, ddtheta1, ddtheta2])

    def step(self, key, state: AcrobotState, action):
        del key  # torque noise is zero in Acrobot-v1
        torque = (jnp.asarray(action) - 1).astype(_F32)  # actions 0,1,2 -> -1,0,+1
        y0 = jnp.stack([state.theta1, state.theta2, state.dtheta1, state.dtheta2])
        h = self.dt
        k1 = self._dsdt(y0, torque)
        k2 = self._dsdt(y0 + h / 2 * k1, torque)
        k3 = self._dsdt(y0 + h / 2 * k2, torque)
        k4 = self._dsdt(y0 + h * k3, torque)
        ns = y0 + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)

        time = state.time + 1
        new_state = AcrobotState(
            theta1=_wrap(ns[0], -jnp.pi, jnp.pi),
            theta2=_wrap(ns[1], -jnp.pi, jnp.pi),
            dtheta1=jnp.clip(ns[2], -self.MAX_VEL_1, self.MAX_VEL_1),
            dtheta2=jnp.clip(ns[3], -self.MAX_VEL_2, self.MAX_VEL_2),
            time=time,
        )
        terminated = (
            -jnp.cos(new_state.theta1) - jnp.cos(new_state.theta2 + new_state.theta1)
            > 1.0
        )
        truncated = _time_limit(terminated, time, self.max_episode_steps)
        reward = jnp.where(terminated, 0.0, -1.0).astype(_F32)
        return self._obs(new_state), new_state, reward, terminated, truncated


# --------------------------------------------------------------------------
# MountainCar-v0 and MountainCarContinuous-v0
# --------------------------------------------------------------------------


@struct.dataclass
class MountainCarState:
    """Car position and velocity, and steps taken."""

    position: jax.Array
    velocity: jax.Array
    time: jax.Array


class _MountainCarBase:
    min_position = -1.2
    max_position = 0.6
    max_speed = 0.07
    goal_velocity = 0.0
    gravity = 0.0025

    observation_space = Box(
        low=np.array([min_position, -max_speed], dtype=np.float32),
        high=np.array([max_position, max_speed], dtype=np.float32),
    )

    @staticmethod
    def _obs(state: MountainCarState) -> jax.Array:
        return jnp.stack([state.position, state.velocity]).astype(_F32)

    def reset(self, key):
        position = _uniform(key, (), -0.6, -0.4)
        state = MountainCarState(
            position=position, velocity=jnp.float32(0.0), time=jnp.int32(0)
        )
        return self._obs(state), state

    def _move(self, state: MountainCarState, push):
        """Shared dynamics: speed limit, track ends, inelastic left wall."""
        velocity = state.velocity + (
            push - self.gravity * jnp.cos(3 * state.position)
        )
        velocity = jnp.clip(velocity, -self.max_speed, self.max_speed)
        position = jnp.clip(
            state.position + velocity, self.min_position, self.max_position
        )
        velocity = jnp.where(
            (position == jnp.float32(self.min_position)) & (velocity < 0),
            jnp.float32(0.0),
            velocity,
        )
        terminated = (position >= self.goal_position) & (
            velocity >= self.goal_velocity
        )
        new_state = MountainCarState(
            position=position, velocity=velocity, time=state.time + 1
        )
        return new_state, terminated


class MountainCar(_MountainCarBase):
    """MountainCar-v0: an under-powered car must rock itself up a hill.

    Three actions (push left, none, right), reward -1 per step, goal at 0.5.
    """

    id = "MountainCar-v0"
    max_episode_steps = 200
    force = 0.001
    goal_position = 0.5
    action_space = Discrete(3)

    def step(self, key, state: MountainCarState, action):
        del key
        push = (jnp.asarray(action) - 1).astype(_F32) * self.force
        new_state, terminated = self._move(state, push)
        truncated = _time_limit(terminated, new_state.time, self.max_episode_steps)
        reward = jnp.float32(-1.0)
        return self._obs(new_state), new_state, reward, terminated, truncated


class MountainCarContinuous(_MountainCarBase):
    """MountainCarContinuous-v0: the same hill with a continuous throttle.

    The throttle is clipped to [-1, 1] for the physics, but, as in Gymnasium,
    the -0.1 * a**2 energy cost is charged on the action as given; +100 when
    the goal (0.45) is reached.
    """

    id = "MountainCarContinuous-v0"
    max_episode_steps = 999
    power = 0.0015
    goal_position = 0.45
    action_space = Box(
        low=np.full((1,), -1.0, dtype=np.float32),
        high=np.full((1,), 1.0, dtype=np.float32),
    )

    def step(self, key, state: MountainCarState, action):
        del key
        a = jnp.reshape(jnp.asarray(action, _F32), ())
        force = jnp.clip(a, -1.0, 1.0)
        new_state, terminated = self._move(state, force * self.power)
        truncated = _time_limit(terminated, new_state.time, self.max_episode_steps)
        reward = (jnp.where(terminated, 100.0, 0.0) - 0.1 * a**2).astype(_F32)
        return self._obs(new_state), new_state, reward, terminated, truncated


# --------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------

JAX_PORTS: dict[str, type] = {
    cls.id: cls
    for cls in (CartPole, Pendulum, Acrobot, MountainCar, MountainCarContinuous)
}


def make_jax_env(env_id: str) -> Env:
    """The pure-JAX port of a Gymnasium id; ``KeyError`` if there is none."""
    try:
        cls = JAX_PORTS[env_id]
    except KeyError:
        raise KeyError(
            f"no pure-JAX port of {env_id!r}; available: {sorted(JAX_PORTS)}"
        ) from None
    return cls()
