"""Kafka clients built from ``Settings``: the only module that constructs confluent-kafka objects.

Library errors are translated to ``KafkaClientError`` here, at the boundary.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Final

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from contracts.kafka import CREDENTIAL_ERRORS
from producer.errors import KafkaClientError
from producer.settings import Settings

LIBRDKAFKA_LOGGER: Final = "producer.librdkafka"
"""librdkafka's own log lines go to this Python logger (served on poll), not raw to stderr."""

# Delivery guarantees the publisher relies on: never weakened by PRODUCER_KAFKA_EXTRA.
_GUARANTEES: Final = {"enable.idempotence": True, "acks": "all"}
_PROBE_TIMEOUT_S: Final = 0.5


def producer_config(settings: Settings) -> dict[str, Any]:
    """An idempotent producer (``acks=all``): retries never duplicate or reorder a record."""
    return {
        "linger.ms": settings.linger_ms,
        "compression.type": settings.compression_type,
        "message.timeout.ms": settings.delivery_timeout_ms,
        **settings.kafka_common(),
        **_GUARANTEES,
        "logger": logging.getLogger(LIBRDKAFKA_LOGGER),
    }


def consumer_config(
    settings: Settings, *, group_id: str, from_beginning: bool, commit: bool
) -> dict[str, Any]:
    """A ``read_committed`` consumer: records of aborted transactions are never seen.

    ``commit`` stores the group's position so a named group resumes where it stopped.
    """
    return {
        "auto.offset.reset": "earliest" if from_beginning else "latest",
        "enable.auto.commit": commit,
        **settings.kafka_common(),
        "group.id": group_id,
        "isolation.level": "read_committed",
        "logger": logging.getLogger(LIBRDKAFKA_LOGGER),
    }


def create_producer(settings: Settings) -> Producer:
    """A producer per ``producer_config``; a rejected configuration raises ``KafkaClientError``."""
    try:
        return Producer(producer_config(settings))
    except KafkaException as exc:
        raise KafkaClientError(
            f"invalid Kafka producer configuration: {describe_kafka_error(exc)}"
        ) from exc


def create_consumer(
    settings: Settings, *, group_id: str, from_beginning: bool, commit: bool
) -> Consumer:
    """A consumer per ``consumer_config``; a rejected configuration raises ``KafkaClientError``."""
    config = consumer_config(
        settings, group_id=group_id, from_beginning=from_beginning, commit=commit
    )
    try:
        return Consumer(config)
    except KafkaException as exc:
        raise KafkaClientError(
            f"invalid Kafka consumer configuration: {describe_kafka_error(exc)}"
        ) from exc


def check_connection(settings: Settings) -> None:
    """Return once a broker answers a metadata request; else raise ``KafkaClientError``.

    Fails within about a second, saying "authentication failed" and librdkafka's reason,
    when the broker refuses the credentials or its certificate is not trusted; otherwise
    keeps asking until ``connect_timeout_s`` and then reports the broker unreachable.
    """
    bootstrap = settings.kafka_bootstrap_servers
    refusals: list[KafkaError] = []
    config: dict[str, Any] = {
        **settings.kafka_common(),
        "error_cb": refusals.append,
        "logger": logging.getLogger(LIBRDKAFKA_LOGGER),
    }
    admin = AdminClient(config)
    deadline = time.monotonic() + settings.connect_timeout_s
    while True:
        try:
            admin.list_topics(timeout=_PROBE_TIMEOUT_S)
            return
        except KafkaException as exc:
            admin.poll(0)  # serves error_cb, where an authentication failure shows
            refused = [error for error in refusals if error.code() in CREDENTIAL_ERRORS]
            if refused:
                raise KafkaClientError(
                    f"Kafka authentication failed at {bootstrap}: {refused[0].str()}"
                ) from exc
            if time.monotonic() >= deadline:
                raise KafkaClientError(
                    f"no Kafka broker answered at {bootstrap} "
                    f"(waited up to {settings.connect_timeout_s:g}s): {describe_kafka_error(exc)}"
                ) from exc


def ensure_topic(
    client: Producer | Consumer, topic: str, *, bootstrap: str, timeout_s: float
) -> None:
    """Return once the broker answers and ``topic`` exists; else raise ``KafkaClientError``.

    Checked before publishing so an unreachable broker or a typo in the topic name is one
    clear message instead of every record failing after the delivery timeout.
    """
    try:
        metadata = client.list_topics(topic=topic, timeout=timeout_s)
    except KafkaException as exc:
        reason = describe_kafka_error(exc)
        raise KafkaClientError(
            f"no Kafka broker answered at {bootstrap} (waited up to {timeout_s:g}s): {reason}"
        ) from exc
    found = metadata.topics.get(topic)
    if found is None or found.error is not None:
        raise KafkaClientError(f"topic {topic!r} does not exist on {bootstrap}")


def describe_kafka_error(exc: KafkaException) -> str:
    """The librdkafka reason inside ``exc`` (its ``KafkaError``'s text), for one-line messages."""
    error = exc.args[0] if exc.args else None
    return error.str() if isinstance(error, KafkaError) else str(exc)
