"""publish() against an injected fake producer, and the token bucket against a fake clock."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from contracts import LoanApplication
from contracts.outcome import LoanOutcome
from contracts.topics import APPLICATIONS_TOPIC, CORRELATION_ID_HEADER
from producer import (
    InvalidRecord,
    Issue,
    KafkaClientError,
    PublishReport,
    TokenBucket,
    publish,
    synthetic_applications,
)

_STAMP = datetime(2025, 6, 1, 9, 0, tzinfo=UTC)


class FakeClock:
    """Monotonic seconds that only move when a test (or a fake wait) moves them."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Produced:
    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, Any]]


@dataclass
class FakeProducer:
    """Records what is produced; delivers (or fails) it on poll/flush like librdkafka.

    ``buffer_full`` produce calls raise BufferError first; keys in ``fail`` get a delivery
    error; ``stuck`` records are never delivered (flush reports them as remaining).
    """

    clock: FakeClock = field(default_factory=FakeClock)
    buffer_full: int = 0
    fail: frozenset[bytes] = frozenset()
    stuck: int = 0
    produced: list[Produced] = field(default_factory=list)
    polls: list[float] = field(default_factory=list)
    _pending: list[tuple[Callable[[Any, Any], None], bytes]] = field(default_factory=list)

    def produce(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        *,
        on_delivery: Callable[[Any, Any], None] | None = None,
        headers: list[tuple[str, Any]] | None = None,
    ) -> None:
        if self.buffer_full:
            self.buffer_full -= 1
            raise BufferError("Local: Queue full")
        assert value is not None
        assert key is not None
        assert on_delivery is not None
        self.produced.append(Produced(topic, key, value, list(headers or [])))
        self._pending.append((on_delivery, key))

    def poll(self, timeout: float = -1) -> int:
        self.polls.append(timeout)
        self.clock.sleep(max(timeout, 0.0))
        return self._deliver(len(self._pending) - self.stuck)

    def flush(self, timeout: float = -1) -> int:
        self._deliver(len(self._pending) - self.stuck)
        return len(self._pending)

    def _deliver(self, count: int) -> int:
        ready, self._pending = self._pending[: max(count, 0)], self._pending[max(count, 0) :]
        for callback, key in ready:
            error = KafkaError(KafkaError._MSG_TIMED_OUT) if key in self.fail else None
            callback(error, None)
        return len(ready)


def _applications(count: int, seed: int = 1) -> list[LoanApplication]:
    return [
        record
        for record in synthetic_applications(count, seed)
        if isinstance(record, LoanApplication)
    ]


def _publish(records: Any, producer: FakeProducer, **options: Any) -> PublishReport:
    return publish(records, producer=producer, clock=producer.clock, now=lambda: _STAMP, **options)


def test_each_application_is_keyed_stamped_and_correlated() -> None:
    applications = _applications(25)
    producer = FakeProducer()

    report = _publish(applications, producer, topic="t-apps")

    assert [p.key for p in producer.produced] == [a.application_id.encode() for a in applications]
    assert {p.topic for p in producer.produced} == {"t-apps"}
    decoded = [LoanApplication.model_validate_json(p.value) for p in producer.produced]
    assert decoded == [a.model_copy(update={"submitted_at": _STAMP}) for a in applications]
    correlation_ids = [dict(p.headers)[CORRELATION_ID_HEADER] for p in producer.produced]
    assert len(set(correlation_ids)) == len(applications)
    assert all(uuid.UUID(value.decode()).version == 4 for value in correlation_ids)
    assert (report.sent, report.delivered, report.failed, report.invalid) == (25, 25, 0, [])
    assert report.complete


def test_default_topic_is_the_contract_s_applications_topic() -> None:
    producer = FakeProducer()
    _publish(_applications(1), producer)
    assert producer.produced[0].topic == APPLICATIONS_TOPIC


def test_invalid_records_are_reported_and_not_sent() -> None:
    valid = _applications(3)
    bad = InvalidRecord(
        line=4, issues=(Issue("AGE", "Input should be greater than or equal to 18"),)
    )
    producer = FakeProducer()

    report = _publish([valid[0], bad, valid[1], b"{not json", valid[2]], producer)

    assert len(producer.produced) == 3
    assert report.sent == report.delivered == 3
    assert report.invalid[0] == bad
    assert report.invalid[1].line == 4  # position of the bytes in the iterable
    assert "not JSON" in report.invalid[1].issues[0].reason
    assert not report.complete


def test_pre_encoded_bytes_are_sent_with_their_key_and_a_fresh_stamp() -> None:
    (application,) = _applications(1)
    producer = FakeProducer()

    _publish([application.model_dump_json().encode()], producer)

    (sent,) = producer.produced
    assert sent.key == application.application_id.encode()
    assert LoanApplication.model_validate_json(sent.value).submitted_at == _STAMP


