"""Kafka errors are translated into what the worker must do: retry, abort, or stop."""

from __future__ import annotations

from types import SimpleNamespace
from typing import ClassVar

import pytest
from confluent_kafka import KafkaError, KafkaException

from consumer.errors import (
    AbortableTransactionError,
    FatalTransportError,
    RetriableTransportError,
    TransportError,
)
from consumer.settings import Settings
from consumer.transport import KafkaTransport, translate


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"retriable": True}, RetriableTransportError),
        ({"txn_requires_abort": True}, AbortableTransactionError),
        ({"fatal": True}, FatalTransportError),
        ({"fatal": True, "retriable": True}, FatalTransportError),  # fatal wins
        ({"txn_requires_abort": True, "retriable": True}, AbortableTransactionError),
        ({}, FatalTransportError),  # unknown and not retriable: do not guess
    ],
)
def test_kafka_errors_map_to_the_action_to_take(
    flags: dict[str, bool], expected: type[TransportError]
) -> None:
    error = KafkaError(KafkaError._STATE, "the reason", **flags)
    translated = translate(KafkaException(error), "commit transaction")
    assert type(translated) is expected
    assert str(translated) == "commit transaction failed: _STATE: the reason"


@pytest.mark.parametrize(
    "code", [KafkaError._TRANSPORT, KafkaError._TIMED_OUT, KafkaError._ALL_BROKERS_DOWN]
)
def test_brokers_out_of_reach_are_retried_even_without_the_retriable_flag(code: int) -> None:
    translated = translate(KafkaException(KafkaError(code, "no broker")), "list topics")
    assert type(translated) is RetriableTransportError


def test_a_worker_started_before_its_broker_waits_for_it_instead_of_exiting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Nothing listens on port 1: the real client's metadata request fails with _TRANSPORT,
    # which the worker's start loop must see as "not available yet" (Worker._start_transport).
    monkeypatch.setattr("consumer.transport._OP_TIMEOUT_S", 1.0)
    transport = KafkaTransport(
        Settings(kafka_bootstrap_servers="127.0.0.1:1", mlflow_tracking_uri="unused")
    )
    try:
        with pytest.raises(RetriableTransportError, match="list topics failed: _TRANSPORT"):
            transport.start()
    finally:
        transport.close()


def test_an_invalid_kafka_configuration_is_fatal_at_construction() -> None:
    settings = Settings(
        kafka_bootstrap_servers="127.0.0.1:1",
        mlflow_tracking_uri="unused",
        kafka_extra={"no.such.property": "x"},
    )
    with pytest.raises(FatalTransportError, match=r"no\.such\.property"):
        KafkaTransport(settings)


class _BlindProbe:
    """A consumer whose cluster answers metadata but never says where the group is."""

    made: ClassVar[list[_BlindProbe]] = []

    def __init__(self, config: dict[str, object]) -> None:
        self.closed = False
        _BlindProbe.made.append(self)

    def list_topics(self, topic: str, timeout: float) -> SimpleNamespace:
        return SimpleNamespace(topics={topic: SimpleNamespace(partitions={0: None})})

    def committed(self, partitions: list[object], timeout: float) -> list[object]:
        raise KafkaException(KafkaError(KafkaError.NOT_COORDINATOR, "Not coordinator"))

    def close(self) -> None:
        self.closed = True


def test_a_probe_that_cannot_see_the_group_twice_while_the_cluster_answers_is_replaced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("consumer.transport.Consumer", _BlindProbe)
    monkeypatch.setattr("consumer.transport.Producer", lambda config: None)
    _BlindProbe.made = []
    transport = KafkaTransport(
        Settings(kafka_bootstrap_servers="127.0.0.1:1", mlflow_tracking_uri="unused")
    )
    worker_consumer, probe = _BlindProbe.made

    assert transport.group_progress() is None
    assert len(_BlindProbe.made) == 2  # once may be a coordinator still loading

    assert transport.group_progress() is None
    assert probe.closed
    assert len(_BlindProbe.made) == 3
    assert not worker_consumer.closed
