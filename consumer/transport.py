"""Kafka behind one small Protocol: a read-committed consumer and a transactional producer.

``KafkaTransport`` only adapts confluent-kafka: it builds the librdkafka configuration
from ``Settings`` and translates every ``KafkaException`` into a ``TransportError``
saying what to do next (``RetriableTransportError``: call again;
``AbortableTransactionError``: abort and rewind; ``FatalTransportError``: stop). The
retry and abort policy lives in the worker, so tests drive it with a fake transport.

Rebalance callbacks run inside ``consume()``, and the worker only calls ``consume()``
between transactions, so a partition is never revoked while its offsets sit in an
open transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from consumer.errors import (
    AbortableTransactionError,
    FatalTransportError,
    RetriableTransportError,
    TransportError,
)
from consumer.liveness import GroupProgress, PartitionKey, PartitionProgress
from consumer.records import OutboundRecord
from consumer.settings import Settings
from contracts.kafka import CREDENTIAL_ERRORS, reveal

_log = logging.getLogger(__name__)
_client_log = logging.getLogger("consumer.librdkafka")

_OP_TIMEOUT_S: Final = 10.0
"""Bound on one blocking librdkafka call; a retriable timeout is retried by the worker."""
_PROBE_LOG_LEVEL: Final = 2
"""syslog level: critical and worse."""
_PROBE_TIMEOUT_S: Final = 5.0
"""Bound on each request of a group-progress probe."""
_QUEUE_FULL_POLL_S: Final = 0.05
_PREFETCH_KBYTES: Final = 8_192
_FETCH_QUEUE_BACKOFF_MS: Final = 10
_RETRY_BACKOFF_MS: Final = 10


class Transport(Protocol):
    """What the worker needs from Kafka. Every method raises ``TransportError`` subclasses."""

    def start(self) -> None:
        """Fence earlier incarnations (init transactions) and subscribe to the input."""

    def consume(self, max_messages: int, timeout_s: float) -> list[Message]:
        """Up to ``max_messages`` data records, waiting at most ``timeout_s``."""

    def begin(self) -> None: ...

    def produce(self, records: Iterable[OutboundRecord]) -> None:
        """Produce inside the open transaction, waiting (not buffering) when the queue is full."""

    def send_offsets(self, offsets: Mapping[PartitionKey, int]) -> None:
        """Add the next offsets to consume to the open transaction."""

    def commit(self) -> None: ...

    def abort(self) -> None: ...

    def rewind(self, batch_start: Mapping[PartitionKey, int]) -> None:
        """Seek each partition back to its committed offset (else to ``batch_start``)."""

    def assignment(self) -> frozenset[PartitionKey]:
        """The partitions this worker owns now (safe to read from any thread)."""

    def lags(self) -> dict[PartitionKey, int]:
        """Records behind the high watermark, per assigned partition with a position."""

    def problem(self) -> str | None:
        """Why the producer cannot work (not initialised, fatal error), or None."""

    def group_progress(self) -> GroupProgress | None:
        """The group's committed and end offsets on every input partition, asked of the
        brokers (not of this worker's consumer); None when the cluster does not answer."""

    def record_waiting(self, positions: Mapping[PartitionKey, int]) -> bool:
        """Whether a record waits at or past any of ``positions`` for a read-committed consumer.

        False only once a read has gone through to every partition's end and found only
        transaction markers or aborted records; a read that fails or stops short of the end
        counts as a record waiting, since a client that cannot read is what self-healing
        replaces.
        """

    def reconnect(self) -> None:
        """Replace the consumer and the producer by new ones (same group, same
        transactional id, which fences the old producer) and subscribe again."""

    def close(self) -> None: ...


# Brokers not reachable (yet): librdkafka keeps reconnecting, so the call can succeed later,
# but it raises these without the retriable flag (a metadata request to a broker that is not
# up yet fails with _TRANSPORT): a worker started before Kafka would otherwise exit.
_BROKERS_UNREACHABLE: Final = frozenset(
    {KafkaError._TRANSPORT, KafkaError._TIMED_OUT, KafkaError._ALL_BROKERS_DOWN}
)


def translate(exc: KafkaException, action: str) -> TransportError:
    """The ``TransportError`` saying how to handle ``exc`` raised by ``action``."""
    error = exc.args[0] if exc.args else None
    if not isinstance(error, KafkaError):
        return FatalTransportError(f"{action} failed: {exc}")
    message = f"{action} failed: {error.name()}: {error.str()}"
    if error.fatal():
        return FatalTransportError(message)
    if error.txn_requires_abort():
        return AbortableTransactionError(message)
    if error.retriable() or error.code() in _BROKERS_UNREACHABLE:
        return RetriableTransportError(message)
    return FatalTransportError(message)


def consumer_config(settings: Settings) -> dict[str, Any]:
    """librdkafka consumer properties (secrets in clear: never log the result)."""
    return {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "group.id": settings.group_id,
        "client.id": settings.worker_id,
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        # A new group starts at the beginning: applications published before the
        # first worker came up are scored, not skipped.
        "auto.offset.reset": "earliest",
        # With the default 64 MiB prefetch queue a worker draining a backlog peaked ~80 MB
        # higher (benchmarks/README.md); 8 MiB still holds over twenty 500-record batches.
        # Once the queue is full librdkafka postpones fetching by fetch.queue.backoff.ms
        # (default 1 s), which starved a faster loop (the passthrough benchmark: 31k
        # records/s instead of 55k); 10 ms resumes fetching as soon as there is room.
        "queued.max.messages.kbytes": _PREFETCH_KBYTES,
        "fetch.queue.backoff.ms": _FETCH_QUEUE_BACKOFF_MS,
        **reveal(settings.kafka_extra),
        **reveal(settings.consumer_extra),
    }


def producer_config(settings: Settings) -> dict[str, Any]:
    """librdkafka transactional producer properties (secrets in clear: never log the result)."""
    return {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "client.id": settings.worker_id,
        "transactional.id": settings.effective_transactional_id,
        "transaction.timeout.ms": settings.transaction_timeout_ms,
        "linger.ms": settings.linger_ms,
        "batch.size": settings.producer_batch_bytes,
        # A transaction started while the previous one's commit markers are still being
        # written gets CONCURRENT_TRANSACTIONS, and librdkafka retries after this backoff
        # (default 100 ms): with it, send_offsets_to_transaction was half of a draining
        # worker's time (py-spy, benchmarks/README.md). Retries still back off
        # exponentially up to retry.backoff.max.ms.
        "retry.backoff.ms": _RETRY_BACKOFF_MS,
        **reveal(settings.kafka_extra),
        **reveal(settings.producer_extra),
    }


def probe_config(settings: Settings) -> dict[str, Any]:
    """Properties of the consumer that probes the group's progress (secrets in clear)."""
    config: dict[str, Any] = {
        **consumer_config(settings),
        "client.id": f"{settings.worker_id}-probe",
        "queued.max.messages.kbytes": 64,  # reads one record, at most once per limit
        # Its connection errors during an outage repeat the worker's own consumer's,
        # dozens a second: only critical lines are worth logging twice.
        "log_level": _PROBE_LOG_LEVEL,
    }
    return config


class KafkaTransport:
    """``Transport`` on confluent-kafka clients built from ``Settings``."""

    def __init__(self, settings: Settings) -> None:
        self._input_topic = settings.input_topic
        self._topics = (
            settings.input_topic,
            settings.scores_topic,
            settings.predictions_topic,
            settings.dead_letter_topic,
            # Produced to in every transaction once a challenger loads: required like the rest.
            *([settings.shadow_scores_topic] if settings.shadow_alias else []),
        )
        self._problem: str | None = "producer not initialised"
        self._assigned: frozenset[PartitionKey] = frozenset()
        self._refused: str | None = None
        self._brokers_lost = False
        self._probe_blind = False
        # librdkafka's own log lines join ours (as JSON) via the logger property.
        callbacks = {"error_cb": self._on_error, "logger": _client_log}
        self._producer_config = {**producer_config(settings), **callbacks}
        self._consumer_config = {**consumer_config(settings), **callbacks}
        self._probe_config = probe_config(settings) | {"logger": _client_log}
        try:
            self._consumer = Consumer(self._consumer_config)
            self._producer = Producer(self._producer_config)
            # Asks the brokers about the group without joining it (it never subscribes). Not
            # an AdminClient: its group-coordinator requests abort the process when a broker
            # drops mid-request (confluentinc/librdkafka#4605, #3663), as a restart does.
            self._probe = Consumer(self._probe_config)
        except KafkaException as exc:
            raise FatalTransportError(f"invalid Kafka configuration: {exc}") from exc

    def start(self) -> None:
        step = "list topics"
        try:
            self._require_topics()
            step = "init transactions"
            self._producer.init_transactions(_OP_TIMEOUT_S)
        except KafkaException as exc:
            self._producer.poll(0)  # serves error_cb, where an authentication failure shows
            if self._refused is not None:
                raise FatalTransportError(f"Kafka authentication failed: {self._refused}") from exc
            raise translate(exc, step) from exc
        self._problem = None
        self._producer.poll(0)  # serve what error_cb reported while the brokers were away
        self._brokers_lost = False  # lost while starting: this producer has reached them since
        self._subscribe()

    def consume(self, max_messages: int, timeout_s: float) -> list[Message]:
        try:
            messages = self._consumer.consume(max_messages, timeout_s)
        except KafkaException as exc:
            raise translate(exc, "consume") from exc
        if all(message.error() is None for message in messages):
            return messages
        return [message for message in messages if self._is_data(message)]

    def begin(self) -> None:
        if self._saw_brokers_go():
            self._renew_producer()
        try:
            self._producer.begin_transaction()
        except KafkaException as exc:
            raise translate(exc, "begin transaction") from exc

    def produce(self, records: Iterable[OutboundRecord]) -> None:
        produce = self._producer.produce
        try:
            for topic, key, value, headers in records:
                while True:
                    try:
                        produce(topic, value, key, headers=headers)
                        break
                    except BufferError:
                        # Backpressure: serve delivery reports until the queue has room;
                        # nothing is consumed meanwhile.
                        self._producer.poll(_QUEUE_FULL_POLL_S)
        except KafkaException as exc:
            raise translate(exc, "produce") from exc

    def send_offsets(self, offsets: Mapping[PartitionKey, int]) -> None:
        if self._saw_brokers_go():
            raise AbortableTransactionError("the brokers went away during the transaction")
        positions = [
            TopicPartition(topic, partition, offset)
            for (topic, partition), offset in offsets.items()
        ]
        try:
            self._producer.send_offsets_to_transaction(
                positions, self._consumer.consumer_group_metadata(), _OP_TIMEOUT_S
            )
        except KafkaException as exc:
            raise translate(exc, "send offsets to transaction") from exc

    def commit(self) -> None:
        try:
            self._producer.commit_transaction(_OP_TIMEOUT_S)
        except KafkaException as exc:
            raise translate(exc, "commit transaction") from exc

    def abort(self) -> None:
        if self._saw_brokers_go():
            self._renew_producer()  # its init_transactions aborts the open transaction
            return
        try:
            self._producer.abort_transaction(_OP_TIMEOUT_S)
        except KafkaException as exc:
            raise translate(exc, "abort transaction") from exc

    def rewind(self, batch_start: Mapping[PartitionKey, int]) -> None:
        partitions = [TopicPartition(topic, partition) for topic, partition in batch_start]
        try:
            committed = self._consumer.committed(partitions, _OP_TIMEOUT_S)
        except KafkaException as exc:
            # Offsets only move by our transactions, so the batch started at the
            # committed offset: seeking there is the same rewind.
            _log.warning("committed offsets unavailable, rewinding to the batch start: %s", exc)
            committed = partitions
        for position in committed:
            key = (position.topic, position.partition)
            offset = position.offset if position.offset >= 0 else batch_start[key]
            try:
                self._consumer.seek(TopicPartition(position.topic, position.partition, offset))
            except KafkaException as exc:  # revoked meanwhile: its new owner starts from the commit
                _log.warning("cannot rewind %s[%d]: %s", position.topic, position.partition, exc)

    def assignment(self) -> frozenset[PartitionKey]:
        return self._assigned

    def lags(self) -> dict[PartitionKey, int]:
        positions = self._consumer.position(
            [TopicPartition(topic, partition) for topic, partition in self._assigned]
        )
        lags: dict[PartitionKey, int] = {}
        for position in positions:
            if position.offset < 0:
                continue
            _, high = self._consumer.get_watermark_offsets(position, cached=True)
            lags[(position.topic, position.partition)] = max(0, high - position.offset)
        return lags

    def problem(self) -> str | None:
        return self._problem

    def group_progress(self) -> GroupProgress | None:
        probe, topic, timeout = self._probe, self._input_topic, _PROBE_TIMEOUT_S
        cluster_answered = False
        try:
            metadata = probe.list_topics(topic, timeout=timeout).topics[topic]
            cluster_answered = True
            partitions = [TopicPartition(topic, p) for p in sorted(metadata.partitions)]
            progress = {}
            for position in probe.committed(partitions, timeout=timeout):
                start, end = probe.get_watermark_offsets(position, timeout=timeout, cached=False)
                committed = position.offset if position.offset >= 0 else start
                progress[(position.topic, position.partition)] = PartitionProgress(committed, end)
        except (KafkaException, KeyError) as exc:
            # Said once per spell: a probe that cannot see the group also cannot tell the
            # worker it is stuck, which an operator needs to know.
            if not self._probe_blind:
                _log.warning("cannot ask the brokers how far the group is: %s", exc)
            elif cluster_answered:
                # Twice running the cluster answered but not about the group: a client can
                # keep asking a coordinator it lost, which a fresh one looks up again.
                self._renew_probe()
            self._probe_blind = True
            return None
        if self._probe_blind:
            _log.info("the group's progress is visible again")
        self._probe_blind = False
        return progress

    def record_waiting(self, positions: Mapping[PartitionKey, int]) -> bool:
        probe = self._probe
        partitions = [TopicPartition(t, p, offset) for (t, p), offset in positions.items()]
        try:
            probe.assign(partitions)
            try:
                if any(message.error() is None for message in probe.consume(1, _PROBE_TIMEOUT_S)):
                    return True
                # Past markers and aborted records a read-committed position still moves on.
                reached = probe.position(partitions)
            finally:
                probe.unassign()
            ends = [
                probe.get_watermark_offsets(tp, timeout=_PROBE_TIMEOUT_S, cached=False)[1]
                for tp in partitions
            ]
        except KafkaException as exc:
            _log.warning("cannot read past the group's offsets: %s", exc)
            return True
        return any(position.offset < end for position, end in zip(reached, ends, strict=True))

    def reconnect(self) -> None:
        try:
            self._consumer.close()  # leaves the group if the coordinator still knows it
        except KafkaException as exc:
            _log.warning("close consumer failed: %s", exc)
        self._assigned = frozenset()
        self._consumer = Consumer(self._consumer_config)
        self._subscribe()
        self._renew_probe()
        self._brokers_lost = True  # until the new producer is initialised: begin() retries it
        self._renew_producer("self-healing")

    def close(self) -> None:
        """Leave the group and flush; best effort (after a fatal error both may fail)."""
        for action, call in (
            ("close consumer", self._consumer.close),
            ("close probe", self._probe.close),
            ("flush producer", lambda: self._producer.flush(_OP_TIMEOUT_S)),
        ):
            try:
                call()
            except KafkaException as exc:
                _log.warning("%s failed: %s", action, exc)

    def _require_topics(self) -> None:
        """Raise ``RetriableTransportError`` naming any of the worker's topics that is missing
        (``KafkaException`` when the broker cannot be asked).

        Producing to a missing topic would fail every transaction; waiting here keeps
        the worker not-ready, with the reason in its log, until the topics exist.
        """
        known = self._producer.list_topics(timeout=_OP_TIMEOUT_S).topics
        missing = [t for t in self._topics if t not in known or known[t].error is not None]
        if missing:
            raise RetriableTransportError(f"topics do not exist (yet): {', '.join(missing)}")

    def _subscribe(self) -> None:
        self._consumer.subscribe(
            [self._input_topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )

    def _saw_brokers_go(self) -> bool:
        """Whether every broker went away since the producer last (re)started.

        Serves the producer's pending error callbacks first; the consumer's are served
        in ``consume()``.
        """
        self._producer.poll(0)
        return self._brokers_lost

    def _renew_producer(self, why: str = "the brokers went away") -> None:
        """Replace the producer by a new one with the same transactional id (logging ``why``).

        A producer that saw all brokers go can block forever in its next
        ``send_offsets_to_transaction``: it keeps looking for a group coordinator it
        has decommissioned (confluentinc/librdkafka#5511, #5456). A new producer looks
        the coordinators up afresh, and its ``init_transactions`` fences the old one and
        aborts whatever transaction that had open. Raises ``TransportError`` (retriable
        while the brokers are still away; the next call tries again).
        """
        _log.warning("%s: replacing the transactional producer", why)
        self._producer = Producer(self._producer_config)
        try:
            self._producer.init_transactions(_OP_TIMEOUT_S)
        except KafkaException as exc:
            raise translate(exc, "init transactions") from exc
        self._brokers_lost = False
        self._problem = None

    def _renew_probe(self) -> None:
        _log.info("replacing the consumer that probes the group")
        try:
            self._probe.close()
        except KafkaException as exc:
            _log.warning("close probe failed: %s", exc)
        self._probe = Consumer(self._probe_config)

    def _is_data(self, message: Message) -> bool:
        error = message.error()
        if error is None:
            return True
        if error.fatal():
            raise FatalTransportError(f"consume failed: {error.name()}: {error.str()}")
        _log.warning("consumer error: %s: %s", error.name(), error.str())
        return False

    def _on_error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._ALL_BROKERS_DOWN:
            self._brokers_lost = True
        if error.code() in CREDENTIAL_ERRORS:
            self._refused = f"{error.name()}: {error.str()}"
        if error.fatal():
            self._problem = f"fatal Kafka error: {error.name()}: {error.str()}"
            _log.error(self._problem)
        else:
            _log.warning("Kafka client error: %s: %s", error.name(), error.str())

    def _on_assign(self, _consumer: Consumer, partitions: Sequence[TopicPartition]) -> None:
        self._assigned = self._assigned | {(tp.topic, tp.partition) for tp in partitions}
        _log.info("partitions assigned", extra={"partitions": _names(partitions)})

    def _on_revoke(self, _consumer: Consumer, partitions: Sequence[TopicPartition]) -> None:
        self._assigned = self._assigned - {(tp.topic, tp.partition) for tp in partitions}
        _log.info("partitions revoked", extra={"partitions": _names(partitions)})

    def _on_lost(self, _consumer: Consumer, partitions: Sequence[TopicPartition]) -> None:
        self._assigned = self._assigned - {(tp.topic, tp.partition) for tp in partitions}
        _log.warning("partitions lost", extra={"partitions": _names(partitions)})


def _names(partitions: Sequence[TopicPartition]) -> list[str]:
    return [f"{tp.topic}[{tp.partition}]" for tp in partitions]
