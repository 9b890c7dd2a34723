"""Orthogonal weight initialisation without a LAPACK call.

``jax.nn.initializers.orthogonal`` takes the Q factor of a Gaussian matrix
from LAPACK's QR. On the CPU backend of jaxlib 0.10, a batch of QRs (one per
vmapped seed or swept value) is split over XLA's intra-op thread pool by a
kernel that itself runs on that pool and blocks until the pieces finish; when
the actor's and the critic's QRs run at the same time on a two-thread pool,
both threads wait and initialisation never returns. Orthonormalising the
columns with plain array operations gives the same matrix (to float rounding)
with nothing that waits on the pool.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def orthonormal_columns(z: jax.Array) -> jax.Array:
    """Q of ``z = QR`` with R's diagonal positive, for a tall ``z`` (rows >= columns).

    Classical Gram-Schmidt applied twice per column ("twice is enough"), which
    keeps the columns orthonormal to float precision; Q with a positive R
    diagonal is unique, so it equals LAPACK's Q with the signs fixed.
    """
    def add_column(j, q):
        v = z[:, j]
        for _ in range(2):
            v = v - q @ (q.T @ v)  # columns not yet filled are zero and remove nothing
        return q.at[:, j].set(v / jnp.sqrt(v @ v))

    return jax.lax.fori_loop(0, z.shape[1], add_column, jnp.zeros_like(z))


def orthogonal(scale: float = 1.0):
    """Initialiser drawing a (semi-)orthogonal kernel times ``scale``, as ``jax.nn.initializers.orthogonal``.

    The last axis holds the columns; the smaller side of the (rows, columns)
    matrix gets orthonormal vectors. The Gaussian draw is the same as JAX's,
    so both give the same weights for the same key.
    """
    def init(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
        if len(shape) < 2:
            raise ValueError(f"orthogonal initialisation needs a matrix shape, got {tuple(shape)}")
        rows, cols = math.prod(shape[:-1]), shape[-1]
        z = jax.random.normal(key, (max(rows, cols), min(rows, cols)), dtype)
        q = orthonormal_columns(z)
        q = q.T if rows < cols else q
        return jnp.asarray(scale, dtype) * q.reshape(shape)

    return init
