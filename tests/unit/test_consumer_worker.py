"""The run loop against a fake transactional transport: routing, transactions, aborts, stops."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import orjson
import pandas as pd
import pytest
from confluent_kafka import Message
from threadpoolctl import threadpool_info, threadpool_limits

from consumer.errors import (
    AbortableTransactionError,
    FatalTransportError,
    RetriableTransportError,
)
from consumer.explaining import build_explainer, top_reasons
from consumer.liveness import GroupProgress, PartitionProgress
from consumer.model import LoadedModel
from consumer.ops import Metrics
from consumer.records import OutboundRecord
from consumer.settings import Settings
from consumer.transport import PartitionKey
from consumer.worker import EXIT_STUCK, WATCHDOG_THREAD, Worker
from contracts import FEATURE_COLUMNS, LoanApplication
from contracts.score import LoanScore, PredictionRecord, ShadowScore
from contracts.topics import (
    ERROR_TYPE_HEADER,
    MODEL_VERSION_HEADER,
    SHADOW_SCORES_TOPIC,
    DeadLetterReason,
)
from tests.helpers.applications import applications_from_frame, as_frame, encode
from tests.helpers.champion import fit_tiny_pipeline
from training.packaging import as_model_input

_INPUT = "apps"


@dataclass
class FakeTransport:
    """A transport with transactional semantics: produced records become visible on commit.

    ``failures`` maps a method name to exceptions raised by its next calls, in order.
    ``rewind`` puts the last batch back in front of the queue, as a seek would.
    """

    batches: deque[list[Message]]
    failures: dict[str, list[Exception]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    committed: list[OutboundRecord] = field(default_factory=list)
    committed_offsets: dict[PartitionKey, int] = field(default_factory=dict)
    rewinds: list[dict[PartitionKey, int]] = field(default_factory=list)
    assigned: frozenset[PartitionKey] = frozenset()
    closed: bool = False
    on_commit: list[object] = field(default_factory=list)
    progress: GroupProgress | None = None
    """What ``group_progress()`` answers (None: the cluster does not answer)."""
    reconnects: int = 0
    reconnected: Callable[[], None] | None = None
    _open: list[OutboundRecord] | None = None
    _offsets: dict[PartitionKey, int] = field(default_factory=dict)
    _last: list[Message] = field(default_factory=list)

    def _call(self, name: str) -> None:
        self.calls.append(name)
        pending = self.failures.get(name)
        if pending:
            raise pending.pop(0)

    def start(self) -> None:
        self._call("start")
        self.assigned = frozenset({(_INPUT, 0)})

    def consume(self, max_messages: int, timeout_s: float) -> list[Message]:
        self._last = self.batches.popleft() if self.batches else []
        assert len(self._last) <= max_messages
        return self._last

    def begin(self) -> None:
        self._call("begin")
        assert self._open is None, "transaction already open"
        self._open, self._offsets = [], {}

    def produce(self, records: Iterable[OutboundRecord]) -> None:
        self._call("produce")
        assert self._open is not None
        self._open.extend(records)

    def send_offsets(self, offsets: Mapping[PartitionKey, int]) -> None:
        self._call("send_offsets")
        self._offsets = dict(offsets)

    def commit(self) -> None:
        self._call("commit")
        assert self._open is not None
        self.committed.extend(self._open)
        self.committed_offsets.update(self._offsets)
        self._open = None
        for callback in self.on_commit:
            callback()  # type: ignore[operator]

    def abort(self) -> None:
        self._call("abort")
        self._open = None

    def rewind(self, batch_start: Mapping[PartitionKey, int]) -> None:
        self.calls.append("rewind")
        self.rewinds.append(dict(batch_start))
        self.batches.appendleft(self._last)

    def assignment(self) -> frozenset[PartitionKey]:
        return self.assigned

    def lags(self) -> dict[PartitionKey, int]:
        return {(_INPUT, 0): 0}

    def problem(self) -> str | None:
        return None

    def group_progress(self) -> GroupProgress | None:
        return self.progress

    def record_waiting(self, positions: Mapping[PartitionKey, int]) -> bool:
        return self.progress is not None

    def reconnect(self) -> None:
        self.reconnects += 1
        if self.reconnected is not None:
            self.reconnected()

    def close(self) -> None:
        self.closed = True


class FakeModels:
    """A ModelSource whose model the test sets."""

    def __init__(self, model: LoadedModel | None) -> None:
        self.current: LoadedModel | None = model

    def wait_loaded(self, timeout: float) -> bool:
        return self.current is not None


class CountingPipeline:
    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.calls = 0

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:  # noqa: N803
        self.calls += 1
        return self.inner.predict_proba(X)  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def pipeline(feature_frame: pd.DataFrame) -> object:
    return fit_tiny_pipeline(feature_frame)


@pytest.fixture(scope="module")
def applications(feature_frame: pd.DataFrame) -> list[LoanApplication]:
    return applications_from_frame(feature_frame, 40)


def _model(pipeline: object, version: str = "1") -> LoadedModel:
    return LoadedModel(
        "credit-default", version, f"run-{version}", 0.35, CountingPipeline(pipeline)
    )


def _settings(**changes: object) -> Settings:
    values: dict[str, object] = {
        "kafka_bootstrap_servers": "unused:9092",
        "mlflow_tracking_uri": "unused",
        "input_topic": _INPUT,
        "worker_id": "worker-t",
        "batch_max_messages": 100,
        "max_message_bytes": 2048,
        "transaction_timeout_ms": 1_000,
    }
    values.update(changes)
    return Settings(**values)  # type: ignore[arg-type]


def _messages(
    values: Sequence[bytes | None], *, partition: int = 0, first: int = 0
) -> list[Message]:
    return [
        Message(
            topic=_INPUT, partition=partition, offset=first + i, key=b"k%d" % (first + i), value=v
        )
        for i, v in enumerate(values)
    ]


_unexpected_stalls: list[str] = []


@pytest.fixture(autouse=True)
def _no_unexpected_stall() -> Iterator[None]:
    """Fail a test whose worker's watchdog fired (``_worker`` records it instead of exiting)."""
    _unexpected_stalls.clear()
    yield
    assert _unexpected_stalls == [], "the stall watchdog fired"


