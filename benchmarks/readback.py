"""Read topics back as a ``read_committed`` subscriber sees them, from their beginning.

Throughput is measured from the output's own record timestamps (set by the writing
producer when it produced each record), so the harness is not in the loop while a
phase runs; counting keys proves every application came out exactly once.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from contextlib import closing
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

from benchmarks import BenchmarkError
from devstack import unique_name

_BATCH: Final = 10_000
_POLL_S: Final = 0.5
_METADATA_TIMEOUT_S: Final = 30.0


def committed_reader(bootstrap_servers: str, topics: Sequence[str], *, eof: bool) -> Consumer:
    """A consumer assigned every partition of ``topics`` from the beginning, committed
    records only; with ``eof`` it reports the end of each partition."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": unique_name("bench-reader"),
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": eof,
        }
    )
    assignment = []
    for topic in topics:
        metadata = consumer.list_topics(topic, timeout=_METADATA_TIMEOUT_S)
        assignment += [
            TopicPartition(topic, p, OFFSET_BEGINNING) for p in metadata.topics[topic].partitions
        ]
    consumer.assign(assignment)
    return consumer


@dataclass
class TopicContents:
    """What a topic holds: record count, distinct keys, timestamps (ms) grouped by label."""

    records: int = 0
    keys: set[bytes] = field(default_factory=set)
    timestamps: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))


def read_topic(
    bootstrap_servers: str,
    topic: str,
    *,
    expected: int,
    label: Callable[[Message], str] = lambda _message: "all",
    timeout_s: float = 300.0,
) -> TopicContents:
    """Every committed record of ``topic``, read until each partition reports its end;
    ``BenchmarkError`` unless there are ``expected`` records with ``expected`` distinct keys
    (every application came out exactly once).

    Call it once the writers have stopped: with no transaction open, the end is final.
    """
    contents = TopicContents()
    try:
        with closing(committed_reader(bootstrap_servers, [topic], eof=True)) as consumer:
            pending = {tp.partition for tp in consumer.assignment()}
            deadline = time.monotonic() + timeout_s
            while pending:
                if time.monotonic() > deadline:
                    raise BenchmarkError(
                        f"{topic}: partitions {sorted(pending)} not read to the end"
                    )
                for message in consumer.consume(_BATCH, _POLL_S):
                    if (error := message.error()) is None:
                        contents.records += 1
                        contents.keys.add(message.key() or b"")
                        contents.timestamps[label(message)].append(message.timestamp()[1])
                    elif error.code() == KafkaError._PARTITION_EOF:
                        pending.discard(message.partition())
                    else:
                        raise BenchmarkError(f"reading {topic}: {error.str()}")
    except KafkaException as exc:
        raise BenchmarkError(f"reading {topic}: {exc}") from exc
    if contents.records != expected or len(contents.keys) != expected:
        raise BenchmarkError(
            f"{topic}: {contents.records:,} records with {len(contents.keys):,} distinct keys "
            f"for {expected:,} applications"
        )
    return contents
