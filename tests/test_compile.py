"""Programs that run once compile with cheap CPU options, and without them where XLA lacks one."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from pgrun import train


def test_an_unknown_compile_option_falls_back_to_xla_defaults(monkeypatch):
    monkeypatch.setattr(train, "CPU_RUN_ONCE_OPTIONS", {"xla_no_such_option_anywhere": True})
    compiled = train.compile_run_once(jax.jit(lambda x: x * 2), jnp.ones(3))
    assert compiled(jnp.ones(3)).tolist() == [2.0, 2.0, 2.0]


def test_other_compile_errors_are_not_swallowed(monkeypatch):
    class Lowered:
        def compile(self, options=None):
            raise RuntimeError("RESOURCE_EXHAUSTED: out of memory")

    class Jitted:
        def lower(self, *args):
            return Lowered()

    with pytest.raises(RuntimeError, match="RESOURCE_EXHAUSTED"):
        train.compile_run_once(Jitted())


def test_cpu_computations_run_inline_once_pgrun_is_imported():
    """The host loops call one small program per environment step; asynchronous CPU dispatch
    hands each to a worker thread and back. Importing pgrun first (as every entry point does)
    turns that off before JAX's CPU backend starts."""
    import subprocess
    import sys

    code = ("import pgrun, jax; jax.devices(); "
            "print(jax.config.values['jax_cpu_enable_async_dispatch'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
