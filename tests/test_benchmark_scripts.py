"""Smoke tests of the benchmark scripts that write docs/benchmarks.md.

Each script runs as a user would, at a tiny size, with ``--write --doc`` on a
copy of the doc; the test checks that its block is there with the exact
command, the date and the machine, that its numbers are positive and finite,
and that nothing outside the block changed.
"""

from __future__ import annotations

import math
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"


def write_with(script: str, args: list[str], tmp_path: Path) -> tuple[str, str, str]:
    """Run ``scripts/<script> <args> --write --doc <copy>``: (the command it should record, the copy
    before, the copy after)."""
    doc = tmp_path / "benchmarks.md"
    shutil.copy(DOC, doc)
    before = doc.read_text()
    args = [*args, "--write", "--doc", str(doc)]
    done = subprocess.run([sys.executable, f"scripts/{script}", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return shlex.join(["python", f"scripts/{script}", *args]), before, doc.read_text()


def split_block(text: str, name: str) -> tuple[str | None, str]:
    """(the block's body, or None without one; the text with the body taken out)."""
    pattern = re.compile(rf"(<!-- {name}:start -->\n)(.*?)(\n<!-- {name}:end -->)", re.S)
    found = pattern.search(text)
    if found is None:
        return None, text
    return found.group(2), pattern.sub(lambda m: m.group(1) + m.group(3), text)


def check_doc(before: str, after: str, name: str, command: str) -> str:
    """The block is written, with its command, date and machine; the rest of the doc is as it was."""
    body, rest_after = split_block(after, name)
    assert body is not None, f"no {name} block in the doc"
    _, rest_before = split_block(before, name)
    if f"<!-- {name}:start -->" in before:
        assert rest_after == rest_before, "the script changed the doc outside its block"
    else:  # the first write appends the block under its heading
        assert rest_after.startswith(rest_before.rstrip())
    assert f"Command: `{command}`" in body
    assert re.search(r"Date \d{4}-\d\d-\d\d \d\d:\d\d UTC; machine: .+, \d+ cores, .*jax \d", body), body[:400]
    return body


def table(body: str) -> list[list[str]]:
    """The markdown table's rows (header and rule left out), cells stripped."""
    lines = [line for line in body.splitlines() if line.startswith("|")]
    assert len(lines) >= 3, body
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def number(cell: str) -> float:
    return float(cell.replace(",", ""))


def positive(value: float) -> bool:
    return math.isfinite(value) and value > 0


def test_benchmark_throughput_writes_its_table(tmp_path):
    command, before, after = write_with("benchmark_throughput.py", ["--steps", "2000", "--seeds", "1"], tmp_path)
    body = check_doc(before, after, "throughput-benchmark", command)
    assert "total_timesteps=2000" in body
    rows = table(body)
    assert [(r[0], r[1]) for r in rows] == [("1", "cold"), ("1", "warm")]
    for seeds, _, steps, wall, compile_s, sps, sps_after in rows:
        steps, wall, compile_s, sps, sps_after = map(number, (steps, wall, compile_s, sps, sps_after))
        assert steps >= 2000
        assert all(positive(v) for v in (wall, compile_s, sps, sps_after))
        assert compile_s < wall
        assert sps_after >= sps
        assert sps == pytest.approx(steps * int(seeds) / wall, rel=0.02, abs=1)


@pytest.mark.parametrize("algo, task, steps_per_iteration", [("ppo", "PPO CartPole-v1", 1024),
                                                              ("trpo", "TRPO Pendulum-v1", 2048)])
def test_profile_iteration_writes_its_table(tmp_path, algo, task, steps_per_iteration):
    args = ["--repeats", "2", "--warmup", "1", "--algos", algo]
    command, before, after = write_with("profile_iteration.py", args, tmp_path)
    body = check_doc(before, after, "iteration-profile", command)
    [row] = table(body)
    assert row[0] == task
    assert number(row[1]) == steps_per_iteration
    for cell in row[2:6]:  # "median (fastest)" in ms
        median, fastest = map(number, re.fullmatch(r"(\S+) \((\S+)\)", cell).groups())
        assert positive(median) and positive(fastest) and fastest <= median
    assert positive(number(row[6]))


def test_benchmark_device_writes_its_table(tmp_path):
    args = ["--small", "--steps", "1024", "--ppo-seeds", "1", "4", "--trpo-seeds", "2"]
    command, before, after = write_with("benchmark_device.py", args, tmp_path)
    body = check_doc(before, after, "device-benchmark", command)
    assert re.search(r"device: \d+ x .+ \((cpu|gpu|tpu|cuda|rocm)\)", body), body[:400]
    rows = table(body)
    assert [(r[0], r[1]) for r in rows] == [("PPO CartPole-v1", "1"), ("PPO CartPole-v1", "4"),
                                            ("TRPO Pendulum-v1", "2")]
    for _, seeds, devices, steps, compile_s, sps, memory in rows:
        assert 1 <= int(devices) <= int(seeds) and number(steps) >= 1024
        assert positive(number(compile_s)) and positive(number(sps))
        assert memory == "n/a" or positive(number(memory))


def test_benchmark_vmap_sweep_writes_its_table(tmp_path):
    """One learning rate x one seed (three short runs): the table records the command that reproduces
    it -- the grid included, not only the step count -- and its three rows, each a whole run that
    trained (positive wall and compile time, a return of at least one step)."""
    args = ["--steps", "512", "--lrs", "0.001", "--seeds", "1"]
    command, before, after = write_with("benchmark_vmap_sweep.py", args, tmp_path)
    body = check_doc(before, after, "vmap-sweep-benchmark", command)
    rows = table(body)
    assert [r[0] for r in rows] == ["one process, `sweep.vmap` x `num_seeds` (one compiled program)",
                                    "1 separate processes, no compilation cache",
                                    "1 separate processes, shared warm compilation cache"]
    for _, wall, compile_s, mean_return, cost in rows:
        assert positive(number(wall)) and positive(number(compile_s)) and number(mean_return) >= 1
        assert number(cost.rstrip("x")) == pytest.approx(number(wall) / number(rows[0][1]), abs=0.06)
