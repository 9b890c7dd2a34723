"""Many hosts: one run trained by several processes, of which only the first writes the run folder.

A run joins a multi-process job (``jax.distributed.initialize``) when its top-level key
``distributed`` is ``auto`` (the default) and its environment describes such a job:

* ``PGRUN_NUM_PROCESSES`` above 1, with ``PGRUN_PROCESS_ID`` (0 .. n-1) and
  ``PGRUN_COORDINATOR`` (``host:port`` where process 0 listens; JAX's own
  ``JAX_COORDINATOR_ADDRESS`` is read when it is unset). Any launcher can set
  these: a Ray task per host, a shell loop, the tests' two local processes.
* a Slurm job step of several tasks (``srun`` sets ``SLURM_STEP_NUM_TASKS`` above
  1 and ``SLURM_PROCID``): JAX's own Slurm detection finds the coordinator (the
  step's first node) and each process's rank. A batch script's own environment
  (``sbatch --ntasks=4`` without ``srun``) is a single process, and stays one.

``distributed=off`` ignores both, so every process trains a whole run of its own.

In a job every process trains its share of the members (:func:`pgrun.devices.place_members`
puts the member axis over every process's devices) and gathers every member's metrics,
evaluations and checkpoint state, so each process takes the same decisions (a non-finite
member, a stop request) and ends with the same exit code. Only process 0 prints and writes
the run folder; the others compute and write nothing. Resuming reads the checkpoint in every
process, so the run folder must be on a filesystem they share.

Host environments (the Gymnasium bridge) step in one process, so they refuse a job before
joining it: with one line of bad input rather than a wait for the coordinator.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pgrun.errors import ConfigError, TrainingError, first_line

AUTO, OFF = "auto", "off"
SETTINGS = (AUTO, OFF)
NUM_PROCESSES, PROCESS_ID, COORDINATOR = "PGRUN_NUM_PROCESSES", "PGRUN_PROCESS_ID", "PGRUN_COORDINATOR"
JAX_COORDINATOR = "JAX_COORDINATOR_ADDRESS"
SLURM_TASKS, SLURM_RANK = "SLURM_STEP_NUM_TASKS", "SLURM_PROCID"


def checked_setting(setting: Any) -> str:
    """``distributed=<setting>`` as ``auto`` or ``off``; ConfigError otherwise."""
    text = str(setting).strip().lower()
    if text in ("false", "no"):  # YAML may read a bare off as false
        text = OFF
    if text not in SETTINGS:
        raise ConfigError(f"distributed={setting} is not valid: use distributed=auto (join the multi-process job "
                          "the environment describes, if any) or distributed=off")
    return text


@dataclass(frozen=True)
class Job:
    """A multi-process job as this process's environment describes it."""

    processes: int
    process_id: int
    coordinator: str | None  # host:port of process 0; None: JAX finds it (Slurm)

    def describe(self) -> str:
        """How error messages name the job."""
        return f"process {self.process_id} of {self.processes}"


def _whole(name: str, text: str) -> int:
    """The non-negative whole number an environment variable holds; ConfigError otherwise."""
    if not text.strip().isdigit():
        raise ConfigError(f"{name}={text} is not a whole number: set it to a count or index, or unset "
                          f"{NUM_PROCESSES} to train in one process")
    return int(text)


def described_job(environ: Mapping[str, str] | None = None) -> Job | None:
    """The multi-process job ``environ`` (the process's environment by default) describes, or None
    (no variables, one process). ConfigError for variables that describe none consistently."""
    environ = os.environ if environ is None else environ
    if environ.get(NUM_PROCESSES, "").strip():
        processes = _whole(NUM_PROCESSES, environ[NUM_PROCESSES])
        if processes <= 1:
            return None
        rank = environ.get(PROCESS_ID, "")
        if not rank.strip() or _whole(PROCESS_ID, rank) >= processes:
            raise ConfigError(f"{NUM_PROCESSES}={processes} needs {PROCESS_ID} set to this process's index, "
                              f"0 to {processes - 1} (got {rank or 'nothing'})")
        coordinator = environ.get(COORDINATOR) or environ.get(JAX_COORDINATOR) or ""
        if not re.fullmatch(r"\S+:\d+", coordinator.strip()):
            raise ConfigError(f"{NUM_PROCESSES}={processes} needs {COORDINATOR}=HOST:PORT, where process 0 "
                              f"listens and every process can reach it (got {coordinator or 'nothing'})")
        return Job(processes, int(rank), coordinator.strip())
    tasks, rank = environ.get(SLURM_TASKS, ""), environ.get(SLURM_RANK, "")
    if tasks.strip().isdigit() and int(tasks) > 1 and rank.strip().isdigit():
        return Job(int(tasks), int(rank), None)
    return None