def _worker(transport: FakeTransport, models: FakeModels, **settings: object) -> Worker:
    # The default on_stall exits the process: in a unit test that would be pytest itself.
    return Worker(
        _settings(**settings),
        transport=transport,
        models=models,
        metrics=Metrics(),
        on_stall=lambda: _unexpected_stalls.append("stalled"),
    )


def _on(records: list[OutboundRecord], topic: str) -> list[OutboundRecord]:
    return [record for record in records if record.topic == topic]


_BAD_VALUES: dict[DeadLetterReason, bytes | None] = {
    DeadLetterReason.EMPTY: None,
    DeadLetterReason.OVERSIZED: b"{" + b" " * 4096 + b"}",
    DeadLetterReason.NOT_UTF8: b"\xff\xfe\xfd",
    DeadLetterReason.INVALID_JSON: b"{not json",
    DeadLetterReason.VALIDATION: b'{"application_id": "x"}',
}


def test_a_mixed_batch_is_one_transaction_with_one_outcome_per_record(
    pipeline: object, applications: list[LoanApplication]
) -> None:
    good = [encode(a) for a in applications[:10]]
    values: list[bytes | None] = [*good[:5], *_BAD_VALUES.values(), *good[5:]]
    transport = FakeTransport(deque([_messages(values, first=100)]))
    model = _model(pipeline)
    worker = _worker(transport, FakeModels(model))
    transport.start()

    outcome = worker.run_once()

    assert outcome is not None
    assert outcome.committed
    assert transport.calls == ["start", "begin", "produce", "send_offsets", "commit"]
    assert transport.committed_offsets == {(_INPUT, 0): 115}
    scores = [
        LoanScore.model_validate_json(r.value or b"")
        for r in _on(transport.committed, "loan-scores")
    ]
    assert [s.application_id for s in scores] == [a.application_id for a in applications[:10]]
    offline = pipeline.predict_proba(as_model_input(as_frame(applications[:10])))[:, 1]  # type: ignore[attr-defined]
    assert [s.default_probability for s in scores] == offline.tolist()
    predictions = _on(transport.committed, "loan-predictions")
    assert [
        PredictionRecord.model_validate_json(r.value or b"").input_offset for r in predictions
    ] == [
        100,
        101,
        102,
        103,
        104,
        110,
        111,
        112,
        113,
        114,
    ]
    dead = _on(transport.committed, "loan-applications.dlq")
    assert [dict(r.headers)[ERROR_TYPE_HEADER] for r in dead] == [
        r.value.encode() for r in _BAD_VALUES
    ]
    assert [(r.key, r.value) for r in dead] == [
        (b"k%d" % (105 + i), v) for i, v in enumerate(_BAD_VALUES.values())
    ]
    assert model.pipeline.calls == 1  # type: ignore[attr-defined]
    assert outcome.dead_letters == {reason.value: 1 for reason in _BAD_VALUES}


