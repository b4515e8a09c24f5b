"""Record value → validated contract message, or the reason it cannot be used. Pure.

The fast path is one strict ``model_validate_json`` call on the raw bytes; classifying a
failure (empty, not UTF-8, not JSON, breaks the contract) only costs anything for the
records that fail. The worker decodes applications and the monitor outcomes the same way,
so a reader of either dead-letter topic handles both alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from contracts import LoanApplication
from contracts.topics import DeadLetterReason

MAX_ERROR_MESSAGE_CHARS: Final = 500
"""Error messages travel in a header: keep them short."""
_ERRORS_NAMED: Final = 3

Message = TypeVar("Message", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class DecodeFailure:
    """Why a record cannot be scored: a ``DeadLetterReason`` and a human-readable message.

    Messages name fields and rules, never the offending values (they may be personal data).
    """

    reason: DeadLetterReason
    message: str


def decode_application(value: bytes | None, *, max_bytes: int) -> LoanApplication | DecodeFailure:
    """Validate one record value against the application contract (see :func:`decode`)."""
    return decode(LoanApplication, value, max_bytes=max_bytes)


def decode(
    message: type[Message], value: bytes | None, *, max_bytes: int
) -> Message | DecodeFailure:
    """Validate one record value as a ``message``.

    Returns the message, or a ``DecodeFailure`` for a null/empty/blank value, a value over
    ``max_bytes``, bytes that are not UTF-8, text that is not JSON, and JSON that is not a
    valid ``message`` (the failure names the fields at fault).
    """
    if not value:
        return DecodeFailure(DeadLetterReason.EMPTY, "the record has no value")
    if len(value) > max_bytes:
        return DecodeFailure(
            DeadLetterReason.OVERSIZED,
            f"the value is {len(value)} bytes, more than the {max_bytes} accepted",
        )
    try:
        return message.model_validate_json(value)
    except ValidationError as exc:
        return _classify(value, exc, message)


def _classify(value: bytes, exc: ValidationError, message: type[BaseModel]) -> DecodeFailure:
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    if errors[0]["type"] != "json_invalid":
        # A fault of the whole record is named after it: "application", "outcome".
        whole = message.__name__.removeprefix("Loan").lower()
        return DecodeFailure(
            DeadLetterReason.VALIDATION, _describe(errors, exc.error_count(), whole)
        )
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


def _describe(errors: list[ErrorDetails], count: int, whole: str) -> str:
    parts = [
        f"{'.'.join(str(part) for part in error['loc']) or whole}: {error['msg']}"
        for error in errors[:_ERRORS_NAMED]
    ]
    if count > _ERRORS_NAMED:
        parts.append(f"and {count - _ERRORS_NAMED} more")
    return _truncate("; ".join(parts))


def _truncate(message: str) -> str:
    if len(message) <= MAX_ERROR_MESSAGE_CHARS:
        return message
    return message[: MAX_ERROR_MESSAGE_CHARS - 1] + "…"
