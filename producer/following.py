"""Following the scores topic: what a downstream team runs to subscribe in one line.

``follow_scores`` is transport-agnostic: it takes anything shaped like a confluent-kafka
``Consumer``; the CLI passes a ``read_committed`` consumer from ``producer.kafka``, so
scores of aborted worker transactions are never seen. Given a ``dead_letters`` sink it
reads the dead-letter topic too, so that every application has exactly one outcome to
wait for: its score or its dead letter (the demo counts them so).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol

from pydantic import ValidationError

from contracts.score import LoanScore
from contracts.topics import (
    CORRELATION_ID_HEADER,
    DEAD_LETTER_TOPIC,
    ERROR_TYPE_HEADER,
    SCORES_TOPIC,
)
from producer.errors import KafkaClientError

_POLL_S: Final = 0.5

StopReason = Literal["count", "timeout", "interrupted"]


class MessageLike(Protocol):
    """The part of ``confluent_kafka.Message`` that ``follow_scores`` reads."""

    def error(self) -> Any: ...
    def topic(self) -> str | None: ...
    def value(self) -> bytes | None: ...
    def headers(self) -> Any: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...


class KafkaConsumerLike(Protocol):
    """The part of ``confluent_kafka.Consumer`` that ``follow_scores`` uses."""

    def subscribe(self, topics: list[str]) -> None: ...
    def poll(self, timeout: float = -1) -> MessageLike | None: ...


@dataclass(frozen=True, slots=True)
class ReceivedScore:
    """A score as received, with where it came from and the application's correlation id."""

    score: LoanScore
    correlation_id: str | None
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An application the worker could not score: why (a ``DeadLetterReason`` value, from the
    ``error-type`` header), its correlation id, and where the dead letter is."""

    reason: str | None
    correlation_id: str | None
    partition: int
    offset: int


@dataclass
class FollowReport:
    """How many scores (and dead letters) were handed to the sinks, how many records were not
    scores, and why following stopped."""

    received: int = 0
    invalid: int = 0
    dead_letters: int = 0
    stopped: StopReason = "count"


def follow_scores(
    consumer: KafkaConsumerLike,
    *,
    sink: Callable[[ReceivedScore], None],
    topic: str = SCORES_TOPIC,
    dead_letters: Callable[[DeadLetter], None] | None = None,
    dead_letter_topic: str = DEAD_LETTER_TOPIC,
    count: int | None = None,
    timeout_s: float | None = None,
    on_problem: Callable[[str], None] = lambda _: None,
    clock: Callable[[], float] = time.monotonic,
) -> FollowReport:
    """Subscribe to ``topic`` and pass each score to ``sink`` until a stop condition.

    Given ``dead_letters``, also subscribe to ``dead_letter_topic`` and pass each of its
    records there; ``count`` then counts both (one outcome per application). Stops after
    ``count`` outcomes, after ``timeout_s`` seconds in total, or on Ctrl-C, whichever comes
    first (neither given: until Ctrl-C). Records that are not valid ``LoanScore`` JSON and
    non-fatal Kafka errors are described to ``on_problem`` and skipped. The caller owns the
    consumer (and closes it).

    Raises ``KafkaClientError`` on a fatal Kafka error.
    """
    consumer.subscribe([topic] if dead_letters is None else [topic, dead_letter_topic])
    report = FollowReport()
    deadline = None if timeout_s is None else clock() + timeout_s
    try:
        while count is None or report.received + report.dead_letters < count:
            wait = _POLL_S if deadline is None else min(_POLL_S, deadline - clock())
            if wait <= 0:
                report.stopped = "timeout"
                break
            message = consumer.poll(wait)
            if message is None or _kafka_error(message, on_problem):
                continue
            if dead_letters is not None and message.topic() == dead_letter_topic:
                dead_letters(_dead_letter(message))
                report.dead_letters += 1
            else:
                _handle(message, sink, report, on_problem)
    except KeyboardInterrupt:
        report.stopped = "interrupted"
    return report


def _kafka_error(message: MessageLike, on_problem: Callable[[str], None]) -> bool:
    """Whether ``message`` is a (non-fatal, described) Kafka error; a fatal one raises."""
    error = message.error()
    if error is None:
        return False
    if error.fatal():
        raise KafkaClientError(f"fatal Kafka error while following: {error.str()}")
    on_problem(f"Kafka: {error.str()}")
    return True


def _dead_letter(message: MessageLike) -> DeadLetter:
    headers = message.headers()
    return DeadLetter(
        reason=_header(headers, ERROR_TYPE_HEADER),
        correlation_id=_header(headers, CORRELATION_ID_HEADER),
        partition=message.partition() or 0,
        offset=message.offset() or 0,
    )


def _handle(
    message: MessageLike,
    sink: Callable[[ReceivedScore], None],
    report: FollowReport,
    on_problem: Callable[[str], None],
) -> None:
    where = f"partition {message.partition()} offset {message.offset()}"
    try:
        score = LoanScore.model_validate_json(message.value() or b"")
    except ValidationError as exc:
        report.invalid += 1
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "<record>"
        on_problem(f"{where}: not a score ({exc.error_count()} errors; {field}: {first['msg']})")
        return
    sink(
        ReceivedScore(
            score=score,
            correlation_id=_header(message.headers(), CORRELATION_ID_HEADER),
            partition=message.partition() or 0,
            offset=message.offset() or 0,
        )
    )
    report.received += 1


def _header(headers: list[tuple[str, bytes | None]] | None, name: str) -> str | None:
    for key, value in headers or ():
        if key == name and value is not None:
            return value.decode(errors="replace")
    return None