def test_offsets_are_committed_per_partition(
    pipeline: object, applications: list[LoanApplication]
) -> None:
    batch = _messages([encode(applications[0])] * 3, partition=0, first=7) + _messages(
        [encode(applications[1])] * 2, partition=2, first=50
    )
    transport = FakeTransport(deque([batch]))
    _worker(transport, FakeModels(_model(pipeline))).run_once()
    assert transport.committed_offsets == {(_INPUT, 0): 10, (_INPUT, 2): 52}


def test_an_abortable_error_aborts_rewinds_and_the_batch_is_produced_once(
    pipeline: object, applications: list[LoanApplication]
) -> None:
    transport = FakeTransport(
        deque([_messages([encode(a) for a in applications[:5]] + [b"bad"], first=20)]),
        failures={"commit": [AbortableTransactionError("commit failed: fenced generation")]},
    )
    worker = _worker(transport, FakeModels(_model(pipeline)))

    first, second = worker.run_once(), worker.run_once()

    assert first is not None
    assert not first.committed
    assert second is not None
    assert second.committed
    assert transport.calls == [
        "begin",
        "produce",
        "send_offsets",
        "commit",
        "abort",
        "rewind",
        "begin",
        "produce",
        "send_offsets",
        "commit",
    ]
    assert transport.rewinds == [{(_INPUT, 0): 20}]
    assert len(_on(transport.committed, "loan-scores")) == 5
    assert len(_on(transport.committed, "loan-applications.dlq")) == 1
    assert transport.committed_offsets == {(_INPUT, 0): 26}


def test_retriable_errors_retry_the_same_call(
    pipeline: object, applications: list[LoanApplication]
) -> None:
    transport = FakeTransport(
        deque([_messages([encode(applications[0])])]),
        failures={
            "send_offsets": [RetriableTransportError("coordinator loading")],
            "commit": [RetriableTransportError("timed out")],
        },
    )
    outcome = _worker(transport, FakeModels(_model(pipeline))).run_once()
    assert outcome is not None
    assert outcome.committed
    assert transport.calls == [
        "begin",
        "produce",
        "send_offsets",
        "send_offsets",
        "commit",
        "commit",
    ]


def test_retries_give_up_at_the_transaction_timeout_and_abort(
    pipeline: object, applications: list[LoanApplication]
) -> None:
    transport = FakeTransport(
        deque([_messages([encode(applications[0])])]),
        failures={"commit": [RetriableTransportError("timed out")] * 50},
    )
    outcome = _worker(transport, FakeModels(_model(pipeline))).run_once()
    assert outcome is not None
    assert not outcome.committed
    assert transport.calls[-2:] == ["abort", "rewind"]
    assert 2 <= transport.calls.count("commit") < 50
    assert transport.committed == []


def test_a_fatal_error_stops_the_worker_with_a_non_zero_exit(
    pipeline: object, applications: list[LoanApplication]
) -> None:
    transport = FakeTransport(
        deque([_messages([encode(applications[0])])]),
        failures={"commit": [FatalTransportError("producer fenced")]},
    )
    assert _worker(transport, FakeModels(_model(pipeline))).run() == 1
    assert transport.closed
    assert transport.committed == []


def test_a_failed_abort_is_fatal(pipeline: object, applications: list[LoanApplication]) -> None:
    transport = FakeTransport(
        deque([_messages([encode(applications[0])])]),
        failures={
            "commit": [AbortableTransactionError("x")],
            "abort": [RetriableTransportError("broker gone")] * 50,
        },
    )
    assert _worker(transport, FakeModels(_model(pipeline))).run() == 1


