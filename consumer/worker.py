"""The run loop: consume a batch, score it, produce its outcomes and offsets in one transaction.

Exactly once, per batch::

    messages = consume(up to N, at most W ms)   # rebalances happen here, never mid-transaction
    decode each; score the valid ones in ONE model call (and explain them in one more)
    shadow challenger configured and loaded: score the same ones in ONE call of it
    begin; produce scores + prediction records + shadow scores + dead letters;
    send the next offsets (with the consumer's group metadata); commit

A retriable error repeats the failed call until the transaction timeout; an
abortable one (or retries running out) aborts the transaction and rewinds the
consumer to the committed offsets, so the batch is read again and produced once;
a fatal one stops the worker with a non-zero exit. The model is read once per
batch, so a hot reload swaps models between batches.

The shadow challenger (``SCORER_SHADOW_ALIAS``) is read once per batch too, from a
watcher of its own. Its scores share the batch's transaction, so they are committed
exactly when the official scores are: exactly once per application, for the same
applications. It never decides anything and never holds the champion up: the worker
starts and is ready without it, and a batch it fails to score (``score_challenger``
returns the failure as a value) goes out without shadow scores, counted in
``scorer_shadow_failures`` and reported by ``shadow_failure``.

Rebalances: the consumer's rebalance callbacks only run inside ``consume()``, which
is only called with no transaction open. Every batch is committed (or aborted and
rewound) before the next ``consume()``, so by the time a partition is revoked its
offsets are either committed with its outputs or not at all, and its next owner
resumes exactly after the last committed batch. A worker that misses a rebalance
(stalled past the session timeout) is fenced by the group generation carried in
``send_offsets_to_transaction``: its commit fails as abortable, and it rewinds.
"""

from __future__ import annotations

import faulthandler
import gc
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Protocol, TypeVar

from confluent_kafka import Message
from threadpoolctl import threadpool_limits

from consumer.decoding import DecodeFailure, decode_application
from consumer.errors import (
    AbortableTransactionError,
    FatalTransportError,
    RetriableTransportError,
    TransportError,
    WorkerStuckError,
)
from consumer.explaining import top_reasons
from consumer.liveness import Liveness
from consumer.model import LoadedModel
from consumer.ops import Metrics
from consumer.records import (
    BatchInfo,
    OutboundRecord,
    OutputTopics,
    dead_letter_record,
    scored_records,
    shadow_records,
)
from consumer.scoring import Scores, ScoringFailure, score_applications, score_challenger
from consumer.settings import Settings
from consumer.transport import PartitionKey, Transport
from contracts import LoanApplication

_log = logging.getLogger(__name__)

_T = TypeVar("_T")

EXIT_OK: Final = 0
EXIT_FATAL: Final = 1
"""A fatal Kafka error (fenced by a newer instance, unrecoverable client state)."""
EXIT_STALLED: Final = 3
"""The watchdog found the loop stuck in one step past ``stall_timeout_s``."""
EXIT_STUCK: Final = 4
"""The worker could not consume, and replacing its Kafka clients did not help."""

WATCHDOG_THREAD: Final = "stall-watchdog"
"""Name of the watchdog's thread (tests check that none outlives ``run()``)."""

_MODEL_WAIT_S: Final = 0.5
_ABORTS_NOT_READY: Final = 3
"""Consecutive aborted batches after which the worker reports itself not ready."""
_FIRST_RETRY_S: Final = 0.1
_MAX_RETRY_S: Final = 5.0


def _exit_stalled() -> None:
    logging.shutdown()  # flush the critical line before the hard exit
    os._exit(EXIT_STALLED)  # a stuck C call never returns: no clean shutdown is possible


def _arm_backstop(after_s: float) -> None:
    """Unless re-armed within ``after_s``, write every thread's stack to stderr and exit 1.

    The watchdog re-arms it on every tick. It fires only when the watchdog itself cannot run
    (a C call holding the GIL, or a lock its log line needs): the whole process is frozen,
    which no Python thread can notice. faulthandler's timer is a C thread that needs neither.
    """
    faulthandler.dump_traceback_later(after_s, exit=True)


