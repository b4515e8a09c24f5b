"""Looking at a running worker from outside: group lag, resident memory, Prometheus metrics."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from confluent_kafka import Consumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

_T = TypeVar("_T")
_POLL_S = 0.1
_KAFKA_TIMEOUT_S = 10.0


class LagProbe:
    """Records of a topic the group has not committed yet (high watermark - committed offset).

    Reads the group's committed offsets without joining the group, so the probe never
    takes part in its rebalances.
    """

    def __init__(self, bootstrap_servers: str, group_id: str, topic: str) -> None:
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap_servers,
                "group.id": group_id,
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "log_level": 0,
            }
        )
        metadata = self._consumer.list_topics(topic, timeout=_KAFKA_TIMEOUT_S).topics[topic]
        self._partitions = [TopicPartition(topic, p) for p in sorted(metadata.partitions)]

    def lag(self) -> int:
        """The group's total lag on the topic now."""
        committed = self._consumer.committed(self._partitions, timeout=_KAFKA_TIMEOUT_S)
        total = 0
        for position in committed:
            low, high = self._consumer.get_watermark_offsets(
                position, timeout=_KAFKA_TIMEOUT_S, cached=False
            )
            total += high - (position.offset if position.offset >= 0 else low)
        return total

    def close(self) -> None:
        self._consumer.close()


def memory_mb(pid: int) -> tuple[float, float]:
    """``(VmRSS, VmHWM)`` of ``pid`` in MiB: resident memory now, and its peak so far."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024  # kB
    return fields["VmRSS"], fields["VmHWM"]


def metric_value(exposition: str, name: str, **labels: str) -> float | None:
    """The sample ``name{labels}`` of a Prometheus text exposition (None when absent)."""
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


def wait_for(
    probe: Callable[[], _T], condition: Callable[[_T], bool], *, timeout_s: float, what: str
) -> _T:
    """Poll ``probe()`` until ``condition`` holds on its value; fail at the deadline with it."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if condition(value):
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout_s:.0f}s (last: {value!r})")
        time.sleep(_POLL_S)  # a polling interval, not a wait for readiness
