"""Applications into a run's topics (the producer package's own ``publish``), and what came
out read back as a ``read_committed`` subscriber sees it: throughput from the output's own
record timestamps (the harness is not in the loop while a phase runs), and latency from an
application's ``CreateTime`` to the moment its score is received here (same clock).
"""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import closing
from datetime import UTC, datetime
from typing import Final

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from benchmarks import BenchmarkError
from benchmarks.measure import Percentiles, percentiles
from contracts import LoanApplication
from contracts.outcome import LoanOutcome
from devstack import unique_name
from devstack.processes import ModuleProcess, wait_until
from producer import Publishable, Settings, create_producer, publish, synthetic_applications

_HELD_MS: Final = 600_000  # transaction.timeout.ms of a held-back preload
_TRANSACTION_CALL_TIMEOUT_S: Final = 60.0
_METADATA_TIMEOUT_S: Final = 30.0
_VISIBLE_TIMEOUT_S: Final = 60.0
_READ_TIMEOUT_S: Final = 300.0
_READ_BATCH: Final = 10_000
_POLL_S: Final = 0.2
_DEFAULT_RATE: Final = 0.22
SEED: Final = 7
"""Of every preload: each phase drains the same applications."""


def applications(count: int, seed: int) -> Iterator[LoanApplication]:
    """``count`` valid synthetic applications with ids unique to ``seed``, lazily (a full
    run's 200,000 in a list would take hundreds of MB)."""
    generated = synthetic_applications(count, seed)
    return (record for record in generated if isinstance(record, LoanApplication))


def outcomes(count: int, seed: int) -> Iterator[LoanOutcome]:
    """The observed outcome of each of ``applications(count, seed)``: defaulted about as
    often as in the dataset (22%), drawn with ``seed``."""
    draw, today = random.Random(seed), datetime.now(UTC).date()
    for application in applications(count, seed):
        defaulted = draw.random() < _DEFAULT_RATE
        yield LoanOutcome(
            application_id=application.application_id, defaulted=defaulted, observed_on=today
        )


def send(
    bootstrap_servers: str,
    topic: str,
    records: Iterable[Publishable],
    *,
    count: int,
    rate: float = 0.0,
    hold: bool = False,
) -> Producer:
    """Publish ``count`` ``records`` to ``topic`` at ``rate`` a second (0: as fast as possible);
    ``BenchmarkError`` unless every record was delivered. With ``hold`` they are written in
    one transaction left open: none is visible to read_committed consumers until
    ``release()`` commits the producer returned, and then all are at once."""
    transaction_id = unique_name("bench-preload")
    settings = Settings(
        kafka_bootstrap_servers=bootstrap_servers,
        client_id="bench-producer",
        kafka_extra={"transactional.id": transaction_id, "transaction.timeout.ms": _HELD_MS}
        if hold
        else {},
    )
    producer = create_producer(settings)
    try:
        if hold:
            producer.init_transactions(_TRANSACTION_CALL_TIMEOUT_S)
            producer.begin_transaction()
    except KafkaException as exc:
        raise BenchmarkError(f"cannot open the preload transaction: {exc}") from exc
    report = publish(records, producer=producer, topic=topic, rate=rate)
    if report.interrupted:  # publish stops on Ctrl-C (or SIGTERM, cli._interrupt): pass it on
        raise KeyboardInterrupt
    if not report.complete or report.delivered != count:
        raise BenchmarkError(
            f"publishing to {topic}: {report.delivered} of {count} delivered "
            f"({dict(report.failures)}, interrupted={report.interrupted})"
        )
    return producer


def release(producer: Producer) -> None:
    """Commit the transaction ``send(hold=True)`` left open."""
    try:
        producer.commit_transaction(_TRANSACTION_CALL_TIMEOUT_S)
    except KafkaException as exc:
        raise BenchmarkError(f"cannot commit the preload transaction: {exc}") from exc


