"""One training run in one run directory: train, log, checkpoint, summarise.

A run can be stopped at any block boundary: by a non-finite metric (exit 1,
``status: failed``, the last good checkpoint kept) or by SIGINT/SIGTERM
(a checkpoint of the current state, ``status: interrupted``). A run killed
outright continues from its latest checkpoint with ``resume=True``.
"""

from __future__ import annotations

import math
import signal
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import jax
import numpy as np

from pgrun import checkpoint, provenance
from pgrun.config import validate
from pgrun.logger import BlockLogger, Progress, flat_hparams, write_json_atomic
from pgrun.train import TrainingError, build, check_finite, make_loop

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


def run_training(cfg: Any, run_dir: Path, resume: bool = False) -> dict[str, Any]:
    """Train as ``cfg`` says, writing event files, checkpoints and ``summary.json``
    into ``run_dir``; with ``resume``, continue from ``run_dir``'s latest
    checkpoint. Returns the summary."""
    validate(cfg)
    enable_compile_cache(cfg.compile_cache_dir)
    setup = build(cfg)
    loop = make_loop(setup)
    label = f"{cfg.algo.name} {cfg.env.id}"
    steps_per_block = setup.block_len * setup.steps_per_iteration
    progress = Progress(label, setup.num_blocks * steps_per_block, cfg.quiet)
    checkpoints = run_dir / checkpoint.DIRECTORY
    if not cfg.quiet:
        print(f"[{label}] backend={setup.backend} seeds={setup.seeds} device={jax.devices()[0].platform} "
              f"iterations={setup.block_len * setup.num_blocks} run_dir={run_dir}", flush=True)

    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_dir / ("provenance-resume.json" if resume else "provenance.json"), provenance.collect())
    start = time.perf_counter()
    runner = loop.start()
    compile_seconds = time.perf_counter() - start
    blocks_done, earlier_seconds = 0, 0.0
    last_return, last_length = [math.nan] * len(setup.seeds), [math.nan] * len(setup.seeds)
    if resume:
        saved = checkpoint.read(checkpoints / checkpoint.LATEST)
        runner = loop.restore(runner, saved["state"])
        meta = saved["meta"]
        blocks_done, earlier_seconds = int(meta["blocks_done"]), float(meta["wall_seconds"])
        last_return, last_length = list(map(float, meta["last_return"])), list(map(float, meta["last_length"]))
    # TensorBoard drops points a killed run logged after its latest checkpoint.
    logger = BlockLogger(run_dir, setup.seeds, purge_step=blocks_done * steps_per_block + 1 if resume else None)
    logger.last_return, logger.last_length = last_return, last_length
    blocks_per_checkpoint = max(1, cfg.checkpoint.every // setup.block_len)

    def wall_seconds() -> float:
        return earlier_seconds + time.perf_counter() - start

    def save(name: str) -> None:
        logger.flush()  # every point up to this checkpoint is on disk before it exists
        meta = {"blocks_done": blocks_done, "wall_seconds": wall_seconds(),
                "last_return": logger.last_return, "last_length": logger.last_length}
        checkpoint.save(checkpoints, name, loop.checkpoint_state(runner), meta)

    def summarize(status: str, **extra: Any) -> dict[str, Any]:
        seconds = wall_seconds()
        env_steps = blocks_done * steps_per_block
        returns = [None if math.isnan(r) else float(r) for r in logger.last_return]
        finite = [r for r in returns if r is not None]
        summary = {
            "status": status,
            "algo": cfg.algo.name,
            "env": cfg.env.id,
            "backend": setup.backend,
            "seeds": setup.seeds,
            "env_steps": env_steps,
            "iterations": blocks_done * setup.block_len,
            "wall_seconds": seconds,
            "compile_seconds": compile_seconds,
            "sps": env_steps * len(setup.seeds) / seconds,
            "sps_after_compile": env_steps * len(setup.seeds) / max(seconds - compile_seconds, 1e-9),
            "final_return_mean": float(np.mean(finite)) if finite else None,
            "final_return_std": float(np.std(finite)) if finite else None,
            "returns_per_seed": returns,
            "resumed": resume,
            **extra,
        }
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
                check_finite(metrics, blocks_done * setup.block_len)
                blocks_done += 1
                env_steps = blocks_done * steps_per_block
                logger.log_block(metrics, env_steps, seconds, steps_per_block)
                progress.update(env_steps, logger.mean_return(),
                                steps_per_block * len(setup.seeds) / max(seconds, 1e-9),
                                force=blocks_done == setup.num_blocks)
                if stop:
                    save(checkpoint.LATEST)
                    summarize("interrupted")
                    name = signal.Signals(stop[0]).name
                    raise TrainingInterrupted(f"{name} received: stopped at {env_steps:,d} env steps and saved "
                                              f"a checkpoint; continue with: pgrun resume={run_dir}", stop[0])
                if blocks_done % blocks_per_checkpoint == 0:
                    save(checkpoint.LATEST)
        logger.write_hparams(flat_hparams(cfg), setup.seeds)
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
        ret = summary["final_return_mean"]
        shown = "n/a (no episode finished)" if ret is None else f"{ret:.2f} ± {summary['final_return_std']:.2f}"
        print(f"[{label}] done: final mean return {shown} over {len(setup.seeds)} seed(s), "
              f"{summary['env_steps']:,d} steps/seed in {summary['wall_seconds']:.1f}s "
              f"(compile {compile_seconds:.1f}s, {summary['sps']:,.0f} steps/s)", flush=True)
    return summary
