"""A worker's topics (``devstack.ScorerTopics``) from outside: publish to them, and read what
the worker committed.

``read_committed`` reads topics with ``isolation.level=read_committed`` until a condition
holds or a deadline passes; ``read_to_end`` reads them to their final ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer

from consumer.records import Headers

_POLL_S = 0.2


def publish(
    bootstrap_servers: str,
    topic: str,
    records: Iterable[tuple[bytes | None, bytes | None, Headers | None]],
) -> None:
    """Produce ``(key, value, headers)`` records in order (idempotent) and wait for all acks."""
    producer = Producer({"bootstrap.servers": bootstrap_servers, "enable.idempotence": True})
    for key, value, headers in records:
        producer.produce(topic, value=value, key=key, headers=headers)
        producer.poll(0)
    remaining = producer.flush(60)
    assert remaining == 0, f"{remaining} records not acknowledged"


def _committed_reader(bootstrap_servers: str, group_id: str, **extra: object) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": group_id,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            **extra,
        }
    )


def read_committed(
    bootstrap_servers: str,
    topics: list[str],
    done: Callable[[dict[str, list[Message]]], bool],
    *,
    group_id: str,
    timeout_s: float = 120.0,
    missing: Callable[[dict[str, list[Message]]], str] = lambda _read: "",
) -> dict[str, list[Message]]:
    """Read ``topics`` from the beginning (read_committed) until ``done(read so far)``.

    Fails the test at the deadline, saying how many records each topic gave and what
    ``missing(read so far)`` says is still awaited.
    """
    consumer = _committed_reader(bootstrap_servers, group_id)
    consumer.subscribe(topics)
    read: dict[str, list[Message]] = {topic: [] for topic in topics}
    deadline = time.monotonic() + timeout_s
    try:
        while not done(read):
            if time.monotonic() > deadline:
                counts = {topic: len(messages) for topic, messages in read.items()}
                pytest.fail(f"topics not complete in {timeout_s:.0f}s: {counts} {missing(read)}")
            for message in consumer.consume(500, _POLL_S):
                if message.error():
                    raise KafkaException(message.error())
                read[message.topic() or ""].append(message)
    finally:
        consumer.close()
    return read


def read_to_end(
    bootstrap_servers: str,
    topics: list[str],
    *,
    group_id: str,
    timeout_s: float = 120.0,
    uncommitted: bool = False,
) -> dict[str, list[Message]]:
    """Every committed record of ``topics``, read until each partition reports its end.

    Use it once no transaction is open on the topics (writers stopped): the end of a
    partition is then final, so extra or duplicate records cannot arrive later.
    ``uncommitted=True`` reads aborted records too (``read_uncommitted``).
    """
    extra: dict[str, object] = {"enable.partition.eof": True}
    if uncommitted:
        extra["isolation.level"] = "read_uncommitted"
    consumer = _committed_reader(bootstrap_servers, group_id, **extra)
    metadata = consumer.list_topics(timeout=30).topics
    pending = {(t, p) for t in topics for p in metadata[t].partitions}
    consumer.subscribe(topics)
    read: dict[str, list[Message]] = {topic: [] for topic in topics}
    deadline = time.monotonic() + timeout_s
    try:
        while pending:
            if time.monotonic() > deadline:
                pytest.fail(f"partitions {sorted(pending)} not read to the end in {timeout_s:.0f}s")
            for message in consumer.consume(500, _POLL_S):
                error = message.error()
                if error is not None and error.code() == KafkaError._PARTITION_EOF:
                    pending.discard((message.topic() or "", message.partition() or 0))
                elif error is not None:
                    raise KafkaException(error)
                else:
                    read[message.topic() or ""].append(message)
    finally:
        consumer.close()
    return read


def byte_headers(message: Message) -> dict[str, bytes]:
    """A consumed record's headers with bytes values, by name."""
    headers = message.headers() or []
    assert isinstance(headers, list)
    return {name: value for name, value in headers if isinstance(value, bytes)}
