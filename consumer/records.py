"""Build the records a batch produces: scores, prediction metadata, shadow scores and dead
letters. Pure.

Scores and prediction records are keyed by ``application_id`` and carry the model
version and the input's correlation id as headers. A dead letter keeps the input's
key and value byte for byte and says why and where from in its headers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson
from confluent_kafka import Message

from consumer.decoding import DecodeFailure
from contracts import PERSONAL_FIELDS, LoanApplication
from contracts.topics import (
    CORRELATION_ID_HEADER,
    ERROR_MESSAGE_HEADER,
    ERROR_TYPE_HEADER,
    MODEL_VERSION_HEADER,
    SOURCE_OFFSET_HEADER,
    SOURCE_PARTITION_HEADER,
    SOURCE_TOPIC_HEADER,
)

if TYPE_CHECKING:
    from consumer.model import LoadedModel
    from consumer.scoring import Scores

Headers = list[tuple[str, str | bytes | None]]

_PERSONAL_FIELDS = tuple(sorted(PERSONAL_FIELDS))


class OutboundRecord(NamedTuple):
    """One record to produce inside the batch's transaction."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers


@dataclass(frozen=True, slots=True)
class OutputTopics:
    """Where a batch's records go."""

    scores: str
    predictions: str
    dead_letters: str
    shadow_scores: str = ""


@dataclass(frozen=True, slots=True)
class BatchInfo:
    """Facts about the model call shared by every record of a batch.

    ``size`` is the number of applications scored in the one ``predict_proba`` call;
    ``latency_ms`` runs from the batch's arrival to its scores (decode + score).
    """

    scored_at: datetime
    size: int
    latency_ms: float
    worker_id: str


def correlation_id(message: Message) -> bytes:
    """The input's correlation-id header, else ``topic/partition/offset``."""
    headers = message.headers() or []
    pairs = headers.items() if isinstance(headers, dict) else headers
    for name, value in pairs:
        if name == CORRELATION_ID_HEADER and value:
            return value if isinstance(value, bytes) else value.encode()
    return f"{message.topic()}/{message.partition()}/{message.offset()}".encode()


def scored_records(
    accepted: Sequence[tuple[Message, LoanApplication]],
    scores: Scores,
    model: LoadedModel,
    info: BatchInfo,
    topics: OutputTopics,
    *,
    with_personal_fields: bool = False,
    reasons: Sequence[list[dict[str, Any]] | None] | None = None,
) -> list[OutboundRecord]:
    """A ``LoanScore`` and a ``PredictionRecord`` for each accepted application.

    Prediction records carry the applicant's personal fields (``PERSONAL_FIELDS``)
    only when ``with_personal_fields`` is set, for fairness and drift monitoring.
    ``reasons`` (reason codes on), one entry per application: its reasons, or None
    where they are unavailable (the score says so with ``reasons_unavailable``).
    """
    version = model.version.encode()
    scored_at = info.scored_at.isoformat()
    records: list[OutboundRecord] = []
    explained = reasons if reasons is not None else [None] * len(accepted)
    for (message, application), probability, decision, why in zip(
        accepted, scores.probabilities.tolist(), scores.decisions.tolist(), explained, strict=True
    ):
        key = application.application_id.encode()
        headers: Headers = [
            (MODEL_VERSION_HEADER, version),
            (CORRELATION_ID_HEADER, correlation_id(message)),
        ]
        score = {
            "application_id": application.application_id,
            "default_probability": probability,
            "predicted_default": decision,
            "threshold": model.threshold,
            "model_name": model.name,
            "model_version": model.version,
            "scored_at": scored_at,
        }
        prediction = score | {
            "model_run_id": model.run_id or "",
            "batch_size": info.size,
            "batch_latency_ms": info.latency_ms,
            "input_topic": message.topic(),
            "input_partition": message.partition(),
            "input_offset": message.offset(),
            "worker_id": info.worker_id,
        }
        if with_personal_fields:
            prediction["personal_fields"] = {
                name: getattr(application, name) for name in _PERSONAL_FIELDS
            }
        if reasons is not None:
            score["reasons"] = why
            score["reasons_unavailable"] = why is None
        records.append(OutboundRecord(topics.scores, key, orjson.dumps(score), headers))
        records.append(OutboundRecord(topics.predictions, key, orjson.dumps(prediction), headers))
    return records


def shadow_records(
    accepted: Sequence[tuple[Message, LoanApplication]],
    scores: Scores,
    model: LoadedModel,
    champion_version: str,
    info: BatchInfo,
    topic: str,
) -> list[OutboundRecord]:
    """A ``ShadowScore`` of the challenger ``model`` for each accepted application.

    Keyed and headed like the official score (model version: the challenger's), so a
    reader joins the two by key; no reasons (the challenger is never explained).
    """
    version = model.version.encode()
    scored_at = info.scored_at.isoformat()
    records: list[OutboundRecord] = []
    for (message, application), probability, decision in zip(
        accepted, scores.probabilities.tolist(), scores.decisions.tolist(), strict=True
    ):
        shadow = {
            "application_id": application.application_id,
            "default_probability": probability,
            "predicted_default": decision,
            "threshold": model.threshold,
            "model_name": model.name,
            "model_version": model.version,
            "model_run_id": model.run_id or "",
            "champion_version": champion_version,
            "scored_at": scored_at,
        }
        headers: Headers = [
            (MODEL_VERSION_HEADER, version),
            (CORRELATION_ID_HEADER, correlation_id(message)),
        ]
        key = application.application_id.encode()
        records.append(OutboundRecord(topic, key, orjson.dumps(shadow), headers))
    return records


def dead_letter_record(
    message: Message, failure: DecodeFailure, topic: str, *, max_value_bytes: int
) -> OutboundRecord:
    """The input's key and value unchanged, with headers naming the error and the source.

    A value over ``max_value_bytes`` (only an oversized one can be) is not copied: a
    record the dead-letter topic cannot hold would abort every retry of the batch
    and stop the stream. The message then says so; the source headers locate it.
    """
    value = message.value()
    reason = failure.message
    if value is not None and len(value) > max_value_bytes:
        reason += f"; not copied here (over {max_value_bytes} bytes): read it at the source offset"
        value = None
    headers: Headers = [
        (ERROR_TYPE_HEADER, failure.reason.value.encode()),
        (ERROR_MESSAGE_HEADER, reason.encode()),
        (SOURCE_TOPIC_HEADER, str(message.topic()).encode()),
        (SOURCE_PARTITION_HEADER, str(message.partition()).encode()),
        (SOURCE_OFFSET_HEADER, str(message.offset()).encode()),
        (CORRELATION_ID_HEADER, correlation_id(message)),
    ]
    return OutboundRecord(topic, message.key(), value, headers)
