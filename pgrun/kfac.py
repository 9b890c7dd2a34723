"""Kronecker-factored approximate curvature (K-FAC) for dense layers.

For a dense layer with pre-activations ``s = W^T a + b`` (flax layout: the
kernel is ``[in, out]``), write the bias as one more input row:
``W_bar = [W; b]`` of shape ``[in + 1, out]`` and ``a_bar = [a; 1]``. The
gradient of a per-sample log-likelihood is ``a_bar g^T`` with
``g = d log p / d s``, so the layer's Fisher block is

    F = E[(a_bar a_bar^T) (x) (g g^T)]  ~  E[a_bar a_bar^T] (x) E[g g^T] = A (x) G

(Martens & Grosse, 2015), with ``(x)`` the Kronecker product acting on
``vec(W_bar)`` flattened row-major, i.e. ``F[(i,j),(k,l)] = A[i,k] G[j,l]``.
The inverse of a Kronecker product is the product of the inverses, so

    F^-1 vec(dW) = vec(A^-1 dW G^-1)

costs two small ``[in+1]`` and ``[out]`` inverses rather than one
``[(in+1) out]`` one (``G^-1 dW A^-1`` in the ``[out, in]`` layout of the paper).

Damping: Tikhonov damping ``lambda`` is split between the factors with the
pi-correction of Martens & Grosse (2015, section 6.3),

    pi = sqrt((tr(A) / dim A) / (tr(G) / dim G)),
    A_d = A + pi sqrt(lambda) I,   G_d = G + sqrt(lambda) / pi I,

which balances the two added terms by the factors' average eigenvalues
(``A_d (x) G_d = A (x) G + lambda I + pi sqrt(lambda) I (x) G + sqrt(lambda)/pi A (x) I``).
The damped factors are inverted explicitly (:func:`spd_inverse`).

The factors are averaged across iterations with Martens & Grosse's schedule
``eps_k = min(decay, 1 - 1/k)`` at the k-th update (k = 1, 2, ...):
``S_k = eps_k S_{k-1} + (1 - eps_k) s_k``, so the first average is the first
batch's own statistics and early ones are plain means.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class KroneckerFactors(NamedTuple):
    """One dense layer's factors: ``a`` over inputs with a 1 appended, ``g`` over pre-activation gradients."""

    a: jax.Array  # [in + 1, in + 1]
    g: jax.Array  # [out, out]


def with_bias_row(kernel: jax.Array, bias: jax.Array) -> jax.Array:
    """``[W; b]``: the ``[in + 1, out]`` weight the factors act on."""
    return jnp.concatenate([kernel, bias[None, :]], axis=0)