def test_outcomes_are_keyed_like_their_application_and_sent_as_they_are() -> None:
    outcomes = [
        LoanOutcome(application_id=f"app-{n}", defaulted=n % 2 == 0, observed_on=date(2026, 1, n))
        for n in range(1, 4)
    ]
    producer = FakeProducer()

    report = _publish(outcomes, producer, topic="t-outcomes")

    assert [p.key for p in producer.produced] == [b"app-1", b"app-2", b"app-3"]
    assert [LoanOutcome.model_validate_json(p.value) for p in producer.produced] == outcomes
    assert all(CORRELATION_ID_HEADER in dict(p.headers) for p in producer.produced)
    assert report.complete


def test_buffer_full_is_retried_after_serving_deliveries() -> None:
    producer = FakeProducer(buffer_full=3)

    report = _publish(_applications(10), producer)

    assert len(producer.produced) == 10
    assert report.delivered == 10
    assert sum(1 for timeout in producer.polls if timeout > 0) >= 3


def test_delivery_failures_and_undelivered_records_are_counted_by_reason() -> None:
    applications = _applications(10)
    producer = FakeProducer(fail=frozenset({applications[2].application_id.encode()}), stuck=2)

    report = _publish(applications, producer)

    assert (report.sent, report.delivered, report.failed) == (10, 7, 3)
    assert report.failures["Local: Message timed out"] == 1
    assert sum(report.failures.values()) == 3
    assert not report.complete


def test_a_fatal_produce_error_is_translated() -> None:
    class RejectingProducer(FakeProducer):
        def produce(self, *args: Any, **kwargs: Any) -> None:
            raise KafkaException(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED))

    with pytest.raises(KafkaClientError, match="cannot produce to 'loan-applications'"):
        _publish(_applications(1), RejectingProducer())


def test_ctrl_c_stops_sending_but_flushes_what_was_sent() -> None:
    applications = _applications(5)

    def interrupted() -> Iterator[LoanApplication]:
        yield from applications[:3]
        raise KeyboardInterrupt

    producer = FakeProducer()
    report = _publish(interrupted(), producer)

    assert report.interrupted
    assert report.sent == report.delivered == 3
    assert not report.complete


def test_rate_paces_sending_on_the_injected_clock() -> None:
    producer = FakeProducer()
    start = producer.clock()

    report = _publish(_applications(50), producer, rate=10.0)

    # 50 records at 10/s: the first goes at once, the last 4.9 s later (plus the flush).
    assert report.delivered == 50
    assert producer.clock() - start == pytest.approx(4.9, abs=0.05)
    assert report.elapsed_s == pytest.approx(4.9, abs=0.05)
    assert report.throughput == pytest.approx(50 / report.elapsed_s)


def test_high_rates_never_poll_below_librdkafka_millisecond_resolution() -> None:
    producer = FakeProducer()
    start = producer.clock()

    report = _publish(_applications(400), producer, rate=20_000.0)

    # A sub-millisecond poll returns at once in librdkafka: pacing would spin a core.
    pacing_polls = [t for t in producer.polls if t > 0]
    assert pacing_polls
    assert min(pacing_polls) >= 0.001
    # The burst absorbs the rounding: the long-run rate still holds.
    assert report.delivered == 400
    assert producer.clock() - start == pytest.approx(400 / 20_000, rel=0.25)


def test_progress_is_reported_while_publishing_and_at_the_end() -> None:
    seen: list[tuple[int, int]] = []
    producer = FakeProducer()

    _publish(
        _applications(30),
        producer,
        rate=10.0,
        progress=lambda r: seen.append((r.sent, r.delivered)),
    )

    assert len(seen) > 10
    assert seen[-1] == (30, 30)
    assert [sent for sent, _ in seen] == sorted(sent for sent, _ in seen)


def test_token_bucket_spaces_acquisitions_at_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(4.0, clock=clock, wait=clock.sleep, burst=1.0)
    times = []
    for _ in range(5):
        bucket.acquire()
        times.append(clock() - 100.0)
    assert times == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])


def test_token_bucket_allows_a_burst_after_idling_but_no_more() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10.0, clock=clock, wait=clock.sleep, burst=3.0)
    bucket.acquire()
    clock.sleep(10.0)  # idle long enough to fill the bucket many times over
    start = clock()
    for _ in range(3):
        bucket.acquire()
    assert clock() == start  # the burst goes at once
    bucket.acquire()
    assert clock() == pytest.approx(start + 0.1)


def test_token_bucket_keeps_the_long_run_rate_despite_coarse_waits() -> None:
    clock = FakeClock()

    def coarse_wait(seconds: float) -> None:
        # Like poll(): millisecond granularity, and it oversleeps.
        clock.sleep(max(0.001, round(seconds, 3)) + 0.0004)

    bucket = TokenBucket(5_000.0, clock=clock, wait=coarse_wait)
    for _ in range(10_000):
        bucket.acquire()
    assert clock() - 100.0 == pytest.approx(2.0, rel=0.02)


def test_token_bucket_rejects_a_non_positive_rate() -> None:
    clock = FakeClock()
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(0.0, clock=clock, wait=clock.sleep)
