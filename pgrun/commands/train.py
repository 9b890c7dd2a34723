"""``pgrun``: Hydra parses and composes, :mod:`pgrun.run` trains.

Errors are mapped to the contract: bad input (Hydra composition errors,
OmegaConf type errors, our own :class:`~pgrun.errors.ConfigError`) prints one
line and exits 2, leaving no run directory behind; a failure during training
exits 1.

In a multi-process job (:mod:`pgrun.distributed`) every process runs this
command and only process 0 writes: the others ask Hydra for none of its files,
record nothing in a sweep's ledger and remove nothing on bad input.

In a multirun the jobs may run in other processes or on other machines, so
each records how it ended in the sweep's ledger (:mod:`pgrun.sweeps`); once
every job has run, one line per failed job goes to stderr and the exit code
is the worst of theirs, while the other jobs keep their results.

``pgrun --help`` (or ``-h``) prints pgrun's own page (:mod:`pgrun.commands.help`)
instead of Hydra's; ``--hydra-help`` still reaches Hydra.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

# Imported here, not lazily: it registers the resolver that names job directories, which
# every process that runs a job needs. Hydra's launchers send the task (_task, below) to
# joblib workers, Slurm or Ray jobs by reference to this module, so importing it is enough.
from pgrun import distributed, sweeps
from pgrun.commands import fail
from pgrun.errors import (EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_TRAINING_FAILED, ConfigError, TrainingError,
                          TrainingInterrupted, first_line)

PROG = "pgrun"

# Hydra plugins behind launcher and sweeper names, and the extra that installs each.
PLUGIN_EXTRAS = {"joblib": "sweep", "submitit_local": "slurm", "submitit_slurm": "slurm", "ray": "ray",
                 "ray_aws": "ray", "optuna": "optuna"}
# What `resume=RUN_DIR` may change: everything else comes from the run's saved config.
RESUMABLE_OVERRIDES = ("quiet", "devices", "distributed")
# What the processes of a multi-process job other than the first tell Hydra: write none of its files.
SILENT_HYDRA = ("hydra.output_subdir=null", "hydra/job_logging=none")


# ---------------------------------------------------------------- errors in one line


def _unknown_choice(text: str) -> str | None:
    """The line for an unknown algorithm, environment, launcher or sweeper; None for other errors."""
    from pgrun.algos import algorithm_names
    from pgrun.envs import gymnasium_ids
    from pgrun.names import close_matches

    missing = re.search(r"Could not find '(algo|env)/([^']+)'", text)
    if missing:
        group, name = missing.groups()
        if group == "env":
            return (f"unknown environment '{name}'{close_matches(name, gymnasium_ids())}: "
                    f"pass a registered Gymnasium id, e.g. env=CartPole-v1")
        algos = algorithm_names()
        return f"unknown algorithm '{name}'{close_matches(name, algos)}: choose one of {', '.join(algos)}"
    plugin = re.search(r"Could not find '(hydra/(?:launcher|sweeper))/([^']+)'", text)
    if plugin:
        group, name = plugin.groups()
        if name in PLUGIN_EXTRAS:
            return f"{group}={name} needs a plugin that is not installed: pip install 'pgrun[{PLUGIN_EXTRAS[name]}]'"
        listed = re.search(rf"Available options in '{group}':\n((?:\t.*\n?)*)", text)
        options = listed.group(1).split() if listed else []
        return (f"unknown {group} '{name}'{close_matches(name, options)}: "
                f"choose one of {', '.join(options) or 'the installed ones'}")
    return None


# What a value of each declared type looks like, for errors about values of the wrong type.
TYPE_WORDS = {"int": "a whole number, e.g. {key}=8 (1e5 is read as 100000)", "float": "a number, e.g. {key}=3e-4",
              "bool": "true or false", "list": "a list, e.g. {key}=[64,64]", "str": "a word, e.g. {key}=value"}


def _unknown_key(key: str) -> str:
    """An unknown key, with the known keys it is close to."""
    from pgrun.config import config_keys
    from pgrun.names import close_matches

    return (f"unknown config key '{key}'{close_matches(key, list(config_keys()))}: check the spelling "
            f"(pgrun --cfg job lists every key)")


def _bad_value(override: str, detail: str) -> str:
    """A value the key's type cannot hold, in plain words: what the key takes."""
    from pgrun.config import config_keys

    key = override.split("=", 1)[0].lstrip("+~")
    kind = config_keys().get(key)
    if kind in TYPE_WORDS:
        return f"{override}: {key} takes {TYPE_WORDS[kind].format(key=key)}"
    return f"bad value in {override}: {detail}"