def test_stop_finishes_the_batch_in_hand_then_exits_zero(
    pipeline: object, applications: list[LoanApplication]
) -> None:
    batches = deque([_messages([encode(a)], first=i) for i, a in enumerate(applications[:3])])
    transport = FakeTransport(batches)
    worker = _worker(transport, FakeModels(_model(pipeline)))
    transport.on_commit.append(worker.stop)

    assert worker.run() == 0
    assert transport.calls == ["start", "begin", "produce", "send_offsets", "commit"]
    assert transport.closed
    assert len(batches) == 2


def test_a_batch_is_scored_by_one_model_and_a_swap_applies_to_the_next(
    pipeline: object, applications: list[LoanApplication]
) -> None:
    transport = FakeTransport(
        deque(
            [
                _messages([encode(a) for a in applications[:4]], first=0),
                _messages([encode(a) for a in applications[4:8]], first=4),
            ]
        )
    )
    models = FakeModels(_model(pipeline, "1"))
    worker = _worker(transport, models)
    transport.on_commit.append(lambda: setattr(models, "current", _model(pipeline, "2")))

    worker.run_once()
    worker.run_once()

    versions = [
        dict(r.headers)[MODEL_VERSION_HEADER] for r in _on(transport.committed, "loan-scores")
    ]
    assert versions == [b"1"] * 4 + [b"2"] * 4
    bodies = [
        orjson.loads(r.value or b"")["model_version"]
        for r in _on(transport.committed, "loan-scores")
    ]
    assert bodies == ["1"] * 4 + ["2"] * 4


class _PoolProbe(CountingPipeline):
    """Records the largest native thread pool (BLAS, OpenMP) in effect at each model call."""

    def __init__(self, inner: object) -> None:
        super().__init__(inner)
        self.pools: list[int] = []

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:  # noqa: N803
        self.pools.append(_largest_pool())
        return super().predict_proba(X)


def _largest_pool() -> int:
    return max(pool["num_threads"] for pool in threadpool_info())


def test_model_calls_run_with_native_pools_capped_again_after_a_swap(
    pipeline: object, applications: list[LoanApplication]
) -> None:
    batches = [_messages([encode(a) for a in applications[i : i + 4]], first=i) for i in (0, 4)]
    transport = FakeTransport(deque(batches))
    first, second = _PoolProbe(pipeline), _PoolProbe(pipeline)
    models = FakeModels(LoadedModel("credit-default", "1", "run-1", 0.35, first))
    worker = _worker(transport, models, model_threads=1)

    with threadpool_limits(limits=2):  # restores this process's pools on the way out
        assert _largest_pool() == 2, "no native pool that can run two threads here"
        worker.run_once()
        threadpool_limits(limits=2)  # as a library the next model brings would start
        models.current = LoadedModel("credit-default", "2", "run-2", 0.35, second)
        worker.run_once()

    assert (first.pools, second.pools) == ([1], [1])


def test_no_model_means_not_ready_and_not_consuming(pipeline: object) -> None:
    transport = FakeTransport(deque())
    models = FakeModels(None)
    worker = _worker(transport, models)
    assert worker.readiness() == ["no model loaded", "not consuming yet"]
    worker.stop()
    assert worker.run() == 0
    assert transport.calls == []
    assert not transport.closed


def test_kafka_unavailable_at_start_is_retried_then_ready(pipeline: object) -> None:
    transport = FakeTransport(deque(), failures={"start": [RetriableTransportError("no broker")]})
    worker = _worker(transport, FakeModels(_model(pipeline)))
    transport.on_commit.append(worker.stop)
    original_consume = transport.consume

    def consume_then_stop(max_messages: int, timeout_s: float) -> list[Message]:
        worker.stop()
        return original_consume(max_messages, timeout_s)

    transport.consume = consume_then_stop  # type: ignore[method-assign]
    assert worker.run() == 0
    assert transport.calls == ["start", "start"]


