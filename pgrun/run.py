"""One training run in one run directory: train, log, checkpoint, summarise."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from pgrun import checkpoint
from pgrun.config import validate
from pgrun.logger import BlockLogger, Progress, write_json_atomic
from pgrun.train import TrainingError, build, check_finite, make_loop


COMPILE_CACHE_MAX_BYTES = 2**30


def enable_compile_cache(directory: str) -> None:
    """Let later runs with the same shapes skip XLA compilation (LRU-bounded to 1 GiB)."""
    if not directory:
        return
    jax.config.update("jax_compilation_cache_dir", str(Path(directory).expanduser()))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    jax.config.update("jax_compilation_cache_max_size", COMPILE_CACHE_MAX_BYTES)


def run_training(cfg: Any, run_dir: Path) -> dict[str, Any]:
    """Train as ``cfg`` says, writing event files, checkpoints and ``summary.json``
    into ``run_dir``. Returns the summary."""
    validate(cfg)
    enable_compile_cache(cfg.compile_cache_dir)
    setup = build(cfg)
    loop = make_loop(setup)
    label = f"{cfg.algo.name} {cfg.env.id}"
    progress = Progress(label, setup.block_len * setup.num_blocks * setup.steps_per_iteration, cfg.quiet)
    if not cfg.quiet:
        print(f"[{label}] backend={setup.backend} seeds={setup.seeds} device={jax.devices()[0].platform} "
              f"iterations={setup.block_len * setup.num_blocks} run_dir={run_dir}", flush=True)

    start = time.perf_counter()
    runner = loop.start()
    compile_seconds = time.perf_counter() - start

    logger = BlockLogger(run_dir, setup.seeds)
    steps_per_block = setup.block_len * setup.steps_per_iteration
    checkpoints = run_dir / "checkpoints"
    blocks_per_checkpoint = max(1, cfg.checkpoint_every // setup.block_len)
    blocks_done = 0

    def summarize(status: str, **extra: Any) -> dict[str, Any]:
        wall_seconds = time.perf_counter() - start
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
            "wall_seconds": wall_seconds,
            "compile_seconds": compile_seconds,
            "sps": env_steps * len(setup.seeds) / wall_seconds,
            "sps_after_compile": env_steps * len(setup.seeds) / max(wall_seconds - compile_seconds, 1e-9),
            "final_return_mean": float(np.mean(finite)) if finite else None,
            "final_return_std": float(np.std(finite)) if finite else None,
            "returns_per_seed": returns,
            **extra,
        }
        write_json_atomic(run_dir / "summary.json", summary)
        return summary

    checkpoint.save(checkpoints, checkpoint.LATEST, loop.train_state(runner))  # a good state exists from the start
    try:
        for block in range(setup.num_blocks):
            block_start = time.perf_counter()
            runner, metrics = loop.run_block(runner)
            seconds = time.perf_counter() - block_start
            check_finite(metrics, block * setup.block_len)
            blocks_done = block + 1
            env_steps = blocks_done * steps_per_block
            logger.log_block(metrics, env_steps, seconds, steps_per_block)
            progress.update(env_steps, logger.mean_return(), steps_per_block * len(setup.seeds) / max(seconds, 1e-9),
                            force=blocks_done == setup.num_blocks)
            if blocks_done % blocks_per_checkpoint == 0:
                checkpoint.save(checkpoints, checkpoint.LATEST, loop.train_state(runner))
    except TrainingError as err:
        # The state in memory is the bad one: the last good checkpoint on disk stays as it is.
        summarize("failed", error=str(err))
        raise
    finally:
        logger.close()
    checkpoint.save(checkpoints, checkpoint.LATEST, loop.train_state(runner))
    checkpoint.save(checkpoints, checkpoint.FINAL, loop.train_state(runner))
    summary = summarize("completed")
    if not cfg.quiet:
        ret = summary["final_return_mean"]
        shown = "n/a (no episode finished)" if ret is None else f"{ret:.2f} ± {summary['final_return_std']:.2f}"
        print(f"[{label}] done: final mean return {shown} over {len(setup.seeds)} seed(s), "
              f"{summary['env_steps']:,d} steps/seed in {summary['wall_seconds']:.1f}s "
              f"(compile {compile_seconds:.1f}s, {summary['sps']:,.0f} steps/s)", flush=True)
    return summary
