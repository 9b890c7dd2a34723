"""The ``pgrun`` command: Hydra parses and composes, :mod:`pgrun.run` trains.

Errors are mapped to the contract: bad input (Hydra composition errors,
OmegaConf type errors, our own :class:`ConfigError`) prints one line and exits
2, leaving no run directory behind; a failure during training exits 1.

In a multirun the jobs may run in other processes or on other machines, so
each records how it ended in the sweep's ledger (:mod:`pgrun.sweeps`); once
every job has run, one line per failed job goes to stderr and the exit code
is the worst of theirs, while the other jobs keep their results.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

# Imported here, not lazily: it registers the resolver that names job directories,
# which every process that runs a job (joblib workers, Slurm or Ray jobs) needs.
from pgrun import sweeps

EXIT_BAD_INPUT = 2
EXIT_TRAINING_FAILED = 1


def _fail(message: str, code: int) -> NoReturn:
    print(f"pgrun: error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def _first_line(text: str) -> str:
    return next((line.strip() for line in str(text).splitlines() if line.strip()), "")


# Hydra plugins behind launcher and sweeper names, and the extra that installs each.
PLUGIN_EXTRAS = {"joblib": "sweep", "submitit_local": "slurm", "submitit_slurm": "slurm", "ray": "ray",
                 "ray_aws": "ray", "optuna": "optuna"}


def _describe_hydra_error(err: BaseException) -> str:
    """One line for a Hydra/OmegaConf composition error, naming the fix."""
    from pgrun.algos import algorithm_names
    from pgrun.envs import gymnasium_ids
    from pgrun.names import close_matches

    ALGOS = algorithm_names()

    text = str(err)
    missing = re.search(r"Could not find '(algo|env)/([^']+)'", text)
    if missing:
        group, name = missing.groups()
        if group == "env":
            return (f"unknown environment '{name}'{close_matches(name, gymnasium_ids())}: "
                    f"pass a registered Gymnasium id, e.g. env=CartPole-v1")
        return f"unknown algorithm '{name}'{close_matches(name, list(ALGOS))}: choose one of {', '.join(ALGOS)}"
    plugin = re.search(r"Could not find '(hydra/(?:launcher|sweeper))/([^']+)'", text)
    if plugin:
        group, name = plugin.groups()
        if name in PLUGIN_EXTRAS:
            return f"{group}={name} needs a plugin that is not installed: pip install 'pgrun[{PLUGIN_EXTRAS[name]}]'"
        listed = re.search(rf"Available options in '{group}':\n((?:\t.*\n?)*)", text)
        options = listed.group(1).split() if listed else []
        return (f"unknown {group} '{name}'{close_matches(name, options)}: "
                f"choose one of {', '.join(options) or 'the installed ones'}")
    cause = err.__cause__
    unknown_key = re.search(r"Could not override '([^']+)'", text)
    if unknown_key and cause is not None and "not in" in str(cause):
        key = unknown_key.group(1)
        return f"unknown config key '{key}': check the spelling (pgrun --cfg job lists every key)"
    merging = re.search(r"Error merging override (\S+)", text)
    if merging and cause is not None:
        return f"bad value in {merging.group(1)}: {_first_line(cause)}"
    head = _first_line(text) or "invalid configuration"
    detail = _first_line(cause) if cause is not None else ""
    return head + (f" ({detail})" if detail and detail not in text else "")


def _remove_run_dir(run_dir: Path) -> None:
    """Bad input must leave nothing behind: drop the directory Hydra just created."""
    if run_dir.is_dir() and not (run_dir / "checkpoints").exists():
        shutil.rmtree(run_dir, ignore_errors=True)


# Errors of a single run (or resume), recorded by the task so Hydra neither
# prints its own report nor stops; main() reports them once Hydra returns.
# The jobs of a multirun record theirs in the sweep's ledger instead.
_job_errors: list[tuple[str, int]] = []


@dataclass
class JobResult:
    """How one job ended, before it is reported (single run) or recorded (sweep)."""

    status: str  # completed | failed | invalid | interrupted
    exit_code: int
    error: str = ""
    final_return_mean: float | None = None


def _run_job(cfg: Any, run_dir: Path, resume: bool = False, launcher: Any = None,
             keep_invalid: bool = False) -> JobResult:
    """Train one job and say how it ended.

    The job's XLA thread count is set first, before anything can start JAX's
    CPU backend. Bad input removes the run directory, unless ``keep_invalid``
    (a sweep's job), which keeps it with a ``summary.json`` saying why, so
    reports over the sweep list the job.
    """
    from pgrun import parallel

    warning = parallel.limit_threads(parallel.threads_for_job(cfg.xla_cpu_threads, launcher))
    if warning:
        print(f"pgrun: warning: {warning}", file=sys.stderr, flush=True)

    from pgrun.errors import ConfigError, TrainingError, TrainingInterrupted
    from pgrun.run import run_training

    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)  # backend probing is noise
    try:
        summary = run_training(cfg, run_dir, resume=resume)
    except ConfigError as err:
        if keep_invalid and not resume:
            _write_invalid_summary(run_dir, str(err))
        elif not resume:
            _remove_run_dir(run_dir)
        return JobResult("invalid", EXIT_BAD_INPUT, str(err))
    except TrainingError as err:
        return JobResult("failed", EXIT_TRAINING_FAILED, f"training failed: {err}")
    except TrainingInterrupted as err:
        return JobResult("interrupted", 128 + err.signum, str(err))
    return JobResult("completed", 0, final_return_mean=summary.get("final_return_mean"))


def _write_invalid_summary(run_dir: Path, error: str) -> None:
    from pgrun.run_folder import RunFolder

    if run_dir.is_dir():
        RunFolder(run_dir).write_summary({"status": "invalid", "error": error})


def _objective(result: JobResult) -> float:
    """What the task returns to a sweeper: the final return, NaN when there is none.

    Optuna records a NaN objective as a failed trial and carries on; any value
    that is not a float would stop the whole study.
    """
    value = result.final_return_mean
    return math.nan if value is None else float(value)


def _task(cfg: Any) -> float:
    """Hydra's task: one job of a run or a sweep; returns the objective for sweepers."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from pgrun import parallel

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    if hydra_cfg.mode != RunMode.MULTIRUN:
        result = _run_job(cfg, run_dir, launcher=hydra_cfg.launcher)
        if result.status != "completed":
            _job_errors.append((result.error, result.exit_code))
        return _objective(result)

    result = _run_job(cfg, run_dir, launcher=hydra_cfg.launcher, keep_invalid=True)
    overrides = [str(o) for o in hydra_cfg.overrides.task]
    sweeps.record(Path(hydra_cfg.sweep.dir), sweeps.Outcome(
        job=int(hydra_cfg.job.num), overrides=overrides, status=result.status, exit_code=result.exit_code,
        error=result.error, final_return_mean=result.final_return_mean, run_dir=str(run_dir),
        xla_cpu_threads=parallel.effective_threads(), pid=os.getpid()))
    if result.status == "interrupted" and sweeps.current_sweep_dir() is not None:
        # This job ran in the launching process: the signal was meant for the whole sweep.
        raise KeyboardInterrupt
    return _objective(result)


RESUMABLE_OVERRIDES = ("quiet",)


def _resume(args: list[str]) -> None:
    """``pgrun resume=RUN_DIR [quiet=...]``: continue a run from its latest checkpoint,
    in its own directory and with its own saved config."""
    from omegaconf import OmegaConf

    from pgrun import checkpoint
    from pgrun.config import ConfigError, check_saved_config

    target = next(a for a in args if a.startswith("resume="))
    run_dir = Path(target.split("=", 1)[1]).expanduser()
    others = [a for a in args if a is not target]
    unexpected = [a for a in others if a.split("=", 1)[0].lstrip("+~") not in RESUMABLE_OVERRIDES]
    if unexpected:
        _fail(f"resume= continues a run with its saved config, so {' '.join(unexpected)} cannot be changed: "
              f"drop it, or start a new run", EXIT_BAD_INPUT)
    config_path = run_dir / ".hydra" / "config.yaml"
    latest = run_dir / checkpoint.DIRECTORY / checkpoint.LATEST
    if not run_dir.is_dir():
        _fail(f"resume={run_dir}: no such directory: pass the run directory of the run to continue", EXIT_BAD_INPUT)
    if not config_path.exists():
        _fail(f"resume={run_dir} is not a pgrun run directory (no .hydra/config.yaml): "
              f"pass the directory a pgrun run wrote", EXIT_BAD_INPUT)
    if not latest.exists():
        _fail(f"resume={run_dir} has no checkpoint to continue from ({latest} is missing): start a new run",
              EXIT_BAD_INPUT)
    summary_path = run_dir / "summary.json"
    if summary_path.exists() and json.loads(summary_path.read_text()).get("status") == "completed":
        _fail(f"resume={run_dir}: that run already completed; start a new run to train longer", EXIT_BAD_INPUT)
    cfg = OmegaConf.load(config_path)
    try:
        check_saved_config(cfg, run_dir)
    except ConfigError as err:
        _fail(str(err), EXIT_BAD_INPUT)
    for override in others:
        key, value = override.lstrip("+~").split("=", 1)
        OmegaConf.update(cfg, key, OmegaConf.create({"v": value}).v if value else value)
    result = _run_job(cfg, run_dir, resume=True)
    if result.status != "completed":
        _job_errors.append((result.error, result.exit_code))


def _report_sweep(sweep_dir: Path) -> int:
    """One line per job that did not complete (stderr), one closing line; returns the worst exit code."""
    outcomes = sweeps.read(sweep_dir)
    failed = [o for o in outcomes if o.status != "completed"]
    for outcome in failed:
        print(f"pgrun: error: {outcome.label}: {outcome.error or outcome.status}", file=sys.stderr)
    done = len(outcomes) - len(failed)
    closing = (f"pgrun: {done} of {len(outcomes)} jobs completed; results in {sweep_dir} "
               f"(compare them with: pgrun-report {sweep_dir})")
    print(closing, file=sys.stderr if failed else sys.stdout, flush=True)
    return max((o.exit_code for o in failed), default=0)


def main() -> None:
    """Entry point of ``pgrun``."""
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let errors reach us instead of Hydra's multi-line report
    import hydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from pgrun.config import ConfigError, register_configs
    from pgrun.paths import conf_dir

    def fail(message: str, code: int) -> NoReturn:
        """Stop with one line; a sweep's finished jobs are reported first, none hidden."""
        sweep_dir = sweeps.current_sweep_dir()
        if sweep_dir is not None and sweeps.read(sweep_dir):
            code = max(code, _report_sweep(sweep_dir))
        elif sweep_dir is not None and code == EXIT_BAD_INPUT:
            sweeps.remove_if_unused(sweep_dir)  # refused before any job ran: leave nothing behind
        _fail(message, code)

    register_configs()
    hydra_main = hydra.main(version_base=None, config_path=str(conf_dir()), config_name="config")(_task)
    try:
        if any(a.startswith("resume=") for a in sys.argv[1:]):
            _resume(sys.argv[1:])
        else:
            hydra_main()
    except ConfigError as err:
        fail(str(err), EXIT_BAD_INPUT)
    except (HydraException, OmegaConfBaseException) as err:
        fail(_describe_hydra_error(err), EXIT_BAD_INPUT)
    except OSError as err:
        where = err.filename or "the run directory"
        option = "hydra.sweep.dir" if sweeps.current_sweep_dir() is not None else "hydra.run.dir"
        fail(f"cannot write {where} ({err.strerror or err}): run from a writable directory or choose one "
             f"with {option}=...", EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except Exception as err:  # noqa: BLE001 - a launcher or sweeper gave up: say so after the jobs' results
        sweep_dir = sweeps.current_sweep_dir()
        if sweep_dir is None or not sweep_dir.is_dir():
            raise
        log = sweep_dir / "sweep_error.txt"
        log.write_text("".join(traceback.format_exception(err)))
        fail(f"the sweep stopped: {type(err).__name__}: {_first_line(err)} (traceback in {log})",
             EXIT_TRAINING_FAILED)
    sweep_dir = sweeps.current_sweep_dir()
    if sweep_dir is not None:
        code = _report_sweep(sweep_dir)
        if code:
            sys.exit(code)
    elif _job_errors:
        for message, _ in _job_errors[:-1]:
            print(f"pgrun: error: {message}", file=sys.stderr)
        _fail(_job_errors[-1][0], max(code for _, code in _job_errors))
