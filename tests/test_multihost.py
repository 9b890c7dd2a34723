"""Many hosts on one machine: two local processes, each with two virtual CPU devices, train one run.

The processes join one job through ``PGRUN_COORDINATOR`` (127.0.0.1 on a free port),
``PGRUN_NUM_PROCESSES`` and ``PGRUN_PROCESS_ID``, as a launcher on several hosts would
set them; JAX's CPU backend carries the gathers between them (Gloo). Each process is
given a run directory of its own, so anything process 1 wrote would show. A second
job resumes a run one process began, and stops when only process 1 receives SIGTERM.

A hung coordinator cannot hold CI: both processes run under one deadline and are
killed together when either is still running at it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np
import pytest
from omegaconf import OmegaConf

from conftest import compose_config
from pgrun import checkpoint
from pgrun.config import validate
from pgrun.distributed import Job, described_job, environment_rank
from pgrun.errors import ConfigError, TrainingInterrupted
from pgrun.run import run_training
from pgrun.run_folder import RunFolder
from pgrun.train import JaxLoop

ROOT = Path(__file__).resolve().parents[1]
RTOL, ATOL = 1e-4, 1e-5  # as tests/test_devices.py: the same programs, possibly vectorised differently
TINY = ["algo=ppo", "env=CartPole-v1", "num_seeds=4", "num_envs=2", "algo.num_steps=16", "algo.update_epochs=1",
        "algo.num_minibatches=1", "algo.hidden_sizes=[16]", "total_timesteps=320", "log_interval=5", "eval.every=0",
        "compile_cache_dir=", "xla_cpu_threads=1"]
DEADLINE = 300  # seconds for both processes together (about 80 measured on two busy cores)
pytestmark = pytest.mark.timeout(900)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def job_env(rank: int, port: int, processes: int = 2) -> dict[str, str]:
    return dict(os.environ, PYTHONWARNINGS="ignore", XLA_FLAGS="--xla_force_host_platform_device_count=2",
                PGRUN_COORDINATOR=f"127.0.0.1:{port}", PGRUN_NUM_PROCESSES=str(processes),
                PGRUN_PROCESS_ID=str(rank))


@dataclass
class Ended:
    code: int
    stdout: str
    stderr: str

    def lines(self) -> list[str]:
        """stdout without what Gloo prints from C++ threads when the processes connect (two
        threads' lines may interleave: "[Gloo] Rank [Gloo] Rank 3 is connected ...", "2 is connected ...")."""
        text = re.sub(r"\[Gloo\] Rank |\d+ is connected to \d+ peer ranks\. Expected number of connected peer ranks "
                      r"is : \d+", "", self.stdout)
        return [line for line in text.splitlines() if line.strip()]


def run_job(argv_of: callable, where: Path, variables: dict[str, str] | None = None) -> list[Ended]:
    """Both processes of a two-process job, ``argv_of(rank)`` each; killed together at the deadline."""
    port, procs, files = free_port(), [], []
    try:
        for rank in range(2):
            out, err = (where / f"rank{rank}.out").open("w"), (where / f"rank{rank}.err").open("w")
            files += [out, err]
            procs.append(subprocess.Popen([sys.executable, *argv_of(rank)], cwd=where, env={**job_env(rank, port), **(variables or {})},
                                          stdout=out, stderr=err))
        deadline = time.monotonic() + DEADLINE
        for proc in procs:
            proc.wait(timeout=max(deadline - time.monotonic(), 1))
    except subprocess.TimeoutExpired:
        pass
    finally:
        hung = [rank for rank, proc in enumerate(procs) if proc.poll() is None]
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for f in files:
            f.close()
    ended = [Ended(proc.returncode, (where / f"rank{r}.out").read_text(), (where / f"rank{r}.err").read_text())
             for r, proc in enumerate(procs)]
    if hung:
        pytest.fail(f"process(es) {hung} still ran after {DEADLINE}s and were killed: "
                    + " | ".join(e.stderr[-1500:] for e in ended))
    return ended


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> tuple[Path, list[Ended]]:
    """The two-process run (process 0 in ``run``, process 1 told ``run-of-process-1``) and, in this
    process on its one device, the same members as a plain run (``reference``)."""
    where = tmp_path_factory.mktemp("multihost")
    started = time.perf_counter()
    ended = run_job(lambda rank: ["-m", "pgrun", *TINY, f"hydra.run.dir={where / ('run', 'run-of-process-1')[rank]}"],
                    where)
    print(f"two-process run: {time.perf_counter() - started:.0f}s")
    run_training(compose_config(*TINY, "quiet=true"), where / "reference")
    return where, ended


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def test_both_processes_complete_and_only_process_0_prints(job):
    _, ended = job
    assert [e.code for e in ended] == [0, 0], [e.stderr[-2000:] for e in ended]
    assert "devices=4 processes=2 members/device=1" in ended[0].lines()[0]
    assert "done: final mean return" in ended[0].lines()[-1]
    assert ended[1].lines() == [] and ended[1].stderr.strip() == "", ended[1].stdout


def test_only_process_0_writes_the_run_folder(job):
    where, _ = job
    assert not (where / "run-of-process-1").exists()
    run = where / "run"
    files = sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())
    events = [f for f in files if "tfevents" in f]
    assert sorted(f.split("/")[0] for f in events) == [f"seed_{s}" for s in range(4)]  # one file per seed
    assert sorted(set(files) - set(events)) == [".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml",
                                                "checkpoints/final.msgpack", "checkpoints/latest.msgpack",
                                                "pgrun.log", "provenance.json", "summary.json"]
    devices = summary(run)["devices"]
    assert (devices["count"], devices["processes"], devices["members_per_device"]) == (4, 2, 1)
    assert json.loads((run / "provenance.json").read_text())["devices_used"] == devices


