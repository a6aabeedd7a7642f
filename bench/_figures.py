"""What a bench measures and writes: CPU seconds of our processes and the machine's load
(``CpuMeter``), percentiles, and the results file."""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil

# --- CPU and machine load ----------------------------------------------------------------


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) CPU jiffies of the whole machine, from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:9]]
    except OSError:
        return 0, 0
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def cpu_seconds(procs: Sequence[psutil.Process]) -> float:
    """User + system CPU seconds of ``procs`` (those gone are skipped)."""
    total = 0.0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system
    return total


class CpuMeter:
    """CPU seconds of our processes (the workers with their children, PostgreSQL, the
    nats-server, this bench) over a window, and the cores the whole machine was busy: the
    rest is other sessions' load. Processes born during the window (a new PostgreSQL
    backend) count whole; those that ended during it are missed. ``start`` opens the
    window, ``measure`` reads it; each bench reports the figures its own way."""

    def __init__(self, pids: dict[str, int], workers: dict[str, subprocess.Popen[bytes]]) -> None:
        self.pids, self.workers = pids, workers

    def _groups(self) -> dict[str, list[psutil.Process]]:
        groups: dict[str, list[psutil.Process]] = {}
        with contextlib.suppress(psutil.Error):
            for name, w in self.workers.items():
                p = psutil.Process(w.pid)
                groups[name] = [p, *p.children(recursive=True)]
            pg = psutil.Process(self.pids["postgres"])
            groups["postgres"] = [pg, *pg.children(recursive=True)]
            groups["nats"] = [psutil.Process(self.pids["nats"])]
            groups["bench"] = [psutil.Process()]
        return groups

    def start(self) -> None:
        self.t0 = time.perf_counter()
        self.cpu0 = {
            name: {p.pid: cpu_seconds([p]) for p in procs} for name, procs in self._groups().items()
        }
        self.m0 = machine_jiffies()

    def measure(self) -> tuple[float, dict[str, float], float | None]:
        """Wall seconds since ``start``, CPU seconds per group, and the cores the machine
        was busy (None when /proc/stat could not be read)."""
        wall = time.perf_counter() - self.t0
        m1 = machine_jiffies()
        used: dict[str, float] = {}
        for name, procs in self._groups().items():
            before = self.cpu0.get(name, {})
            used[name] = sum(cpu_seconds([p]) - before.get(p.pid, 0.0) for p in procs)
        busy, total = m1[0] - self.m0[0], m1[1] - self.m0[1]
        machine = (os.cpu_count() or 1) * busy / total if total > 0 else None
        return wall, used, machine

    def stop(self, events: int) -> dict[str, float]:
        """The window read as figures: wall seconds, cores and CPU µs per event of each
        group, the machine's busy cores and other sessions' share of them."""
        wall, used, machine = self.measure()
        out: dict[str, float] = {"wall_s": wall}
        for name, cpu in used.items():
            out[f"{name}_cores"] = cpu / wall
            out[f"{name}_us_per_event"] = 1e6 * cpu / max(events, 1)
        if machine is not None:
            out["machine_cores_busy"] = machine
            out["others_cores"] = max(0.0, machine - sum(used.values()) / wall)
        return out


def loadavg() -> list[float]:
    with contextlib.suppress(OSError):
        return [round(x, 2) for x in os.getloadavg()]
    return []


# --- percentiles and results ------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile by nearest rank (no interpolation); NaN of nothing."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile, linearly interpolated between ranks; NaN of nothing."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    k = (len(ordered) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def write_report(path: Path, report: dict[str, Any]) -> None:
    """The results as indented JSON (anything else as its str), with a final newline."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
