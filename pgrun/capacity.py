"""Whether a run's arrays fit: sizes the compiled program can index, and memory the machine has.

Checked before any environment or run folder exists, so a run that cannot fit is
refused in one line (exit 2) instead of failing inside XLA with a traceback.
"""

from __future__ import annotations

import os

from pgrun.errors import require

INDEX_LIMIT = 2**31 - 1  # XLA indexes arrays with int32
# A rollout's per-step, per-environment floats beyond the observation pair (action, log-prob, reward,
# flags, values, advantages, targets), times the copies the program holds at its peak (shuffled
# minibatches, per-sample activations and gradients). Calibrated on PPO CartPole-v1 with its default
# network: peak resident memory grew by about 820 bytes per environment step of the batch between
# batches of 1.28M and 2.56M steps; the estimate gives 840.
FLOATS_PER_STEP_BESIDE_OBS = 12
WORKING_COPIES = 10


def machine_memory_bytes() -> int | None:
    """Physical memory of this machine; None where the platform does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def rollout_bytes(members: int, num_envs: int, num_steps: int, obs_dim: int, action_dim: int) -> int:
    """An estimate of the memory one iteration's rollout and update hold, over every member."""
    floats_per_step = 2 * obs_dim + action_dim + FLOATS_PER_STEP_BESIDE_OBS
    return members * num_envs * num_steps * floats_per_step * 4 * WORKING_COPIES


def check_capacity(members: int, num_envs: int, num_steps: int, obs_dim: int, action_dim: int,
                   memory_bytes: int | None = None) -> None:
    """:class:`~pgrun.errors.ConfigError` naming the keys to lower when the batch cannot be indexed
    or its memory estimate exceeds the machine's."""
    batch = members * num_envs * num_steps
    require(batch * max(obs_dim, 1) <= INDEX_LIMIT,
            f"the batch of {members} member(s) x num_envs={num_envs} x algo.num_steps={num_steps} x "
            f"{obs_dim} observation values has more entries than the program can index (2^31): "
            "lower num_envs, algo.num_steps or num_seeds")
    memory = machine_memory_bytes() if memory_bytes is None else memory_bytes
    need = rollout_bytes(members, num_envs, num_steps, obs_dim, action_dim)
    require(memory is None or need <= memory,
            f"the rollouts of {members} member(s) x num_envs={num_envs} x algo.num_steps={num_steps} need about "
            f"{need / 2**30:.1f} GiB, more than this machine's {memory / 2**30:.1f} GiB: lower num_envs, "
            "algo.num_steps or num_seeds")