def test_two_processes_train_like_one(job):
    where, _ = job
    run, reference = summary(where / "run"), summary(where / "reference")
    assert run["status"] == reference["status"] == "completed" and run["seeds"] == reference["seeds"] == [0, 1, 2, 3]
    np.testing.assert_allclose(run["returns_per_seed"], reference["returns_per_seed"], rtol=RTOL)
    final = lambda d: jax.tree.leaves(checkpoint.read(d / "checkpoints" / "final.msgpack")["state"])
    for a, b in zip(final(where / "run"), final(where / "reference"), strict=True):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape and a.shape[:1] == (4,)  # every member, gathered from both processes
        if np.issubdtype(a.dtype, np.floating):
            np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)
        else:
            np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- a stop and a resume


RESUMABLE = [*TINY, "log_interval=2", "quiet=true"]  # 5 blocks of 2 iterations
# A process of the job that sends itself SIGTERM after the block that ends at iteration STOP_AT (only
# process 1 does): the signal reaches one process, and both must stop there together.
SIGNALLING = textwrap.dedent("""
    import os, signal, sys
    from pgrun.commands.train import main
    from pgrun.train import JaxLoop

    run_block, stop_at = JaxLoop.run_block, int(os.environ["STOP_AT"])
    def signal_after(loop, runner, iterations=None):
        runner, metrics = run_block(loop, runner, iterations)
        iteration = int(loop.setup.placement.fetch(runner.train.iteration)[0])  # every process gathers
        if os.environ["PGRUN_PROCESS_ID"] == "1" and iteration == stop_at:
            os.kill(os.getpid(), signal.SIGTERM)
        return runner, metrics
    JaxLoop.run_block = signal_after
    sys.argv = ["pgrun", *sys.argv[1:]]
    main()
""")


def stopped_at(monkeypatch, iteration: int) -> None:
    """Make this process's runs stop by SIGTERM after the block that ends at ``iteration``."""
    run_block = JaxLoop.run_block

    def signal_after(loop, runner, iterations=None):
        runner, metrics = run_block(loop, runner, iterations)
        if int(runner.train.iteration[0]) == iteration:
            os.kill(os.getpid(), signal.SIGTERM)
        return runner, metrics

    monkeypatch.setattr(JaxLoop, "run_block", signal_after)


