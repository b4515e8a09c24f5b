"""What the run ran on, and how much CPU and memory its processes used (Linux ``/proc``)."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pydantic import BaseModel

_PROC: Final = Path("/proc")
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
    """This machine, now, and the commit of the code in ``root``."""
    cpus = [line for line in _read("cpuinfo").splitlines() if line.startswith("model name")]
    memory = [line for line in _read("meminfo").splitlines() if line.startswith("MemTotal:")]
    return MachineInfo(
        nproc=os.cpu_count() or 1,
        cpu_model=cpus[0].split(":", 1)[1].strip() if cpus else platform.processor(),
        memory_gib=round(int(memory[0].split()[1]) / 1024**2, 1) if memory else 0.0,
        load_average=load_average(),
        python=platform.python_version(),
        platform=platform.platform(terse=True),
        source=source_version(root),
    )


def source_version(root: Path) -> str:
    """The commit of the code measured, ``-dirty`` with uncommitted changes to tracked files
    (``unknown`` outside a git checkout)."""
    command = ["git", "-C", str(root), "describe", "--always", "--dirty", "--exclude=*"]
    try:
        return subprocess.run(
            command, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def load_average() -> tuple[float, float, float]:
    one, five, fifteen = os.getloadavg()
    return (round(one, 2), round(five, 2), round(fifteen, 2))


def _read(name: str) -> str:
    try:
        return (_PROC / name).read_text()
    except OSError:
        return ""


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds ``pid`` has used (its threads included); 0 once it is gone."""
    stat = _read(f"{pid}/stat")
    if not stat:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[_UTIME_FIELD]) + int(fields[_UTIME_FIELD + 1])) / _CLOCK_TICKS


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory of ``pid`` (``VmHWM``) in MB (10^6 bytes); 0 when unknown."""
    return _status_mb(pid, "VmHWM")


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` now (``VmRSS``) in MB; 0 when unknown."""
    return _status_mb(pid, "VmRSS")


def _status_mb(pid: int, field: str) -> float:
    for line in _read(f"{pid}/status").splitlines():
        if line.startswith(f"{field}:"):
            return round(int(line.split()[1]) * 1024 / 1e6, 1)
    return 0.0


@dataclass(frozen=True)
class CpuSnapshot:
    """CPU seconds of some processes and of the whole machine (not idle) at one instant."""

    at: float
    per_process: dict[str, float]
    machine: float


def cpu_snapshot(pids: dict[str, int]) -> CpuSnapshot:
    fields = [int(v) for v in _read("stat").splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return CpuSnapshot(
        at=time.monotonic(),
        per_process={name: cpu_seconds(pid) for name, pid in pids.items()},
        machine=(sum(fields[:8]) - idle) / _CLOCK_TICKS,
    )


def cores_used(start: CpuSnapshot, end: CpuSnapshot) -> dict[str, float]:
    """Average cores each process used between two snapshots, plus ``others`` (every other
    process on the machine: other users' work is noise in a measurement) and ``machine``
    (everything)."""
    wall = end.at - start.at
    if wall <= 0:
        return {}
    used = {
        name: round((end.per_process[name] - start.per_process.get(name, 0.0)) / wall, 2)
        for name in end.per_process
    }
    machine = (end.machine - start.machine) / wall
    used["others"] = round(max(0.0, machine - sum(used.values())), 2)
    used["machine"] = round(machine, 2)
    return used
