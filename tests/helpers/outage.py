"""Broker outages for the fault tests: stop and restart the session's broker, read what the
worker said about it (``test_faults_broker*.py``; their module docstring tells the story)."""

from __future__ import annotations

import statistics
import time
from typing import Final

import orjson

from devstack import Broker, WorkerProcess

RECOVERY_BOUND_S: Final = 120.0
"""Every application published before and during an outage is scored within this."""
SELF_HEAL_LINE: Final = "self-healing: not consuming"
TEST_TIMEOUT_S: Final = 2_400
"""A restart cycle took 20 s on a quiet machine and 85 s at load average 20."""


def outage(broker: Broker, down_s: float) -> float:
    """Stop the broker for ``down_s``; returns the monotonic time it answered again."""
    try:
        broker.stop()
        time.sleep(down_s)  # the outage itself, not a wait for readiness
    finally:
        broker.start()  # returns once the broker answers a metadata request
    return time.monotonic()


def exit_reasons(worker: WorkerProcess) -> list[str]:
    """The worker's own CRITICAL lines (each precedes a deliberate exit)."""
    lines = worker.log_path.read_text().splitlines()
    records = [orjson.loads(line) for line in lines if line[:1] == "{"]
    return [
        str(r["message"])
        for r in records
        if r["level"] == "CRITICAL" and r["logger"] in ("consumer", "consumer.worker")
    ]


def report(what: str, recoveries: list[float], heals: int) -> None:
    """Print the recovery times the issue asks to report (``pytest -s`` or the CI log)."""
    print(
        f"{what}: {len(recoveries)} restarts; scoring again after the broker returned: "
        f"median {statistics.median(recoveries):.1f}s, worst {max(recoveries):.1f}s; "
        f"self-heals: {heals}"
    )
