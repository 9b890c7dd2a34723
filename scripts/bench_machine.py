"""When and on what a benchmark ran: date, CPU model, cores, memory, JAX version, load.

The benchmark scripts put these into the blocks they write into
``docs/benchmarks.md``, so every number there carries its machine.
"""

from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of ``/proc/cpuinfo`` (empty where there is none)."""
    fields: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return fields
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break  # the first processor's block is enough
            continue
        name, _, value = line.partition(":")
        fields.setdefault(name.strip(), value.strip())
    return fields


def cpu_model() -> str:
    """``AMD EPYC (family 25, model 17)``, from ``/proc/cpuinfo``; the platform's name elsewhere."""
    info = _cpuinfo()
    name = info.get("model name") or platform.processor() or platform.machine() or "unknown CPU"
    ids = [f"{label} {info[key]}" for key, label in (("cpu family", "family"), ("model", "model")) if key in info]
    return f"{name} ({', '.join(ids)})" if ids else name


def memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except (OSError, ValueError, IndexError):
        pass
    return None


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, ``1.13/0.90/0.85``; ``n/a`` where the OS has none."""
    try:
        return "/".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def describe() -> str:
    """One line: CPU model, cores, memory, OS, JAX and jaxlib versions and the backend JAX runs on."""
    import jax
    import jaxlib

    memory = memory_gib()
    parts = [cpu_model(), f"{os.cpu_count()} cores"]
    if memory is not None:
        parts.append(f"{memory:.0f} GiB")
    parts.append(f"{platform.system()} {platform.machine()}")
    backend = jax.devices()[0].platform
    return f"{', '.join(parts)}; jax {jax.__version__} (jaxlib {jaxlib.__version__}), {backend} backend"
