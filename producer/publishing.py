"""Publishing applications and outcomes to Kafka: pacing, keys, headers, delivery accounting.

``publish`` is transport-agnostic: it takes anything shaped like a confluent-kafka
``Producer`` (``KafkaProducerLike``), so tests inject a fake and the CLI, the demo and
the benchmarks pass a real idempotent producer from ``producer.kafka``.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from confluent_kafka import KafkaException

from contracts import LoanApplication
from contracts.outcome import LoanOutcome
from contracts.topics import APPLICATIONS_TOPIC, CORRELATION_ID_HEADER
from producer.encoding import (
    EncodingError,
    encode_application,
    encode_outcome,
    new_correlation_id,
    restamp_encoded,
)
from producer.errors import KafkaClientError
from producer.kafka import describe_kafka_error
from producer.pacing import TokenBucket
from producer.records import WHOLE_RECORD, InvalidRecord, Issue

Headers = list[tuple[str, str | bytes | None]]
DeliveryCallback = Callable[[Any, Any], None]
Publishable = LoanApplication | LoanOutcome | bytes | InvalidRecord
"""A valid application or outcome; an application already encoded as contract JSON (see
``restamp_encoded``); or an invalid record from a reader, which is reported and never sent."""

_POLL_EVERY: Final = 1_000
_BUFFER_FULL_WAIT_S: Final = 0.05
_PROGRESS_INTERVAL_S: Final = 0.1
# librdkafka rounds a poll timeout down to whole milliseconds: a shorter pacing wait
# would return at once and spin a core. The bucket's burst absorbs the overshoot.
_MIN_PACING_WAIT_S: Final = 0.001
_DEFAULT_FLUSH_TIMEOUT_S: Final = 120.0


class KafkaProducerLike(Protocol):
    """The part of ``confluent_kafka.Producer`` that ``publish`` uses."""

    def produce(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        *,
        on_delivery: DeliveryCallback | None = None,
        headers: Headers | None = None,
    ) -> None: ...

    def poll(self, timeout: float = -1) -> int: ...

    def flush(self, timeout: float = -1) -> int: ...


@dataclass
class PublishReport:
    """What happened to every record handed to ``publish``.

    ``sent`` records were accepted by the producer; each of them is then either
    ``delivered`` (acknowledged by all in-sync replicas) or ``failed`` (``failures``
    counts them by reason, undelivered-at-flush included). ``invalid`` were never sent.
    """

    topic: str
    sent: int = 0
    delivered: int = 0
    failed: int = 0
    invalid: list[InvalidRecord] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    elapsed_s: float = 0.0
    interrupted: bool = False

    @property
    def throughput(self) -> float:
        """Delivered records per second of publishing, flush included."""
        return self.delivered / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def complete(self) -> bool:
        """True when every record was valid and delivered, and nothing was cut short."""
        return not self.invalid and self.failed == 0 and not self.interrupted

    def _on_delivery(self, error: Any, _message: Any) -> None:
        if error is None:
            self.delivered += 1
        else:
            self.failed += 1
            self.failures[error.str() if hasattr(error, "str") else str(error)] += 1


def publish(
    records: Iterable[Publishable],
    *,
    producer: KafkaProducerLike,
    topic: str = APPLICATIONS_TOPIC,
    rate: float = 0.0,
    flush_timeout_s: float = _DEFAULT_FLUSH_TIMEOUT_S,
    progress: Callable[[PublishReport], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> PublishReport:
    """Send every valid record to ``topic`` and wait for its delivery report.

    Each record is keyed by ``application_id`` and carries a fresh uuid4 in the
    ``CORRELATION_ID_HEADER`` header; an application has ``submitted_at`` stamped just
    before it is produced, an outcome is sent as it is. ``rate`` is records per second
    (token bucket); 0 sends as fast as the producer accepts. Records are not re-validated:
    the readers already did.
    ``progress`` is called about ten times a second and once at the end. Ctrl-C stops
    sending, still flushes what was sent, and sets ``interrupted``.

    Raises ``KafkaClientError`` if the producer rejects a record outright (fatal errors).
    """
    report = PublishReport(topic=topic)
    pacer = TokenBucket(rate, clock=clock, wait=_pacing_wait(producer)) if rate > 0 else None
    start = last_progress = clock()
    try:
        for position, record in enumerate(records, start=1):
            if isinstance(record, InvalidRecord):
                report.invalid.append(record)
                continue
            if pacer is not None:
                pacer.acquire()
            try:
                key, value = _encode(record, now())
            except EncodingError as exc:
                report.invalid.append(InvalidRecord(position, (Issue(WHOLE_RECORD, str(exc)),)))
                continue
            _produce(producer, topic, key, value, report._on_delivery)
            report.sent += 1
            if report.sent % _POLL_EVERY == 0:
                producer.poll(0)
            if progress is not None and clock() - last_progress >= _PROGRESS_INTERVAL_S:
                last_progress = clock()
                report.elapsed_s = last_progress - start
                progress(report)
    except KeyboardInterrupt:
        report.interrupted = True
    _flush(producer, report, flush_timeout_s)
    report.elapsed_s = clock() - start
    if progress is not None:
        progress(report)
    return report


def _encode(
    record: LoanApplication | LoanOutcome | bytes, submitted_at: datetime
) -> tuple[bytes, bytes]:
    if isinstance(record, bytes):
        return restamp_encoded(record, submitted_at)
    if isinstance(record, LoanOutcome):
        return encode_outcome(record)
    return encode_application(record, submitted_at)


def _produce(
    producer: KafkaProducerLike,
    topic: str,
    key: bytes,
    value: bytes,
    on_delivery: DeliveryCallback,
) -> None:
    headers: Headers = [(CORRELATION_ID_HEADER, new_correlation_id())]
    while True:
        try:
            producer.produce(topic, value, key, on_delivery=on_delivery, headers=headers)
            return
        except BufferError:
            # The local queue is full: serve delivery reports until there is room. Bounded
            # by the delivery timeout, after which undeliverable records fail and free it.
            producer.poll(_BUFFER_FULL_WAIT_S)
        except KafkaException as exc:
            raise KafkaClientError(
                f"cannot produce to {topic!r}: {describe_kafka_error(exc)}"
            ) from exc


def _flush(producer: KafkaProducerLike, report: PublishReport, timeout_s: float) -> None:
    remaining = producer.flush(timeout_s)
    if remaining:
        report.failed += remaining
        report.failures[f"not delivered within the {timeout_s:g}s flush timeout"] += remaining


def _pacing_wait(producer: KafkaProducerLike) -> Callable[[float], object]:
    """Wait by serving delivery reports, for at least the millisecond librdkafka can wait."""
    return lambda seconds: producer.poll(max(seconds, _MIN_PACING_WAIT_S))
