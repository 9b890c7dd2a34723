"""The ``pgrun`` command: Hydra parses and composes, :mod:`pgrun.run` trains.

Errors are mapped to the contract: bad input (Hydra composition errors,
OmegaConf type errors, our own :class:`ConfigError`) prints one line and exits
2, leaving no run directory behind; a failure during training exits 1.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any, NoReturn

EXIT_BAD_INPUT = 2
EXIT_TRAINING_FAILED = 1


def _fail(message: str, code: int) -> NoReturn:
    print(f"pgrun: error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def _first_line(text: str) -> str:
    return next((line.strip() for line in str(text).splitlines() if line.strip()), "")


def _describe_hydra_error(err: BaseException) -> str:
    """One line for a Hydra/OmegaConf composition error, naming the fix."""
    from pgrun.config import ALGOS, close_matches, gymnasium_ids

    text = str(err)
    missing = re.search(r"Could not find '(algo|env)/([^']+)'", text)
    if missing:
        group, name = missing.groups()
        if group == "env":
            return (f"unknown environment '{name}'{close_matches(name, gymnasium_ids())}: "
                    f"pass a registered Gymnasium id, e.g. env=CartPole-v1")
        return f"unknown algorithm '{name}'{close_matches(name, list(ALGOS))}: choose one of {', '.join(ALGOS)}"
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


# Errors of jobs, recorded by the task so Hydra neither prints its own report
# nor stops a sweep; main() reports them once Hydra returns.
_job_errors: list[tuple[str, int]] = []


def _run_job(cfg: Any, run_dir: Path, resume: bool = False) -> Any:
    """Train one job, recording its error (if any) for :func:`main` to report."""
    from pgrun.config import ConfigError
    from pgrun.run import TrainingInterrupted, run_training
    from pgrun.train import TrainingError

    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)  # backend probing is noise
    try:
        summary = run_training(cfg, run_dir, resume=resume)
    except ConfigError as err:
        if not resume:
            _remove_run_dir(run_dir)
        _job_errors.append((str(err), EXIT_BAD_INPUT))
        return None
    except TrainingError as err:
        _job_errors.append((f"training failed: {err}", EXIT_TRAINING_FAILED))
        return None
    except TrainingInterrupted as err:
        _job_errors.append((str(err), 128 + err.signum))
        return None
    return summary["final_return_mean"]


def _task(cfg: Any) -> Any:
    from hydra.core.hydra_config import HydraConfig

    return _run_job(cfg, Path(HydraConfig.get().runtime.output_dir))


RESUMABLE_OVERRIDES = ("quiet",)


def _resume(args: list[str]) -> None:
    """``pgrun resume=RUN_DIR [quiet=...]``: continue a run from its latest checkpoint,
    in its own directory and with its own saved config."""
    from omegaconf import OmegaConf

    from pgrun import checkpoint

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
    for override in others:
        key, value = override.lstrip("+~").split("=", 1)
        OmegaConf.update(cfg, key, OmegaConf.create({"v": value}).v if value else value)
    _run_job(cfg, run_dir, resume=True)


def main() -> None:
    """Entry point of ``pgrun``."""
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let errors reach us instead of Hydra's multi-line report
    import hydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from pgrun.config import ConfigError, register_configs
    from pgrun.paths import conf_dir

    register_configs()
    hydra_main = hydra.main(version_base=None, config_path=str(conf_dir()), config_name="config")(_task)
    try:
        if any(a.startswith("resume=") for a in sys.argv[1:]):
            _resume(sys.argv[1:])
        else:
            hydra_main()
    except ConfigError as err:
        _fail(str(err), EXIT_BAD_INPUT)
    except (HydraException, OmegaConfBaseException) as err:
        _fail(_describe_hydra_error(err), EXIT_BAD_INPUT)
    except OSError as err:
        where = err.filename or "the run directory"
        _fail(f"cannot write {where} ({err.strerror or err}): run from a writable directory or choose one "
              f"with hydra.run.dir=...", EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    if _job_errors:
        for message, _ in _job_errors[:-1]:
            print(f"pgrun: error: {message}", file=sys.stderr)
        _fail(_job_errors[-1][0], max(code for _, code in _job_errors))
