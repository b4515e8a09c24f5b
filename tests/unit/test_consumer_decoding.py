"""Decoding: every kind of bad input becomes a named DecodeFailure, valid input an application."""

from __future__ import annotations

from typing import Any

import orjson
import pandas as pd
import pytest

from consumer.decoding import MAX_ERROR_MESSAGE_CHARS, DecodeFailure, decode_application
from contracts import FEATURE_COLUMNS, LoanApplication
from contracts.topics import DeadLetterReason
from tests.helpers.applications import applications_from_frame, encode

_MAX = 4096


def _payload(**changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = dict.fromkeys(FEATURE_COLUMNS, 0)
    payload.update(application_id="app-1", limit_bal=20000, sex=2, education=2, marriage=1, age=24)
    payload.update(changes)
    return payload


def _failure(value: bytes | None) -> DecodeFailure:
    result = decode_application(value, max_bytes=_MAX)
    assert isinstance(result, DecodeFailure), f"{value!r} was accepted"
    return result


def test_real_applications_decode_to_equal_applications(feature_frame: pd.DataFrame) -> None:
    applications = applications_from_frame(feature_frame, 200)
    assert [decode_application(encode(a), max_bytes=_MAX) for a in applications] == applications


@pytest.mark.parametrize("value", [None, b"", b"   ", b"\n\t "])
def test_null_empty_and_blank_values_are_empty(value: bytes | None) -> None:
    assert _failure(value).reason is DeadLetterReason.EMPTY


def test_values_over_the_limit_are_oversized_before_parsing() -> None:
    value = orjson.dumps(_payload(application_id="x" * _MAX))
    failure = _failure(value)
    assert failure.reason is DeadLetterReason.OVERSIZED
    assert str(len(value)) in failure.message
    assert str(_MAX) in failure.message


def test_a_value_of_exactly_the_limit_is_parsed() -> None:
    value = orjson.dumps(_payload())
    assert isinstance(decode_application(value, max_bytes=len(value)), LoanApplication)


@pytest.mark.parametrize(
    "value",
    [b"\xff\xfe{}", orjson.dumps(_payload()).replace(b'"app-1"', b'"app-\xe9"'), b"\xc3\x28"],
)
def test_bytes_that_are_not_utf8_are_named(value: bytes) -> None:
    failure = _failure(value)
    assert failure.reason is DeadLetterReason.NOT_UTF8
    assert "UTF-8" in failure.message


@pytest.mark.parametrize("value", [b"{", b"not json", b"{'a': 1}", b'{"age": 24,}', "é".encode()])
def test_utf8_that_is_not_json_is_invalid_json(value: bytes) -> None:
    failure = _failure(value)
    assert failure.reason is DeadLetterReason.INVALID_JSON
    assert failure.message.startswith("Invalid JSON")


@pytest.mark.parametrize("value", [b"null", b"[1, 2]", b'"text"', b"42"])
def test_json_that_is_not_an_object_breaks_the_contract(value: bytes) -> None:
    failure = _failure(value)
    assert failure.reason is DeadLetterReason.VALIDATION
    assert failure.message == "application: Input should be an object"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"age": "24"}, "age"),  # wrong type (strict: no string numbers)
        ({"sex": 1.5}, "sex"),
        ({"limit_bal": None}, "limit_bal"),
        ({"age": 17}, "age"),  # out of domain
        ({"education": 7}, "education"),
        ({"pay_amt1": -1}, "pay_amt1"),
        ({"income": 1}, "income"),  # unknown
    ],
)
def test_contract_violations_name_the_field(changes: dict[str, Any], field: str) -> None:
    failure = _failure(orjson.dumps(_payload(**changes)))
    assert failure.reason is DeadLetterReason.VALIDATION
    assert failure.message.startswith(f"{field}: ")


def test_missing_fields_are_named() -> None:
    payload = _payload()
    del payload["pay_amt6"]
    failure = _failure(orjson.dumps(payload))
    assert failure.reason is DeadLetterReason.VALIDATION
    assert failure.message == "pay_amt6: Field required"


def test_many_errors_are_summarised_and_values_never_echoed() -> None:
    payload = {"application_id": "app-1", "age": 987654321}
    failure = _failure(orjson.dumps(payload))
    assert failure.reason is DeadLetterReason.VALIDATION
    assert failure.message.count(";") == 3
    assert "more" in failure.message
    assert "987654321" not in failure.message
    assert len(failure.message) <= MAX_ERROR_MESSAGE_CHARS


def test_non_finite_numbers_are_a_validation_error() -> None:
    value = orjson.dumps(_payload()).replace(b'"limit_bal":20000', b'"limit_bal":NaN')
    failure = _failure(value)
    assert failure.reason is DeadLetterReason.VALIDATION
    assert failure.message.startswith("limit_bal: ")