def test_a_job_resumes_a_run_and_stops_together(tmp_path, monkeypatch):
    """One process trains 2 iterations and is stopped; the two-process job resumes a copy of that run,
    and process 1 alone gets SIGTERM after iteration 6; one process resumes the original and stops there too."""
    single, cfg = tmp_path / "single", compose_config(*RESUMABLE)
    RunFolder(single).config_path.parent.mkdir(parents=True)
    OmegaConf.save(cfg, RunFolder(single).config_path)  # as Hydra does for `pgrun`, so resume= takes it
    stopped_at(monkeypatch, 2)
    with pytest.raises(TrainingInterrupted):
        run_training(cfg, single)
    shutil.copytree(single, tmp_path / "job")
    stopped_at(monkeypatch, 6)
    with pytest.raises(TrainingInterrupted):
        run_training(compose_config(*RESUMABLE), single, resume=True)

    ended = run_job(lambda rank: ["-c", SIGNALLING, f"resume={tmp_path / 'job'}"], tmp_path, {"STOP_AT": "6"})
    assert [e.code for e in ended] == [128 + signal.SIGTERM] * 2, [e.stderr[-2000:] for e in ended]
    assert "SIGTERM received: stopped at 192 env steps" in ended[0].stderr and ended[1].lines() == [], ended[1].stdout
    assert summary(tmp_path / "job")["status"] == "interrupted" and summary(tmp_path / "job")["resumed"] is True
    latest = lambda d: checkpoint.read(d / "checkpoints" / "latest.msgpack")
    assert latest(tmp_path / "job")["meta"]["blocks_done"] == latest(single)["meta"]["blocks_done"] == 3
    for a, b in zip(jax.tree.leaves(latest(tmp_path / "job")["state"]), jax.tree.leaves(latest(single)["state"]),
                    strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=RTOL, atol=ATOL)


# ---------------------------------------------------------------- bad input, refused before joining


@pytest.mark.parametrize("overrides,variables,expected", [
    (["env.backend=gymnasium"], {},
     "process 0 of 2: CartPole-v1 (gymnasium) steps on the host, and host environments train in one process"),
    ([], {"PGRUN_PROCESS_ID": "2"}, "PGRUN_NUM_PROCESSES=2 needs PGRUN_PROCESS_ID set to this process's index, 0 to 1"),
])
def test_a_job_that_cannot_run_is_bad_input(tmp_path, overrides, variables, expected):
    run_dir = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "pgrun", *TINY, *overrides, f"hydra.run.dir={run_dir}"], cwd=ROOT,
                          env={**job_env(0, free_port()), **variables}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr[-2000:]
    assert expected in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not run_dir.exists()


@pytest.mark.parametrize("environ,expected", [
    ({}, None),
    ({"PGRUN_NUM_PROCESSES": "1"}, None),
    ({"PGRUN_NUM_PROCESSES": "2", "PGRUN_PROCESS_ID": "1", "PGRUN_COORDINATOR": "node7:1234"},
     Job(2, 1, "node7:1234")),
    ({"PGRUN_NUM_PROCESSES": "2", "PGRUN_PROCESS_ID": "0", "JAX_COORDINATOR_ADDRESS": "10.0.0.1:99"},
     Job(2, 0, "10.0.0.1:99")),
    # srun: JAX finds the coordinator; sbatch's own shell (no step of several tasks) is one process
    ({"SLURM_STEP_NUM_TASKS": "4", "SLURM_PROCID": "3", "SLURM_NTASKS": "4"}, Job(4, 3, None)),
    ({"SLURM_STEP_NUM_TASKS": "1", "SLURM_PROCID": "0", "SLURM_NTASKS": "4"}, None),
    ({"SLURM_NTASKS": "4", "SLURM_PROCID": "0"}, None),
])
def test_the_environment_describes_the_job(environ, expected):
    assert described_job(environ) == expected
    assert environment_rank("auto", environ) == (expected.process_id if expected else 0)
    assert environment_rank("off", environ) == 0


@pytest.mark.parametrize("environ,expected", [
    ({"PGRUN_NUM_PROCESSES": "two"}, "PGRUN_NUM_PROCESSES=two is not a whole number"),
    ({"PGRUN_NUM_PROCESSES": "2", "PGRUN_COORDINATOR": "h:1"}, "needs PGRUN_PROCESS_ID set to this process's index"),
    ({"PGRUN_NUM_PROCESSES": "2", "PGRUN_PROCESS_ID": "0"}, "needs PGRUN_COORDINATOR=HOST:PORT"),
    ({"PGRUN_NUM_PROCESSES": "2", "PGRUN_PROCESS_ID": "0", "PGRUN_COORDINATOR": "nohost"}, "got nohost"),
])
def test_a_job_described_inconsistently_is_bad_input(environ, expected):
    with pytest.raises(ConfigError, match=expected):
        described_job(environ)


def test_distributed_takes_auto_or_off():
    validate(compose_config(*TINY, "distributed=off"))
    with pytest.raises(ConfigError, match="distributed=sometimes is not valid: use distributed=auto"):
        validate(compose_config(*TINY, "distributed=sometimes"))
