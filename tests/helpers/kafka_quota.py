"""Broker-side client quotas: make one client's produce requests slow, then lift that again.

confluent-kafka's AdminClient has no AlterClientQuotas, so this runs Kafka's own
``kafka.admin.ConfigCommand`` from the jars ``scripts/kafka-local`` resolves (the same
``KAFKA_LOCAL_VERSION`` / ``KAFKA_LOCAL_CACHE``); it works against any broker.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from devstack import ROOT

_TIMEOUT_S = 120


def _kafka_lib() -> Path:
    cache = Path(os.environ.get("KAFKA_LOCAL_CACHE", ROOT / ".cache" / "kafka"))
    lib = cache / os.environ.get("KAFKA_LOCAL_VERSION", "4.1.1") / "lib"
    if not lib.is_dir():
        pytest.fail(f"Kafka's jars are not in {lib}: run `scripts/kafka-local resolve` once")
    return lib


def set_producer_byte_rate(bootstrap_servers: str, client_id: str, rate: int | None) -> None:
    """Limit what ``client_id`` may produce to ``rate`` bytes/s on each broker (None lifts it)."""
    change = (
        ["--delete-config", "producer_byte_rate"]
        if rate is None
        else ["--add-config", f"producer_byte_rate={rate}"]
    )
    java_home = os.environ.get("JAVA_HOME")
    command = [
        str(Path(java_home) / "bin" / "java") if java_home else "java",
        "-XX:TieredStopAtLevel=1",  # a one-shot tool: start fast rather than run fast
        "-cp",
        f"{_kafka_lib()}/*",
        "kafka.admin.ConfigCommand",
        "--bootstrap-server",
        bootstrap_servers,
        "--alter",
        *change,
        "--entity-type",
        "clients",
        "--entity-name",
        client_id,
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=_TIMEOUT_S, check=False
    )
    if result.returncode != 0 or "Completed" not in result.stdout:
        pytest.fail(f"ConfigCommand failed ({result.returncode}):\n{result.stdout}{result.stderr}")
