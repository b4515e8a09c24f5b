"""The probe behind self-healing, on a real broker: what counts as a record waiting.

Past the group's committed offsets a partition may hold only transaction markers and
aborted records, which no read-committed consumer is ever given: nothing waits there. A
real record waits, and so does anything a read cannot get through: a client that cannot
read is what self-healing replaces.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from confluent_kafka import Producer

from consumer.settings import Settings
from consumer.transport import KafkaTransport
from tests.fixtures.kafka import NameFactory, TopicFactory
from tests.helpers.observe import wait_for

pytestmark = pytest.mark.integration

_TIMEOUT_S = 30.0


@pytest.fixture
def input_topic(new_topic: TopicFactory, kafka_bootstrap_servers: str) -> str:
    """Offsets 0-1 committed records, 2 their commit marker, 3 an aborted record, 4 its
    abort marker: the end is 5."""
    topic = new_topic("probe")
    producer = Producer(
        {"bootstrap.servers": kafka_bootstrap_servers, "transactional.id": f"{topic}-txn"}
    )
    producer.init_transactions(_TIMEOUT_S)
    producer.begin_transaction()
    for n in range(2):
        producer.produce(topic, f"record-{n}".encode(), key=str(n).encode())
    producer.commit_transaction(_TIMEOUT_S)
    producer.begin_transaction()
    producer.produce(topic, b"aborted", key=b"x")
    producer.flush(_TIMEOUT_S)
    producer.abort_transaction(_TIMEOUT_S)
    return topic


@pytest.fixture
def transport(
    input_topic: str, kafka_bootstrap_servers: str, new_group_id: NameFactory
) -> Iterator[KafkaTransport]:
    settings = Settings(
        kafka_bootstrap_servers=kafka_bootstrap_servers,
        mlflow_tracking_uri="unused",
        input_topic=input_topic,
        group_id=new_group_id("probe"),
    )
    transport = KafkaTransport(settings)
    yield transport
    transport.close()


def test_only_markers_and_aborted_records_past_an_offset_are_not_a_record_waiting(
    transport: KafkaTransport, input_topic: str
) -> None:
    # A new group's coordinator may still be loading: "not coordinator" for a moment.
    progress = wait_for(
        transport.group_progress,
        lambda answer: answer is not None,
        timeout_s=_TIMEOUT_S,
        what="the group's progress",
    )
    assert progress is not None
    assert progress[(input_topic, 0)].end == 5

    assert transport.record_waiting({(input_topic, 0): 1}) is True
    assert transport.record_waiting({(input_topic, 0): 2}) is False


def test_a_read_that_cannot_reach_the_end_counts_as_a_record_waiting(
    transport: KafkaTransport, input_topic: str
) -> None:
    # A partition the topic does not have: no read can get anywhere on it.
    assert transport.record_waiting({(input_topic, 0): 2, (input_topic, 7): 0}) is True
