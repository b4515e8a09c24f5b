"""Deprecated: the local services moved to ``devstack``; this shim keeps the old names.

Only ``scripts/demo.py`` and ``benchmarks/stack.py`` still import it; delete it once they
import ``devstack`` directly. ``stop_detached`` lives only here: it served the old demo's
``stop`` command, which stopped services another process had started.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any, Final

import devstack
from devstack import (
    ROOT,
    LocalBroker,
    MlflowServer,
    create_topics,
    free_port,
    log_tail,
    stop_process_group,
    topic_led,
)
from devstack import DevstackError as ServiceError
from devstack.kafka import KAFKA_LOCAL
from devstack.mlflow_server import _mlflow_command as mlflow_command
from devstack.mlflow_server import wait_until_healthy

__all__ = [
    "KAFKA_LOCAL",
    "ROOT",
    "LocalBroker",
    "MlflowServer",
    "ServiceError",
    "WorkerProcess",
    "create_topics",
    "free_port",
    "log_tail",
    "mlflow_command",
    "stop_detached",
    "stop_process_group",
    "topic_led",
    "wait_until_healthy",
]


_POLL_S: Final = 0.25
_STOP_DETACHED_TIMEOUT_S: Final = 60.0


class WorkerProcess(devstack.WorkerProcess):
    """``devstack.WorkerProcess`` under its old probe name."""

    def get_json(self, path: str) -> tuple[int, Any]:
        return self.get(path)


def stop_detached(
    pid: int, *, marker: str, group: bool, timeout_s: float = _STOP_DETACHED_TIMEOUT_S
) -> bool:
    """Stop a process another process started, if it still runs a command containing ``marker``.

    SIGTERM (to its whole group when ``group``), then SIGKILL once ``timeout_s`` passes.
    Returns False, sending nothing, when no such process runs (gone, or its pid reused).
    """
    command = _running_command(pid)
    if command is None or marker not in command:
        return False
    send = os.killpg if group else os.kill
    for signum in (signal.SIGTERM, signal.SIGKILL):
        try:
            send(pid, signum)
        except ProcessLookupError:
            return True
        deadline = time.monotonic() + timeout_s
        while _running_command(pid) is not None and time.monotonic() < deadline:
            time.sleep(_POLL_S)
        if _running_command(pid) is None:
            return True
    raise ServiceError(f"pid {pid} ({marker}) survived SIGKILL")


def _running_command(pid: int) -> str | None:
    """The command line of ``pid`` while it runs (None once it is gone or a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":
        return None
    return command.replace(b"\0", b" ").decode(errors="replace")