class ModelSource(Protocol):
    """Where the worker gets the model for each batch (the ``AliasWatcher``)."""

    @property
    def current(self) -> LoadedModel | None: ...

    def wait_loaded(self, timeout: float) -> bool: ...


@dataclass(frozen=True)
class BatchOutcome:
    """What one batch did (also the content of its log line)."""

    consumed: int
    scored: int
    dead_letters: dict[str, int]
    committed: bool
    shadow_scored: int = 0


class Worker:
    """Runs the scoring loop until ``stop()``; see the module docstring for the guarantees."""

    def __init__(
        self,
        settings: Settings,
        *,
        transport: Transport,
        models: ModelSource,
        metrics: Metrics,
        clock: Callable[[], float] = time.perf_counter,
        on_stall: Callable[[], None] | None = None,
        shadow: ModelSource | None = None,
    ) -> None:
        """``shadow``: where the shadow challenger comes from (None: no shadow scoring)."""
        self._settings = settings
        self._transport = transport
        self._models = models
        self._shadow = shadow
        self._shadow_failure: str | None = None
        self._metrics = metrics
        self._clock = clock
        self._topics = OutputTopics(
            scores=settings.scores_topic,
            predictions=settings.predictions_topic,
            dead_letters=settings.dead_letter_topic,
            shadow_scores=settings.shadow_scores_topic,
        )
        self._on_stall = on_stall or _exit_stalled
        self._stopping = threading.Event()
        self._started = False
        self._aborts_in_row = 0
        self._threads_limited_for: tuple[int, int] | None = None
        self._step: tuple[str, float] = ("starting", clock())
        self._liveness = Liveness(settings.self_heal_after_s, clock)
        metrics.watch_loop(
            seconds_since_poll=lambda: self._liveness.seconds_since_poll,
            assigned_partitions=lambda: len(transport.assignment()),
        )

    def stop(self) -> None:
        """Ask the loop to finish the batch in hand, commit, close and return (signal-safe)."""
        self._stopping.set()

    def readiness(self) -> list[str]:
        """Why the worker is not ready to score (empty when it is)."""
        reasons = []
        if self._models.current is None:
            reasons.append("no model loaded")
        if not self._started:
            reasons.append("not consuming yet")
        elif problem := self._transport.problem():
            reasons.append(problem)
        elif not self._transport.assignment():
            reasons.append("no partitions assigned")
        if self._aborts_in_row >= _ABORTS_NOT_READY:
            reasons.append(f"the last {self._aborts_in_row} transactions were aborted")
        return reasons

    @property
    def shadow_failure(self) -> str | None:
        """Why the shadow challenger failed to score the last batch it was given (None: it
        scored it, or it has not been given one)."""
        return self._shadow_failure

    def liveness(self) -> list[str]:
        """Why the worker, though running, is not doing its job (empty when it is).

        Stuck (see ``consumer.liveness``), or its loop silent past ``stall_timeout_s``
        (the watchdog's limit, seen from outside for when even the exit hangs).
        """
        return self._liveness.problems(self._settings.stall_timeout_s)

    def run(self) -> int:
        """Wait for a model, start Kafka, loop until stopped. Returns the process exit code.

        The stall watchdog runs exactly as long as the transport is in use: it starts
        with the loop and has ended, on every way out (stop, fatal error, a bug's
        exception), before ``run()`` returns or raises.
        """
        try:
            if not self._wait_for_model() or not self._start_transport():
                return EXIT_OK
            # Libraries and the model live as long as the process: keep the cyclic
            # collector from re-scanning them on every collection (a few % of throughput).
            gc.freeze()
            with self._watchdog():
                try:
                    while not self._stopping.is_set():
                        self.run_once()
                finally:
                    self._enter("close")  # close() flushes, and can hang like any Kafka call
                    self._transport.close()
        except FatalTransportError as exc:
            _log.critical("stopping on a fatal Kafka error", extra={"reason": str(exc)})
            return EXIT_FATAL
        except WorkerStuckError as exc:
            _log.critical(
                "still not consuming after replacing the Kafka clients, exiting for a restart",
                extra={"reason": str(exc), "exit_code": EXIT_STUCK},
            )
            return EXIT_STUCK
        _log.info("stopped cleanly")
        return EXIT_OK

    def run_once(self) -> BatchOutcome | None:
        """Consume and handle one batch; None when nothing arrived within the wait."""
        self._enter("consume")
        messages = self._transport.consume(
            self._settings.batch_max_messages, self._settings.batch_max_wait_ms / 1000
        )
        self._liveness.polled(len(messages))
        if not messages:
            self._check_consuming()
            return None
        model = self._models.current
        if model is None:  # run() only loops once a model is loaded, and models never unload
            raise AssertionError("batch consumed with no model loaded")
        self._limit_model_threads(model)
        return self._handle(messages, model)

    def _limit_model_threads(self, model: LoadedModel) -> None:
        """Cap the native thread pools the models' calls use (``model_threads``), again
        whenever a model is swapped in: a model can bring a library that was not loaded
        before, and OpenMP's limit holds for the calling thread only, hence here."""
        shadow = self._shadow.current if self._shadow is not None else None
        loaded = (id(model), id(shadow))
        if loaded != self._threads_limited_for:
            threadpool_limits(limits=self._settings.model_threads)
            self._threads_limited_for = loaded

    def _wait_for_model(self) -> bool:
        _log.info("waiting for the model")
        while not self._models.wait_loaded(_MODEL_WAIT_S):
            self._liveness.beat()
            if self._stopping.is_set():
                return False
        return True

    def _start_transport(self) -> bool:
        delay = _FIRST_RETRY_S
        while not self._stopping.is_set():
            try:
                self._transport.start()
            except RetriableTransportError as exc:
                _log.warning("Kafka not available yet, retrying", extra={"reason": str(exc)})
                self._liveness.beat()
                self._stopping.wait(delay)
                delay = min(_MAX_RETRY_S, delay * 2)
                continue
            self._started = True
            _log.info("consuming", extra={"topic": self._settings.input_topic})
            return True
        return False

    def _check_consuming(self) -> None:
        """Probe the group while idle; replace the Kafka clients once if stuck, then give up.

        Runs between transactions (no offsets in flight), so new clients start from the
        group's committed offsets and the new producer's init fences the old one.
        """
        liveness = self._liveness
        if not liveness.probe_due():
            return
        self._enter("probe group")
        liveness.probed(self._transport.group_progress(), self._transport.assignment())
        if (suspect := liveness.suspect) is not None:
            liveness.confirmed(self._transport.record_waiting(suspect))
        stuck = liveness.stuck
        if stuck is None:
            return
        if liveness.heals_without_progress:
            raise WorkerStuckError(stuck)
        _log.warning(
            "self-healing: not consuming, replacing the Kafka consumer and producer",
            extra={"reason": stuck, "limit_s": liveness.limit_s},
        )
        self._enter("self-heal")
        try:
            self._transport.reconnect()
        except TransportError as exc:  # the next probe judges again; a second stuck exits
            _log.warning("self-healing failed", extra={"reason": str(exc)})
        liveness.healed()
        self._metrics.self_healed()

    def _handle(self, messages: list[Message], model: LoadedModel) -> BatchOutcome:
        started = self._clock()
        accepted: list[tuple[Message, LoanApplication]] = []
        dead_letters: list[OutboundRecord] = []
        reasons: Counter[str] = Counter()
        batch_start: dict[PartitionKey, int] = {}
        next_offsets: dict[PartitionKey, int] = {}
        max_bytes = self._settings.max_message_bytes
        for message in messages:
            key = (message.topic() or "", message.partition() or 0)
            offset = message.offset() or 0
            batch_start.setdefault(key, offset)
            next_offsets[key] = offset + 1
            result = decode_application(message.value(), max_bytes=max_bytes)
            if isinstance(result, DecodeFailure):
                dead_letters.append(
                    dead_letter_record(
                        message,
                        result,
                        self._topics.dead_letters,
                        max_value_bytes=self._settings.dead_letter_max_value_bytes,
                    )
                )
                reasons[result.reason.value] += 1
            else:
                accepted.append((message, result))
        decoded = self._clock()
        applications = [application for _, application in accepted]
        scores = score_applications(applications, model)
        explained = self._reasons(scores, model) if self._settings.reason_codes else None
        scored = self._clock()
        shadowed = self._score_shadow(applications, scores, model)
        shadow_done = self._clock()
        info = BatchInfo(
            scored_at=datetime.now(UTC),
            size=len(accepted),
            latency_ms=(scored - started) * 1000,
            worker_id=self._settings.worker_id,
        )
        records = scored_records(
            accepted,
            scores,
            model,
            info,
            self._topics,
            with_personal_fields=self._settings.monitor_personal_fields,
            reasons=explained,
        )
        if shadowed is not None:
            challenger, shadow_scores = shadowed
            topic = self._topics.shadow_scores
            records += shadow_records(
                accepted, shadow_scores, challenger, model.version, info, topic
            )
        records += dead_letters
        produced = self._transact(records, next_offsets, batch_start)
        outcome = BatchOutcome(
            len(messages),
            len(accepted),
            dict(reasons),
            produced is not None,
            len(shadowed[1]) if shadowed else 0,
        )
        marks = (started, decoded, scored, shadow_done, produced, self._clock())
        self._observe(outcome, model, marks)
        return outcome

    def _score_shadow(
        self, applications: list[LoanApplication], scores: Scores, champion: LoadedModel
    ) -> tuple[LoadedModel, Scores] | None:
        """The shadow challenger and its scores of the batch; None when there is no
        challenger, it is the champion's own version (as after ``promote --from-shadow``,
        which leaves the shadow alias where it was: scoring it again would compare the
        champion with itself), or it fails (then counted, and logged when the reason
        changes)."""
        challenger = self._shadow.current if self._shadow is not None else None
        if challenger is None or challenger.version == champion.version or not applications:
            return None
        result = score_challenger(applications, challenger, scores)
        if isinstance(result, ScoringFailure):
            self._metrics.shadow_failures.inc()
            if result.reason != self._shadow_failure:
                _log.warning(
                    "shadow challenger failed to score; the official scores go out without it",
                    extra={"model_version": challenger.version, "reason": result.reason},
                )
            self._shadow_failure = result.reason
            return None
        self._shadow_failure = None
        return challenger, result

    def _reasons(self, scores: Scores, model: LoadedModel) -> list[list[dict[str, Any]] | None]:
        """Each application's reasons; None for those whose explanation failed.

        A failure never costs a score: it is counted, logged once for the batch, and the
        scores go out marked ``reasons_unavailable``.
        """
        if scores.frame is None:
            return []
        problem = model.explanation_problem
        if model.explainer is not None:
            try:
                batch = top_reasons(
                    model.explainer, scores.frame, scores.probabilities, self._settings.reason_count
                )
            except Exception as exc:  # whichever library the model comes from
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if batch.unavailable:
                    self._reasons_failed(batch.unavailable, model, "non-finite contributions")
                return batch.reasons
        self._reasons_failed(len(scores), model, problem or "no explainer")
        return [None] * len(scores)

    def _reasons_failed(self, count: int, model: LoadedModel, problem: str) -> None:
        self._metrics.reasons_unavailable.inc(count)
        _log.warning(
            "reason codes unavailable",
            extra={"applications": count, "model_version": model.version, "reason": problem},
        )

    def _transact(
        self,
        records: list[OutboundRecord],
        next_offsets: dict[PartitionKey, int],
        batch_start: dict[PartitionKey, int],
    ) -> float | None:
        """Produce ``records`` and commit ``next_offsets`` atomically.

        Returns the clock reading when production ended, or None if the transaction
        was aborted (the consumer is then rewound to the committed offsets).
        """
        transport = self._transport
        timeout_s = self._settings.transaction_timeout_ms / 1000
        deadline = self._clock() + timeout_s
        try:
            self._retrying("begin", transport.begin, deadline)
            self._enter("produce")
            transport.produce(records)
            produced = self._clock()
            self._retrying("send offsets", lambda: transport.send_offsets(next_offsets), deadline)
            self._retrying("commit", transport.commit, deadline)
        except AbortableTransactionError as exc:
            _log.warning("aborting the batch transaction", extra={"reason": str(exc)})
            try:
                self._retrying("abort", transport.abort, self._clock() + timeout_s)
            except AbortableTransactionError as abort_exc:
                raise FatalTransportError(
                    f"cannot abort the transaction: {abort_exc}"
                ) from abort_exc
            self._enter("rewind")
            transport.rewind(batch_start)
            self._aborts_in_row += 1
            return None
        self._aborts_in_row = 0
        return produced

    def _retrying(self, step: str, call: Callable[[], _T], deadline: float) -> _T:
        """``call()``, repeated on retriable errors until ``deadline`` (then abortable)."""
        self._enter(step)
        delay = _FIRST_RETRY_S
        while True:
            try:
                return call()
            except RetriableTransportError as exc:
                if self._clock() + delay > deadline:
                    raise AbortableTransactionError(f"gave up retrying: {exc}") from exc
                _log.warning("retrying a Kafka call", extra={"reason": str(exc)})
                time.sleep(delay)
                delay = min(_MAX_RETRY_S, delay * 2)

    def _enter(self, step: str) -> None:
        self._step = (step, self._clock())

    @contextmanager
    def _watchdog(self) -> Iterator[None]:
        """Run ``_watch`` in a thread for the duration of the block, and join it after;
        with the default ``on_stall``, under the backstop (``_arm_backstop``) too."""
        # A test's on_stall replaces the exit: the backstop would end the test process.
        backstop = self._on_stall is _exit_stalled
        done = threading.Event()
        thread = threading.Thread(
            target=self._watch, args=(done, backstop), name=WATCHDOG_THREAD, daemon=True
        )
        if backstop:  # armed here: the loop may hold the GIL before the thread first runs
            _arm_backstop(2 * self._settings.stall_timeout_s)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()
            if backstop:
                faulthandler.cancel_dump_traceback_later()

    def _watch(self, done: threading.Event, backstop: bool) -> None:
        """Call ``on_stall`` (by default: exit the process) if one step outlasts
        ``stall_timeout_s``; return once ``done`` is set.

        librdkafka can block in a transactional call past its timeout when the
        coordinator disappears mid-call (confluentinc/librdkafka#5456, #5511); a
        signal cannot interrupt it either. Exiting is safe: the open transaction is
        aborted when the restarted worker (same transactional.id) initialises, or by
        the broker after the transaction timeout, and nothing was committed twice.
        """
        limit = self._settings.stall_timeout_s
        while not done.wait(min(1.0, limit / 4)):
            if backstop:
                _arm_backstop(2 * limit)  # re-armed: only a frozen process lets it fire
            step, since = self._step
            stalled = self._clock() - since
            if stalled > limit:
                _log.critical(
                    "worker stalled, exiting for a restart",
                    extra={"step": step, "stalled_s": round(stalled, 1), "exit_code": EXIT_STALLED},
                )
                self._on_stall()
                return

    def _observe(
        self,
        outcome: BatchOutcome,
        model: LoadedModel,
        marks: tuple[float, float, float, float, float | None, float],
    ) -> None:
        started, decoded, scored, shadowed, produced, finished = marks
        metrics = self._metrics
        metrics.consumed.inc(outcome.consumed)
        metrics.batch_size.observe(outcome.consumed)
        metrics.stage_latency.labels("decode").observe(decoded - started)
        metrics.stage_latency.labels("score").observe(scored - decoded)
        if self._shadow is not None:
            metrics.stage_latency.labels("shadow").observe(shadowed - scored)
        if produced is not None:
            metrics.stage_latency.labels("produce").observe(produced - shadowed)
            metrics.stage_latency.labels("commit").observe(finished - produced)
            metrics.scored.inc(outcome.scored)
            metrics.shadow_scored.inc(outcome.shadow_scored)
            for reason, count in outcome.dead_letters.items():
                metrics.dead_lettered.labels(reason).inc(count)
        transaction = "committed" if outcome.committed else "aborted"
        metrics.transactions.labels(transaction).inc()
        metrics.set_lags(self._transport.lags())
        _log.info(
            "batch",
            extra={
                "consumed": outcome.consumed,
                "scored": outcome.scored,
                "shadow_scored": outcome.shadow_scored,
                "dead_lettered": sum(outcome.dead_letters.values()),
                "dead_letter_types": outcome.dead_letters,
                "transaction": transaction,
                "latency_ms": round((finished - started) * 1000, 3),
                "model_version": model.version,
            },
        )
