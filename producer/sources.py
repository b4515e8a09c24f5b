"""Readers for application files (the dataset's CSV layout, JSON Lines of contract objects) and
for outcome files (the dataset's CSV with its label column).

Both check the file as a whole eagerly (a missing file or a wrong layout raises
``SourceError`` when the reader is called, before anything is published) and then
yield one ``LoanApplication`` or ``InvalidRecord`` per row, lazily, in file order.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd
from pydantic import ValidationError

from contracts import (
    CSV_FEATURE_COLUMNS,
    FEATURE_BY_CSV_COLUMN,
    FEATURE_COLUMNS,
    ID_COLUMN,
    TARGET_COLUMN,
    LoanApplication,
)
from contracts.outcome import LoanOutcome
from producer.errors import SourceError
from producer.records import (
    WHOLE_RECORD,
    InvalidRecord,
    Issue,
    Record,
    RecordSource,
    invalid_from_validation,
)

CSV_ID_PREFIX: Final = "app-"
"""A CSV row's ``application_id`` is this prefix followed by its ``ID`` (``ID=17`` → ``app-17``)."""

_INTEGER_FIELDS: Final = frozenset(
    name for name in FEATURE_COLUMNS if LoanApplication.model_fields[name].annotation is int
)
_CSV_COLUMN_BY_FIELD: Final = {
    "application_id": ID_COLUMN,
    **{field: column for column, field in FEATURE_BY_CSV_COLUMN.items()},
}
# Integral floats beyond 2**53 cannot be converted to int exactly: leave them to the contract.
_MAX_EXACT_INTEGER: Final = 2.0**53
_FIRST_CSV_DATA_LINE: Final = 2
_OUTCOME_CSV_COLUMNS: Final = {"application_id": ID_COLUMN, "defaulted": TARGET_COLUMN}


class _Missing:
    """Marks an empty CSV cell: the field is left out so the contract reports it as required."""


_MISSING: Final = _Missing()


def read_csv_applications(
    path: Path, *, id_prefix: str = CSV_ID_PREFIX
) -> RecordSource[LoanApplication]:
    """Applications from a CSV in the dataset's layout (``ID``, ``LIMIT_BAL`` … ``PAY_AMT6``).

    Columns are parsed as numbers by pandas (vectorized), then each row is validated
    against the contract. The target column and any other extra columns are ignored.
    Invalid rows are yielded as ``InvalidRecord`` naming the CSV column at fault; blank
    lines are invalid rows too. ``application_id`` is ``id_prefix`` + ``ID``.

    Raises ``SourceError`` if the file cannot be read as CSV or lacks a required column.
    """
    frame = _read_csv_frame(path, (ID_COLUMN, *CSV_FEATURE_COLUMNS))
    blank = frame.isna().all(axis=1).tolist()
    ids = frame[ID_COLUMN].fillna("").str.strip().tolist()
    application_ids: list[object] = [f"{id_prefix}{value}" if value else _MISSING for value in ids]
    columns = {
        field: _column_values(frame[column], integer=field in _INTEGER_FIELDS)
        for column, field in FEATURE_BY_CSV_COLUMN.items()
    }
    return RecordSource(_csv_records(application_ids, columns, blank), total=len(frame))


def read_csv_outcomes(
    path: Path, *, observed_on: date, id_prefix: str = CSV_ID_PREFIX
) -> RecordSource[LoanOutcome]:
    """Outcomes from a CSV with the dataset's ``ID`` and label (``TARGET_COLUMN``) columns.

    Each row becomes a ``LoanOutcome`` for ``id_prefix`` + ``ID`` (the key its application
    was published under), ``defaulted`` when the label is 1, observed on ``observed_on``.
    Other columns are ignored. A label other than 0 or 1, a missing cell or a blank line is
    an ``InvalidRecord`` naming the CSV column.

    Raises ``SourceError`` if the file cannot be read as CSV or lacks either column.
    """
    frame = _read_csv_frame(path, (ID_COLUMN, TARGET_COLUMN))
    blank = frame.loc[:, [ID_COLUMN, TARGET_COLUMN]].isna().all(axis=1).tolist()
    ids = frame[ID_COLUMN].fillna("").str.strip().tolist()
    labels = _column_values(frame[TARGET_COLUMN], integer=True)
    columns: dict[str, list[object]] = {
        "application_id": [f"{id_prefix}{value}" if value else _MISSING for value in ids],
        "defaulted": [_default_flag(label) for label in labels],
    }
    return RecordSource(_outcome_records(columns, blank, observed_on), total=len(frame))


