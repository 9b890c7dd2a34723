"""pgrun: policy-gradient reinforcement learning on JAX, one command to train, sweep and compare."""

import jax as _jax

# The host loops (Gymnasium, envpool) call one small compiled program per environment step. With
# the CPU backend's asynchronous dispatch every call hops to a worker thread and back: a Hopper
# policy step took about three times as long (scripts/benchmark_mujoco_speed.py). pgrun never
# overlaps host work with a CPU computation, so computations run inline on the calling thread.
# The setting only counts before JAX's CPU backend starts, hence here, on first import.
_jax.config.update("jax_cpu_enable_async_dispatch", False)
