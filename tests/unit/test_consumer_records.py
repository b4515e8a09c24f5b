"""Records a batch produces: scores, predictions and dead letters as a subscriber reads them.

Header names are spelled out as they travel on the wire (the contract subscribers code
against), not imported: a renamed constant that changed the wire would pass a test that
used the same constant.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import orjson
import pandas as pd
import pytest
from confluent_kafka import Message

from consumer.decoding import DecodeFailure
from consumer.model import LoadedModel
from consumer.records import (
    BatchInfo,
    OutboundRecord,
    OutputTopics,
    correlation_id,
    dead_letter_record,
    scored_records,
)
from consumer.scoring import Scores
from contracts.score import LoanScore, PredictionRecord
from contracts.topics import DeadLetterReason
from producer.following import DeadLetter, ReceivedScore, follow_scores
from tests.helpers.applications import applications_from_frame, encode

_TOPICS = OutputTopics(scores="scores", predictions="predictions", dead_letters="dlq")
_MODEL = LoadedModel("credit-default", "7", "run-7", 0.35, pipeline=None)  # type: ignore[arg-type]
_INFO = BatchInfo(datetime(2026, 11, 26, 12, 0, tzinfo=UTC), 2, 1.5, "worker-a")


def _message(offset: int, value: bytes | None, headers: list | None = None) -> Message:
    return Message(
        topic="apps",
        partition=3,
        offset=offset,
        key=b"key-%d" % offset,
        value=value,
        headers=headers,
    )


def test_scores_and_prediction_records(feature_frame: pd.DataFrame) -> None:
    applications = applications_from_frame(feature_frame, 2)
    accepted = [
        (
            _message(10, encode(applications[0]), [("correlation-id", b"corr-1")]),
            applications[0],
        ),
        (_message(11, encode(applications[1])), applications[1]),
    ]
    scores = Scores(np.array([0.1234567890123, 0.35]), np.array([False, True]))
    records = scored_records(accepted, scores, _MODEL, _INFO, _TOPICS)

    assert [r.topic for r in records] == ["scores", "predictions", "scores", "predictions"]
    first_score = LoanScore.model_validate_json(records[0].value or b"")
    assert first_score.application_id == applications[0].application_id
    assert first_score.default_probability == 0.1234567890123
    assert first_score.predicted_default is False
    assert (first_score.threshold, first_score.model_name, first_score.model_version) == (
        0.35,
        "credit-default",
        "7",
    )
    assert first_score.scored_at == _INFO.scored_at
    assert records[0].key == applications[0].application_id.encode()
    assert dict(records[0].headers) == {"model-version": b"7", "correlation-id": b"corr-1"}
    assert dict(records[2].headers)["correlation-id"] == b"apps/3/11"

    prediction = PredictionRecord.model_validate_json(records[3].value or b"")
    assert prediction.predicted_default is True
    assert (prediction.model_run_id, prediction.batch_size, prediction.worker_id) == (
        "run-7",
        2,
        "worker-a",
    )
    assert (prediction.input_topic, prediction.input_partition, prediction.input_offset) == (
        "apps",
        3,
        11,
    )
    assert prediction.batch_latency_ms == 1.5
    # Prediction metadata carries no feature values (personal data) unless asked to.
    assert set(orjson.loads(records[3].value or b"")) == set(PredictionRecord.model_fields) - {
        "personal_fields"
    }


def test_personal_fields_reach_prediction_records_only_when_enabled(
    feature_frame: pd.DataFrame,
) -> None:
    application = applications_from_frame(feature_frame, 1)[0]
    accepted = [(_message(10, encode(application)), application)]
    scores = Scores(np.array([0.2]), np.array([False]))
    records = scored_records(accepted, scores, _MODEL, _INFO, _TOPICS, with_personal_fields=True)

    prediction = PredictionRecord.model_validate_json(records[1].value or b"")
    assert prediction.personal_fields == {
        "age": application.age,
        "education": application.education,
        "marriage": application.marriage,
        "sex": application.sex,
    }
    # The score a downstream team reads never carries them.
    assert "personal_fields" not in orjson.loads(records[0].value or b"")
    assert "limit_bal" not in orjson.loads(records[1].value or b"")


@pytest.mark.parametrize(("key", "value"), [(b"k", b"\xff\x00 raw"), (None, None), (b"k", b"")])
def test_dead_letters_keep_key_and_bytes_and_name_the_error(
    key: bytes | None, value: bytes | None
) -> None:
    message = Message(topic="apps", partition=1, offset=42, key=key, value=value)
    failure = DecodeFailure(DeadLetterReason.NOT_UTF8, "the value is not UTF-8 text")
    record = dead_letter_record(message, failure, "dlq", max_value_bytes=100)
    assert (record.topic, record.key, record.value) == ("dlq", key, value)
    assert dict(record.headers) == {
        "error-type": b"not-utf8",
        "error-message": b"the value is not UTF-8 text",
        "source-topic": b"apps",
        "source-partition": b"1",
        "source-offset": b"42",
        "correlation-id": b"apps/1/42",
    }


def test_correlation_id_prefers_the_producers_header() -> None:
    assert correlation_id(_message(5, b"x", [("other", b"1"), ("correlation-id", b"c")])) == b"c"
    assert correlation_id(_message(5, b"x", [("correlation-id", b"")])) == b"apps/3/5"
    assert correlation_id(_message(5, b"x")) == b"apps/3/5"


def test_a_value_too_large_for_the_dead_letter_topic_is_referenced_not_copied() -> None:
    message = Message(topic="apps", partition=0, offset=9, key=b"k", value=b"x" * 101)
    failure = DecodeFailure(DeadLetterReason.OVERSIZED, "the value is 101 bytes")
    record = dead_letter_record(message, failure, "dlq", max_value_bytes=100)
    assert (record.key, record.value) == (b"k", None)
    headers = dict(record.headers)
    assert headers["error-type"] == b"oversized"
    message_header = headers["error-message"]
    assert isinstance(message_header, bytes)
    assert message_header.startswith(b"the value is 101 bytes; not copied here")
    assert (headers["source-partition"], headers["source-offset"]) == (b"0", b"9")


class _Delivered:
    """What a subscriber's consumer hands over: the records, as produced, one poll each."""

    def __init__(self, records: list[OutboundRecord]) -> None:
        self._messages = [
            Message(
                topic=r.topic, partition=0, offset=n, key=r.key, value=r.value, headers=r.headers
            )
            for n, r in enumerate(records)
        ]

    def subscribe(self, topics: list[str]) -> None:
        assert set(topics) == {"scores", "dlq"}

    def poll(self, timeout: float = -1) -> Message | None:
        return self._messages.pop(0) if self._messages else None


