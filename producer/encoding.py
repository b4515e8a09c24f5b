"""The record a published application becomes: key, JSON value, and headers.

Values are the contract's JSON (``LoanApplication.model_validate_json`` decodes them,
strictly) with ``submitted_at`` stamped at publish time. Encoding uses orjson on the
model's Python dump: about four times cheaper than ``model_dump_json`` after a copy.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import orjson

from contracts import LoanApplication
from contracts.outcome import LoanOutcome


class EncodingError(ValueError):
    """Pre-encoded bytes that are not a JSON object with a non-empty string ``application_id``."""


def encode_application(application: LoanApplication, submitted_at: datetime) -> tuple[bytes, bytes]:
    """``(key, value)`` for ``application``: key is its ``application_id`` in UTF-8."""
    fields = application.model_dump()
    fields["submitted_at"] = submitted_at
    return application.application_id.encode(), orjson.dumps(fields)


def encode_outcome(outcome: LoanOutcome) -> tuple[bytes, bytes]:
    """``(key, value)`` for ``outcome``, keyed like its application, sent as it is."""
    return outcome.application_id.encode(), orjson.dumps(outcome.model_dump())


def restamp_encoded(payload: bytes, submitted_at: datetime) -> tuple[bytes, bytes]:
    """``(key, value)`` for an application the caller already encoded (and validated).

    Only parsed enough to read the key and stamp ``submitted_at``: no contract validation.
    Raises ``EncodingError`` when the payload has no usable ``application_id``.
    """
    try:
        fields: Any = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise EncodingError(f"not JSON: {exc}") from exc
    if not isinstance(fields, dict):
        raise EncodingError("not a JSON object")
    application_id = fields.get("application_id")
    if not isinstance(application_id, str) or not application_id:
        raise EncodingError("application_id must be a non-empty string")
    fields["submitted_at"] = submitted_at
    return application_id.encode(), orjson.dumps(fields)


def new_correlation_id() -> bytes:
    """A fresh correlation id for one record's header (a uuid4, as text)."""
    return str(uuid.uuid4()).encode()
