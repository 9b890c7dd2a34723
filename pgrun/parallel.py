"""How many CPU threads XLA may use in one job, so parallel jobs share the cores.

XLA sizes its CPU thread pool once, when JAX's CPU backend starts, from the
``PJRT_NPROC`` environment variable (falling back to ``NPROC``, then to the
cores this process may run on). Neither ``XLA_FLAGS`` (``--xla_cpu_multi_thread_eigen``)
nor ``OMP_NUM_THREADS`` changes that pool, and pinning the process with
``sched_setaffinity`` would also confine the host-side work, so the knob sets
``PJRT_NPROC`` before the backend starts.

``xla_cpu_threads=0`` (automatic) leaves XLA's default of all cores for a
single process, and shares the cores out among jobs when a launcher runs
several at once: joblib's ``n_jobs`` workers, submitit's ``cpus_per_task``,
Ray's ``num_cpus`` per task.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

THREADS_VARIABLE = "PJRT_NPROC"
_FALLBACK_VARIABLE = "NPROC"


def available_cores() -> int:
    """Cores this process may run on (its affinity mask, which Slurm and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def _joblib_workers(n_jobs: Any, cores: int) -> int:
    """Worker processes joblib starts for ``n_jobs`` (negative: all cores but ``-n_jobs - 1``)."""
    if n_jobs is None:
        return 1
    n_jobs = int(n_jobs)
    if n_jobs < 0:
        try:
            import joblib

            cores = joblib.cpu_count()
        except ImportError:
            pass
        return max(cores + 1 + n_jobs, 1)
    return max(n_jobs, 1)


def automatic_threads(launcher: Mapping[str, Any] | None, cores: int | None = None) -> int | None:
    """Threads per job under ``launcher`` (Hydra's ``hydra.launcher`` node); None: XLA's default."""
    if not launcher:
        return None
    cores = available_cores() if cores is None else cores
    target = str(launcher.get("_target_", ""))
    if "joblib" in target:
        return max(1, cores // _joblib_workers(launcher.get("n_jobs", -1), cores))
    if "submitit" in target:
        cpus = launcher.get("cpus_per_task")
        return max(1, min(int(cpus), cores)) if cpus else None
    if "ray" in target:
        remote = (launcher.get("ray") or {}).get("remote") or {}
        return max(1, int(remote.get("num_cpus") or 1))  # Ray runs one task per CPU unless told otherwise
    return None


def threads_for_job(setting: int, launcher: Mapping[str, Any] | None) -> int | None:
    """The thread count a job asks for: ``setting`` if positive, else the automatic choice."""
    return setting if setting > 0 else automatic_threads(launcher)


def effective_threads() -> int:
    """Threads XLA uses (or will use) in this process."""
    for name in (THREADS_VARIABLE, _FALLBACK_VARIABLE):
        value = os.environ.get(name, "")
        if value.strip().isdigit() and int(value) > 0:
            return int(value)
    return available_cores()


def backend_started() -> bool:
    """Whether JAX's backend already exists (after which thread settings no longer apply)."""
    bridge = sys.modules.get("jax._src.xla_bridge")
    return bool(bridge is not None and bridge.backends_are_initialized())


def limit_threads(threads: int | None) -> str | None:
    """Make XLA use ``threads`` CPU threads in this process (None: leave the default).

    Must run before JAX's CPU backend starts; returns a one-line warning when it
    is too late (a process that already ran a job with another count), else None.
    """
    if threads is None:
        return None
    if backend_started():
        current = effective_threads()
        if threads != current:
            return (f"xla_cpu_threads={threads} cannot take effect: JAX already runs in this process with "
                    f"{current} thread(s), set by an earlier job")
        return None
    os.environ[THREADS_VARIABLE] = str(threads)
    return None
