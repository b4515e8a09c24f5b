"""What must hold for every record value the worker decodes, whatever its bytes.

``check_decoding`` is the single oracle shared by the hypothesis tests
(tests/unit/test_hostile_input*.py) and the atheris fuzz target (tests/fuzz/fuzz_decoder.py):
it raises ``AssertionError`` (or lets any exception out of the decoder escape) when an
outcome breaks the decoder's contract.
"""

from __future__ import annotations

import math
from typing import Final

from consumer.decoding import MAX_ERROR_MESSAGE_CHARS, DecodeFailure, decode_application
from contracts import LoanApplication
from contracts.topics import DeadLetterReason

FUZZ_MAX_BYTES: Final = 4096
"""A small limit, so fuzzed inputs reach both the oversize check and the parser."""
_ROUND_TRIP_MAX_BYTES: Final = 1 << 20


def check_decoding(
    data: bytes | None, max_bytes: int = FUZZ_MAX_BYTES
) -> LoanApplication | DecodeFailure:
    """Decode ``data`` and check the outcome; returns it.

    Accepted: the value is non-empty UTF-8 within the limit, and the application re-encodes
    to JSON that decodes to an equal application (finite features, a UTF-8 key).
    Rejected: the reason follows from the bytes (empty, oversized, not UTF-8 → exactly those
    reasons; UTF-8 → blank, invalid JSON or validation) and the message fits in a header.
    Either way, decoding the same bytes again gives the same outcome.
    """
    result = decode_application(data, max_bytes=max_bytes)
    if isinstance(result, LoanApplication):
        _check_accepted(data, result, max_bytes)
    else:
        assert isinstance(result, DecodeFailure), f"unexpected outcome {type(result)}"
        _check_rejected(data, result, max_bytes)
    again = decode_application(data, max_bytes=max_bytes)
    assert again == result, "decoding the same bytes twice gave different outcomes"
    return result


def _check_accepted(data: bytes | None, application: LoanApplication, max_bytes: int) -> None:
    assert data, "an empty value was accepted"
    assert len(data) <= max_bytes, "a value over the limit was accepted"
    assert _is_utf8(data), "bytes that are not UTF-8 were accepted"
    assert all(math.isfinite(value) for value in application.features()), "non-finite feature"
    application.application_id.encode("utf-8")  # the score's key: must be encodable
    encoded = application.model_dump_json().encode("utf-8")
    again = decode_application(encoded, max_bytes=_ROUND_TRIP_MAX_BYTES)
    assert again == application, f"re-encoded application does not decode equal: {again!r}"


def _check_rejected(data: bytes | None, failure: DecodeFailure, max_bytes: int) -> None:
    reason, message = failure.reason, failure.message
    assert isinstance(reason, DeadLetterReason), f"reason {reason!r} is not a DeadLetterReason"
    assert isinstance(message, str), "the failure message is not text"
    assert message, "the failure message is empty"
    assert len(message) <= MAX_ERROR_MESSAGE_CHARS, f"message of {len(message)} chars"
    message.encode("utf-8")  # it travels in the error-message header
    if not data:
        assert reason is DeadLetterReason.EMPTY, f"an empty value is {reason}"
    elif len(data) > max_bytes:
        assert reason is DeadLetterReason.OVERSIZED, f"an oversized value is {reason}"
    elif not _is_utf8(data):
        assert reason is DeadLetterReason.NOT_UTF8, f"bytes that are not UTF-8 are {reason}"
    elif not data.strip():
        assert reason is DeadLetterReason.EMPTY, f"a blank value is {reason}"
    else:
        allowed = {DeadLetterReason.INVALID_JSON, DeadLetterReason.VALIDATION}
        assert reason in allowed, f"UTF-8 text is {reason}"


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
