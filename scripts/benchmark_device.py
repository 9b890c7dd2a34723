"""Throughput of many seeds in one program on whatever device JAX finds: GPU, TPU or CPU.

PPO on CartPole-v1 at 1, 16, 256 and 4096 seeds and TRPO on Pendulum-v1 at 1
and 256 seeds, each with its default config (``num_envs=4``), ``--steps`` env
steps per seed (rounded up to whole iterations), evaluation off and
``devices=all`` (the member axis split over every local device). Every row is
a fresh Python process with the compilation cache off, so the compile time is
a cold one and the peak memory is that run's; JAX's backend starts before the
timer. Reported per row:

- env-steps/s after compile, summed over seeds (and devices);
- compile seconds (initialisation and XLA compilation up to the first block);
- peak device memory, summed over the devices used, where the backend reports
  it (``device.memory_stats()``: GPU and TPU; the CPU backend reports none).

``--small`` uses sizes that run in seconds on a CPU (a smoke test);
``--write`` puts the table, with this command, the date, the machine and the
device's name, into its block of ``docs/benchmarks.md`` (or of ``--doc``)::

    python scripts/benchmark_device.py [--small] [--steps N] [--ppo-seeds 1 16 ...] [--trpo-seeds 1 256]
                                       [--write] [--doc PATH]
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
sys.path.insert(0, str(SCRIPTS))  # the sibling modules, also when imported from elsewhere

import bench_machine  # noqa: E402
from docs_section import add_output_options, publish  # noqa: E402

BLOCK = "device-benchmark"
HEADING = "## Seeds per program on one machine's devices: PPO CartPole-v1 and TRPO Pendulum-v1"
TASKS = {"ppo": "CartPole-v1", "trpo": "Pendulum-v1"}
FULL = {"ppo": [1, 16, 256, 4096], "trpo": [1, 256], "steps": 102_400}
SMALL = {"ppo": [1, 4, 16], "trpo": [1, 4], "steps": 4096}


def overrides(algo: str, steps: int, seeds: int) -> list[str]:
    return [f"algo={algo}", f"env={TASKS[algo]}", f"total_timesteps={steps}", f"num_seeds={seeds}", "eval.every=0",
            "devices=all"]


def measure(algo: str, steps: int, seeds: int) -> dict:
    """Train once in this process (compilation cache off); the timings, devices and peak memory."""
    import jax
    from hydra import compose, initialize_config_dir

    from pgrun.config import register_configs
    from pgrun.paths import conf_dir
    from pgrun.run import run_training

    jax.devices()  # the backend starts outside the timer
    register_configs()
    with initialize_config_dir(str(conf_dir()), version_base=None):
        cfg = compose("config", overrides=overrides(algo, steps, seeds) + ["quiet=true", "compile_cache_dir="])
    with tempfile.TemporaryDirectory() as run_dir:
        summary = run_training(cfg, Path(run_dir))
    used = [d for d in jax.local_devices() if d.id in summary["devices"]["ids"]]
    peaks = [(d.memory_stats() or {}).get("peak_bytes_in_use") for d in used]
    return {"env_steps": summary["env_steps"], "compile_seconds": summary["compile_seconds"],
            "sps_after_compile": summary["sps_after_compile"], "devices": summary["devices"]["count"],
            "peak_bytes": sum(peaks) if peaks and None not in peaks else None}


def measure_in_fresh_process(algo: str, steps: int, seeds: int) -> dict:
    code = (f"import json, sys; sys.path.insert(0, {str(SCRIPTS)!r}); import benchmark_device as b; "
            f"print(json.dumps(b.measure({algo!r}, {steps}, {seeds})))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{algo} with {seeds} seed(s) failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


@dataclass
class Row:
    algo: str
    seeds: int
    env_steps: int  # per seed
    compile_seconds: float
    sps_after_compile: float  # summed over seeds
    devices: int
    peak_bytes: int | None

    def cells(self) -> list[str]:
        memory = "n/a" if self.peak_bytes is None else f"{self.peak_bytes / 2**20:,.0f}"
        return [f"{self.algo.upper()} {TASKS[self.algo]}", str(self.seeds), str(self.devices), f"{self.env_steps:,}",
                f"{self.compile_seconds:.2f}", f"{self.sps_after_compile:,.0f}", memory]

    def check(self) -> None:
        """A run that reports no steps or a non-finite rate is a broken benchmark, not a slow one."""
        if self.env_steps <= 0 or not all(math.isfinite(v) and v > 0 for v in
                                          (self.compile_seconds, self.sps_after_compile)):
            raise RuntimeError(f"implausible measurement: {self}")


def device_name() -> str:
    """``1 x NVIDIA H100 80GB HBM3 (gpu)``: how many local devices of which kind."""
    import jax

    devices = jax.local_devices()
    kinds = sorted({d.device_kind for d in devices})
    return f"{len(devices)} x {', '.join(kinds)} ({devices[0].platform})"


def render(rows: list[Row], command: str, steps: int, date: str, machine: str, device: str, load: str) -> str:
    header = ["task", "seeds", "devices used", "env steps/seed", "compile s", "env-steps/s after compile",
              "peak device MiB"]
    lines = [f"Command: `{command}`. Date {date}; machine: {machine}; device: {device}; load average "
             f"(1/5/15 min) at the start {load}.",
             "",
             f"Setting: `pgrun algo=<algo> env=<env> total_timesteps={steps} num_seeds=<seeds> eval.every=0 "
             "devices=all` with each algorithm's default config (num_envs=4); every row a fresh process with the "
             "compilation cache off (a cold compile). Env-steps/s are summed over seeds; peak memory is summed "
             "over the devices used, n/a where the backend does not report it.",
             "",
             "| " + " | ".join(header) + " |",
             "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="sizes that run in seconds on a CPU")
    parser.add_argument("--steps", type=int, help="env steps per seed (default 102400; 4096 with --small)")
    parser.add_argument("--ppo-seeds", type=int, nargs="*", help="seed counts of the PPO rows")
    parser.add_argument("--trpo-seeds", type=int, nargs="*", help="seed counts of the TRPO rows")
    parser.add_argument("--note", default="", help="said of the machine in the doc, e.g. that its cores are shared")
    add_output_options(parser, BLOCK)
    args = parser.parse_args(argv)
    sizes = SMALL if args.small else FULL
    steps = args.steps or sizes["steps"]
    plan = [("ppo", n) for n in (sizes["ppo"] if args.ppo_seeds is None else args.ppo_seeds)]
    plan += [("trpo", n) for n in (sizes["trpo"] if args.trpo_seeds is None else args.trpo_seeds)]
    if steps < 1 or any(n < 1 for _, n in plan):
        parser.error("--steps and every seed count must be at least 1")
    argv = sys.argv[1:] if argv is None else argv
    command = shlex.join(["python", "scripts/benchmark_device.py", *argv])

    date, machine, device, load = bench_machine.now(), bench_machine.describe(), device_name(), \
        bench_machine.load_average()
    machine += f" ({args.note})" if args.note else ""
    print(f"{date}; {machine}; {device}; load {load}", flush=True)
    rows = []
    for algo, seeds in plan:
        row = Row(algo, seeds, **measure_in_fresh_process(algo, steps, seeds))
        row.check()
        print("  " + " | ".join(row.cells()), flush=True)
        rows.append(row)
    publish(render(rows, command, steps, date, machine, device, load), BLOCK, HEADING, args.write, args.doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
