"""The readings and arithmetic behind every number: the machine, CPU and memory of its
processes (Linux ``/proc``), and percentiles, throughput windows and ratios (pure)."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, NamedTuple

import numpy as np
from pydantic import BaseModel

_CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")
# /proc/<pid>/stat fields after the command name: utime and stime are the 12th and 13th.
_UTIME_FIELD: Final = 11


class MachineInfo(BaseModel):
    """The machine a run measured, its load when the run started, and the commit measured."""

    nproc: int
    cpu_model: str
    memory_gib: float
    load_average: tuple[float, float, float]
    python: str
    platform: str
    source: str = "unknown"


def machine_info(root: Path) -> MachineInfo:
    """This machine, now, and the commit of the code in ``root`` (``-dirty`` with uncommitted
    changes to tracked files, ``unknown`` outside a git checkout)."""
    describe = ["git", "-C", str(root), "describe", "--always", "--dirty", "--exclude=*"]
    try:
        source = subprocess.run(describe, capture_output=True, text=True, check=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        source = None
    cpus, memory = _fields("cpuinfo", "model name"), _fields("meminfo", "MemTotal:")
    return MachineInfo(
        nproc=os.cpu_count() or 1,
        cpu_model=" ".join(cpus[0][3:]) if cpus else platform.processor(),
        memory_gib=round(int(memory[0][1]) / 1024**2, 1) if memory else 0.0,
        load_average=load_average(),
        python=platform.python_version(),
        platform=platform.platform(terse=True),
        source=source.stdout.strip() if source else "unknown",
    )


def load_average() -> tuple[float, float, float]:
    one, five, fifteen = (round(load, 2) for load in os.getloadavg())
    return one, five, fifteen


def _fields(name: str, prefix: str = "") -> list[list[str]]:
    """The whitespace-split lines of ``/proc/<name>`` starting with ``prefix``; [] if unreadable."""
    try:
        text = Path("/proc", name).read_text()
    except OSError:
        return []
    return [line.split() for line in text.splitlines() if line.startswith(prefix)]


def memory_mb(pid: int, field: str = "VmRSS") -> float:
    """``pid``'s resident memory now (``VmRSS``) or at its peak (``VmHWM``), in MB (10^6
    bytes); 0 when unknown."""
    found = _fields(f"{pid}/status", f"{field}:")
    return round(int(found[0][1]) * 1024 / 1e6, 1) if found else 0.0


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds ``pid`` has used (its threads included); 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[_UTIME_FIELD]) + int(fields[_UTIME_FIELD + 1])) / _CLOCK_TICKS


@dataclass(frozen=True)
class CpuSnapshot:
    """CPU seconds of some processes and of the whole machine (not idle) at one instant."""

    at: float
    per_process: dict[str, float]
    machine: float

    @classmethod
    def now(cls, pids: Mapping[str, int]) -> CpuSnapshot:
        ticks = [int(v) for v in _fields("stat", "cpu ")[0][1:]]
        idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
        busy = (sum(ticks[:8]) - idle) / _CLOCK_TICKS
        return cls(time.monotonic(), {name: _cpu_seconds(pid) for name, pid in pids.items()}, busy)


def cores_used(start: CpuSnapshot, end: CpuSnapshot) -> dict[str, float]:
    """Average cores each process used between two snapshots, plus ``others`` (every other
    process on the machine: other users' work is noise in a measurement) and ``machine``
    (everything)."""
    if (wall := end.at - start.at) <= 0:
        return {}
    used = {
        name: round((end.per_process[name] - start.per_process.get(name, 0.0)) / wall, 2)
        for name in end.per_process
    }
    machine = (end.machine - start.machine) / wall
    used["others"] = round(max(0.0, machine - sum(used.values())), 2)
    used["machine"] = round(machine, 2)
    return used


class Percentiles(BaseModel):
    """A latency distribution, in milliseconds."""

    count: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float


def percentiles(values_ms: Sequence[float]) -> Percentiles:
    """p50/p95/p99 (linear interpolation), max and mean of ``values_ms``.

    Raises ``ValueError`` for an empty sample: a percentile of nothing is not zero.
    """
    if len(values_ms) == 0:
        raise ValueError("no latencies to summarize")
    sample = np.asarray(values_ms, dtype=np.float64)
    p50, p95, p99 = np.percentile(sample, [50, 95, 99])
    return Percentiles(
        count=len(sample),
        p50_ms=p50,
        p95_ms=p95,
        p99_ms=p99,
        max_ms=sample.max(),
        mean_ms=sample.mean(),
    )


class Window(NamedTuple):
    """Records written in ``(start_ms, end_ms]``: the first instant's records are the
    output of work done before the window opened, so they are not counted."""

    start_ms: int
    end_ms: int
    records: int

    @property
    def seconds(self) -> float:
        return (self.end_ms - self.start_ms) / 1000

    @property
    def rate(self) -> float:
        """Records per second; 0 for a window with no duration."""
        return self.records / self.seconds if self.seconds > 0 else 0.0


def span(timestamps: Sequence[int]) -> Window:
    """From the first record to the last (the whole drain). Raises ``ValueError`` if empty."""
    return steady_window({"all": timestamps})


def steady_window(by_writer: Mapping[str, Sequence[int]]) -> Window:
    """The window in which every writer was producing: from the moment the last of them
    wrote its first record to the moment the first of them wrote its last.

    With one writer this is ``span``. With several it leaves out start-up skew (one
    worker ready before the other, the rebalance between them) and the tail in which
    one has drained its partitions and the other has not. Falls back to the span of
    all records when the writers never overlapped. Raises ``ValueError`` if empty.
    """
    series = [ts for ts in by_writer.values() if ts]
    if not series:
        raise ValueError("no records to time")
    start, end = max(min(ts) for ts in series), min(max(ts) for ts in series)
    if end <= start:  # never overlapped (or one writer with one instant): all of them
        start, end = min(min(ts) for ts in series), max(max(ts) for ts in series)
    return Window(start, end, sum(start < t <= end for ts in series for t in ts))


def ratio(numerator: float, denominator: float) -> float | None:
    """``numerator / denominator``, or None when the denominator is not positive."""
    return numerator / denominator if denominator > 0 else None
