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
``hydra.sweep.subdir``) through :func:`job_dirname`, which keeps only the
overrides the sweep varies, and Optuna's 17-digit samples and long override
lists within file-name limits. A job's config does not say which of its
overrides were swept, so :class:`SweepLedger` also writes the swept keys to
``<sweep dir>/.swept_keys.json``, where every job can read them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock
from hydra.experimental.callback import Callback
from omegaconf import OmegaConf

LEDGER_NAME = "jobs.jsonl"
SWEPT_KEYS_NAME = ".swept_keys.json"
DIRNAME_LIMIT = 160  # bytes; file systems allow 255, TensorBoard's run list far fewer
_LONG_FLOAT = re.compile(r"(?<==)-?\d*\.\d{5,}(?:[eE][-+]?\d+)?(?=,|$)")
# Where one override ends in Hydra's override_dirname: a comma before the next `key=`
# (a comma inside a value, as in algo.hidden_sizes=[64,64], is followed by no key).
_NEXT_OVERRIDE = re.compile(r",(?=[+~]*[A-Za-z_][\w.@/]*=)")

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
    leftovers = {"multirun.yaml", LEDGER_NAME, f".{LEDGER_NAME}.lock", SWEPT_KEYS_NAME}
    if sweep_dir.is_dir() and all(p.name in leftovers and p.is_file() for p in sweep_dir.iterdir()):
        shutil.rmtree(sweep_dir, ignore_errors=True)


def swept_keys(config: Any) -> list[str]:
    """The keys a multirun sweeps over: command-line overrides with several values
    (``algo=ppo,trpo``, ``algo.lr=interval(1e-4,1e-2)``) and the sweeps among
    ``hydra.sweeper.params`` (Optuna's search space); a key given on the command
    line wins over the same key in the params."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    lines = [f"{key}={value}" for key, value in params.items()] + list(config.hydra.overrides.task)
    swept = {o.key_or_group: o.is_sweep_override() for o in OverridesParser.create().parse_overrides(lines)}
    return sorted(key for key, is_sweep in swept.items() if is_sweep)


def write_swept_keys(sweep_dir: Path, keys: list[str]) -> None:
    """Leave the swept keys where every job of the sweep can read them, on any machine."""
    path = Path(sweep_dir) / SWEPT_KEYS_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}")
    partial.write_text(json.dumps({"swept": keys}))
    os.replace(partial, path)


def read_swept_keys(sweep_dir: str | Path | None) -> set[str] | None:
    """The keys the sweep in ``sweep_dir`` varies; None when it did not record them."""
    try:
        return set(json.loads((Path(sweep_dir) / SWEPT_KEYS_NAME).read_text())["swept"])
    except (TypeError, OSError, ValueError, KeyError):
        return None


class SweepLedger(Callback):
    """Hydra callback: note the sweep directory; a reused one starts a new ledger, as its job dirs do.
    Also records which keys the sweep varies, for the job directories' names (:func:`job_dirname`)."""

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        global _sweep_dir
        _sweep_dir = Path(str(config.hydra.sweep.dir))
        path = _sweep_dir / LEDGER_NAME
        if path.exists():
            with _lock(path):
                path.unlink()
        try:  # creates the directory: a sweep refused before its jobs removes it (remove_if_unused)
            write_swept_keys(_sweep_dir, swept_keys(config))
        except Exception:  # unparsable params or an unwritable directory: jobs keep every override
            with contextlib.suppress(OSError):
                (_sweep_dir / SWEPT_KEYS_NAME).unlink(missing_ok=True)


def _override_key(item: str) -> str:
    """``algo.lr`` of ``algo.lr=3e-4`` (and of ``+algo.lr=3e-4``; ``db`` of ``db@pkg=x``)."""
    return item.split("=", 1)[0].lstrip("+~").split("@", 1)[0]


def swept_only(overrides: str, swept: set[str] | None) -> str:
    """Hydra's override_dirname (``algo.lr=0.001,seed=0``) without the overrides the sweep did
    not vary; all of it when ``swept`` is None (unknown)."""
    if swept is None or not overrides:
        return overrides
    return ",".join(item for item in _NEXT_OVERRIDE.split(overrides) if _override_key(item) in swept)


def job_dirname(name: str, overrides: str | None = None, sweep_dir: str | None = None,
                limit: int = DIRNAME_LIMIT) -> str:
    """A job directory's name, readable and short enough for any file system.

    ``name`` (``3-trpo-Pendulum-v1``) is followed by the job's ``overrides``
    (Hydra's override_dirname) that the sweep in ``sweep_dir`` varies, or by
    all of them when the sweep did not record which it varies. Values with many
    digits (``algo.lr=0.0006466422717414558``) keep four significant ones; a
    name still over ``limit`` bytes is cut and ends in ``...`` (the job number
    in front keeps names unique).
    """
    if overrides is not None:
        kept = swept_only(str(overrides), read_swept_keys(sweep_dir) if sweep_dir else None)
        name = f"{name}-{kept}" if kept else str(name)
    name = _LONG_FLOAT.sub(lambda m: f"{float(m.group(0)):.4g}", name)
    if len(name.encode()) <= limit:
        return name
    return name.encode()[:limit - 3].decode(errors="ignore") + "..."


OmegaConf.register_new_resolver("pgrun.dirname", job_dirname, replace=True)