def test_a_subscriber_reads_the_scores_and_dead_letters_the_worker_writes(
    feature_frame: pd.DataFrame,
) -> None:
    application = applications_from_frame(feature_frame, 1)[0]
    accepted = [(_message(10, encode(application), [("correlation-id", b"corr-1")]), application)]
    scores = scored_records(
        accepted, Scores(np.array([0.6]), np.array([True])), _MODEL, _INFO, _TOPICS
    )
    bad = Message(topic="apps", partition=1, offset=42, key=b"k", value=b"{oops")
    failure = DecodeFailure(DeadLetterReason.INVALID_JSON, "the value is not JSON")
    dead = dead_letter_record(bad, failure, "dlq", max_value_bytes=100)
    received: list[ReceivedScore] = []
    dead_letters: list[DeadLetter] = []

    report = follow_scores(
        _Delivered([r for r in scores if r.topic == "scores"] + [dead]),
        sink=received.append,
        topic="scores",
        dead_letters=dead_letters.append,
        dead_letter_topic="dlq",
        count=2,
    )

    assert (report.received, report.dead_letters, report.invalid) == (1, 1, 0)
    (score,) = received
    assert (score.score.application_id, score.correlation_id) == (
        application.application_id,
        "corr-1",
    )
    assert score.score.predicted_default is True
    (letter,) = dead_letters
    assert (letter.reason, letter.correlation_id) == ("invalid-json", "apps/1/42")