def describe_hydra_error(err: BaseException) -> str:
    """One line for a Hydra/OmegaConf composition error, naming the fix."""
    text = str(err)
    choice = _unknown_choice(text)
    if choice is not None:
        return choice
    cause = err.__cause__
    unknown_key = re.search(r"Could not override '([^']+)'", text)
    if unknown_key and cause is not None and "not in" in str(cause):
        return _unknown_key(unknown_key.group(1))
    merging = re.search(r"Error merging override (\S+)", text)
    if merging and cause is not None:
        return _bad_value(merging.group(1), first_line(cause))
    head = first_line(text) or "invalid configuration"
    detail = first_line(cause) if cause is not None else ""
    return head + (f" ({detail})" if detail and detail not in text else "")


def describe_failure(err: BaseException) -> tuple[str, int]:
    """``(one line, exit code)`` for what stopped the command; re-raises what it cannot explain."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(err, ConfigError):
        return str(err), EXIT_BAD_INPUT
    if isinstance(err, (HydraException, OmegaConfBaseException)):
        return describe_hydra_error(err), EXIT_BAD_INPUT
    if isinstance(err, OSError):
        where = err.filename or "the run directory"
        option = "hydra.sweep.dir" if sweeps.current_sweep_dir() is not None else "hydra.run.dir"
        return (f"cannot write {where} ({err.strerror or err}): run from a writable directory or choose one "
                f"with {option}=..."), EXIT_BAD_INPUT
    if isinstance(err, KeyboardInterrupt):
        return "interrupted", EXIT_INTERRUPTED
    sweep_dir = sweeps.current_sweep_dir()
    if sweep_dir is None or not sweep_dir.is_dir():
        raise err
    # A launcher or sweeper gave up: say so after the jobs' results.
    log = sweep_dir / "sweep_error.txt"
    log.write_text("".join(traceback.format_exception(err)))
    return (f"the sweep stopped: {type(err).__name__}: {first_line(err)} (traceback in {log})",
            EXIT_TRAINING_FAILED)


# ---------------------------------------------------------------- one job


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


def _remove_run_dir(run_dir: Path) -> None:
    """Bad input must leave nothing behind: drop the directory Hydra just created."""
    from pgrun.run_folder import RunFolder

    if run_dir.is_dir() and not RunFolder(run_dir).has_checkpoint():
        shutil.rmtree(run_dir, ignore_errors=True)


def _write_invalid_summary(run_dir: Path, error: str) -> None:
    from pgrun.run_folder import RunFolder

    if run_dir.is_dir():
        RunFolder(run_dir).write_summary({"status": "invalid", "error": error})


def _run_job(cfg: Any, run_dir: Path, resume: bool = False, launcher: Any = None,
             keep_invalid: bool = False) -> JobResult:
    """Train one job and say how it ended.

    The job's XLA thread count is set first, before anything can start JAX's
    CPU backend. Bad input removes the run directory, unless ``keep_invalid``
    (a sweep's job), which keeps it with a ``summary.json`` saying why, so
    reports over the sweep list the job. A process of a multi-process job
    other than the first leaves the run directory to process 0, removing
    only the empty one Hydra made for it.
    """
    from pgrun import parallel

    warning = parallel.limit_threads(parallel.threads_for_job(cfg.xla_cpu_threads, launcher))
    if warning:
        print(f"{PROG}: warning: {warning}", file=sys.stderr, flush=True)

    from pgrun.commands import quiet_backend_probing
    from pgrun.run import run_training

    quiet_backend_probing()
    writes = _writes_run_dir(cfg)
    try:
        summary = run_training(cfg, run_dir, resume=resume)
    except ConfigError as err:
        if keep_invalid and not resume and writes:
            _write_invalid_summary(run_dir, str(err))
        elif not resume and writes:
            _remove_run_dir(run_dir)
        return JobResult("invalid", EXIT_BAD_INPUT, str(err))
    except TrainingError as err:
        return JobResult("failed", EXIT_TRAINING_FAILED, f"training failed: {err}")
    except TrainingInterrupted as err:
        return JobResult("interrupted", 128 + err.signum, str(err))
    finally:
        if not writes and run_dir.is_dir() and not any(run_dir.iterdir()):
            run_dir.rmdir()  # the one Hydra made for this process, when process 0 writes another
    return JobResult("completed", 0, final_return_mean=summary.get("final_return_mean"))


def _writes_run_dir(cfg: Any) -> bool:
    """Whether this process writes the run directory: all but process 0 of a multi-process job do not."""
    return distributed.environment_rank(cfg.get("distributed", distributed.AUTO)) == 0


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
    if not _writes_run_dir(cfg):
        return _objective(result)  # process 0 of the job records it
    overrides = [str(o) for o in hydra_cfg.overrides.task]
    sweeps.record(Path(hydra_cfg.sweep.dir), sweeps.Outcome(
        job=int(hydra_cfg.job.num), overrides=overrides, status=result.status, exit_code=result.exit_code,
        error=result.error, final_return_mean=result.final_return_mean, run_dir=str(run_dir),
        xla_cpu_threads=parallel.effective_threads(), pid=os.getpid()))
    if result.status == "interrupted" and sweeps.current_sweep_dir() is not None:
        # This job ran in the launching process: the signal was meant for the whole sweep.
        raise KeyboardInterrupt
    return _objective(result)


# ---------------------------------------------------------------- resume=RUN_DIR


def _resumable_config(run_dir: Path, others: list[str]) -> Any:
    """The saved config of a run that ``resume=`` may continue; :class:`ConfigError` saying why not."""
    from pgrun.config import check_saved_config
    from pgrun.run_folder import CONFIG, RunFolder

    unexpected = [a for a in others if a.split("=", 1)[0].lstrip("+~") not in RESUMABLE_OVERRIDES]
    if unexpected:
        raise ConfigError(f"resume= continues a run with its saved config, so {' '.join(unexpected)} cannot be "
                          f"changed: drop it, or start a new run")
    folder = RunFolder(run_dir)
    latest = folder.checkpoint("latest")
    if not run_dir.is_dir():
        raise ConfigError(f"resume={run_dir}: no such directory: pass the run directory of the run to continue")
    if not folder.config_path.exists():
        raise ConfigError(f"resume={run_dir} is not a pgrun run directory (no {CONFIG.as_posix()}): "
                          f"pass the directory a pgrun run wrote")
    if not latest.exists():
        raise ConfigError(f"resume={run_dir} has no checkpoint to continue from ({latest} is missing): "
                          f"start a new run")
    if (folder.read_summary() or {}).get("status") == "completed":
        raise ConfigError(f"resume={run_dir}: that run already completed; start a new run to train longer")
    cfg = folder.load_config()
    check_saved_config(cfg, run_dir)
    return cfg


def _resume(args: list[str]) -> None:
    """``pgrun resume=RUN_DIR [quiet=...]``: continue a run from its latest checkpoint,
    in its own directory and with its own saved config."""
    from omegaconf import OmegaConf

    target = next(a for a in args if a.startswith("resume="))
    run_dir = Path(target.split("=", 1)[1]).expanduser()
    others = [a for a in args if a is not target]
    cfg = _resumable_config(run_dir, others)
    for override in others:
        key, value = override.lstrip("+~").split("=", 1)
        OmegaConf.update(cfg, key, OmegaConf.create({"v": value}).v if value else value)
    result = _run_job(cfg, run_dir, resume=True)
    if result.status != "completed":
        _job_errors.append((result.error, result.exit_code))


# ---------------------------------------------------------------- the command


def _report_sweep(sweep_dir: Path) -> int:
    """One line per job that did not complete (stderr), one closing line; returns the worst exit code."""
    outcomes = sweeps.read(sweep_dir)
    failed = [o for o in outcomes if o.status != "completed"]
    for outcome in failed:
        print(f"{PROG}: error: {outcome.label}: {outcome.error or outcome.status}", file=sys.stderr)
    done = len(outcomes) - len(failed)
    closing = (f"{PROG}: {done} of {len(outcomes)} jobs completed; results in {sweep_dir} "
               f"(compare them with: pgrun-report {sweep_dir})")
    print(closing, file=sys.stderr if failed else sys.stdout, flush=True)
    return max((o.exit_code for o in failed), default=0)


def _stop(message: str, code: int) -> NoReturn:
    """Stop with one line; a sweep's finished jobs are reported first, none hidden."""
    sweep_dir = sweeps.current_sweep_dir()
    if sweep_dir is not None and sweeps.read(sweep_dir):
        code = max(code, _report_sweep(sweep_dir))
    elif sweep_dir is not None and code == EXIT_BAD_INPUT:
        sweeps.remove_if_unused(sweep_dir)  # refused before any job ran: leave nothing behind
    fail(PROG, message, code)


def wants_help(args: list[str]) -> bool:
    """``--help`` or ``-h`` anywhere (Hydra's own ``--hydra-help`` is left to Hydra)."""
    return any(a in ("--help", "-h") for a in args)


def _dispatch(args: list[str]) -> None:
    """pgrun's help page, a resumed run, or Hydra's run/multirun of :func:`_task`."""
    from pgrun.config import whole_numbers_as_integers

    args = sys.argv[1:] = whole_numbers_as_integers(args)  # Hydra reads sys.argv itself
    if wants_help(args):
        from pgrun.commands.help import help_page

        print(help_page(args), end="", flush=True)
        return
    import hydra

    from pgrun.config import register_configs
    from pgrun.paths import conf_dir

    register_configs()
    if any(a.startswith("resume=") for a in args):
        _resume(args)
        return
    setting = next((a.split("=", 1)[1] for a in args if a.lstrip("+").startswith("distributed=")), distributed.AUTO)
    if distributed.environment_rank(setting):
        sys.argv += [o for o in SILENT_HYDRA if o.split("=")[0] not in {a.split("=")[0] for a in args}]
    hydra.main(version_base=None, config_path=str(conf_dir()), config_name="config")(_task)()


def _exit_with_outcome() -> None:
    """After Hydra returns: the sweep's summary, or the errors of a single run, and the exit code."""
    sweep_dir = sweeps.current_sweep_dir()
    if sweep_dir is not None:
        code = _report_sweep(sweep_dir)
        if code:
            sys.exit(code)
    elif _job_errors:
        for message, _ in _job_errors[:-1]:
            print(f"{PROG}: error: {message}", file=sys.stderr)
        fail(PROG, _job_errors[-1][0], max(code for _, code in _job_errors))


def main() -> None:
    """Entry point of ``pgrun``."""
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let errors reach us instead of Hydra's multi-line report
    try:
        _dispatch(sys.argv[1:])
    except (Exception, KeyboardInterrupt) as err:  # noqa: BLE001 - describe_failure re-raises the unexplained
        _stop(*describe_failure(err))
    _exit_with_outcome()


if __name__ == "__main__":
    main()
