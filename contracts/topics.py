"""Kafka topic and header names: the wire contract between the producer, worker and monitor."""

from __future__ import annotations

from enum import StrEnum
from typing import Final

APPLICATIONS_TOPIC: Final = "loan-applications"
SCORES_TOPIC: Final = "loan-scores"
DEAD_LETTER_TOPIC: Final = "loan-applications.dlq"
PREDICTIONS_TOPIC: Final = "loan-predictions"
SHADOW_SCORES_TOPIC: Final = "loan-scores.shadow"
"""The shadow challenger's scores (``contracts.score.ShadowScore``), keyed by
``application_id``; written in the same transaction as the official scores, never read
as decisions."""
OUTCOMES_TOPIC: Final = "loan-outcomes"
"""Observed outcomes (``contracts.outcome.LoanOutcome``), keyed by ``application_id``."""
OUTCOMES_DEAD_LETTER_TOPIC: Final = "loan-outcomes.dlq"
"""Outcomes the monitor cannot read, with the same headers as the worker's dead letters."""
ALERTS_TOPIC: Final = "model-alerts"
"""Alert records the monitor writes when a configured limit is crossed."""

# Headers on a score record.
MODEL_VERSION_HEADER: Final = "model-version"
CORRELATION_ID_HEADER: Final = "correlation-id"
"""Set by the producer on an application; copied onto its score (falls back to the
application's ``topic/partition/offset`` when the producer did not set one)."""

# Headers on a dead letter.
ERROR_TYPE_HEADER: Final = "error-type"
ERROR_MESSAGE_HEADER: Final = "error-message"
SOURCE_TOPIC_HEADER: Final = "source-topic"
SOURCE_PARTITION_HEADER: Final = "source-partition"
SOURCE_OFFSET_HEADER: Final = "source-offset"


class DeadLetterReason(StrEnum):
    """Values of the ``error-type`` header: why an application went to the dead-letter topic."""

    EMPTY = "empty"
    """The record has no value, or only whitespace."""
    OVERSIZED = "oversized"
    """The value is larger than the worker accepts."""
    NOT_UTF8 = "not-utf8"
    """The value is not UTF-8 text."""
    INVALID_JSON = "invalid-json"
    """The value is UTF-8 but not JSON."""
    VALIDATION = "validation"
    """JSON that breaks the contract: not an object, a missing, unknown, mistyped or
    out-of-domain field (the error message names the field)."""
