"""Outcome record value -> validated outcome, or why it goes to the dead-letter topic. Pure.

Reasons and message limits are the worker's (``DeadLetterReason``, ``MAX_ERROR_MESSAGE_CHARS``):
a reader of either dead-letter topic handles both the same way. Messages name fields and
rules, never values.
"""

from __future__ import annotations

from typing import Final

from pydantic import ValidationError

from consumer.decoding import MAX_ERROR_MESSAGE_CHARS, DecodeFailure
from contracts.outcome import LoanOutcome
from contracts.topics import DeadLetterReason

_ERRORS_NAMED: Final = 3


def decode_outcome(value: bytes | None, *, max_bytes: int) -> LoanOutcome | DecodeFailure:
    """Validate one outcome record, or say why it cannot be used (``DeadLetterReason``)."""
    if not value or not value.strip():
        return DecodeFailure(DeadLetterReason.EMPTY, "the record has no value")
    if len(value) > max_bytes:
        return DecodeFailure(
            DeadLetterReason.OVERSIZED, f"the value is {len(value)} bytes, more than {max_bytes}"
        )
    try:
        return LoanOutcome.model_validate_json(value)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        if errors[0]["type"] == "json_invalid":
            return DecodeFailure(DeadLetterReason.INVALID_JSON, errors[0]["msg"])
        named = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'outcome'}: {e['msg']}"
            for e in errors[:_ERRORS_NAMED]
        )
        return DecodeFailure(DeadLetterReason.VALIDATION, named[:MAX_ERROR_MESSAGE_CHARS])
