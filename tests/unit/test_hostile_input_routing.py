"""Hostile input through the worker's whole loop, on an injected fake transactional transport.

For arbitrary values, keys and headers, every consumed record ends up as exactly one score
(with its prediction record) or exactly one dead letter, the batch commits, the offsets
advance past every record, and ``run()`` returns 0: nothing raises out of the loop.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from confluent_kafka import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumer.decoding import DecodeFailure, decode_application
from consumer.model import LoadedModel
from consumer.ops import Metrics
from consumer.records import OutboundRecord
from consumer.settings import Settings
from consumer.transport import PartitionKey
from consumer.worker import Worker
from contracts import LoanApplication
from contracts.score import LoanScore, PredictionRecord
from contracts.topics import (
    CORRELATION_ID_HEADER,
    ERROR_MESSAGE_HEADER,
    ERROR_TYPE_HEADER,
    SOURCE_OFFSET_HEADER,
    SOURCE_PARTITION_HEADER,
    SOURCE_TOPIC_HEADER,
)
from tests.fuzz.corpus import HOSTILE_CORPUS
from tests.fuzz.strategies import hostile_values

_INPUT = "applications"
_SCORES, _PREDICTIONS, _DEAD = "scores", "predictions", "dead-letters"
_Header = tuple[str, bytes | None]


@dataclass
class _Transport:
    """Transactional semantics in memory; stops the worker once every batch is consumed."""

    batches: deque[list[Message]]
    worker: Worker | None = None
    calls: list[str] = field(default_factory=list)
    committed: list[OutboundRecord] = field(default_factory=list)
    offsets: dict[PartitionKey, int] = field(default_factory=dict)
    _open: list[OutboundRecord] | None = None
    _pending_offsets: dict[PartitionKey, int] = field(default_factory=dict)

    def start(self) -> None:
        self.calls.append("start")

    def consume(self, max_messages: int, timeout_s: float) -> list[Message]:
        if not self.batches:
            assert self.worker is not None
            self.worker.stop()
            return []
        return self.batches.popleft()

    def begin(self) -> None:
        self.calls.append("begin")
        self._open, self._pending_offsets = [], {}

    def produce(self, records: Iterable[OutboundRecord]) -> None:
        assert self._open is not None
        self._open.extend(records)

    def send_offsets(self, offsets: Mapping[PartitionKey, int]) -> None:
        self._pending_offsets = dict(offsets)

    def commit(self) -> None:
        self.calls.append("commit")
        assert self._open is not None
        self.committed.extend(self._open)
        self.offsets.update(self._pending_offsets)
        self._open = None

    def abort(self) -> None:
        self.calls.append("abort")

    def rewind(self, batch_start: Mapping[PartitionKey, int]) -> None:
        self.calls.append("rewind")

    def assignment(self) -> frozenset[PartitionKey]:
        return frozenset({(_INPUT, 0)})

    def lags(self) -> dict[PartitionKey, int]:
        return {}

    def problem(self) -> str | None:
        return None

    def group_progress(self) -> None:
        return None  # the cluster never answers: the worker is never judged stuck

    def record_waiting(self, positions: Mapping[PartitionKey, int]) -> bool:
        raise AssertionError("never suspect, so never asked")

    def reconnect(self) -> None:
        raise AssertionError("no reconnect expected")

    def close(self) -> None:
        self.calls.append("close")


class _Pipeline:
    """A deterministic stand-in for the model: the probability follows the repayment status."""

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:  # noqa: N803 (sklearn's name)
        positive = np.clip((X["pay_0"].to_numpy() + 2) / 11, 0, 1)
        return np.column_stack([1 - positive, positive])


class _Models:
    current = LoadedModel("credit-default", "7", "run-7", 0.5, _Pipeline())

    def wait_loaded(self, timeout: float) -> bool:
        return True


def _settings() -> Settings:
    return Settings(  # type: ignore[call-arg]
        kafka_bootstrap_servers="unused:9092",
        mlflow_tracking_uri="unused",
        input_topic=_INPUT,
        scores_topic=_SCORES,
        predictions_topic=_PREDICTIONS,
        dead_letter_topic=_DEAD,
        worker_id="hostile-test",
        transaction_timeout_ms=1_000,
    )


def _run(batches: list[list[Message]]) -> _Transport:
    transport = _Transport(deque(batches))
    stalls: list[str] = []  # the default on_stall would exit pytest itself
    worker = Worker(
        _settings(),
        transport=transport,
        models=_Models(),
        metrics=Metrics(),
        on_stall=lambda: stalls.append("stalled"),
    )
    transport.worker = worker
    assert worker.run() == 0
    assert stalls == []
    return transport


def _headers(record: OutboundRecord) -> dict[str, bytes | str | None]:
    return dict(record.headers)


def _expected_correlation_id(message: Message) -> bytes:
    for name, value in message.headers() or []:
        if name == CORRELATION_ID_HEADER and value:
            return value
    return f"{message.topic()}/{message.partition()}/{message.offset()}".encode()


def _assert_routed_exactly_once(messages: list[Message], transport: _Transport) -> None:
    """Every message has exactly one outcome, the one its value calls for."""
    max_bytes = _settings().max_message_bytes
    copy_limit = _settings().dead_letter_max_value_bytes
    by_position = {(m.partition(), m.offset()): m for m in messages}
    assert len(by_position) == len(messages), "test bug: positions must be unique"
    assert "abort" not in transport.calls
    assert transport.calls[-1] == "close"

    outcomes: Counter[tuple[int | None, int | None]] = Counter()
    scores = [r for r in transport.committed if r.topic == _SCORES]
    predictions = [r for r in transport.committed if r.topic == _PREDICTIONS]
    assert len(scores) == len(predictions)
    for score_record, prediction_record in zip(scores, predictions, strict=True):
        score = LoanScore.model_validate_json(score_record.value or b"")
        prediction = PredictionRecord.model_validate_json(prediction_record.value or b"")
        position = (prediction.input_partition, prediction.input_offset)
        outcomes[position] += 1
        message = by_position[position]
        expected = decode_application(message.value(), max_bytes=max_bytes)
        assert isinstance(expected, LoanApplication), f"{message.value()!r} was scored"
        assert score.application_id == prediction.application_id == expected.application_id
        assert score_record.key == prediction_record.key == expected.application_id.encode()
        assert _headers(score_record)[CORRELATION_ID_HEADER] == _expected_correlation_id(message)
    for record in transport.committed:
        if record.topic != _DEAD:
            continue
        headers = _headers(record)
        position = (int(headers[SOURCE_PARTITION_HEADER]), int(headers[SOURCE_OFFSET_HEADER]))  # type: ignore[arg-type]
        outcomes[position] += 1
        message = by_position[position]
        expected = decode_application(message.value(), max_bytes=max_bytes)
        assert isinstance(expected, DecodeFailure), f"{message.value()!r} was dead-lettered"
        assert headers[ERROR_TYPE_HEADER] == expected.reason.value.encode()
        original = message.value()
        if original is not None and len(original) > copy_limit:
            # Too large for the dead-letter topic: referenced by its source offset instead.
            assert (record.key, record.value) == (message.key(), None)
            error_message = headers[ERROR_MESSAGE_HEADER]
            assert isinstance(error_message, bytes)
            assert error_message.startswith(expected.message.encode())
            assert b"read it at the source offset" in error_message
        else:
            assert (record.key, record.value) == (message.key(), original)
            assert headers[ERROR_MESSAGE_HEADER] == expected.message.encode()
        assert headers[SOURCE_TOPIC_HEADER] == _INPUT.encode()
        assert headers[CORRELATION_ID_HEADER] == _expected_correlation_id(message)
    assert outcomes == Counter(dict.fromkeys(by_position, 1))
    assert {r.topic for r in transport.committed} <= {_SCORES, _PREDICTIONS, _DEAD}

    last: dict[PartitionKey, int] = {}
    for message in messages:
        key = (_INPUT, message.partition() or 0)
        last[key] = max(last.get(key, -1), (message.offset() or 0) + 1)
    assert transport.offsets == last


_header_names = st.one_of(
    st.sampled_from([CORRELATION_ID_HEADER, ERROR_TYPE_HEADER, "", "\u202e\ufeff"]),
    st.text(max_size=12),
)
_headers_strategy = st.none() | st.lists(
    st.tuples(_header_names, st.none() | st.binary(max_size=40)), max_size=4
)


@st.composite
def _batches(draw: st.DrawFn) -> list[list[Message]]:
    """One to three batches of records with arbitrary values, keys and headers."""
    next_offset = [0, 0, 0]
    batches = []
    for _ in range(draw(st.integers(1, 3))):
        batch = []
        for _ in range(draw(st.integers(1, 25))):
            partition = draw(st.integers(0, 2))
            batch.append(
                Message(
                    topic=_INPUT,
                    partition=partition,
                    offset=next_offset[partition],
                    key=draw(st.none() | st.binary(max_size=64)),
                    value=draw(hostile_values()),
                    headers=draw(_headers_strategy),
                )
            )
            next_offset[partition] += draw(st.integers(1, 3))  # gaps, as after compaction
        batches.append(batch)
    return batches


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_batches())
def test_arbitrary_records_each_route_to_one_score_or_one_dead_letter(
    batches: list[list[Message]],
) -> None:
    transport = _run(batches)
    _assert_routed_exactly_once([m for batch in batches for m in batch], transport)
    assert transport.calls.count("commit") == len(batches)


def test_the_whole_hostile_corpus_in_one_batch_routes_each_record_once() -> None:
    messages = [
        Message(topic=_INPUT, partition=0, offset=i, key=case.name.encode(), value=case.value)
        for i, case in enumerate(HOSTILE_CORPUS)
    ]
    transport = _run([messages])
    _assert_routed_exactly_once(messages, transport)
    # The worker's own 64 KiB limit applies: the 1 MiB valid application is dead-lettered too.
    dead = [r for r in transport.committed if r.topic == _DEAD]
    accepted = sum(case.expected is None for case in HOSTILE_CORPUS)
    assert len(dead) == len(HOSTILE_CORPUS) - accepted + 1
