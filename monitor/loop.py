"""The monitor's loop: a batch's joins and drift state in the database, its Kafka writes
(dead letters, alerts) and input offsets in one Kafka transaction, tied by an outbox.

Per batch::

    messages = consume(up to N, at most W ms)
    DB transaction:                              # all or nothing
        insert predictions (with personal fields if sent), shadow scores, outcomes, window
            rows (keyed: a replay inserts nothing new)
        if the batch empties the backlog or measure_every_records came since the last:
            PSI of the window, live ROC-AUC and fairness gaps; "beyond the limit" state
            per subject -> the alerts of new crossings (monitor/alerts.py)
        outbox := dead letters + alerts, and the next offsets of this batch
    Kafka transaction: produce the outbox; send those offsets; commit
    DB: clear the outbox

Why exactly-once holds, and no join is lost: the database commits first, so whatever
Kafka has committed is also in the database. A crash before the database commit loses
nothing: Kafka's offsets have not moved, the batch is read again. A crash after it
leaves the outbox full; ``start()``, before it joins the group, asks the committed
offsets, which move only with the outbox's own transaction: if they reached the outbox's
offsets, that transaction committed and the outbox is just cleared; else it is
produced, with those offsets, in a new transaction. Either way each dead letter and
alert is committed once, and the inputs resume right after the batch. So a batch is
only ever read again when its database transaction did not commit: the state it meets
is the state before it, and it derives the same alerts. Keyed inserts make even a
repeated record (a duplicate outcome) change nothing.

A duplicate outcome (same ``application_id``) is ignored by its key. An outcome whose
prediction is not in yet waits as a row of its own, until ``pending_outcome_days`` or
past ``max_pending_outcomes`` (oldest first), counted in ``monitor_pending_outcomes``
and ``monitor_outcomes_expired_total``.

Every measure is bounded: PSI over the last ``window_rows`` applications and scores, live
performance and the shadow comparison over the ``performance_window_rows`` most recent
joined outcomes (live fairness too: its rows with personal fields), read by the outcomes'
arrival index (``ORDER BY ... LIMIT``), and the outcomes still waiting for their prediction
are counted and expired from their own list. So a batch costs no more with ten million
joined outcomes stored than with ten thousand.

A batch is measured when it empties the backlog (fewer than ``batch_max_messages`` came)
or once ``measure_every_records`` arrived since the last measure; while a backlog lasts
the others only store. Measuring a 10,000-row window costs ~0.25 s, so measuring every
batch held the monitor to 2,500 applications/s (benchmarks/README.md, finding 10). What a
measure decides is still a function of the database alone (never of a clock), and the
"beyond the limit" state moves in the measuring batch's transaction: measuring less often
can delay an alert under a backlog by at most ``measure_every_records``, never repeat or
lose one; but a drift that comes and goes between two measures of a backlog (a shifted
stretch shorter than the interval, already history) raises none. A backlog is measured
when its last batch comes short, the usual end of a burst; one that ends exactly on a full
batch is measured with the next batch (measuring when idle would need a Kafka transaction
without input offsets, which ``start()`` cannot check).

Champion and challenger are compared on the same applications by construction: the
worker writes an application's shadow score in the transaction of its official score,
and the comparison (``monitor_shadow_*{role}`` over the live window, ``python -m training
promote --from-shadow`` over every one) only counts applications that have both, scored by
one (champion, challenger) pair of versions, and an outcome. One monitor instance per
database: the group gives failover, not sharding.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from confluent_kafka import Message

from consumer.errors import AbortableTransactionError, RetriableTransportError
from consumer.records import OutboundRecord
from contracts.alert import ModelAlert
from monitor.alerts import auc_crossing, fairness_crossings, psi_crossings
from monitor.measures import (
    Drift,
    Live,
    ProfileSource,
    drift_now,
    live_now,
    version_auc,
)
from monitor.metrics import Metrics
from monitor.outbox import alert_record, from_outbox, to_outbox
from monitor.records import Batch, sort_batch
from monitor.settings import Settings
from monitor.store import Store, StoreTransaction
from monitor.transport import PartitionKey, Transport

_log = logging.getLogger(__name__)
_WRITE_ATTEMPTS = 5


class Monitor:
    """The loop over injected Kafka, database and profile source (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        transport: Transport,
        store: Store,
        profiles: ProfileSource,
        metrics: Metrics,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._settings = settings
        self._topics = settings.topics()
        self._transport = transport
        self._store = store
        self._profiles = profiles
        self._metrics = metrics
        self._now = now
        self._unmeasured = 0
        """Records committed since the last measure."""
        self._measures = 0
        """Batches measured since the start."""

    def run(self, stop: threading.Event) -> None:
        """Start, then process batches until ``stop`` is set."""
        self.start()
        _freeze_heap()
        frozen_after_measure = False
        while not stop.is_set():
            self.step()
            if self._measures and not frozen_after_measure:
                _freeze_heap()  # what the first measure loaded: MLflow, the reference profile
                frozen_after_measure = True

    def start(self) -> None:
        """Fence earlier incarnations, finish their unfinished batch, then join the group.

        Recovery comes before the join: a join waits for every member the group still
        counts, a killed incarnation's until its session expires (45 s by default), and
        holds the coordinator's other requests back meanwhile, the offset read with them.
        Fenced, the earlier incarnation can no longer move the committed offsets; the
        recovered batch's transaction commits its offsets without a group generation,
        which the broker accepts from a transactional producer (test_monitor_e2e.py
        recovers so while a killed member still holds the group).
        """
        self._transport.start()
        self._recover()
        self._transport.subscribe()

    def _recover(self) -> None:
        """Finish the Kafka side of a batch the database committed before a crash."""
        with self._store.transaction() as tx:
            records, offsets = tx.pending_outbox()
        if not offsets:
            return
        committed = self._transport.committed(offsets)
        if any(committed.get(key, -1) < offset for key, offset in offsets.items()):
            _log.info("recovering an unfinished batch: %d records", len(records))
            self._write([from_outbox(r) for r in records], offsets)
        with self._store.transaction() as tx:
            tx.clear_outbox()

    def step(self) -> int:
        """Process one batch (if any arrives in time); how many messages it had."""
        s = self._settings
        messages = self._transport.consume(s.batch_max_messages, s.batch_timeout_s)
        if not messages:
            return 0
        now = self._now()
        batch = sort_batch(messages, self._topics, max_value_bytes=s.max_value_bytes, now=now)
        offsets = _next_offsets(messages)
        self._unmeasured += len(messages)
        # A full batch means more are waiting: measure once per measure_every_records of
        # them, not per batch (the measures cost a window's rows, not a batch's).
        due = len(messages) < s.batch_max_messages or self._unmeasured >= s.measure_every_records
        with self._store.transaction() as tx:
            self._record(tx, batch, now)
            alerts = self._measure(tx, now) if due else []
            outbound = [*batch.dead_letters, *alerts]
            tx.put_outbox([to_outbox(r) for r in outbound], offsets)
        self._write(outbound, offsets)
        with self._store.transaction() as tx:
            tx.clear_outbox()
        if due:
            self._unmeasured = 0
            self._measures += 1
        self._metrics.batches.inc()
        self._metrics.dead_letters.inc(len(batch.dead_letters))
        return len(messages)

    def _record(self, tx: StoreTransaction, batch: Batch, now: datetime) -> None:
        s = self._settings
        tx.add_predictions(batch.predictions)
        tx.add_personal_fields(batch.personal)
        tx.add_shadow_scores(batch.shadow_scores)
        self._metrics.duplicates.inc(len(batch.outcomes) - tx.add_outcomes(batch.outcomes))
        tx.add_feature_rows(batch.features, keep=s.window_rows)
        expiry = now - timedelta(days=s.pending_outcome_days)
        self._metrics.expired.inc(tx.expire_pending(expiry, keep=s.max_pending_outcomes))
        self._metrics.pending.set(tx.pending_outcomes())

    def _measure(self, tx: StoreTransaction, now: datetime) -> list[OutboundRecord]:
        """Every live measure as of ``tx``, shown; the alerts of new crossings, their state
        moved in ``tx``."""
        s = self._settings
        live = live_now(tx, s)
        self._metrics.show_performance(live.performance)
        self._metrics.show_fairness(live.fairness)
        self._metrics.show_comparison(live.comparison)
        drift = drift_now(tx, self._profiles, s)
        if drift is not None:
            self._metrics.show_drift(drift.psi)
        alerts, states = self._crossings(tx.alert_states(), drift, live, now)
        tx.set_alert_states(states)
        for alert in alerts:
            self._metrics.alerts.labels(subject=alert.subject).inc()
        return [alert_record(alert, self._topics.alerts) for alert in alerts]

    def _crossings(
        self, beyond: dict[str, bool], drift: Drift | None, live: Live, now: datetime
    ) -> tuple[list[ModelAlert], dict[str, bool]]:
        s = self._settings
        auc = version_auc(live, self._profiles, s)
        newest_run = live.window.run_ids[-1] if live.window.run_ids else ""
        alerts: list[ModelAlert] = []
        states: dict[str, bool] = {}
        for found, state in (
            psi_crossings(drift, beyond, s, now),
            auc_crossing(auc, beyond, s, now),
            fairness_crossings(live.fairness, beyond, s, model_run_id=newest_run, now=now),
        ):
            alerts += found
            states |= state
        return alerts, states

    def _write(self, records: list[OutboundRecord], offsets: dict[PartitionKey, int]) -> None:
        for attempt in range(1, _WRITE_ATTEMPTS + 1):
            try:
                self._transport.write(records, offsets)
                return
            except (AbortableTransactionError, RetriableTransportError) as exc:
                _log.warning("transaction failed (attempt %d): %s", attempt, exc)
                # An abort that fails too ends the process; the next start()
                # finishes this batch from the outbox.
                self._transport.abort()
                if attempt == _WRITE_ATTEMPTS:
                    raise


def _freeze_heap() -> None:
    """Keep the cyclic collector from scanning what lives as long as the process.

    The libraries (pandas, scikit-learn, MLflow) are millions of objects: unfrozen, the
    collections that a batch's allocations trigger scanned them, 23% of the monitor's time
    under the benchmark's burst (py-spy --native, benchmarks/README.md finding 10). The
    worker freezes its heap for the same reason. Garbage is collected first, or it would
    stay frozen too.
    """
    gc.collect()
    gc.freeze()


def _next_offsets(messages: list[Message]) -> dict[PartitionKey, int]:
    """Each partition's offset after its last message: a consumer delivers a partition's
    messages in offset order, so the last one written into the dict is the highest."""
    return {(m.topic() or "", m.partition() or 0): (m.offset() or 0) + 1 for m in messages}
