"""One training run in one run directory: train, log, checkpoint, summarise.

A run can be stopped at any block boundary: by a non-finite metric (exit 1,
``status: failed``, the last good checkpoint kept; in a vectorised sweep only
once every member has failed) or by SIGINT/SIGTERM
(a checkpoint of the current state, ``status: interrupted``). A run killed
outright continues from its latest checkpoint with ``resume=True``.
"""

from __future__ import annotations

import json
import math
import signal
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import jax
import numpy as np

from pgrun import checkpoint, provenance
from pgrun.config import ConfigError, point_name, validate, with_overrides
from pgrun.logger import BlockLogger, Progress, flat_hparams, member_dirs, point_dir, write_json_atomic
from pgrun.train import (Member, Setup, TrainingError, build, make_loop, non_finite_members, non_finite_message,
                         pop_evaluation)

COMPILE_CACHE_MAX_BYTES = 2**30


class TrainingInterrupted(RuntimeError):
    """SIGINT or SIGTERM stopped the run after saving a checkpoint."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


def enable_compile_cache(directory: str) -> None:
    """Let later runs with the same shapes skip XLA compilation (LRU-bounded to 1 GiB)."""
    if not directory:
        return
    jax.config.update("jax_compilation_cache_dir", str(Path(directory).expanduser()))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    jax.config.update("jax_compilation_cache_max_size", COMPILE_CACHE_MAX_BYTES)


@contextmanager
def stop_requests() -> Iterator[list[int]]:
    """Record SIGINT/SIGTERM instead of raising mid-block; the loop checks between blocks.

    Raising inside a compiled call could lose the state it returns (its input
    buffers are donated), so the signal only sets a flag.
    """
    received: list[int] = []
    handled = (signal.SIGINT, signal.SIGTERM)
    try:
        previous = {s: signal.signal(s, lambda signum, _frame: received.append(signum)) for s in handled}
    except ValueError:  # not the main thread: leave signals alone
        yield received
        return
    try:
        yield received
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def write_point_configs(cfg: Any, run_dir: Path, setup: Setup) -> None:
    """Give each point of a vectorised sweep a ``.hydra/`` of its own, as if it
    were a job of a multirun: its resolved config holds its own values, and its
    overrides name them, so reports and plots treat points like any other run."""
    from omegaconf import OmegaConf

    overrides_path = run_dir / ".hydra" / "overrides.yaml"
    base = [str(o) for o in OmegaConf.load(overrides_path)] if overrides_path.exists() else []
    base = [o for o in base if not o.lstrip("+~").startswith("sweep.vmap")]
    for point in setup.points:
        hydra_dir = point_dir(run_dir, point) / ".hydra"
        hydra_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(with_overrides(cfg, point), hydra_dir / "config.yaml")
        OmegaConf.save(OmegaConf.create(base + [f"{k}={v!r}" for k, v in point.items()]), hydra_dir / "overrides.yaml")


def member_label(member: Member) -> str:
    """``seed 3``, or ``algo.lr=0.001, seed 3`` in a vectorised sweep."""
    return f"{point_name(member.point)}, seed {member.seed}" if member.point else f"seed {member.seed}"


def run_training(cfg: Any, run_dir: Path, resume: bool = False) -> dict[str, Any]:
    """Train as ``cfg`` says, writing event files, checkpoints and ``summary.json``
    into ``run_dir``; with ``resume``, continue from ``run_dir``'s latest
    checkpoint. Returns the summary.

    In a vectorised sweep every point also gets a sub-folder with its own
    config, event files and ``summary.json``; a member whose training goes
    non-finite is reported failed while the others train on. Outside a
    sweep a non-finite member stops the run.
    """
    validate(cfg)
    enable_compile_cache(cfg.compile_cache_dir)
    setup = build(cfg)
    loop = make_loop(setup)
    vectorised = setup.points != [{}]
    members = setup.members
    label = f"{cfg.algo.name} {cfg.env.id}"
    steps_per_block = setup.block_len * setup.steps_per_iteration
    progress = Progress(label, setup.num_blocks * steps_per_block, cfg.quiet)
    checkpoints = run_dir / checkpoint.DIRECTORY
    seeds = [cfg.seed + i for i in range(cfg.num_seeds)]
    if not cfg.quiet:
        sweep = f" points={len(setup.points)}" if vectorised else ""
        print(f"[{label}] backend={setup.backend} seeds={seeds}{sweep} device={jax.devices()[0].platform} "
              f"iterations={setup.block_len * setup.num_blocks} run_dir={run_dir}", flush=True)

    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_dir / ("provenance-resume.json" if resume else "provenance.json"), provenance.collect())
    if vectorised:
        write_point_configs(cfg, run_dir, setup)
    start = time.perf_counter()
    runner = loop.start()
    compile_seconds = time.perf_counter() - start
    blocks_done, earlier_seconds = 0, 0.0
    last_return, last_length = [math.nan] * len(members), [math.nan] * len(members)
    last_eval = {"eval_return": [math.nan] * len(members), "eval_length": [math.nan] * len(members)}
    failures: dict[int, str] = {}  # member index -> why its training failed
    if resume:
        saved = checkpoint.read(checkpoints / checkpoint.LATEST)
        try:
            runner = loop.restore(runner, saved["state"])
        except (ValueError, KeyError) as err:
            raise ConfigError(f"resume={run_dir}: its checkpoint does not match the state this version of pgrun "
                              f"trains ({type(err).__name__}: {str(err).splitlines()[0][:120]}); it was written by "
                              "another version: start a new run") from None
        meta = saved["meta"]
        blocks_done, earlier_seconds = int(meta["blocks_done"]), float(meta["wall_seconds"])
        last_return, last_length = list(map(float, meta["last_return"])), list(map(float, meta["last_length"]))
        for name in ("eval_return", "eval_length"):  # absent from checkpoints of runs without evaluation
            last_eval[name] = list(map(float, meta.get(name, last_eval[name])))
        if "failures" in meta:
            failures = {int(i): why for i, why in json.loads(bytes(np.asarray(meta["failures"], np.uint8))).items()}
    # TensorBoard drops points a killed run logged after its latest checkpoint.
    logger = BlockLogger(member_dirs(run_dir, setup.points, seeds),
                         purge_step=blocks_done * steps_per_block + 1 if resume else None)
    logger.last_return, logger.last_length = last_return, last_length
    logger.eval_return, logger.eval_length = last_eval["eval_return"], last_eval["eval_length"]
    logger.stopped = failures  # the logger skips failed members from here on
    blocks_per_checkpoint = max(1, cfg.checkpoint.every // setup.block_len)

    def wall_seconds() -> float:
        return earlier_seconds + time.perf_counter() - start

    def save(name: str) -> None:
        logger.flush()  # every point up to this checkpoint is on disk before it exists
        meta = {"blocks_done": blocks_done, "wall_seconds": wall_seconds(),
                "last_return": logger.last_return, "last_length": logger.last_length,
                "eval_return": logger.eval_return, "eval_length": logger.eval_length,
                # as UTF-8 bytes: checkpoint metadata holds arrays only
                "failures": np.frombuffer(json.dumps({str(i): why for i, why in failures.items()}).encode(), np.uint8)}
        checkpoint.save(checkpoints, name, loop.checkpoint_state(runner), meta)

    def summarize(status: str, **extra: Any) -> dict[str, Any]:
        seconds = wall_seconds()
        env_steps = blocks_done * steps_per_block

        def summary_of(indices: list[int], status: str, **extra: Any) -> dict[str, Any]:
            returns = [None if math.isnan(logger.last_return[i]) or i in failures else float(logger.last_return[i])
                       for i in indices]
            finite = [r for r in returns if r is not None]
            evaluated = [None if math.isnan(logger.eval_return[i]) or i in failures else float(logger.eval_return[i])
                         for i in indices]
            evaluated_finite = [r for r in evaluated if r is not None]
            return {
                "status": status,
                "algo": cfg.algo.name,
                "env": cfg.env.id,
                "backend": setup.backend,
                "seeds": [members[i].seed for i in indices],
                "env_steps": env_steps,
                "iterations": blocks_done * setup.block_len,
                "wall_seconds": seconds,
                "compile_seconds": compile_seconds,
                "sps": env_steps * len(indices) / seconds,
                "sps_after_compile": env_steps * len(indices) / max(seconds - compile_seconds, 1e-9),
                "final_return_mean": float(np.mean(finite)) if finite else None,
                "final_return_std": sample_std(finite),
                "returns_per_seed": returns,
                # the last evaluation (eval.*): mean return of its episodes, per member
                "eval_returns_per_seed": evaluated,
                "eval_return_mean": float(np.mean(evaluated_finite)) if evaluated_finite else None,
                "resumed": resume,
                **extra,
            }

        summary = summary_of(list(range(len(members))), status, **extra)
        if vectorised:
            summary["points"] = []
            for point in setup.points:
                indices = [i for i, m in enumerate(members) if m.point == point]
                failed = [failures[i] for i in indices if i in failures]
                point_status = "failed" if len(failed) == len(indices) and status == "completed" else status
                point_extra = {"sweep_point": point, "shared_run": str(run_dir)}
                if failed:
                    point_extra["error"] = "; ".join(failed)
                # wall time is the shared run's; sps is this point's share of its throughput
                point_summary = summary_of(indices, point_status, **point_extra)
                write_json_atomic(point_dir(run_dir, point) / "summary.json", point_summary)
                summary["points"].append({"point": point, "dir": point_dir(run_dir, point).name,
                                          "status": point_status,
                                          "final_return_mean": point_summary["final_return_mean"],
                                          "final_return_std": point_summary["final_return_std"],
                                          "returns_per_seed": point_summary["returns_per_seed"],
                                          "eval_return_mean": point_summary["eval_return_mean"]})
            if failures:
                summary["failed_members"] = [{"member": member_label(members[i]), "error": why}
                                             for i, why in sorted(failures.items())]
        write_json_atomic(run_dir / "summary.json", summary)
        return summary

    if not resume:
        save(checkpoint.LATEST)  # a good state exists from the start
    try:
        with stop_requests() as stop:
            while blocks_done < setup.num_blocks:
                block_start = time.perf_counter()
                runner, metrics = loop.run_block(runner)
                seconds = time.perf_counter() - block_start
                evaluation = pop_evaluation(metrics)
                diverged = {i: found for i, found in non_finite_members(metrics, blocks_done * setup.block_len).items()
                            if i not in failures}
                if diverged and (not vectorised or len(failures) + len(diverged) == len(members)):
                    i, (iteration, what) = min(diverged.items(), key=lambda item: item[1][0])
                    raise TrainingError(non_finite_message(what, iteration, member_label(members[i])))
                for i, (iteration, what) in diverged.items():
                    failures[i] = non_finite_message(what, iteration, member_label(members[i]))
                    if not cfg.quiet:
                        print(f"[{label}] {failures[i]}; the other members train on", flush=True)
                blocks_done += 1
                env_steps = blocks_done * steps_per_block
                logger.log_block(metrics, env_steps, seconds, steps_per_block)
                if evaluation is not None:
                    logger.log_evaluation(evaluation.returns, evaluation.lengths, env_steps)
                progress.update(env_steps, logger.mean_return(),
                                steps_per_block * len(members) / max(seconds, 1e-9),
                                force=blocks_done == setup.num_blocks)
                if stop:
                    save(checkpoint.LATEST)
                    summarize("interrupted")
                    name = signal.Signals(stop[0]).name
                    raise TrainingInterrupted(f"{name} received: stopped at {env_steps:,d} env steps and saved "
                                              f"a checkpoint; continue with: pgrun resume={run_dir}", stop[0])
                if blocks_done % blocks_per_checkpoint == 0:
                    save(checkpoint.LATEST)
        point_configs = {point_name(p): with_overrides(cfg, p) if p else cfg for p in setup.points}
        logger.write_hparams([flat_hparams(point_configs[point_name(m.point)]) for m in members], setup.seeds)
    except TrainingError as err:
        # The state in memory is the bad one: the last good checkpoint on disk stays as it is.
        summarize("failed", error=str(err))
        raise
    finally:
        logger.close()
    save(checkpoint.LATEST)
    save(checkpoint.FINAL)
    summary = summarize("completed")
    if not cfg.quiet:
        report_done(label, summary, compile_seconds, len(seeds))
    if failures:
        first = failures[min(failures)]
        raise TrainingError(f"{len(failures)} of {len(members)} members failed, first: {first}; the others "
                            f"completed (see {run_dir / 'summary.json'})")
    return summary


def sample_std(values: list[float]) -> float | None:
    """The spread of final returns across seeds: the sample standard deviation
    (n - 1), since the seeds are a sample; None below two values, which have none."""
    return float(np.std(values, ddof=1)) if len(values) >= 2 else None


def report_done(label: str, summary: dict[str, Any], compile_seconds: float, num_seeds: int) -> None:
    """The closing lines: final return (per sweep point in a vectorised sweep) and speed;
    a ± spread only where two or more seeds have a return."""

    def shown(mean: float | None, std: float | None) -> str:
        if mean is None:
            return "n/a (no episode finished)"
        return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"

    for point in summary.get("points", []):
        print(f"[{label}] {point['dir']}: final mean return {shown(point['final_return_mean'], point['final_return_std'])}"
              f" over {num_seeds} seed(s){'' if point['status'] == 'completed' else ' (' + point['status'] + ')'}",
              flush=True)
    print(f"[{label}] done: final mean return {shown(summary['final_return_mean'], summary['final_return_std'])} "
          f"over {len(summary['seeds'])} {'member' if 'points' in summary else 'seed'}(s), "
          f"{summary['env_steps']:,d} steps/seed in {summary['wall_seconds']:.1f}s "
          f"(compile {compile_seconds:.1f}s, {summary['sps']:,.0f} steps/s)", flush=True)