def without_bias_row(weight: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(kernel, bias)`` of a ``[in + 1, out]`` weight."""
    return weight[:-1], weight[-1]


def _weighted_second_moment(x: jax.Array, weights: jax.Array | None) -> jax.Array:
    if weights is None:
        return x.T @ x / x.shape[0]
    return (x * weights[:, None]).T @ x / jnp.sum(weights)


def batch_factors(inputs: jax.Array, output_grads: jax.Array, weights: jax.Array | None = None) -> KroneckerFactors:
    """``A = E[a_bar a_bar^T]`` and ``G = E[g g^T]`` over a batch of ``[n, in]`` inputs
    and ``[n, out]`` per-sample pre-activation gradients; ``weights[n]`` (default
    uniform) weigh the samples, e.g. by action probabilities for an exact expectation."""
    homogeneous = jnp.concatenate([inputs, jnp.ones_like(inputs[:, :1])], axis=1)
    return KroneckerFactors(_weighted_second_moment(homogeneous, weights),
                            _weighted_second_moment(output_grads, weights))


def average_weight(decay: jax.Array, update_count: jax.Array) -> jax.Array:
    """``eps_k = min(decay, 1 - 1/k)``: the weight of the old average at the k-th update."""
    k = jnp.maximum(jnp.asarray(update_count, jnp.float32), 1.0)
    return jnp.minimum(decay, 1.0 - 1.0 / k)


def running_average(old, new, decay: jax.Array, update_count: jax.Array):
    """``eps_k old + (1 - eps_k) new`` leaf by leaf, ``k = update_count`` (1 at the first update)."""
    eps = average_weight(decay, update_count)
    return jax.tree.map(lambda o, n: eps * o + (1.0 - eps) * n, old, new)


def pi_correction(factors: KroneckerFactors) -> jax.Array:
    """``sqrt((tr(A) / dim A) / (tr(G) / dim G))``, guarded against an all-zero factor."""
    mean_a = jnp.trace(factors.a) / factors.a.shape[0]
    mean_g = jnp.trace(factors.g) / factors.g.shape[0]
    return jnp.sqrt(jnp.maximum(mean_a, 1e-12) / jnp.maximum(mean_g, 1e-12))


def damped(factors: KroneckerFactors, damping: jax.Array) -> KroneckerFactors:
    """``(A + pi sqrt(lambda) I, G + sqrt(lambda) / pi I)``."""
    pi = pi_correction(factors)
    root = jnp.sqrt(damping)
    return KroneckerFactors(factors.a + pi * root * jnp.eye(factors.a.shape[0], dtype=factors.a.dtype),
                            factors.g + root / pi * jnp.eye(factors.g.shape[0], dtype=factors.g.dtype))


def spd_inverse(matrix: jax.Array) -> jax.Array:
    """The inverse of a symmetric positive-definite matrix by Gauss-Jordan elimination.

    Pure ``jnp`` (a ``fori_loop`` of rank-one updates, no pivoting: the pivots
    of a positive-definite matrix are its positive Schur complements). The
    LAPACK kernels behind ``jnp.linalg`` on CPU split a vmapped batch over
    XLA's thread pool and block on it; with several of them in flight at once
    (one per factor, members vmapped) a small pool deadlocks.
    """
    n = matrix.shape[-1]
    index = jnp.arange(n)

    def eliminate(k, inverse):
        at_k = (index == k).astype(matrix.dtype)
        column, row = inverse @ at_k, at_k @ inverse
        pivot = jnp.maximum(column @ at_k, jnp.finfo(matrix.dtype).tiny)
        updated = inverse - jnp.outer(column, row) / pivot
        updated = jnp.where(index[:, None] == k, row[None, :] / pivot, updated)
        updated = jnp.where(index[None, :] == k, -column[:, None] / pivot, updated)
        return jnp.where((index[:, None] == k) & (index[None, :] == k), 1.0 / pivot, updated)

    inverse = jax.lax.fori_loop(0, n, eliminate, matrix)
    return 0.5 * (inverse + inverse.T)


def precondition(factors: KroneckerFactors, grad: jax.Array, damping: jax.Array) -> jax.Array:
    """``A_d^-1 grad G_d^-1`` for a ``[in + 1, out]`` gradient: ``(A_d (x) G_d)^-1 vec(grad)``."""
    a_d, g_d = damped(factors, damping)
    return spd_inverse(a_d) @ grad @ spd_inverse(g_d)


def quadratic_form(factors: KroneckerFactors, step: jax.Array) -> jax.Array:
    """``vec(step)^T (A (x) G) vec(step) = tr(step^T A step G)`` for a ``[in + 1, out]`` step."""
    return jnp.sum((factors.a @ step) * (step @ factors.g))


def trust_region_step_size(quadratic: jax.Array, delta: jax.Array, max_step_size: jax.Array) -> jax.Array:
    """``min(max_step_size, sqrt(2 delta / quadratic))``: the largest multiple of a
    direction whose quadratic KL model ``eta^2 quadratic / 2`` stays within ``delta``."""
    return jnp.minimum(max_step_size, jnp.sqrt(2.0 * delta / jnp.maximum(quadratic, 1e-20)))