def test_metrics_count_outcomes(pipeline: object, applications: list[LoanApplication]) -> None:
    transport = FakeTransport(deque([_messages([encode(applications[0]), b"", b"{"])]))
    metrics = Metrics()
    Worker(
        _settings(), transport=transport, models=FakeModels(_model(pipeline)), metrics=metrics
    ).run_once()  # run_once() alone starts no watchdog

    def value(name: str, labels: dict[str, str] | None = None) -> float | None:
        return metrics.registry.get_sample_value(name, labels or {})

    assert value("scorer_messages_consumed_total") == 3
    assert value("scorer_applications_scored_total") == 1
    assert value("scorer_dead_letters_total", {"error_type": "empty"}) == 1
    assert value("scorer_dead_letters_total", {"error_type": "invalid-json"}) == 1
    assert value("scorer_dead_letters_total", {"error_type": "oversized"}) == 0
    assert value("scorer_transactions_total", {"outcome": "committed"}) == 1
    assert value("scorer_batch_size_count") == 1
    for stage in ("decode", "score", "produce", "commit"):
        assert value("scorer_stage_latency_seconds_count", {"stage": stage}) == 1
    assert value("scorer_consumer_lag", {"topic": _INPUT, "partition": "0"}) == 0


class _BugError(Exception):
    """A bug's exception escaping the loop."""


def _ends_by_stop(transport: FakeTransport, worker: Worker) -> None:
    transport.on_commit.append(worker.stop)


def _ends_by_fatal_commit(transport: FakeTransport, worker: Worker) -> None:
    transport.failures["commit"] = [FatalTransportError("producer fenced")]


def _ends_by_failed_abort(transport: FakeTransport, worker: Worker) -> None:
    transport.failures["commit"] = [AbortableTransactionError("x")]
    transport.failures["abort"] = [RetriableTransportError("broker gone")] * 50


def _ends_by_a_bug(transport: FakeTransport, worker: Worker) -> None:
    transport.failures["produce"] = [_BugError("a bug")]


def _ends_by_fatal_start(transport: FakeTransport, worker: Worker) -> None:
    transport.failures["start"] = [FatalTransportError("invalid credentials")]


@pytest.mark.parametrize(
    ("end", "exit_code"),
    [
        (_ends_by_stop, 0),
        (_ends_by_fatal_commit, 1),
        (_ends_by_failed_abort, 1),
        (_ends_by_a_bug, _BugError),
        (_ends_by_fatal_start, 1),
    ],
)
def test_no_watchdog_outlives_run(
    pipeline: object,
    applications: list[LoanApplication],
    end: Callable[[FakeTransport, Worker], None],
    exit_code: int | type[Exception],
) -> None:
    # A watchdog left behind by a returned run() once exited pytest itself 120 s later.
    transport = FakeTransport(deque([_messages([encode(applications[0])])]))
    worker = _worker(transport, FakeModels(_model(pipeline)))
    end(transport, worker)

    if isinstance(exit_code, int):
        assert worker.run() == exit_code
    else:
        with pytest.raises(exit_code):
            worker.run()

    assert [t for t in threading.enumerate() if t.name == WATCHDOG_THREAD] == []
    assert transport.closed == (end is not _ends_by_fatal_start)


def test_a_step_stuck_past_the_stall_timeout_triggers_the_watchdog(
    pipeline: object, applications: list[LoanApplication]
) -> None:
    release = threading.Event()
    stalls: list[str] = []
    transport = FakeTransport(deque([_messages([encode(applications[0])])]))
    transport.on_commit.append(lambda: release.wait(30))  # a commit that hangs, as librdkafka can
    settings = _settings(transaction_timeout_ms=1_000, stall_timeout_s=1.2)
    worker = Worker(
        settings,
        transport=transport,
        models=FakeModels(_model(pipeline)),
        metrics=Metrics(),
        on_stall=lambda: on_stall(),
    )

    def on_stall() -> None:
        stalls.append("stalled")
        worker.stop()
        release.set()

    runner = threading.Thread(target=worker.run)
    runner.start()
    runner.join(30)

    assert not runner.is_alive()
    assert stalls == ["stalled"]