def read_jsonl(path: Path) -> RecordSource[LoanApplication]:
    """Applications from a JSON Lines file: one contract object per line, blank lines skipped.

    Each line is validated exactly as the worker will decode it (strict JSON).
    Raises ``SourceError`` if the file cannot be opened or read.
    """
    try:
        with path.open("rb") as handle:
            total = sum(1 for line in handle if line.strip())
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return RecordSource(_jsonl_records(path), total=total)


def _read_csv_frame(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    try:
        # Only an empty cell is missing ("NA" is a bad value, not a missing one); the ID is
        # text so that "007" stays "007".
        frame = pd.read_csv(
            path,
            dtype={ID_COLUMN: str},
            keep_default_na=False,
            na_values=[""],
            skip_blank_lines=False,
        )
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except pd.errors.EmptyDataError as exc:
        raise SourceError(f"{path} is empty: expected a CSV header") from exc
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise SourceError(f"{path} is not a readable CSV: {exc}") from exc
    missing = [column for column in required if column not in frame]
    if missing:
        raise SourceError(f"{path} lacks required CSV columns: {', '.join(missing)}")
    return frame


def _column_values(column: pd.Series, *, integer: bool) -> list[object]:
    """One column's cells as Python values the strict contract can judge.

    Numbers become ``int`` (integer fields, when integral) or ``float``; text that is not
    a number is kept as text so the contract rejects it; empty cells are ``_MISSING``.
    """
    is_text = not pd.api.types.is_numeric_dtype(column)
    numeric = pd.to_numeric(column, errors="coerce") if is_text else column
    unparsed = numeric.isna().to_numpy()
    if not unparsed.any() and (not integer or numeric.dtype.kind in "iu"):
        return numeric.tolist()
    values = numeric.astype(object).to_numpy()
    if integer:
        as_float = numeric.to_numpy(dtype=float, na_value=np.nan)
        with np.errstate(invalid="ignore"):
            integral = (np.abs(as_float) <= _MAX_EXACT_INTEGER) & (np.mod(as_float, 1) == 0)
        values[integral] = [int(value) for value in as_float[integral]]
    cells = column.to_numpy(dtype=object)
    values[unparsed] = [
        cell if is_text and isinstance(cell, str) else _MISSING for cell in cells[unparsed]
    ]
    return values.tolist()


def _default_flag(label: object) -> object:
    """The label column's 0/1 as the contract's boolean; anything else stays as it is, so
    the contract rejects it naming the column."""
    if type(label) is int and label in (0, 1):
        return bool(label)
    return label


def _outcome_records(
    columns: dict[str, list[object]], blank: list[bool], observed_on: date
) -> Iterator[LoanOutcome | InvalidRecord]:
    rows = zip(*columns.values(), strict=True)
    for offset, (values, is_blank) in enumerate(zip(rows, blank, strict=True)):
        line = offset + _FIRST_CSV_DATA_LINE
        if is_blank:
            yield InvalidRecord(line, (Issue(WHOLE_RECORD, "blank line"),))
            continue
        data = {
            name: value
            for name, value in zip(columns, values, strict=True)
            if value is not _MISSING
        }
        try:
            yield LoanOutcome.model_validate({**data, "observed_on": observed_on})
        except ValidationError as exc:
            yield invalid_from_validation(line, exc, _OUTCOME_CSV_COLUMNS)


def _csv_records(
    application_ids: list[object], columns: dict[str, list[object]], blank: list[bool]
) -> Iterator[Record]:
    names = ("application_id", *columns)
    rows = zip(application_ids, *columns.values(), strict=True)
    for offset, (values, is_blank) in enumerate(zip(rows, blank, strict=True)):
        line = offset + _FIRST_CSV_DATA_LINE
        if is_blank:
            yield InvalidRecord(line, (Issue(WHOLE_RECORD, "blank line"),))
            continue
        data = dict(zip(names, values, strict=True))
        if _MISSING in values:
            data = {name: value for name, value in data.items() if value is not _MISSING}
        try:
            yield LoanApplication.model_validate(data)
        except ValidationError as exc:
            yield invalid_from_validation(line, exc, _CSV_COLUMN_BY_FIELD)


def _jsonl_records(path: Path) -> Iterator[Record]:
    try:
        with path.open("rb") as handle:
            for line_number, line in enumerate(handle, start=1):
                if line.strip():
                    yield _validate_json_line(line_number, line)
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _validate_json_line(line_number: int, line: bytes) -> Record:
    try:
        return LoanApplication.model_validate_json(line)
    except ValidationError as exc:
        return invalid_from_validation(line_number, exc)
    except UnicodeDecodeError as exc:
        return InvalidRecord(line_number, (Issue(WHOLE_RECORD, f"not UTF-8: {exc.reason}"),))
