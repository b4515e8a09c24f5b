"""The CSV and JSON Lines readers: real rows map to valid applications, bad rows are reported."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import pytest

from contracts import (
    CSV_FEATURE_COLUMNS,
    FEATURE_BY_CSV_COLUMN,
    FEATURE_COLUMNS,
    ID_COLUMN,
    TARGET_COLUMN,
    LoanApplication,
)
from contracts.outcome import LoanOutcome
from producer import (
    CSV_ID_PREFIX,
    InvalidRecord,
    SourceError,
    encode_application,
    read_csv_applications,
    read_csv_outcomes,
    read_jsonl,
)


def _issues(record: object) -> set[tuple[int, str]]:
    assert isinstance(record, InvalidRecord), record
    return {(record.line, issue.field) for issue in record.issues}


def test_every_real_csv_row_maps_to_a_valid_application(
    credit_csv: Path, credit_frame: pd.DataFrame
) -> None:
    source = read_csv_applications(credit_csv)
    assert source.total == len(credit_frame)

    records = list(source)

    assert all(isinstance(record, LoanApplication) for record in records)
    got = pd.DataFrame(
        [record.model_dump() for record in records if isinstance(record, LoanApplication)]
    )
    expected_ids = [f"{CSV_ID_PREFIX}{value}" for value in credit_frame[ID_COLUMN]]
    assert got["application_id"].tolist() == expected_ids
    expected = credit_frame.rename(columns=FEATURE_BY_CSV_COLUMN).loc[:, list(FEATURE_COLUMNS)]
    pd.testing.assert_frame_equal(
        got.loc[:, list(FEATURE_COLUMNS)].astype(float), expected.astype(float)
    )
    assert got["submitted_at"].isna().all()


@pytest.fixture
def header_and_row(credit_frame: pd.DataFrame) -> tuple[list[str], dict[str, str]]:
    """The dataset's header and its first row as text cells."""
    row = credit_frame.iloc[0]
    header = [str(column) for column in credit_frame.columns]
    return header, {column: str(row[column]) for column in header}


def _write_csv(path: Path, header: list[str], rows: list[dict[str, str] | None]) -> Path:
    lines = [",".join(header)]
    lines += ["" if row is None else ",".join(row[column] for column in header) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_invalid_csv_rows_are_reported_with_line_and_column(
    tmp_path: Path, header_and_row: tuple[list[str], dict[str, str]]
) -> None:
    header, good = header_and_row
    rows: list[dict[str, str] | None] = [
        good,
        {**good, "SEX": "abc"},  # text in a code column
        {**good, "AGE": "17", "PAY_AMT1": "-5"},  # two domain errors in one row
        {**good, "LIMIT_BAL": ""},  # empty cell
        {**good, "EDUCATION": "2.5"},  # non-integral code
        None,  # blank line
        {**good, ID_COLUMN: ""},  # no id
        {**good, "EDUCATION": "2.0", ID_COLUMN: "42"},  # integral text is a valid code
    ]
    records = list(read_csv_applications(_write_csv(tmp_path / "bad.csv", header, rows)))

    assert isinstance(records[0], LoanApplication)
    assert _issues(records[1]) == {(3, "SEX")}
    assert _issues(records[2]) == {(4, "AGE"), (4, "PAY_AMT1")}
    assert _issues(records[3]) == {(5, "LIMIT_BAL")}
    assert records[3].issues[0].reason == "Field required"  # type: ignore[union-attr]
    assert _issues(records[4]) == {(6, "EDUCATION")}
    assert _issues(records[5]) == {(7, "<record>")}
    assert _issues(records[6]) == {(8, ID_COLUMN)}
    assert isinstance(records[7], LoanApplication)
    assert records[7].education == 2
    assert records[7].application_id == f"{CSV_ID_PREFIX}42"
    assert "greater than or equal to 18" in records[2].describe()  # type: ignore[union-attr]


def test_csv_target_and_extra_columns_are_not_part_of_the_application(
    tmp_path: Path, header_and_row: tuple[list[str], dict[str, str]]
) -> None:
    _, good = header_and_row
    header = [ID_COLUMN, *CSV_FEATURE_COLUMNS, "NOTE"]
    path = _write_csv(tmp_path / "features.csv", header, [{**good, "NOTE": "x"}])

    (record,) = read_csv_applications(path)

    assert isinstance(record, LoanApplication)
    assert TARGET_COLUMN not in record.model_dump()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        ("", "is empty"),
        ("ID,LIMIT_BAL\n1,20000\n", "lacks required CSV columns: SEX"),
        (b"\xff\xfe\x00bad", "not a readable CSV"),
    ],
)
def test_unreadable_csv_files_raise_one_clear_source_error(
    tmp_path: Path, content: str | bytes | None, message: str
) -> None:
    path = tmp_path / "applications.csv"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content, encoding="utf-8")

    with pytest.raises(SourceError, match=message):
        read_csv_applications(path)


