"""follow_scores() against an injected fake consumer and clock."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import KafkaError
from rich.console import Console

from contracts.score import LoanScore
from contracts.topics import (
    CORRELATION_ID_HEADER,
    DEAD_LETTER_TOPIC,
    ERROR_TYPE_HEADER,
    SCORES_TOPIC,
    DeadLetterReason,
)
from producer import KafkaClientError, ReceivedScore, follow_scores
from producer.following import DeadLetter
from producer.sinks import JsonLinesSink, TableSink


def _score(n: int) -> LoanScore:
    return LoanScore(
        application_id=f"app-{n}",
        default_probability=0.25,
        predicted_default=False,
        threshold=0.4,
        model_name="credit-default",
        model_version="3",
        scored_at=datetime(2025, 1, 1, tzinfo=UTC),
    )


@dataclass
class FakeMessage:
    payload: bytes | None = None
    kafka_error: KafkaError | None = None
    header_list: list[tuple[str, bytes]] = field(default_factory=list)
    at: int = 0
    on: str = SCORES_TOPIC

    def error(self) -> KafkaError | None:
        return self.kafka_error

    def topic(self) -> str:
        return self.on

    def value(self) -> bytes | None:
        return self.payload

    def headers(self) -> list[tuple[str, bytes]]:
        return self.header_list

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self.at


@dataclass
class FakeConsumer:
    """Hands out ``messages`` one per poll, then nothing; each poll costs its timeout."""

    messages: list[FakeMessage]
    now: float = 0.0
    subscribed: list[str] = field(default_factory=list)

    def subscribe(self, topics: list[str]) -> None:
        self.subscribed = topics

    def poll(self, timeout: float = -1) -> FakeMessage | None:
        if self.messages:
            return self.messages.pop(0)
        self.now += timeout
        return None

    def clock(self) -> float:
        return self.now


def _scores(count: int) -> list[FakeMessage]:
    return [
        FakeMessage(
            _score(n).model_dump_json().encode(),
            header_list=[(CORRELATION_ID_HEADER, f"corr-{n}".encode())],
            at=n,
        )
        for n in range(count)
    ]


def _follow(consumer: FakeConsumer, **options: Any) -> tuple[list[ReceivedScore], Any, list[str]]:
    received: list[ReceivedScore] = []
    problems: list[str] = []
    report = follow_scores(
        consumer, sink=received.append, on_problem=problems.append, clock=consumer.clock, **options
    )
    return received, report, problems


def test_scores_reach_the_sink_with_their_correlation_id_until_count() -> None:
    consumer = FakeConsumer(_scores(5))

    received, report, _ = _follow(consumer, count=3)

    assert consumer.subscribed == [SCORES_TOPIC]
    assert [r.score for r in received] == [_score(0), _score(1), _score(2)]
    assert [r.correlation_id for r in received] == ["corr-0", "corr-1", "corr-2"]
    assert (report.received, report.stopped) == (3, "count")
    assert len(consumer.messages) == 2  # stopped without reading further


def test_dead_letters_are_followed_too_and_count_as_outcomes() -> None:
    dead = FakeMessage(
        b"not json",
        header_list=[
            (ERROR_TYPE_HEADER, DeadLetterReason.INVALID_JSON.encode()),
            (CORRELATION_ID_HEADER, b"corr-dead"),
        ],
        at=4,
        on=DEAD_LETTER_TOPIC,
    )
    consumer = FakeConsumer([_scores(1)[0], dead, *_scores(3)[1:]])
    dead_letters: list[DeadLetter] = []

    received, report, problems = _follow(consumer, count=2, dead_letters=dead_letters.append)

    assert consumer.subscribed == [SCORES_TOPIC, DEAD_LETTER_TOPIC]
    assert [r.score for r in received] == [_score(0)]
    assert dead_letters == [DeadLetter("invalid-json", "corr-dead", partition=0, offset=4)]
    assert (report.received, report.dead_letters, report.invalid) == (1, 1, 0)
    assert report.stopped == "count"
    assert problems == []


def test_timeout_stops_following_on_the_injected_clock() -> None:
    consumer = FakeConsumer(_scores(2))

    received, report, _ = _follow(consumer, topic="t-scores", count=10, timeout_s=3.0)

    assert consumer.subscribed == ["t-scores"]
    assert len(received) == 2
    assert report.stopped == "timeout"
    assert consumer.now == pytest.approx(3.0)


def test_records_that_are_not_scores_are_skipped_and_described() -> None:
    messages = [FakeMessage(b'{"application_id": "x"}', at=7), FakeMessage(None, at=8), *_scores(1)]
    consumer = FakeConsumer(messages)

    received, report, problems = _follow(consumer, count=1)

    assert len(received) == 1
    assert report.invalid == 2
    assert problems[0].startswith("partition 0 offset 7: not a score")


def test_non_fatal_kafka_errors_are_described_and_fatal_ones_raise() -> None:
    transient = FakeMessage(kafka_error=KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART))
    received, _, problems = _follow(FakeConsumer([transient, *_scores(1)]), count=1)
    assert len(received) == 1
    assert problems == [f"Kafka: {KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART).str()}"]

    fatal = FakeMessage(kafka_error=KafkaError(KafkaError._FATAL, "fenced", fatal=True))
    with pytest.raises(KafkaClientError, match="fenced"):
        _follow(FakeConsumer([fatal]), count=1)


def test_ctrl_c_stops_following_cleanly() -> None:
    class InterruptedConsumer(FakeConsumer):
        def poll(self, timeout: float = -1) -> FakeMessage | None:
            if not self.messages:
                raise KeyboardInterrupt
            return super().poll(timeout)

    received, report, _ = _follow(InterruptedConsumer(_scores(2)))

    assert len(received) == 2
    assert report.stopped == "interrupted"


def test_json_lines_sink_writes_one_score_object_per_line() -> None:
    stream = io.StringIO()
    sink = JsonLinesSink(stream)

    for n in range(2):
        sink(ReceivedScore(_score(n), correlation_id=None, partition=0, offset=n))

    lines = stream.getvalue().splitlines()
    assert [LoanScore.model_validate_json(line) for line in lines] == [_score(0), _score(1)]


def test_table_sink_prints_a_header_once_then_one_line_per_score() -> None:
    stream = io.StringIO()
    sink = TableSink(Console(file=stream, soft_wrap=True, no_color=True, highlight=False))

    for n in range(3):
        sink(ReceivedScore(_score(n), correlation_id=None, partition=0, offset=n))

    lines = stream.getvalue().splitlines()
    assert len(lines) == 4
    assert lines[0].startswith("application_id")
    assert lines[1].split()[:3] == ["app-0", "0.2500", "ok"]
    assert "credit-default v3" in lines[3]
