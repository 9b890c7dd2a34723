"""The run driver: one training run in one run folder -- train, log, checkpoint, summarise.

It wires the trainer (:func:`pgrun.train.train_blocks`) to what a run writes:
TensorBoard, the progress line, checkpoints and ``summary.json``, each a
callback called after every block. A run can be stopped at any block
boundary: by a non-finite metric (exit 1, ``status: failed``, the last good
checkpoint kept; in a vectorised sweep only once every member has failed)
or by SIGINT/SIGTERM (a checkpoint of the current state, ``status:
interrupted``). A run killed outright continues from its latest checkpoint
with ``resume=True``.

In a multi-process job (:mod:`pgrun.distributed`) every process runs all of this
on its share of the members with every member's results gathered, so all take
the same decisions; only process 0 prints and writes the run folder.
"""

from __future__ import annotations

import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import jax

from pgrun import checkpoint, distributed, provenance
from pgrun.config import point_name, validate, with_overrides
from pgrun.errors import ConfigError, TrainingError, TrainingInterrupted, first_line
from pgrun.logger import Progress, TensorBoardLogger, flat_hparams
from pgrun.record import RunRecord
from pgrun.run_folder import RunFolder, write_json_atomic
from pgrun.summary import Timing, report_done, sample_std, write_summaries
from pgrun.train import BlockDone, Setup, build, make_loop, member_label, train_blocks

__all__ = ["TrainingError", "TrainingInterrupted", "report_done", "run_training", "sample_std"]

COMPILE_CACHE_MAX_BYTES = 2**30


def enable_compile_cache(directory: str) -> None:
    """Let later runs with the same shapes skip XLA compilation (LRU-bounded to 1 GiB)."""
    if not directory:
        return
    jax.config.update("jax_compilation_cache_dir", str(Path(directory).expanduser()))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    jax.config.update("jax_compilation_cache_max_size", COMPILE_CACHE_MAX_BYTES)


@contextmanager
def stop_requests() -> Iterator[list[int]]:
    """Record SIGINT/SIGTERM instead of raising mid-block; a callback checks between blocks.

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


def write_point_configs(cfg: Any, folder: RunFolder, setup: Setup) -> None:
    """Give each point of a vectorised sweep a ``.hydra/`` of its own, as if it
    were a job of a multirun: its resolved config holds its own values, and its
    overrides name them, so reports and plots treat points like any other run."""
    from omegaconf import OmegaConf

    base = [o for o in folder.load_overrides() if not o.lstrip("+~").startswith("sweep.vmap")]
    for point in setup.points:
        point_folder = folder.point(point)
        point_folder.config_path.parent.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(with_overrides(cfg, point), point_folder.config_path)
        OmegaConf.save(OmegaConf.create(base + [f"{k}={v!r}" for k, v in point.items()]), point_folder.overrides_path)


@dataclass
class Session:
    """One call of :func:`run_training`: the run's folder, loop and record, and its clock."""

    setup: Setup
    folder: RunFolder
    loop: Any
    runner: Any
    record: RunRecord
    resumed: bool
    compile_seconds: float
    started: float = field(default_factory=time.perf_counter)
    logger: TensorBoardLogger | None = None
    writes: bool = True  # False in every process of a multi-process job but the first

    @property
    def label(self) -> str:
        return f"{self.setup.cfg.algo.name} {self.setup.cfg.env.id}"

    def timing(self) -> Timing:
        return Timing(self.record.earlier_seconds + time.perf_counter() - self.started, self.compile_seconds)

    def save(self, name: str) -> None:
        """A checkpoint of the current runner and record; every logged point is on disk first.
        Every process gathers the state; only the one that writes the run folder saves it."""
        state = self.loop.checkpoint_state(self.runner)
        if not self.writes:
            return
        if self.logger is not None:
            self.logger.flush()
        checkpoint.save(self.folder.checkpoints, name, state, self.record.to_meta(self.timing().wall_seconds))

    def summarize(self, status: str, **extra: Any) -> dict[str, Any]:
        return write_summaries(self.folder, self.setup, self.record, self.timing(), status, self.resumed,
                               member_label, write=self.writes, **extra)


def start_session(setup: Setup, folder: RunFolder, resume: bool) -> Session:
    """Compile and initialise the loop; on resume, continue from the latest checkpoint."""
    loop = make_loop(setup)
    if not setup.cfg.quiet:
        print(f"[{setup.cfg.algo.name} {setup.cfg.env.id}] compiling the training program (once per run; "
              f"later runs of the same shapes reuse the compile cache)...", flush=True)
    started = time.perf_counter()
    runner = loop.start()
    compile_seconds = time.perf_counter() - started
    record = RunRecord(len(setup.members))
    if resume:
        saved = checkpoint.read(folder.checkpoint("latest"))
        try:
            runner = loop.restore(runner, saved["state"])
        except (ValueError, KeyError) as err:
            raise ConfigError(f"resume={folder.path}: its checkpoint does not match the state this version of "
                              f"pgrun trains ({type(err).__name__}: {first_line(err)[:120]}); it was written by "
                              "another version: start a new run") from None
        record = RunRecord.from_meta(saved["meta"], len(setup.members))
    return Session(setup, folder, loop, runner, record, resume, compile_seconds, started)


