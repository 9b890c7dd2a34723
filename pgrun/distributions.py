"""The two action distributions a policy head produces.

Small and explicit on purpose: the natural-gradient code differentiates the KL
between two of these twice, so every method is a plain ``jnp`` expression.
"""

from __future__ import annotations

import math

import flax.struct
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class Categorical:
    """Distribution over ``n`` discrete actions given unnormalised ``logits[..., n]``."""

    logits: jax.Array

    @property
    def log_probs(self) -> jax.Array:
        return jax.nn.log_softmax(self.logits, axis=-1)

    def sample(self, key: jax.Array) -> jax.Array:
        return jax.random.categorical(key, self.logits, axis=-1)

    def mode(self) -> jax.Array:
        return jnp.argmax(self.logits, axis=-1)

    def log_prob(self, action: jax.Array) -> jax.Array:
        return jnp.take_along_axis(self.log_probs, action[..., None].astype(jnp.int32), axis=-1)[..., 0]

    def entropy(self) -> jax.Array:
        logp = self.log_probs
        return -jnp.sum(jnp.exp(logp) * logp, axis=-1)

    def kl(self, other: "Categorical") -> jax.Array:
        """KL(self || other), per batch element."""
        logp, logq = self.log_probs, other.log_probs
        return jnp.sum(jnp.exp(logp) * (logp - logq), axis=-1)


@flax.struct.dataclass
class DiagGaussian:
    """Independent Gaussians with ``mean[..., d]`` and ``log_std[..., d]``."""

    mean: jax.Array
    log_std: jax.Array

    def sample(self, key: jax.Array) -> jax.Array:
        return self.mean + jnp.exp(self.log_std) * jax.random.normal(key, self.mean.shape, self.mean.dtype)

    def mode(self) -> jax.Array:
        return self.mean

    def log_prob(self, action: jax.Array) -> jax.Array:
        z = (action - self.mean) * jnp.exp(-self.log_std)
        return jnp.sum(-0.5 * z**2 - self.log_std - 0.5 * math.log(2 * math.pi), axis=-1)

    def entropy(self) -> jax.Array:
        return jnp.sum(self.log_std + 0.5 * (1.0 + math.log(2 * math.pi)), axis=-1)

    def kl(self, other: "DiagGaussian") -> jax.Array:
        """KL(self || other), per batch element."""
        var_ratio = jnp.exp(2 * (self.log_std - other.log_std))
        mean_term = ((self.mean - other.mean) * jnp.exp(-other.log_std)) ** 2
        return jnp.sum(0.5 * (var_ratio + mean_term - 1.0) - (self.log_std - other.log_std), axis=-1)
