"""Kafka errors are translated into what the worker must do: retry, abort, or stop."""

from __future__ import annotations

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


def test_an_invalid_kafka_configuration_is_fatal_at_construction() -> None:
    settings = Settings(
        kafka_bootstrap_servers="127.0.0.1:1",
        mlflow_tracking_uri="unused",
        kafka_extra={"no.such.property": "x"},
    )
    with pytest.raises(FatalTransportError, match=r"no\.such\.property"):
        KafkaTransport(settings)
