"""Poison input: every kind of bad record, mixed into valid traffic, lands in the DLQ intact.

Each bad record keeps its key and bytes and says why in its headers; the valid ones
are scored; every input has exactly one outcome, and the stream never stops.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pandas as pd
import pytest

from consumer.records import Headers
from contracts import FEATURE_COLUMNS
from contracts.score import LoanScore
from contracts.topics import (
    CORRELATION_ID_HEADER,
    ERROR_MESSAGE_HEADER,
    ERROR_TYPE_HEADER,
    SOURCE_OFFSET_HEADER,
    SOURCE_PARTITION_HEADER,
    SOURCE_TOPIC_HEADER,
    DeadLetterReason,
)
from devstack import WorkerProcess, unique_name, worker_env
from tests.fixtures.kafka import TopicFactory
from tests.fixtures.mlflow_server import MlflowNamespace
from tests.helpers.applications import applications_from_frame, encode
from tests.helpers.champion import register_champion
from tests.helpers.signing import public_key_pem_text
from tests.helpers.topics import ScorerTopics, byte_headers, publish, read_committed, read_to_end

pytestmark = pytest.mark.integration

_MAX_BYTES = 2_048
_VALID = 300


def _valid_payload() -> dict[str, object]:
    payload: dict[str, object] = dict.fromkeys(FEATURE_COLUMNS, 0)
    payload.update(application_id="poison", limit_bal=20000, sex=2, education=2, marriage=1, age=30)
    return payload


def _json(**changes: object) -> bytes:
    return orjson.dumps({**_valid_payload(), **changes})


def _without(field: str) -> bytes:
    payload = _valid_payload()
    del payload[field]
    return orjson.dumps(payload)


# (value, expected error type, a field the error message must name or None)
_POISON: list[tuple[bytes | None, DeadLetterReason, str | None]] = [
    (None, DeadLetterReason.EMPTY, None),
    (b"", DeadLetterReason.EMPTY, None),
    (b"  \n ", DeadLetterReason.EMPTY, None),
    (b"\xff\xfe\x00garbage", DeadLetterReason.NOT_UTF8, None),
    (_json().replace(b'"poison"', b'"poi\xe9son"'), DeadLetterReason.NOT_UTF8, None),
    (b"{not json", DeadLetterReason.INVALID_JSON, None),
    (b'{"application_id": "x",}', DeadLetterReason.INVALID_JSON, None),
    (b"null", DeadLetterReason.VALIDATION, "application"),
    (b"[1, 2, 3]", DeadLetterReason.VALIDATION, "application"),
    (_without("age"), DeadLetterReason.VALIDATION, "age"),
    (_json(income=1), DeadLetterReason.VALIDATION, "income"),
    (_json(age="30"), DeadLetterReason.VALIDATION, "age"),
    (_json(limit_bal=True), DeadLetterReason.VALIDATION, "limit_bal"),
    (_json(age=150), DeadLetterReason.VALIDATION, "age"),
    (_json(education=9), DeadLetterReason.VALIDATION, "education"),
    (_json(pay_amt3=-5), DeadLetterReason.VALIDATION, "pay_amt3"),
    (
        _json().replace(b'"limit_bal":20000', b'"limit_bal":NaN'),
        DeadLetterReason.VALIDATION,
        "limit_bal",
    ),
    (_json(application_id="x" * (_MAX_BYTES + 1)), DeadLetterReason.OVERSIZED, None),
]


@pytest.fixture
def topics(new_topic: TopicFactory) -> ScorerTopics:
    return ScorerTopics(
        applications=new_topic("applications", partitions=2),
        scores=new_topic("scores"),
        dead_letters=new_topic("dlq"),
        predictions=new_topic("predictions"),
    )


def test_every_bad_record_is_dead_lettered_intact_and_the_rest_scored(
    kafka_bootstrap_servers: str,
    mlflow_tracking_uri: str,
    mlflow_namespace: MlflowNamespace,
    feature_frame: pd.DataFrame,
    topics: ScorerTopics,
    scorers: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    champion = register_champion(
        mlflow_tracking_uri,
        feature_frame,
        model_name=mlflow_namespace.model_name,
        experiment=mlflow_namespace.experiment,
    )
    env = worker_env(
        kafka_bootstrap_servers=kafka_bootstrap_servers,
        mlflow_tracking_uri=mlflow_tracking_uri,
        group_id=unique_name("scorer"),
        model_name=champion.model_name,
        model_cache_dir=tmp_path / "models",
        model_signing_public_key=public_key_pem_text(),
        worker_id="poison-0",
        max_message_bytes=str(_MAX_BYTES),
        batch_max_messages="50",
        **topics.settings(),
    )
    scorer = WorkerProcess(env, tmp_path / "worker.log")
    scorers.append(scorer)
    scorer.wait_ready()

    valid = applications_from_frame(feature_frame, _VALID, prefix=unique_name("ok"))
    # Interleave: a poison record after every 15 valid ones, the corpus twice over;
    # one poison record has no key at all.
    records: list[tuple[bytes | None, bytes | None, Headers | None]] = []
    expected_dead: dict[bytes | None, tuple[bytes | None, DeadLetterReason, str | None]] = {}
    poison = iter(_POISON * 2)
    for index, application in enumerate(valid):
        records.append((application.application_id.encode(), encode(application), None))
        if index % 15 == 14:
            value, reason, field = next(poison)
            key = None if not expected_dead else f"bad-{index}".encode()
            expected_dead[key] = (value, reason, field)
            records.append((key, value, [(CORRELATION_ID_HEADER, f"corr-bad-{index}".encode())]))
    assert len(expected_dead) == 20
    publish(kafka_bootstrap_servers, topics.applications, records)

    read_committed(
        kafka_bootstrap_servers,
        [topics.scores, topics.dead_letters],
        lambda read: len(read[topics.scores]) + len(read[topics.dead_letters]) >= len(records),
        group_id=unique_name("reader"),
    )
    assert scorer.get("/readyz")[0] == 200, "a poison record stopped the worker"
    _, metrics_text = scorer.get("/metrics")
    assert scorer.terminate() == 0, scorer.log_tail()

    read = read_to_end(
        kafka_bootstrap_servers,
        [topics.scores, topics.dead_letters, topics.predictions],
        group_id=unique_name("audit"),
    )
    scored_ids = sorted(
        LoanScore.model_validate_json(m.value() or b"").application_id for m in read[topics.scores]
    )
    assert scored_ids == sorted(a.application_id for a in valid)
    assert len(read[topics.predictions]) == _VALID

    dead = read[topics.dead_letters]
    assert len(dead) == len(expected_dead), "each bad record exactly once"
    sources = set()
    for message in dead:
        value, reason, field = expected_dead[message.key()]
        headers = byte_headers(message)
        assert message.value() == value, f"{reason}: bytes changed"
        assert headers[ERROR_TYPE_HEADER] == reason.value.encode()
        if field is not None:
            assert headers[ERROR_MESSAGE_HEADER].decode().startswith(f"{field}: ")
        assert headers[SOURCE_TOPIC_HEADER] == topics.applications.encode()
        assert headers[CORRELATION_ID_HEADER].startswith(b"corr-bad-")
        sources.add((int(headers[SOURCE_PARTITION_HEADER]), int(headers[SOURCE_OFFSET_HEADER])))
    assert len(sources) == len(dead)

    for reason in DeadLetterReason:
        count = sum(1 for value, r, _ in expected_dead.values() if r is reason)
        assert f'scorer_dead_letters_total{{error_type="{reason.value}"}} {float(count)}' in (
            metrics_text.splitlines()
        )
