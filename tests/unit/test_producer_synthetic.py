"""Synthetic applications: valid against the contract, shaped like the data, reproducible."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from contracts import LoanApplication
from producer import SYNTHETIC_ID_PREFIX, encode_application, synthetic_applications
from producer.synthetic import write_synthetic_dataset
from training.data import load_dataset

_COUNT = 20_000


@pytest.fixture(scope="module")
def synthetic() -> list[LoanApplication]:
    records = list(synthetic_applications(_COUNT, seed=11))
    assert all(isinstance(record, LoanApplication) for record in records)
    return records  # type: ignore[return-value]


@pytest.fixture(scope="module")
def frame(synthetic: list[LoanApplication]) -> pd.DataFrame:
    return pd.DataFrame([record.model_dump() for record in synthetic])


def test_every_synthetic_record_round_trips_through_the_strict_contract(
    synthetic: list[LoanApplication],
) -> None:
    stamp = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    for application in synthetic:
        _, value = encode_application(application, stamp)
        decoded = LoanApplication.model_validate_json(value)
        assert decoded == application.model_copy(update={"submitted_at": stamp})


def test_the_same_seed_gives_the_same_records_and_another_seed_does_not() -> None:
    first = list(synthetic_applications(500, seed=3))
    assert first == list(synthetic_applications(500, seed=3))
    other = list(synthetic_applications(500, seed=4))
    assert [a.features() for a in first] != [b.features() for b in other]  # type: ignore[union-attr]


def test_ids_are_unique_and_name_the_seed_across_chunks(frame: pd.DataFrame) -> None:
    assert frame["application_id"].is_unique
    assert frame["application_id"].iloc[0] == f"{SYNTHETIC_ID_PREFIX}11-1"
    assert frame["application_id"].iloc[-1] == f"{SYNTHETIC_ID_PREFIX}11-{_COUNT}"


def test_total_is_known_and_zero_is_empty() -> None:
    assert synthetic_applications(7, seed=1).total == 7
    assert list(synthetic_applications(0, seed=1)) == []
    with pytest.raises(ValueError, match="count"):
        synthetic_applications(-1, seed=1)


def test_codes_cover_the_real_domains_including_undocumented_ones(frame: pd.DataFrame) -> None:
    assert set(frame["sex"]) == {1, 2}
    assert set(frame["education"]) == {0, 1, 2, 3, 4, 5, 6}
    assert set(frame["marriage"]) == {0, 1, 2, 3}
    assert frame["pay_0"].isin(range(-2, 9)).all()
    assert {-2, -1, 0, 1, 2}.issubset(set(frame["pay_0"]))


def test_distributions_have_the_data_s_shape(frame: pd.DataFrame) -> None:
    # Rough bands around the real data's proportions: a drifted generator fails here.
    assert 0.55 <= (frame["sex"] == 2).mean() <= 0.65
    assert 0.40 <= (frame["education"] == 2).mean() <= 0.55
    assert 28 <= frame["age"].median() <= 40
    assert frame["age"].between(21, 79).all()
    assert (frame["limit_bal"] % 10_000 == 0).all()
    assert 80_000 <= frame["limit_bal"].median() <= 200_000
    assert 0.40 <= (frame["pay_0"] == 0).mean() <= 0.60
    assert 0.005 <= (frame["bill_amt1"] < 0).mean() <= 0.05
    assert 0.10 <= (frame["pay_amt1"] == 0).mean() <= 0.40


def test_statuses_persist_month_to_month(frame: pd.DataFrame) -> None:
    # People who paid in full last month mostly pay in full this month, as in the data.
    paid_in_full = frame["pay_2"] == -1
    assert (frame.loc[paid_in_full, "pay_0"] == -1).mean() > 0.6


def test_the_made_up_dataset_loads_as_the_real_one_would(tmp_path: Path) -> None:
    path = tmp_path / "credit_default.csv"
    write_synthetic_dataset(path, rows=400, seed=3)
    assert load_dataset(path) is not None
    rows = path.read_text(encoding="utf-8").splitlines()
    assert len(rows) == 401
    defaults = sum(row.endswith(",1") for row in rows[1:])
    assert 40 < defaults < 160, defaults  # about 24 %, both classes present