def announce(setup: Setup, folder: RunFolder) -> None:
    """The run's first line: what trains, where, on which devices and how many members each holds."""
    cfg = setup.cfg
    if cfg.quiet:
        return
    seeds = [cfg.seed + i for i in range(cfg.num_seeds)]
    sweep = f" points={len(setup.points)}" if setup.points != [{}] else ""
    print(f"[{cfg.algo.name} {cfg.env.id}] backend={setup.backend} seeds={seeds}{sweep} "
          f"{setup.placement.label()} iterations={setup.num_iterations} "
          f"run_dir={folder.path}", flush=True)


def block_callbacks(session: Session, stop: list[int]) -> list:
    """What happens after every block, in order: failure notices, TensorBoard, progress,
    a requested stop (checkpoint, summary, exit), the periodic checkpoint."""
    setup, cfg, record = session.setup, session.setup.cfg, session.record
    progress = Progress(session.label, setup.num_iterations * setup.steps_per_iteration, cfg.quiet,
                        members=len(setup.members))
    blocks_per_checkpoint = max(1, cfg.checkpoint.every // setup.block_len)

    def notify_failures(done: BlockDone) -> None:
        for why in done.newly_failed.values():
            if not cfg.quiet:
                print(f"[{session.label}] {why}; the other members train on", flush=True)

    def show_progress(done: BlockDone) -> None:
        progress.update(done.env_steps, record.mean_return(), done.steps_in_block * len(setup.members) /
                        max(done.seconds, 1e-9), force=done.last)

    def honour_stop(done: BlockDone) -> None:
        session.runner = done.runner
        signum = distributed.agreed_stop(stop)  # in a multi-process job, every process stops together
        if signum:
            session.save(checkpoint.LATEST)
            session.summarize("interrupted")
            raise TrainingInterrupted(f"{signal.Signals(signum).name} received: stopped at {done.env_steps:,d} env "
                                      f"steps and saved a checkpoint; continue with: pgrun resume={session.folder.path}",
                                      signum)

    def save_periodically(done: BlockDone) -> None:
        if record.blocks_done % blocks_per_checkpoint == 0:
            session.save(checkpoint.LATEST)

    logging = [session.logger] if session.logger is not None else []
    return [notify_failures, *logging, show_progress, honour_stop, save_periodically]


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
    cfg, writes = distributed.join(cfg)  # a multi-process job: quiet, and writing nothing, but in process 0
    enable_compile_cache(cfg.compile_cache_dir)
    setup = build(cfg)
    folder = RunFolder(Path(run_dir))
    announce(setup, folder)
    if writes:
        folder.path.mkdir(parents=True, exist_ok=True)
        write_json_atomic(folder.provenance_path(resume), provenance.collect(setup.placement.describe(), setup.backend))
        if setup.points != [{}]:
            write_point_configs(cfg, folder, setup)
    session = start_session(setup, folder, resume)
    session.writes = writes
    # TensorBoard drops points a killed run logged after its latest checkpoint.
    steps_done = setup.schedule.iterations_done(session.record.blocks_done) * setup.steps_per_iteration
    if writes:
        dirs = folder.member_dirs(setup.points, [cfg.seed + i for i in range(cfg.num_seeds)])
        session.logger = TensorBoardLogger(dirs, session.record, purge_step=steps_done + 1 if resume else None)
    if not resume:
        session.save(checkpoint.LATEST)  # a good state exists from the start
    try:
        with stop_requests() as stop:
            session.runner = train_blocks(setup, session.loop, session.runner, session.record,
                                          block_callbacks(session, stop))
        point_configs = {point_name(p): with_overrides(cfg, p) if p else cfg for p in setup.points}
        if session.logger is not None:
            session.logger.write_hparams([flat_hparams(point_configs[point_name(m.point)]) for m in setup.members],
                                         setup.seeds)
    except TrainingError as err:
        # The state in memory is the bad one: the last good checkpoint on disk stays as it is.
        session.summarize("failed", error=str(err))
        raise
    finally:
        if session.logger is not None:
            session.logger.close()
    return finish(session)


def finish(session: Session) -> dict[str, Any]:
    """The final checkpoints and summary; :class:`TrainingError` if any member failed."""
    session.save(checkpoint.LATEST)
    session.save(checkpoint.FINAL)
    summary = session.summarize("completed")
    cfg, failures = session.setup.cfg, session.record.failures
    if not cfg.quiet:
        report_done(session.label, summary, session.compile_seconds, cfg.num_seeds)
    if failures:
        raise TrainingError(f"{len(failures)} of {len(session.setup.members)} members failed, first: "
                            f"{failures[min(failures)]}; the others completed (see {session.folder.summary_path})")
    return summary