def _committed_reader(bootstrap_servers: str, topics: Iterable[str], *, eof: bool) -> Consumer:
    """A consumer assigned every partition of ``topics`` from the beginning, committed
    records only; with ``eof`` it reports the end of each partition."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": unique_name("bench-reader"),
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": eof,
        }
    )
    metadata = {topic: consumer.list_topics(topic, _METADATA_TIMEOUT_S) for topic in topics}
    consumer.assign(
        [
            TopicPartition(topic, partition, OFFSET_BEGINNING)
            for topic, found in metadata.items()
            for partition in found.topics[topic].partitions
        ]
    )
    return consumer


def read_topic(
    bootstrap_servers: str,
    topic: str,
    *,
    expected: int,
    label: Callable[[Message], str] = lambda _message: "all",
) -> dict[str, list[int]]:
    """The timestamps (ms) of every committed record of ``topic``, grouped by ``label``,
    read until each partition reports its end; ``BenchmarkError`` unless there are
    ``expected`` records with ``expected`` distinct keys (each application came out exactly
    once). Call it once the writers have stopped: with no transaction open, the end is final.
    """
    timestamps: dict[str, list[int]] = defaultdict(list)
    keys: set[bytes] = set()
    try:
        with closing(_committed_reader(bootstrap_servers, [topic], eof=True)) as consumer:
            pending = {tp.partition for tp in consumer.assignment()}
            deadline = time.monotonic() + _READ_TIMEOUT_S
            while pending and time.monotonic() < deadline:
                for message in consumer.consume(_READ_BATCH, _POLL_S):
                    if (error := message.error()) is None:
                        keys.add(message.key() or b"")
                        timestamps[label(message)].append(message.timestamp()[1])
                    elif error.code() == KafkaError._PARTITION_EOF:
                        pending.discard(message.partition())
                    else:
                        raise BenchmarkError(f"reading {topic}: {error.str()}")
    except KafkaException as exc:
        raise BenchmarkError(f"reading {topic}: {exc}") from exc
    if pending:
        raise BenchmarkError(f"{topic}: partitions {sorted(pending)} not read to the end")
    if (records := sum(map(len, timestamps.values()))) != expected or len(keys) != expected:
        raise BenchmarkError(
            f"{topic}: {records:,} records with {len(keys):,} distinct keys "
            f"for {expected:,} applications"
        )
    return timestamps


class LatencyRecorder:
    """Follows an applications topic and its scores topic from their beginning, in a thread
    from construction to ``close()``: each application's ``CreateTime`` and the wall clock
    when its score arrived."""

    def __init__(self, bootstrap_servers: str, applications_topic: str, scores_topic: str) -> None:
        self._bootstrap_servers = bootstrap_servers
        self._topics = (applications_topic, scores_topic)
        self.sent_ms: dict[bytes, int] = {}
        self.visible_s: dict[bytes, float] = {}
        self.error: Exception | None = None
        self._stopping = threading.Event()
        self._consumer = _committed_reader(bootstrap_servers, self._topics, eof=False)
        self._thread = threading.Thread(target=self._run, name="latency-reader", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stopping.set()
        self._thread.join()
        self._consumer.close()

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                for message in self._consumer.consume(_READ_BATCH, _POLL_S / 4):
                    received = time.time()
                    if message.error() is not None:
                        continue  # transient client errors; a lost score shows as missing
                    key = message.key() or b""
                    if message.topic() == self._topics[0]:
                        self.sent_ms[key] = message.timestamp()[1]
                    else:
                        self.visible_s.setdefault(key, received)
        except KafkaException as exc:
            self.error = exc

    def measure(
        self, records: Sequence[LoanApplication], rate: int, warmup_s: float, worker: ModuleProcess
    ) -> tuple[float, Percentiles]:
        """Publish ``records`` at ``rate`` per second; the rate achieved, and the latencies of
        those sent after the warm-up. ``BenchmarkError`` if the reader fails, ``DevstackError``
        if the ``worker`` scoring them exits or a score is still not visible
        ``_VISIBLE_TIMEOUT_S`` after publishing."""
        send(self._bootstrap_servers, self._topics[0], records, count=len(records), rate=rate)
        keys = [application.application_id.encode() for application in records]

        def all_visible() -> bool:
            if self.error is not None:
                raise BenchmarkError(f"reading {self._topics}: {self.error}")
            return all(k in self.visible_s and k in self.sent_ms for k in keys)

        failure = f"rate {rate}/s: not every score visible after publishing"
        wait_until(all_visible, _VISIBLE_TIMEOUT_S, failure, watch=[worker], poll_s=_POLL_S)
        sent = [self.sent_ms[k] for k in keys]
        first, last = min(sent), max(sent)
        steady = [k for k in keys if self.sent_ms[k] >= first + warmup_s * 1000]
        if not steady:
            raise BenchmarkError(f"rate {rate}/s: nothing sent after the {warmup_s:g}s warm-up")
        latencies = [self.visible_s[k] * 1000 - self.sent_ms[k] for k in steady]
        achieved = (len(keys) - 1) / ((last - first) / 1000) if last > first else 0.0
        return achieved, percentiles(latencies)
