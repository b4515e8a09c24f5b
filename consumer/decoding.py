"""Record value → validated application, or the reason it cannot be scored. Pure.

The fast path is one strict ``LoanApplication.model_validate_json`` call on the raw
bytes; classifying a failure (empty, not UTF-8, not JSON, breaks the contract) only
costs anything for the records that fail.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from contracts import LoanApplication
from contracts.topics import DeadLetterReason

MAX_ERROR_MESSAGE_CHARS: Final = 500
"""Error messages travel in a header: keep them short."""
_ERRORS_NAMED: Final = 3


@dataclass(frozen=True, slots=True)
class DecodeFailure:
    """Why a record cannot be scored: a ``DeadLetterReason`` and a human-readable message.

    Messages name fields and rules, never the offending values (they may be personal data).
    """

    reason: DeadLetterReason
    message: str


def decode_application(value: bytes | None, *, max_bytes: int) -> LoanApplication | DecodeFailure:
    """Validate one record value against the contract.

    Returns the application, or a ``DecodeFailure`` for a null/empty/blank value,
    a value over ``max_bytes``, bytes that are not UTF-8, text that is not JSON, and
    JSON that is not a valid application (the message names the fields at fault).
    """
    if not value:
        return DecodeFailure(DeadLetterReason.EMPTY, "the record has no value")
    if len(value) > max_bytes:
        return DecodeFailure(
            DeadLetterReason.OVERSIZED,
            f"the value is {len(value)} bytes, more than the {max_bytes} accepted",
        )
    try:
        return LoanApplication.model_validate_json(value)
    except ValidationError as exc:
        return _classify(value, exc)


def _classify(value: bytes, exc: ValidationError) -> DecodeFailure:
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    if errors[0]["type"] != "json_invalid":
        return DecodeFailure(DeadLetterReason.VALIDATION, _describe(errors, exc.error_count()))
    if not value.strip():
        return DecodeFailure(DeadLetterReason.EMPTY, "the value is blank")
    try:
        value.decode("utf-8")
    except UnicodeDecodeError as decode_error:
        return DecodeFailure(
            DeadLetterReason.NOT_UTF8,
            f"the value is not UTF-8 text (invalid byte at position {decode_error.start})",
        )
    return DecodeFailure(DeadLetterReason.INVALID_JSON, _truncate(errors[0]["msg"]))


def _describe(errors: list[ErrorDetails], count: int) -> str:
    parts = [
        f"{'.'.join(str(part) for part in error['loc']) or 'application'}: {error['msg']}"
        for error in errors[:_ERRORS_NAMED]
    ]
    if count > _ERRORS_NAMED:
        parts.append(f"and {count - _ERRORS_NAMED} more")
    return _truncate("; ".join(parts))


def _truncate(message: str) -> str:
    if len(message) <= MAX_ERROR_MESSAGE_CHARS:
        return message
    return message[: MAX_ERROR_MESSAGE_CHARS - 1] + "…"
