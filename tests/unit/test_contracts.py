"""The message contract: every real row is valid, every kind of bad input is named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pydantic import ValidationError

from contracts import FEATURE_COLUMNS, ID_COLUMN, LoanApplication
from contracts.outcome import LoanOutcome
from contracts.schema import EXPORTED_SCHEMAS, render_schema


def _valid_payload() -> dict[str, Any]:
    payload: dict[str, Any] = dict.fromkeys(FEATURE_COLUMNS, 0)
    payload.update(application_id="app-1", limit_bal=20000, sex=2, education=2, marriage=1, age=24)
    return payload


def _rows_as_payloads(frame: pd.DataFrame) -> list[dict[str, Any]]:
    records = frame.loc[:, list(FEATURE_COLUMNS)].to_dict(orient="records")
    for record, row_id in zip(records, frame[ID_COLUMN], strict=True):
        record["application_id"] = f"app-{row_id}"
    return records


def _error_locations(payload: dict[str, Any]) -> set[str]:
    with pytest.raises(ValidationError) as excinfo:
        LoanApplication.model_validate_json(json.dumps(payload))
    return {str(error["loc"][0]) for error in excinfo.value.errors() if error["loc"]}


def test_every_real_row_is_a_valid_application(feature_frame: pd.DataFrame) -> None:
    payloads = _rows_as_payloads(feature_frame)
    applications = [LoanApplication.model_validate_json(json.dumps(p)) for p in payloads]
    assert len(applications) == len(feature_frame) == 27_000
    assert applications[0].features() == tuple(
        float(feature_frame.iloc[0][name]) for name in FEATURE_COLUMNS
    )


def test_real_data_quirks_are_inside_the_contract(feature_frame: pd.DataFrame) -> None:
    # These quirks are why the domains are what they are; if the data changes, so must they.
    assert (feature_frame["bill_amt1"] < 0).any()
    assert feature_frame["pay_0"].min() == -2
    assert set(feature_frame["education"].unique()) <= set(range(7))
    assert 0 in set(feature_frame["marriage"].unique())


def test_feature_columns_follow_the_dataset_order() -> None:
    assert len(FEATURE_COLUMNS) == 23
    assert FEATURE_COLUMNS[:6] == ("limit_bal", "sex", "education", "marriage", "age", "pay_0")
    assert FEATURE_COLUMNS[-1] == "pay_amt6"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sex", 3),
        ("education", 7),
        ("marriage", -1),
        ("marriage", 4),
        ("age", 17),
        ("pay_0", -3),
        ("pay_6", 10),
        ("limit_bal", 0),
        ("pay_amt1", -1),
        ("bill_amt2", 1e12),
    ],
)
def test_out_of_domain_values_are_rejected_naming_the_field(field: str, value: object) -> None:
    assert _error_locations({**_valid_payload(), field: value}) == {field}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("age", "24"),
        ("sex", 1.5),
        ("sex", True),
        ("limit_bal", "20000"),
        ("application_id", 17),
        ("bill_amt1", None),
        ("submitted_at", "yesterday"),
    ],
)
def test_wrong_types_are_rejected_naming_the_field(field: str, value: object) -> None:
    assert _error_locations({**_valid_payload(), field: value}) == {field}


def test_missing_fields_are_named() -> None:
    payload = _valid_payload()
    del payload["pay_amt6"], payload["application_id"]
    assert _error_locations(payload) == {"pay_amt6", "application_id"}


def test_unknown_fields_are_named() -> None:
    assert _error_locations({**_valid_payload(), "income": 1}) == {"income"}


def test_non_finite_amounts_are_rejected() -> None:
    raw = json.dumps(_valid_payload()).replace('"limit_bal": 20000', '"limit_bal": NaN')
    with pytest.raises(ValidationError, match="limit_bal"):
        LoanApplication.model_validate_json(raw)


def test_submitted_at_is_optional_and_parsed() -> None:
    application = LoanApplication.model_validate_json(
        json.dumps({**_valid_payload(), "submitted_at": "2026-11-26T10:00:00Z"})
    )
    assert application.submitted_at is not None
    assert application.submitted_at.year == 2026
    assert LoanApplication.model_validate_json(json.dumps(_valid_payload())).submitted_at is None


def test_json_round_trip_is_lossless() -> None:
    application = LoanApplication.model_validate_json(json.dumps(_valid_payload()))
    assert LoanApplication.model_validate_json(application.model_dump_json()) == application


@pytest.mark.parametrize("path", list(EXPORTED_SCHEMAS), ids=lambda path: path.name)
def test_exported_json_schemas_are_current(path: Path) -> None:
    assert path.read_text(encoding="utf-8") == render_schema(EXPORTED_SCHEMAS[path]), (
        f"contracts/{path.name} is stale: run `make schema`"
    )


def test_an_outcome_round_trips_and_its_flag_is_a_json_boolean() -> None:
    raw = '{"application_id": "app-1", "defaulted": true, "observed_on": "2026-11-27"}'
    outcome = LoanOutcome.model_validate_json(raw)
    assert outcome.observed_on.isoformat() == "2026-11-27"
    assert LoanOutcome.model_validate_json(outcome.model_dump_json()) == outcome
    with pytest.raises(ValidationError) as excinfo:
        LoanOutcome.model_validate_json(raw.replace("true", "1").replace('"app-1"', '""'))
    assert {error["loc"][0] for error in excinfo.value.errors()} == {"defaulted", "application_id"}