def _applications(credit_csv: Path, count: int) -> list[LoanApplication]:
    records = itertools.islice(read_csv_applications(credit_csv), count)
    return [record for record in records if isinstance(record, LoanApplication)]


def test_jsonl_reads_back_encoded_applications(credit_csv: Path, tmp_path: Path) -> None:
    stamp = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    originals = _applications(credit_csv, 50)
    path = tmp_path / "applications.jsonl"
    path.write_bytes(b"\n".join(encode_application(app, stamp)[1] for app in originals) + b"\n")

    source = read_jsonl(path)
    records = list(source)

    assert source.total == len(originals)
    assert records == [app.model_copy(update={"submitted_at": stamp}) for app in originals]


def test_invalid_jsonl_lines_are_reported_with_line_and_field(
    credit_csv: Path, tmp_path: Path
) -> None:
    (app,) = _applications(credit_csv, 1)
    good = app.model_dump_json()
    lines = [
        good,
        "",  # blank lines are skipped but still counted
        '{"application_id": "x"',  # not JSON
        good.replace(f'"age":{app.age}', f'"age":"{app.age}"'),  # strict: a string is no number
        good.replace("}", ',"colour":"red"}'),  # unknown field
        "[1, 2]",  # not an object
        good,
    ]
    path = tmp_path / "applications.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    source = read_jsonl(path)
    records = list(source)

    assert source.total == 6
    assert len(records) == 6
    assert records[0] == app
    assert records[5] == app
    assert _issues(records[1]) == {(3, "<record>")}
    assert _issues(records[2]) == {(4, "age")}
    assert _issues(records[3]) == {(5, "colour")}
    assert _issues(records[4]) == {(6, "<record>")}


def test_missing_jsonl_file_raises_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="cannot read"):
        read_jsonl(tmp_path / "absent.jsonl")


_OBSERVED = date(2026, 11, 27)


def test_every_real_label_becomes_the_outcome_of_its_application(
    credit_csv: Path, credit_frame: pd.DataFrame
) -> None:
    records = list(read_csv_outcomes(credit_csv, observed_on=_OBSERVED))

    assert all(isinstance(record, LoanOutcome) for record in records)
    outcomes = [record for record in records if isinstance(record, LoanOutcome)]
    expected_ids = [f"{CSV_ID_PREFIX}{value}" for value in credit_frame[ID_COLUMN]]
    assert [o.application_id for o in outcomes] == expected_ids
    assert [o.defaulted for o in outcomes] == (credit_frame[TARGET_COLUMN] == 1).tolist()
    assert {o.observed_on for o in outcomes} == {_OBSERVED}


def test_invalid_labels_are_reported_with_line_and_column(tmp_path: Path) -> None:
    header = [ID_COLUMN, "AGE", TARGET_COLUMN]
    rows: list[dict[str, str] | None] = [
        {ID_COLUMN: "1", "AGE": "30", TARGET_COLUMN: "1"},
        {ID_COLUMN: "2", "AGE": "30", TARGET_COLUMN: "2"},  # not a 0/1 label
        {ID_COLUMN: "3", "AGE": "30", TARGET_COLUMN: "yes"},
        {ID_COLUMN: "4", "AGE": "30", TARGET_COLUMN: ""},
        None,
        {ID_COLUMN: "", "AGE": "30", TARGET_COLUMN: "0"},
        {ID_COLUMN: "7", "AGE": "30", TARGET_COLUMN: "0.0"},  # integral text is a label
    ]
    path = _write_csv(tmp_path / "outcomes.csv", header, rows)

    records = list(read_csv_outcomes(path, observed_on=_OBSERVED))

    assert records[0] == LoanOutcome(
        application_id=f"{CSV_ID_PREFIX}1", defaulted=True, observed_on=_OBSERVED
    )
    assert _issues(records[1]) == {(3, TARGET_COLUMN)}
    assert _issues(records[2]) == {(4, TARGET_COLUMN)}
    assert _issues(records[3]) == {(5, TARGET_COLUMN)}
    assert _issues(records[4]) == {(6, "<record>")}
    assert _issues(records[5]) == {(7, ID_COLUMN)}
    assert isinstance(records[6], LoanOutcome)
    assert not records[6].defaulted


def test_an_outcome_file_without_the_label_column_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "no-label.csv"
    path.write_text("ID,AGE\n1,30\n", encoding="utf-8")

    with pytest.raises(SourceError, match=f"lacks required CSV columns: {TARGET_COLUMN}"):
        read_csv_outcomes(path, observed_on=_OBSERVED)