_FROZEN_WORKER = """
import ctypes, sys
from consumer.model import LoadedModel
from consumer.ops import Metrics
from consumer.settings import Settings
from consumer.worker import Worker

class FrozenTransport:  # consume() holds the GIL: not even the watchdog thread can run
    def start(self): pass
    def consume(self, max_messages, timeout_s):
        ctypes.PyDLL(None).sleep(60)  # PyDLL keeps the GIL across the call
    def close(self): pass

class Models:
    current = LoadedModel("m", "1", "run-1", 0.5, pipeline=None)
    def wait_loaded(self, timeout): return True

settings = Settings(kafka_bootstrap_servers="unused:9092", mlflow_tracking_uri="unused",
                    transaction_timeout_ms=1000, stall_timeout_s=1.5)
sys.exit(Worker(settings, transport=FrozenTransport(), models=Models(), metrics=Metrics()).run())
"""


def test_a_frozen_process_is_ended_by_the_backstop_with_every_thread_s_stack() -> None:
    """Frozen with the GIL held, the watchdog thread cannot run; faulthandler's C timer,
    re-armed by the watchdog on every tick, ends the process at twice the stall limit."""
    done = subprocess.run(
        [sys.executable, "-c", _FROZEN_WORKER],
        capture_output=True,
        text=True,
        # Its imports alone took 5 to 9 s on a quiet machine: a loaded one needs far more.
        timeout=300,
        check=False,
    )
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Timeout (0:00:03)!" in done.stderr
    assert "in consume" in done.stderr  # the frozen call is named
    assert "worker stalled" not in done.stderr


def test_a_quiet_stream_is_not_a_stall(pipeline: object) -> None:
    stalls: list[str] = []
    transport = FakeTransport(deque())
    worker = Worker(
        _settings(transaction_timeout_ms=1_000, stall_timeout_s=1.2),
        transport=transport,
        models=FakeModels(_model(pipeline)),
        metrics=Metrics(),
        on_stall=lambda: stalls.append("stalled"),
    )
    consumed = 0
    original = transport.consume

    def consume_for_two_seconds(max_messages: int, timeout_s: float) -> list[Message]:
        nonlocal consumed
        consumed += 1
        if consumed * timeout_s >= 2.0:
            worker.stop()
        threading.Event().wait(timeout_s)  # an idle broker: consume waits its full timeout
        return original(max_messages, timeout_s)

    transport.consume = consume_for_two_seconds  # type: ignore[method-assign]
    assert worker.run() == 0
    assert stalls == []


def test_repeated_aborts_make_the_worker_not_ready_until_a_commit(
    pipeline: object, applications: list[LoanApplication]
) -> None:
    transport = FakeTransport(
        deque([_messages([encode(applications[0])])]),
        failures={"commit": [AbortableTransactionError("unknown topic")] * 3},
    )
    transport.start()
    worker = _worker(transport, FakeModels(_model(pipeline)))

    for _ in range(3):
        outcome = worker.run_once()
        assert outcome is not None
        assert not outcome.committed
    assert "the last 3 transactions were aborted" in worker.readiness()

    outcome = worker.run_once()
    assert outcome is not None
    assert outcome.committed
    assert not any("aborted" in reason for reason in worker.readiness())


