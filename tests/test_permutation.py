"""The minibatch shuffle: always a permutation, and uniformly distributed."""

import itertools
import math

import jax
import numpy as np
import pytest
from scipy import stats

from pgrun.permutation import random_permutation


def draws(n: int, count: int, seed: int = 0) -> np.ndarray:
    keys = jax.random.split(jax.random.PRNGKey(seed), count)
    return np.asarray(jax.jit(jax.vmap(lambda k: random_permutation(k, n)))(keys))


@pytest.mark.parametrize("n", [1, 2, 3, 7, 256, 1000, 2048, 4097])
def test_every_draw_is_a_permutation(n):
    for perm in draws(n, 20):
        assert perm.dtype == np.int32
        np.testing.assert_array_equal(np.sort(perm), np.arange(n))


def test_all_orders_of_five_are_equally_likely():
    """Chi-square over the 120 orders of 5 elements, 60,000 draws (500 expected each);
    a fair shuffle fails with probability 1e-4, one off by 10% in a single order almost never passes."""
    index = {p: i for i, p in enumerate(itertools.permutations(range(5)))}
    counts = np.bincount([index[tuple(p)] for p in draws(5, 60_000)], minlength=120)
    assert stats.chisquare(counts).pvalue > 1e-4, counts


@pytest.mark.parametrize("n", [1024, 2048])
def test_positions_are_uniform_with_several_rounds(n):
    """Sizes that take two packed sorts: where the first, a middle and the last element land,
    in 16 bins over 4,000 draws, is uniform (chi-square); and two elements' positions are
    uncorrelated."""
    assert math.ceil(3 * math.log2(n) / (32 - math.log2(n))) == 2  # the multi-round path
    perms = draws(n, 4000, seed=1)
    where = np.argsort(perms, axis=1)  # where[d, e] = position of element e in draw d
    for element in (0, n // 2, n - 1):
        counts = np.bincount(where[:, element] * 16 // n, minlength=16)
        assert stats.chisquare(counts).pvalue > 1e-4, (element, counts)
    assert abs(np.corrcoef(where[:, 0], where[:, 1])[0, 1]) < 0.08


def test_different_keys_give_different_orders_and_equal_keys_the_same():
    a, b = random_permutation(jax.random.PRNGKey(0), 64), random_permutation(jax.random.PRNGKey(1), 64)
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(a, random_permutation(jax.random.PRNGKey(0), 64))