def job_for(setting: Any, environ: Mapping[str, str] | None = None) -> Job | None:
    """The job a run with ``distributed=<setting>`` joins: None when off or when there is none."""
    return None if checked_setting(setting) == OFF else described_job(environ)


def environment_rank(setting: Any = AUTO, environ: Mapping[str, str] | None = None) -> int:
    """This process's index in the job it is about to join: 0 when it joins none, and when the
    variables are malformed (the run then stops as bad input in every process alike)."""
    try:
        job = job_for(setting, environ)
    except ConfigError:
        return 0
    return job.process_id if job else 0


def host_refusal(env_label: str, job: str) -> str:
    """The one line that refuses a host environment in a multi-process job."""
    return (f"{job}: {env_label} steps on the host, and host environments train in one process: run a "
            "single process (or distributed=off), or use a JAX port with env.backend=jax")


def join(cfg: Any) -> tuple[Any, bool]:
    """Join the job ``cfg`` and the environment describe, if any, before JAX starts its backend.

    Returns the config this process trains with (quiet in every process but the first) and
    whether this process writes the run folder. ConfigError for a host environment or for
    variables that describe no job consistently; TrainingError when joining fails.
    """
    job = job_for(cfg.get("distributed", AUTO))
    if job is None:
        return cfg, True
    from pgrun.envs import backends, resolve_backend

    backend = resolve_backend(cfg.env.id, cfg.env.backend)
    if not backends()[backend].in_jit:
        raise ConfigError(host_refusal(f"{cfg.env.id} ({backend})", job.describe()))
    _initialize(job)
    if job.process_id == 0:
        return cfg, True
    from omegaconf import OmegaConf

    return OmegaConf.merge(cfg, {"quiet": True}), False


def _initialize(job: Job) -> None:
    """``jax.distributed.initialize`` for ``job``, once per process (later runs in it reuse the job)."""
    import jax

    from pgrun.parallel import backend_started

    if jax.distributed.is_initialized():
        if jax.process_count() != job.processes or jax.process_index() != job.process_id:
            raise ConfigError(f"this process already belongs to a job of {jax.process_count()} processes, as "
                              f"process {jax.process_index()}, not to the job of {job.describe()}")
        return
    if backend_started():
        raise ConfigError(f"{job.describe()}: JAX already runs in this process, and a process joins a multi-process "
                          "job before JAX starts: train in a fresh process, or set distributed=off")
    try:
        if job.coordinator is None:
            jax.distributed.initialize()  # Slurm: JAX reads the step's nodes and this task's rank
        else:
            jax.distributed.initialize(job.coordinator, job.processes, job.process_id)
    except Exception as err:  # noqa: BLE001 - XlaRuntimeError's module moved between jaxlib releases
        where = job.coordinator or "the Slurm step's first node"
        raise TrainingError(f"{job.describe()} could not join the job at {where}: {first_line(err)}") from None


def agreed_stop(received: list[int]) -> int:
    """The signal that asks the run to stop at this block boundary (0: none): the first this process
    received, or in a multi-process job the largest any process received, so all stop together
    (a collective: every process calls it after every block)."""
    import jax

    own = received[0] if received else 0
    if not jax.distributed.is_initialized() or jax.process_count() == 1:
        return own
    import numpy as np
    from jax.experimental import multihost_utils

    return int(np.max(multihost_utils.process_allgather(np.asarray(own, np.int32))))
