"""A sweep's jobs: what their directories are called and how each one ended.

Jobs may run in this process, in joblib's worker processes or on other
machines (Slurm, Ray), so an error kept in memory would be lost. Each job
instead appends one JSON line (job number, overrides, status, exit code,
error, final return) to ``<sweep dir>/jobs.jsonl`` under a file lock, and
``pgrun`` reads the file once Hydra returns to report the jobs that failed.

:class:`SweepLedger` is a Hydra callback (``hydra.callbacks`` in
``conf/config.yaml``): it runs in the launching process when a multirun
starts, notes the sweep directory and starts a fresh ledger there.

Job directories are named from the job's overrides (``conf/config.yaml``,
``hydra.sweep.subdir``) through :func:`job_dirname`, which keeps Optuna's
17-digit samples and long override lists within file-name limits.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock
from hydra.experimental.callback import Callback
from omegaconf import OmegaConf

LEDGER_NAME = "jobs.jsonl"
DIRNAME_LIMIT = 160  # bytes; file systems allow 255, TensorBoard's run list far fewer
_LONG_FLOAT = re.compile(r"(?<==)-?\d*\.\d{5,}(?:[eE][-+]?\d+)?(?=,|$)")

# Set in the process that launches a multirun (never in a job's worker process).
_sweep_dir: Path | None = None


@dataclass
class Outcome:
    """How one job ended."""

    job: int
    overrides: list[str]
    status: str  # completed | failed | invalid | interrupted
    exit_code: int  # what a single run would have exited with
    error: str = ""
    final_return_mean: float | None = None
    run_dir: str = ""
    xla_cpu_threads: int | None = None
    pid: int = 0

    @property
    def label(self) -> str:
        return f"job {self.job} ({' '.join(self.overrides) or 'no overrides'})"


def _lock(path: Path) -> FileLock:
    return FileLock(str(path.with_name(f".{path.name}.lock")), timeout=60)


def record(sweep_dir: Path, outcome: Outcome) -> None:
    """Append one job's outcome to the sweep's ledger (safe from many processes at once)."""
    path = Path(sweep_dir) / LEDGER_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(asdict(outcome), allow_nan=False, default=str)
    with _lock(path), path.open("a") as ledger:
        ledger.write(line + "\n")


def read(sweep_dir: Path) -> list[Outcome]:
    """Every outcome recorded in ``sweep_dir``, in job order; unreadable lines are skipped."""
    path = Path(sweep_dir) / LEDGER_NAME
    if not path.is_file():
        return []
    outcomes = []
    with _lock(path):
        lines = path.read_text().splitlines()
    for line in lines:
        try:
            outcomes.append(Outcome(**json.loads(line)))
        except (ValueError, TypeError):
            continue
    return sorted(outcomes, key=lambda o: o.job)


def current_sweep_dir() -> Path | None:
    """The sweep directory of the multirun this process launched, if it launched one."""
    return _sweep_dir


def remove_if_unused(sweep_dir: Path) -> None:
    """Remove a sweep directory no job wrote to (Hydra saves ``multirun.yaml`` before checking the jobs)."""
    leftovers = {"multirun.yaml", LEDGER_NAME, f".{LEDGER_NAME}.lock"}
    if sweep_dir.is_dir() and all(p.name in leftovers and p.is_file() for p in sweep_dir.iterdir()):
        shutil.rmtree(sweep_dir, ignore_errors=True)


class SweepLedger(Callback):
    """Hydra callback: note the sweep directory; a reused one starts a new ledger, as its job dirs do."""

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        global _sweep_dir
        _sweep_dir = Path(str(config.hydra.sweep.dir))
        path = _sweep_dir / LEDGER_NAME
        if path.exists():  # the directory itself is the launcher's to create, once the jobs are valid
            with _lock(path):
                path.unlink()


def job_dirname(name: str, limit: int = DIRNAME_LIMIT) -> str:
    """A job directory's name, readable and short enough for any file system.

    Values with many digits (``algo.lr=0.0006466422717414558``) keep four
    significant ones; a name still over ``limit`` bytes is cut and ends in
    ``...`` (the job number in front keeps names unique).
    """
    name = _LONG_FLOAT.sub(lambda m: f"{float(m.group(0)):.4g}", name)
    if len(name.encode()) <= limit:
        return name
    return name.encode()[:limit - 3].decode(errors="ignore") + "..."


OmegaConf.register_new_resolver("pgrun.dirname", job_dirname, replace=True)
