"""Record encoding: the worker's strict decoder reads back exactly what was published."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import orjson
import pytest

from contracts import LoanApplication
from producer import encode_application, restamp_encoded, synthetic_applications
from producer.encoding import EncodingError, new_correlation_id

_STAMP = datetime(2025, 3, 4, 5, 6, 7, 890_123, tzinfo=UTC)


@pytest.fixture
def application() -> LoanApplication:
    (record,) = synthetic_applications(1, seed=5)
    assert isinstance(record, LoanApplication)
    return record


def test_encoded_value_decodes_strictly_with_submitted_at_stamped(
    application: LoanApplication,
) -> None:
    key, value = encode_application(application, _STAMP)

    assert key == application.application_id.encode()
    decoded = LoanApplication.model_validate_json(value)
    assert decoded.submitted_at == _STAMP
    assert decoded == application.model_copy(update={"submitted_at": _STAMP})


def test_submitted_at_replaces_a_value_already_in_the_application(
    application: LoanApplication,
) -> None:
    earlier = application.model_copy(update={"submitted_at": datetime(2000, 1, 1, tzinfo=UTC)})

    _, value = encode_application(earlier, _STAMP)

    assert LoanApplication.model_validate_json(value).submitted_at == _STAMP


def test_restamping_pre_encoded_bytes_keeps_the_application(application: LoanApplication) -> None:
    key, value = restamp_encoded(application.model_dump_json().encode(), _STAMP)

    assert key == application.application_id.encode()
    assert LoanApplication.model_validate_json(value) == application.model_copy(
        update={"submitted_at": _STAMP}
    )


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (orjson.dumps({"limit_bal": 1.0}), "application_id"),
        (orjson.dumps({"application_id": ""}), "application_id"),
    ],
)
def test_pre_encoded_bytes_without_a_usable_key_are_rejected(payload: bytes, reason: str) -> None:
    with pytest.raises(EncodingError, match=reason):
        restamp_encoded(payload, _STAMP)


def test_correlation_ids_are_fresh_uuid4s() -> None:
    ids = {new_correlation_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(uuid.UUID(value.decode()).version == 4 for value in ids)
