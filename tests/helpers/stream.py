"""A steady stream of applications, published in a background thread while a test does harm.

``PacedPublisher`` produces ``(application_id, value)`` records at a fixed rate with an
idempotent producer, so a broker restart neither loses nor duplicates an input record;
``stop()`` flushes and fails the test if any record was not acknowledged.
``dataset_stream`` cycles through the dataset's rows forever under fresh ids, so a
soak run is not limited by the dataset's size.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterable, Iterator

import orjson
import pandas as pd
import pytest
from confluent_kafka import KafkaError, Message, Producer

from contracts import FEATURE_COLUMNS, LoanApplication
from tests.helpers.applications import encode

_TICK_S = 0.02
_POLL_S = 0.2
_FLUSH_TIMEOUT_S = 180.0


def encoded(applications: Iterable[LoanApplication]) -> Iterator[tuple[str, bytes]]:
    """``(application_id, wire value)`` of each application."""
    return ((a.application_id, encode(a)) for a in applications)


def dataset_stream(feature_frame: pd.DataFrame, prefix: str) -> Iterator[tuple[str, bytes]]:
    """Endless ``(id, value)`` records: the dataset's rows in order, again and again.

    Ids are ``<prefix>-<n>`` (n counts from 0), so row ``n % len(frame)`` holds the
    features of application ``n``.
    """
    rows = feature_frame.loc[:, list(FEATURE_COLUMNS)].to_dict(orient="records")
    for index, row in zip(itertools.count(), itertools.cycle(rows), strict=False):
        application_id = f"{prefix}-{index}"
        yield application_id, orjson.dumps({"application_id": application_id, **row})


class PacedPublisher:
    """Publishes records at ``rate_per_s`` in a daemon thread until they run out or ``stop()``."""

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        records: Iterator[tuple[str, bytes]],
        *,
        rate_per_s: float,
    ) -> None:
        self._topic = topic
        self._records = records
        self._rate = rate_per_s
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap_servers,
                "enable.idempotence": True,
                "linger.ms": 5,
                # A broker restart in the middle must not expire records.
                "message.timeout.ms": 300_000,
                "log_level": 0,
            }
        )
        self._ids: list[str] = []
        self._failures: list[str] = []
        self._error: BaseException | None = None
        self._stopping = threading.Event()
        self._exhausted = threading.Event()
        self._thread = threading.Thread(target=self._run, name="paced-publisher", daemon=True)

    @property
    def published(self) -> int:
        """Records handed to the producer so far."""
        return len(self._ids)

    def ids_so_far(self) -> list[str]:
        """The ids handed to the producer so far, in order (acknowledged or not yet)."""
        return list(self._ids)

    def start(self) -> PacedPublisher:
        self._thread.start()
        return self

    def wait_published(self, count: int, timeout_s: float = 120.0) -> None:
        """Return once ``count`` records were handed to the producer (fail at the deadline)."""
        deadline = time.monotonic() + timeout_s
        while self.published < count:
            if self._error is not None or self._exhausted.is_set():
                pytest.fail(f"publisher ended at {self.published} records before {count}")
            if time.monotonic() > deadline:
                pytest.fail(f"only {self.published} of {count} records published in {timeout_s}s")
            self._stopping.wait(_POLL_S)

    def finish(self, timeout_s: float = 300.0) -> list[str]:
        """Wait until every record is published, then ``stop()``."""
        if not self._exhausted.wait(timeout_s):
            pytest.fail(f"publisher not done in {timeout_s}s ({self.published} records)")
        return self.stop()

    def stop_after(self, more: int, timeout_s: float = 120.0) -> list[str]:
        """Publish ``more`` records beyond those published so far, then ``stop()``."""
        self.wait_published(self.published + more, timeout_s)
        return self.stop()

    def stop(self) -> list[str]:
        """Stop publishing, wait for every acknowledgement; the ids published, in order."""
        self._stopping.set()
        self._thread.join(timeout=30)
        remaining = self._producer.flush(_FLUSH_TIMEOUT_S)
        if self._error is not None:
            raise AssertionError("the publisher thread failed") from self._error
        assert remaining == 0, f"{remaining} records never acknowledged"
        assert not self._failures, f"records not delivered: {self._failures[:5]}"
        return list(self._ids)

    def abandon(self) -> None:
        """Stop publishing, checking nothing (the broker may be down). Records still queued
        are dropped, so none of them can reach the topic later, after a test has read it."""
        self._stopping.set()
        self._thread.join(timeout=30)
        self._producer.purge(in_queue=True, in_flight=False)
        self._producer.flush(5)

    def _run(self) -> None:
        started = time.monotonic()
        try:
            while not self._stopping.is_set():
                due = int((time.monotonic() - started) * self._rate) - len(self._ids)
                taken = 0
                for application_id, value in itertools.islice(self._records, max(due, 0)):
                    self._producer.produce(
                        self._topic, value, application_id.encode(), on_delivery=self._delivered
                    )
                    self._ids.append(application_id)
                    taken += 1
                if taken < due:  # the records ran out
                    break
                self._producer.poll(0)
                self._stopping.wait(_TICK_S)
        except BaseException as exc:
            self._error = exc
        finally:
            self._exhausted.set()

    def _delivered(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self._failures.append(f"{message.key()!r}: {error.str()}")
