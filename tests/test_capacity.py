"""Runs too large to index or to hold are refused before anything is built."""

from __future__ import annotations

import pytest

from conftest import compose_config
from pgrun.capacity import INDEX_LIMIT, check_capacity, rollout_bytes
from pgrun.errors import ConfigError
from pgrun.train import build


def test_the_estimate_grows_with_every_factor_of_the_batch():
    base = rollout_bytes(1, 4, 128, 4, 1)
    assert rollout_bytes(2, 4, 128, 4, 1) == 2 * base and rollout_bytes(1, 8, 128, 4, 1) == 2 * base
    assert rollout_bytes(1, 4, 256, 4, 1) == 2 * base and rollout_bytes(1, 4, 128, 40, 1) > 4 * base


def test_a_batch_past_int32_indexing_is_refused_by_name():
    with pytest.raises(ConfigError, match="more entries than the program can index.*lower num_envs"):
        check_capacity(1, INDEX_LIMIT // 128 + 1, 128, 1, 1, memory_bytes=2**60)
    check_capacity(1, INDEX_LIMIT // 128, 128, 1, 1, memory_bytes=2**60)  # the largest that fits


def test_a_batch_beyond_the_machine_memory_is_refused_with_both_sizes():
    need = rollout_bytes(4, 1000, 128, 4, 1)
    with pytest.raises(ConfigError, match=r"need about .* GiB, more than this machine's .* GiB"):
        check_capacity(4, 1000, 128, 4, 1, memory_bytes=need - 1)
    check_capacity(4, 1000, 128, 4, 1, memory_bytes=need)


def test_build_refuses_before_making_environments(monkeypatch):
    import pgrun.train as train

    def no_envs(*args, **kwargs):
        raise AssertionError("environments were made for a run that cannot fit")

    monkeypatch.setattr(train, "make_env", no_envs)
    with pytest.raises(ConfigError, match="GiB"):
        build(compose_config("num_envs=40000000", "algo.num_steps=16", "env=Pendulum-v1"))
