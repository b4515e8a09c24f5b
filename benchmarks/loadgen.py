"""Applications for the run, published with the producer package's own ``publish``
(idempotent producer, correlation-id header, ``submitted_at`` stamped at send time).

Three ways: as fast as possible (``send``); paced at a steady rate (``send`` with a
rate); or held back inside one open transaction (``HeldBack``) so that
``read_committed`` consumers see all of them at the same instant, when it commits.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from confluent_kafka import KafkaException

from benchmarks import BenchmarkError
from contracts import LoanApplication
from devstack import unique_name
from producer import PublishReport, Settings, create_producer, publish, synthetic_applications

_HELD_TRANSACTION_TIMEOUT_MS: Final = 600_000
_TRANSACTION_CALL_TIMEOUT_S: Final = 60.0


def applications(count: int, seed: int) -> Iterable[LoanApplication]:
    """``count`` valid synthetic applications with ids unique to ``seed``, generated lazily."""
    return (
        record
        for record in synthetic_applications(count, seed)
        if isinstance(record, LoanApplication)
    )


def _checked(report: PublishReport, count: int) -> PublishReport:
    if not report.complete or report.delivered != count:
        raise BenchmarkError(
            f"publishing to {report.topic}: {report.delivered} of {count} delivered "
            f"({dict(report.failures)}, interrupted={report.interrupted})"
        )
    return report


def send(
    bootstrap_servers: str,
    topic: str,
    records: Iterable[LoanApplication],
    *,
    count: int,
    rate: float = 0.0,
) -> PublishReport:
    """Publish ``count`` ``records`` to ``topic`` at ``rate`` a second (0: as fast as possible).

    Raises ``BenchmarkError`` unless every record was delivered.
    """
    producer = create_producer(
        Settings(kafka_bootstrap_servers=bootstrap_servers, client_id="bench-producer")
    )
    report = publish(records, producer=producer, topic=topic, rate=rate)
    return _checked(report, count)


class HeldBack:
    """Applications written inside one transaction left open until ``release()``."""

    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        self.topic = topic
        self._producer = create_producer(
            Settings(
                kafka_bootstrap_servers=bootstrap_servers,
                client_id="bench-preload",
                kafka_extra={
                    "transactional.id": unique_name("bench-preload"),
                    "transaction.timeout.ms": _HELD_TRANSACTION_TIMEOUT_MS,
                },
            )
        )

    def fill(self, records: Iterable[LoanApplication], *, count: int) -> PublishReport:
        """Write ``records`` (all acknowledged on return, none visible to read_committed)."""
        try:
            self._producer.init_transactions(_TRANSACTION_CALL_TIMEOUT_S)
            self._producer.begin_transaction()
        except KafkaException as exc:
            raise BenchmarkError(f"cannot open the preload transaction: {exc}") from exc
        report = publish(records, producer=self._producer, topic=self.topic)
        return _checked(report, count)

    def release(self) -> None:
        """Commit: every record becomes visible at once."""
        try:
            self._producer.commit_transaction(_TRANSACTION_CALL_TIMEOUT_S)
        except KafkaException as exc:
            raise BenchmarkError(f"cannot commit the preload transaction: {exc}") from exc