class _SteppingClock:
    """A clock that moves one second per empty poll (set as the worker's clock)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _idle_stuck_worker(
    pipeline: object, clock: _SteppingClock
) -> tuple[Worker, FakeTransport, Metrics]:
    """A worker whose consumer returns nothing while 40 records wait uncommitted."""
    transport = FakeTransport(deque(), progress={(_INPUT, 0): PartitionProgress(10, 50)})
    original = transport.consume

    def consume_a_second(max_messages: int, timeout_s: float) -> list[Message]:
        clock.now += 1
        return original(max_messages, timeout_s)

    transport.consume = consume_a_second  # type: ignore[method-assign]
    metrics = Metrics()
    worker = Worker(
        _settings(self_heal_after_s=10),
        transport=transport,
        models=FakeModels(_model(pipeline)),
        metrics=metrics,
        clock=clock,
        on_stall=lambda: _unexpected_stalls.append("stalled"),
    )
    return worker, transport, metrics


def test_a_stuck_worker_replaces_its_clients_once_then_exits_for_a_restart(
    pipeline: object,
) -> None:
    clock = _SteppingClock()
    worker, transport, metrics = _idle_stuck_worker(pipeline, clock)
    live_after_heal: list[list[str]] = []
    transport.reconnected = lambda: live_after_heal.append(worker.liveness())

    assert worker.run() == EXIT_STUCK

    assert transport.reconnects == 1
    assert live_after_heal[0][0].startswith(
        "not consuming: holding 1 assigned partition(s) while 40"
    )
    assert metrics.registry.get_sample_value("scorer_self_heals_total") == 1
    assert (metrics.registry.get_sample_value("scorer_last_self_heal_timestamp_seconds") or 0) > 0
    # healed at ~10 s past the first answer, gave up ~10 s after that
    assert 20 <= clock.now <= 30


def test_a_healed_worker_that_consumes_again_keeps_running(
    pipeline: object, applications: list[LoanApplication]
) -> None:
    clock = _SteppingClock()
    worker, transport, _ = _idle_stuck_worker(pipeline, clock)

    def rejoined() -> None:
        transport.batches.append(_messages([encode(applications[0])], first=10))
        transport.on_commit.append(worker.stop)

    transport.reconnected = rejoined

    assert worker.run() == 0
    assert transport.reconnects == 1
    assert worker.liveness() == []
    assert len(_on(transport.committed, "loan-scores")) == 1


# --- reason codes ----------------------------------------------------------------------


class BrokenExplainer:
    """An explainer whose batch call fails, as a library bug or a bad model would."""

    method = "linear"
    features = FEATURE_COLUMNS

    def contributions(self, frame: pd.DataFrame, probabilities: np.ndarray) -> np.ndarray:
        raise ValueError("boom")


def _explained_model(pipeline: object, feature_frame: pd.DataFrame) -> LoadedModel:
    reference = as_model_input(feature_frame).median().round().to_dict()
    explainer = build_explainer(pipeline, "linear", reference, FEATURE_COLUMNS)
    return replace(_model(pipeline), explainer=explainer)


def _scores(transport: FakeTransport) -> list[LoanScore]:
    return [
        LoanScore.model_validate_json(r.value or b"")
        for r in _on(transport.committed, "loan-scores")
    ]


def test_every_score_carries_its_top_reasons(
    pipeline: object, applications: list[LoanApplication], feature_frame: pd.DataFrame
) -> None:
    model = _explained_model(pipeline, feature_frame)
    transport = FakeTransport(deque([_messages([encode(a) for a in applications[:20]])]))
    worker = _worker(transport, FakeModels(model), reason_count=2)
    transport.start()

    worker.run_once()

    scores = _scores(transport)
    frame = as_model_input(as_frame(applications[:20]))
    proba = pipeline.predict_proba(frame)[:, 1]  # type: ignore[attr-defined]
    expected = top_reasons(model.explainer, frame, proba, 2).reasons  # type: ignore[arg-type]
    assert [[r.model_dump() for r in s.reasons or []] for s in scores] == expected
    assert all(not s.reasons_unavailable for s in scores)
    assert any(len(s.reasons or []) == 2 for s in scores)


def test_a_failed_explanation_still_scores_marked_unavailable(
    pipeline: object, applications: list[LoanApplication], caplog: pytest.LogCaptureFixture
) -> None:
    model = replace(_model(pipeline), explainer=BrokenExplainer())
    transport = FakeTransport(deque([_messages([encode(a) for a in applications[:7]])]))
    metrics = Metrics()
    worker = Worker(_settings(), transport=transport, models=FakeModels(model), metrics=metrics)
    transport.start()

    with caplog.at_level("WARNING", logger="consumer.worker"):
        outcome = worker.run_once()

    assert outcome is not None
    assert outcome.committed
    scores = _scores(transport)
    assert len(scores) == 7
    assert all(s.reasons_unavailable and s.reasons is None for s in scores)
    assert metrics.reasons_unavailable._value.get() == 7
    warnings = [r for r in caplog.records if r.getMessage() == "reason codes unavailable"]
    assert len(warnings) == 1
    assert "ValueError: boom" in warnings[0].reason  # type: ignore[attr-defined]


def test_reason_codes_switched_off_compute_nothing(
    pipeline: object, applications: list[LoanApplication]
) -> None:
    model = replace(_model(pipeline), explainer=BrokenExplainer())
    transport = FakeTransport(deque([_messages([encode(a) for a in applications[:5]])]))
    worker = _worker(transport, FakeModels(model), reason_codes=False)
    transport.start()

    worker.run_once()

    raw = [orjson.loads(r.value or b"") for r in _on(transport.committed, "loan-scores")]
    assert len(raw) == 5
    assert all("reasons" not in score and "reasons_unavailable" not in score for score in raw)


# --- the shadow challenger ---------------------------------------------------------------


class FailingPipeline:
    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:  # noqa: N803
        raise ValueError("challenger broke")


def _shadow_run(
    champion: LoadedModel, challenger: LoadedModel | None, batch: list[LoanApplication]
) -> tuple[FakeTransport, Worker, Metrics]:
    transport = FakeTransport(deque([_messages([encode(a) for a in batch])]))
    metrics = Metrics()
    worker = Worker(
        _settings(reason_codes=False),
        transport=transport,
        models=FakeModels(champion),
        metrics=metrics,
        shadow=FakeModels(challenger),
    )
    transport.start()
    outcome = worker.run_once()
    assert outcome is not None
    assert outcome.committed
    return transport, worker, metrics


def test_the_challenger_scores_the_same_batch_in_the_same_transaction(
    pipeline: object, feature_frame: pd.DataFrame, applications: list[LoanApplication]
) -> None:
    other = fit_tiny_pipeline(feature_frame, seed=1)
    champion, challenger = _model(pipeline, "1"), _model(other, "2")
    transport, worker, metrics = _shadow_run(champion, challenger, applications[:9])

    assert transport.calls.count("commit") == 1
    shadow = [
        ShadowScore.model_validate_json(r.value or b"")
        for r in _on(transport.committed, SHADOW_SCORES_TOPIC)
    ]
    frame = as_model_input(as_frame(applications[:9]))
    assert [s.application_id for s in shadow] == [a.application_id for a in applications[:9]]
    assert [s.default_probability for s in shadow] == other.predict_proba(frame)[:, 1].tolist()
    assert {(s.model_version, s.model_run_id, s.champion_version) for s in shadow} == {
        ("2", "run-2", "1")
    }
    official = [s.default_probability for s in _scores(transport)]
    assert official == pipeline.predict_proba(frame)[:, 1].tolist()  # type: ignore[attr-defined]
    assert challenger.pipeline.calls == 1  # type: ignore[attr-defined]  # one call per batch
    assert metrics.shadow_scored._value.get() == 9
    assert worker.shadow_failure is None


def test_a_challenger_that_fails_to_score_costs_the_champion_nothing(
    pipeline: object, applications: list[LoanApplication], caplog: pytest.LogCaptureFixture
) -> None:
    broken = LoadedModel("credit-default", "2", "run-2", 0.35, FailingPipeline())
    with caplog.at_level("WARNING", logger="consumer.worker"):
        transport, worker, metrics = _shadow_run(_model(pipeline), broken, applications[:6])

    assert len(_scores(transport)) == 6
    assert _on(transport.committed, SHADOW_SCORES_TOPIC) == []
    assert metrics.shadow_failures._value.get() == 1
    assert worker.shadow_failure == "ValueError: challenger broke"
    assert any("shadow challenger failed" in r.getMessage() for r in caplog.records)


def test_a_challenger_that_is_the_champion_s_version_is_not_scored_again(
    pipeline: object, applications: list[LoanApplication]
) -> None:
    """After ``promote --from-shadow`` the shadow alias names the new champion."""
    challenger = _model(pipeline, "1")
    transport, _, metrics = _shadow_run(_model(pipeline, "1"), challenger, applications[:4])

    assert len(_scores(transport)) == 4
    assert _on(transport.committed, SHADOW_SCORES_TOPIC) == []
    assert challenger.pipeline.calls == 0  # type: ignore[attr-defined]
    assert metrics.shadow_scored._value.get() == 0


def test_no_challenger_loaded_scores_as_usual(
    pipeline: object, applications: list[LoanApplication]
) -> None:
    transport, _, metrics = _shadow_run(_model(pipeline), None, applications[:3])

    assert len(_scores(transport)) == 3
    assert _on(transport.committed, SHADOW_SCORES_TOPIC) == []
    assert metrics.shadow_failures._value.get() == 0
