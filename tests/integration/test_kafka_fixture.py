"""The test broker does what the worker needs: plain delivery, transactions, restarts."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from devstack import LocalBroker, unique_name
from tests.fixtures.kafka import NameFactory, TopicFactory

pytestmark = pytest.mark.integration

_READ_TIMEOUT_S = 30.0


def _produce(bootstrap_servers: str, topic: str, values: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap_servers, "enable.idempotence": True})
    for value in values:
        producer.produce(topic, value=value)
    assert producer.flush(_READ_TIMEOUT_S) == 0, "records left undelivered"


def _read_until(
    bootstrap_servers: str, topic: str, group_id: str, last: bytes, isolation: str
) -> list[bytes]:
    """Every value of ``topic`` from the beginning up to and including ``last``."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": group_id,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": isolation,
        }
    )
    consumer.subscribe([topic])
    values: list[bytes] = []
    deadline = time.monotonic() + _READ_TIMEOUT_S
    try:
        while last not in values:
            if time.monotonic() > deadline:
                pytest.fail(f"{last!r} not read from {topic} in time; read {values!r}")
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error():
                raise KafkaException(message.error())
            values.append(message.value() or b"")
    finally:
        consumer.close()
    return values


def test_produced_records_are_consumed_in_order(
    kafka_bootstrap_servers: str, new_topic: TopicFactory, new_group_id: NameFactory
) -> None:
    topic = new_topic("roundtrip")
    sent = [f"application-{i}".encode() for i in range(20)]

    _produce(kafka_bootstrap_servers, topic, sent)

    received = _read_until(
        kafka_bootstrap_servers, topic, new_group_id(), sent[-1], "read_committed"
    )

    assert received == sent


def test_read_committed_sees_committed_transactions_only(
    kafka_bootstrap_servers: str, new_topic: TopicFactory, new_group_id: NameFactory
) -> None:
    topic = new_topic("tx", partitions=2)
    producer = Producer(
        {"bootstrap.servers": kafka_bootstrap_servers, "transactional.id": unique_name("tx")}
    )
    producer.init_transactions(_READ_TIMEOUT_S)

    def transaction(values: list[bytes], *, commit: bool) -> None:
        producer.begin_transaction()
        for value in values:
            producer.produce(topic, value=value, partition=0)
        if commit:
            producer.commit_transaction(_READ_TIMEOUT_S)
        else:
            producer.flush(_READ_TIMEOUT_S)  # the aborted records really reach the log
            producer.abort_transaction(_READ_TIMEOUT_S)

    committed = [b"committed-0", b"committed-1"]
    aborted = [b"aborted-0", b"aborted-1"]
    after = [b"committed-2"]
    transaction(committed, commit=True)
    transaction(aborted, commit=False)
    transaction(after, commit=True)

    seen_committed = _read_until(
        kafka_bootstrap_servers, topic, new_group_id(), after[-1], "read_committed"
    )
    seen_uncommitted = _read_until(
        kafka_bootstrap_servers, topic, new_group_id(), after[-1], "read_uncommitted"
    )

    assert seen_committed == committed + after
    assert seen_uncommitted == committed + aborted + after


def test_topics_are_created_with_every_partition_led(
    kafka_admin: AdminClient, new_topic: TopicFactory
) -> None:
    topic = new_topic("led", partitions=3)

    partitions = kafka_admin.list_topics(topic=topic, timeout=10).topics[topic].partitions

    assert sorted(partitions) == [0, 1, 2]
    assert all(p.leader >= 0 for p in partitions.values())


def test_broker_does_not_auto_create_topics(
    kafka_bootstrap_servers: str, kafka_admin: AdminClient
) -> None:
    topic = unique_name("missing")
    producer = Producer({"bootstrap.servers": kafka_bootstrap_servers, "message.timeout.ms": 2000})
    errors: list[object] = []
    producer.produce(topic, value=b"x", on_delivery=lambda err, _msg: errors.append(err))
    producer.flush(_READ_TIMEOUT_S)

    assert len(errors) == 1
    assert errors[0] is not None, "a record to a missing topic was delivered"
    assert topic not in kafka_admin.list_topics(timeout=10).topics


def test_local_broker_restarts_on_its_port_with_its_data(tmp_path: Path) -> None:
    # A second broker beside the session's one: instances coexist on their own ports and dirs.
    broker = LocalBroker(tmp_path / "kafka")
    try:
        broker.start()
        admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
        topic = unique_name("restart")
        admin.create_topics([NewTopic(topic, num_partitions=1)])[topic].result(_READ_TIMEOUT_S)
        _produce(broker.bootstrap_servers, topic, [b"before-restart"])

        broker.stop()
        with pytest.raises(KafkaException):
            admin.list_topics(timeout=2)
        broker.start()
        _produce(broker.bootstrap_servers, topic, [b"after-restart"])

        values = _read_until(
            broker.bootstrap_servers, topic, unique_name("g"), b"after-restart", "read_committed"
        )
        assert values == [b"before-restart", b"after-restart"]
    finally:
        broker.close()
