"""Hostile input to the decoder and the contract: an explicit corpus, then property tests.

Every value, however malformed, must come out of ``decode_application`` as an application
or a ``DecodeFailure`` that obeys ``tests.fuzz.invariants.check_decoding``; the producer's
readers must agree with the worker on what is valid.
"""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from consumer.decoding import DecodeFailure, decode_application
from consumer.settings import Settings
from contracts import PERSONAL_FIELDS, LoanApplication
from contracts.topics import DeadLetterReason
from producer.encoding import EncodingError, encode_application, restamp_encoded
from producer.records import InvalidRecord, invalid_from_validation
from producer.sources import read_jsonl
from tests.fuzz.corpus import (
    CORPUS_MAX_BYTES,
    HOSTILE_CORPUS,
    HostileCase,
    valid_payload,
    with_raw,
)
from tests.fuzz.invariants import FUZZ_MAX_BYTES, check_decoding
from tests.fuzz.strategies import hostile_values, json_values, valid_payloads

_DEFAULT_MAX_BYTES = Settings.model_fields["max_message_bytes"].default


def _budget(examples: int) -> settings:
    """``examples`` per test; no per-example deadline (the first call warms pydantic up)."""
    return settings(
        max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )


_NOW = datetime(2024, 5, 1, tzinfo=UTC)


@pytest.mark.parametrize("case", HOSTILE_CORPUS, ids=lambda case: case.name)
def test_each_corpus_value_gets_its_expected_outcome(case: HostileCase) -> None:
    result = check_decoding(case.value, CORPUS_MAX_BYTES)
    if case.expected is None:
        assert isinstance(result, LoanApplication), f"rejected: {result}"
        for name, value in case.fields.items():
            assert getattr(result, name) == value
    else:
        assert isinstance(result, DecodeFailure), f"accepted: {result!r}"
        assert result.reason is case.expected, result.message


def test_the_corpus_covers_every_dead_letter_reason_and_acceptance() -> None:
    outcomes = {case.expected for case in HOSTILE_CORPUS}
    assert outcomes == {None, *DeadLetterReason}


@pytest.mark.parametrize(
    "value", [b"[" * (_DEFAULT_MAX_BYTES + 1), b"{" + b" " * (16 << 20) + b"}"], ids=len
)
def test_values_over_the_workers_default_limit_are_oversized(value: bytes) -> None:
    failure = check_decoding(value, _DEFAULT_MAX_BYTES)
    assert isinstance(failure, DecodeFailure)
    assert failure.reason is DeadLetterReason.OVERSIZED


@_budget(1_500)
@given(hostile_values())
def test_any_value_decodes_to_an_application_or_a_named_failure(value: bytes | None) -> None:
    check_decoding(value)


@_budget(300)
@given(value=hostile_values(), limit=st.integers(1, 2 * FUZZ_MAX_BYTES))
def test_the_outcome_respects_any_size_limit(value: bytes | None, limit: int) -> None:
    check_decoding(value, limit)


@_budget(300)
@given(valid_payloads())
def test_every_valid_payload_is_accepted_with_its_values(payload: dict[str, Any]) -> None:
    application = check_decoding(orjson.dumps(payload), CORPUS_MAX_BYTES)
    assert isinstance(application, LoanApplication)
    assert application.model_dump(exclude={"submitted_at"}) == payload


_FIELDS = sorted(LoanApplication.model_fields)


@_budget(500)
@given(payload=valid_payloads(), name=st.sampled_from(_FIELDS), value=json_values())
def test_producer_and_worker_agree_on_what_is_valid(
    payload: dict[str, Any], name: str, value: Any
) -> None:
    """The producer validates Python values (CSV rows); the worker validates JSON bytes."""
    candidate = {**payload, name: value}
    try:
        application: LoanApplication | None = LoanApplication.model_validate(candidate)
    except ValidationError:
        application = None
    decoded = decode_application(json.dumps(candidate).encode(), max_bytes=CORPUS_MAX_BYTES)
    if application is None:
        assert isinstance(decoded, DecodeFailure), (
            f"the worker accepts what the producer refuses: {decoded!r}"
        )
        return
    # A lone surrogate is a valid Python str but cannot be sent: the producer cannot publish it.
    assume(_encodable(application.application_id))
    assert decoded == application
    _key, wire = encode_application(application, _NOW)
    assert decode_application(wire, max_bytes=CORPUS_MAX_BYTES) == application.model_copy(
        update={"submitted_at": _NOW}
    )


@_budget(200)
@given(
    field=st.sampled_from(sorted(PERSONAL_FIELDS)),
    secret=st.text(alphabet="ghjkmnpqrstvwxyz", min_size=12, max_size=40),
    shape=st.sampled_from(("string", "list", "object", "bare", "unterminated")),
)
def test_failure_messages_never_echo_the_rejected_value(
    field: str, secret: str, shape: str
) -> None:
    raw = {
        "string": json.dumps(secret),
        "list": json.dumps([secret]),
        "object": json.dumps({"value": secret}),
        "bare": secret,  # not JSON at all
        "unterminated": '"' + secret,
    }[shape]
    failure = decode_application(with_raw(field, raw.encode()), max_bytes=CORPUS_MAX_BYTES)
    assert isinstance(failure, DecodeFailure)
    assert secret not in failure.message
    if shape in ("string", "list", "object"):  # the producer's CSV path: Python values
        with pytest.raises(ValidationError) as caught:
            LoanApplication.model_validate({**valid_payload(), field: json.loads(raw)})
        assert secret not in invalid_from_validation(2, caught.value).describe()


@_budget(500)
@given(hostile_values().filter(lambda value: value is not None))
def test_the_producers_restamp_only_raises_its_own_error(value: bytes) -> None:
    try:
        key, wire = restamp_encoded(value, _NOW)
    except EncodingError:
        return
    fields = orjson.loads(wire)
    assert key == fields["application_id"].encode()
    assert fields["submitted_at"] == _NOW.isoformat()


@_budget(200)
@given(
    st.lists(
        hostile_values().filter(lambda value: value is not None and b"\n" not in value),
        max_size=12,
    )
)
def test_the_producers_jsonl_reader_agrees_with_the_worker(lines: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "applications.jsonl"
        path.write_bytes(b"".join(line + b"\n" for line in lines))
        records = list(read_jsonl(path))
    sent = [line for line in lines if line.strip()]
    assert len(records) == len(sent)
    for line, record in zip(sent, records, strict=True):
        decoded = decode_application(line, max_bytes=CORPUS_MAX_BYTES)
        if isinstance(record, InvalidRecord):
            assert isinstance(decoded, DecodeFailure), (
                f"worker accepts what the reader refused: {line!r}"
            )
        else:
            assert decoded == record


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
