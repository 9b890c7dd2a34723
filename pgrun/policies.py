"""Actor and critic networks, and how their outputs meet the action space.

Actor and critic are separate MLPs (no shared torso), orthogonally
initialised as in the PPO implementation studies: hidden layers with gain
sqrt(2), the policy head with gain 0.01 (a near-uniform initial policy) and the
value head with gain 1. Continuous actions use a diagonal Gaussian with a
state-independent log-std; samples live in a normalised [-1, 1] box that
:meth:`Policy.to_env_action` rescales to the environment's bounds and clips.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from pgrun.distributions import Categorical, DiagGaussian
from pgrun.envs.core import Box, Discrete, Space
from pgrun.initializers import orthogonal

ACTIVATIONS = {"tanh": nn.tanh, "relu": nn.relu, "elu": nn.elu, "gelu": nn.gelu, "silu": nn.silu}


class MLP(nn.Module):
    """Hidden layers with an activation, then a linear head of ``out_size``."""

    hidden_sizes: Sequence[int]
    out_size: int
    activation: str = "tanh"
    head_gain: float = 1.0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        for width in self.hidden_sizes:
            x = act(nn.Dense(width, kernel_init=orthogonal(np.sqrt(2)),
                             bias_init=nn.initializers.zeros)(x))
        return nn.Dense(self.out_size, kernel_init=orthogonal(self.head_gain),
                        bias_init=nn.initializers.zeros)(x)


class GaussianActor(nn.Module):
    """Mean from an MLP; log-std a free parameter shared by all states.

    ``bounded_mean`` passes the mean through tanh, keeping it inside the
    normalised action box: a mean far outside it makes every sample clip to
    the same action, and the advantages then carry no signal about it.
    """

    hidden_sizes: Sequence[int]
    action_dim: int
    activation: str = "tanh"
    bounded_mean: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> DiagGaussian:
        mean = MLP(self.hidden_sizes, self.action_dim, self.activation, head_gain=0.01)(x)
        if self.bounded_mean:
            mean = jnp.tanh(mean)
        log_std = self.param("log_std", nn.initializers.zeros, (self.action_dim,))
        return DiagGaussian(mean, jnp.broadcast_to(log_std, mean.shape))


class CategoricalActor(nn.Module):
    """Logits of a categorical policy over ``num_actions`` from an MLP."""

    hidden_sizes: Sequence[int]
    num_actions: int
    activation: str = "tanh"

    @nn.compact
    def __call__(self, x: jax.Array) -> Categorical:
        return Categorical(MLP(self.hidden_sizes, self.num_actions, self.activation, head_gain=0.01)(x))


@dataclass(frozen=True)
class Policy:
    """Pure functions over ``params = {'actor': ..., 'critic': ...}``."""

    actor: nn.Module
    critic: nn.Module
    action_space: Space
    obs_dim: int

    def init(self, key: jax.Array, log_std_init: float | jax.Array = 0.0) -> dict[str, Any]:
        """Fresh parameters; a Gaussian actor starts with every log-std at ``log_std_init``
        (which may be traced, so members of a vectorised sweep can start from different values)."""
        k_actor, k_critic = jax.random.split(key)
        dummy = jnp.zeros((self.obs_dim,), jnp.float32)
        actor = self.actor.init(k_actor, dummy)
        if isinstance(self.actor, GaussianActor):
            log_std = actor["params"]["log_std"]
            actor = {**actor, "params": {**actor["params"], "log_std": jnp.full_like(log_std, log_std_init)}}
        return {"actor": actor, "critic": self.critic.init(k_critic, dummy)}

    def dist(self, actor_params: Any, obs: jax.Array) -> Categorical | DiagGaussian:
        return self.actor.apply(actor_params, obs)

    def value(self, critic_params: Any, obs: jax.Array) -> jax.Array:
        return self.critic.apply(critic_params, obs)[..., 0]

    def to_env_action(self, action: jax.Array) -> jax.Array:
        """Map a sampled action to what the environment accepts."""
        space = self.action_space
        if isinstance(space, Discrete):
            return action.astype(jnp.int32)
        low, high = np.asarray(space.low, np.float32), np.asarray(space.high, np.float32)
        if np.all(np.isfinite(low)) and np.all(np.isfinite(high)):
            return low + (jnp.clip(action, -1.0, 1.0) + 1.0) * 0.5 * (high - low)
        return action


def make_policy(observation_space: Box, action_space: Space, hidden_sizes: Sequence[int],
                activation: str, bounded_mean: bool = False) -> Policy:
    """The actor and critic for an environment's spaces: categorical for Discrete, Gaussian for a 1-D Box."""
    hidden = tuple(int(h) for h in hidden_sizes)
    if isinstance(action_space, Discrete):
        actor = CategoricalActor(hidden, action_space.n, activation)
    elif isinstance(action_space, Box) and len(action_space.shape) == 1:
        actor = GaussianActor(hidden, action_space.shape[0], activation, bounded_mean)
    else:
        raise TypeError(f"unsupported action space {action_space}")
    critic = MLP(hidden, 1, activation, head_gain=1.0)
    return Policy(actor, critic, action_space, int(np.prod(observation_space.shape)))
