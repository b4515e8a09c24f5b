"""Kafka for the monitor behind a narrow Protocol: a read-committed consumer of its four
inputs and a transactional producer for dead letters and alerts.

Library errors are classified once, by the worker's own ``consumer.transport.translate``
(retriable / abortable / fatal); the policy lives in ``monitor.loop``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Final, Protocol

from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition

from consumer.errors import FatalTransportError
from consumer.records import OutboundRecord
from consumer.transport import translate
from monitor.settings import Settings

_client_log = logging.getLogger("monitor.librdkafka")
_OP_TIMEOUT_S: Final = 10.0
_QUEUE_FULL_POLL_S: Final = 0.05
# librdkafka's fetch buffers are the monitor's largest allocation after its imports: a
# fetch response (up to 1 MiB a partition, 50 MiB in all by default) is one buffer, held
# until the last of its messages is dropped, and the prefetch queue defaults to 64 MiB.
# In-process against a local broker over a 100,000-application backlog (24 partitions),
# RSS rose by 81 MB during the first consume and peaked at 413 MB with a 16 MiB queue
# alone; with these bounds, at 339 MB, consume waited no longer (benchmarks/README.md,
# finding 10). 4 MiB still holds about a 10,000-record batch of the worker's records;
# a 10 ms fetch backoff resumes fetching as soon as there is room (the worker's setting,
# consumer/transport.py, explains the default's 1 s stall).
_PREFETCH_KBYTES: Final = 4_096
_FETCH_MAX_BYTES: Final = 2 * 1024 * 1024
_PARTITION_FETCH_MAX_BYTES: Final = 256 * 1024
_FETCH_QUEUE_BACKOFF_MS: Final = 10

PartitionKey = tuple[str, int]


class Transport(Protocol):
    """What the monitor needs from Kafka; every method raises ``TransportError`` subclasses."""

    def start(self) -> None:
        """Fence earlier incarnations (init transactions)."""

    def subscribe(self) -> None:
        """Join the group on the inputs; ``consume`` then serves its assignments."""

    def consume(self, max_messages: int, timeout_s: float) -> list[Message]: ...

    def committed(self, partitions: Iterable[PartitionKey]) -> dict[PartitionKey, int]:
        """The group's committed next offset per partition (-1 when none)."""

    def write(self, records: Iterable[OutboundRecord], offsets: Mapping[PartitionKey, int]) -> None:
        """One transaction: produce ``records``, add ``offsets`` for the group, commit."""

    def abort(self) -> None: ...

    def close(self) -> None: ...


class KafkaTransport:
    """``Transport`` on confluent-kafka clients built from ``Settings``."""

    def __init__(self, settings: Settings) -> None:
        self._topics = settings.topics()
        common = {**settings.kafka_common(), "logger": _client_log}
        try:
            self._consumer = Consumer(
                {
                    "queued.max.messages.kbytes": _PREFETCH_KBYTES,  # MONITOR_KAFKA_EXTRA wins
                    "fetch.queue.backoff.ms": _FETCH_QUEUE_BACKOFF_MS,
                    "fetch.max.bytes": _FETCH_MAX_BYTES,
                    "max.partition.fetch.bytes": _PARTITION_FETCH_MAX_BYTES,
                    **common,
                    "group.id": settings.group_id,
                    "isolation.level": "read_committed",
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                }
            )
            self._producer = Producer(
                {**common, "transactional.id": settings.transactional_id, "linger.ms": 5}
            )
        except KafkaException as exc:
            raise FatalTransportError(f"invalid Kafka configuration: {exc}") from exc

    def start(self) -> None:
        try:
            self._producer.init_transactions(_OP_TIMEOUT_S)
        except KafkaException as exc:
            raise translate(exc, "init transactions") from exc

    def subscribe(self) -> None:
        topics = self._topics
        inputs = [topics.predictions, topics.shadow_scores, topics.outcomes, topics.applications]
        self._consumer.subscribe(inputs)

    def consume(self, max_messages: int, timeout_s: float) -> list[Message]:
        try:
            messages = self._consumer.consume(max_messages, timeout_s)
        except KafkaException as exc:
            raise translate(exc, "consume") from exc
        return [message for message in messages if message.error() is None]

    def committed(self, partitions: Iterable[PartitionKey]) -> dict[PartitionKey, int]:
        wanted = [TopicPartition(topic, partition) for topic, partition in partitions]
        try:
            found = self._consumer.committed(wanted, _OP_TIMEOUT_S)
        except KafkaException as exc:
            raise translate(exc, "read committed offsets") from exc
        return {(p.topic, p.partition): p.offset for p in found}

    def write(self, records: Iterable[OutboundRecord], offsets: Mapping[PartitionKey, int]) -> None:
        step = "begin transaction"
        try:
            self._producer.begin_transaction()
            step = "produce"
            for topic, key, value, headers in records:
                self._produce(topic, key, value, headers)
            step = "send offsets to transaction"
            positions = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
            self._producer.send_offsets_to_transaction(
                positions, self._consumer.consumer_group_metadata(), _OP_TIMEOUT_S
            )
            step = "commit transaction"
            self._producer.commit_transaction(_OP_TIMEOUT_S)
        except KafkaException as exc:
            raise translate(exc, step) from exc

    def abort(self) -> None:
        try:
            self._producer.abort_transaction(_OP_TIMEOUT_S)
        except KafkaException as exc:
            raise translate(exc, "abort transaction") from exc

    def close(self) -> None:
        self._consumer.close()
        self._producer.flush(_OP_TIMEOUT_S)

    def _produce(self, topic: str, key: bytes | None, value: bytes | None, headers: list) -> None:
        while True:
            try:
                self._producer.produce(topic, value, key, headers=headers)
                return
            except BufferError:
                self._producer.poll(_QUEUE_FULL_POLL_S)  # backpressure: wait for room
