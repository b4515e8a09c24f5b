"""Read a topic back, committed records only, to count its records and time them.

Throughput is measured from the output's own record timestamps (set by the writing
producer when it produced each record), so the harness itself is not in the loop
while a phase runs.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from benchmarks.errors import PhaseError
from benchmarks.stack import unique_name

_BATCH: Final = 10_000
_POLL_S: Final = 0.5
_METADATA_TIMEOUT_S: Final = 30.0

Labeller = Callable[[Message], str]


@dataclass
class TopicContents:
    """What a topic holds: record count, distinct keys, timestamps (ms) grouped by label."""

    records: int = 0
    keys: set[bytes] = field(default_factory=set)
    timestamps: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))

    @property
    def duplicates(self) -> int:
        """Records whose key was already seen (0 when every application was scored once)."""
        return self.records - len(self.keys)


def read_topic(
    bootstrap_servers: str,
    topic: str,
    *,
    label: Labeller = lambda _message: "all",
    progress: Callable[[int], None] = lambda _read: None,
    timeout_s: float = 300.0,
) -> TopicContents:
    """Every committed record of ``topic``, read until each partition reports its end.

    Call it once the writers have stopped: with no transaction open, the end of a
    partition is final.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": unique_name("bench-readback"),
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
        }
    )
    contents = TopicContents()
    try:
        partitions = (
            consumer.list_topics(topic, timeout=_METADATA_TIMEOUT_S).topics[topic].partitions
        )
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        pending = set(partitions)
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise PhaseError(f"{topic}: partitions {sorted(pending)} not read to the end")
            for message in consumer.consume(_BATCH, _POLL_S):
                error = message.error()
                if error is None:
                    contents.records += 1
                    contents.keys.add(message.key() or b"")
                    contents.timestamps[label(message)].append(message.timestamp()[1])
                elif error.code() == KafkaError._PARTITION_EOF:
                    pending.discard(message.partition())
                else:
                    raise PhaseError(f"reading {topic}: {error.str()}")
            progress(contents.records)
    except KafkaException as exc:
        raise PhaseError(f"reading {topic}: {exc}") from exc
    finally:
        consumer.close()
    return contents
