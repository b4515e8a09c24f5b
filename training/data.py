"""Reading and validating the dataset CSV (UCI layout) into the model's input frame.

The checks mirror :class:`contracts.LoanApplication` (its field bounds are read from
the contract itself, vectorised over the whole file), so a model is never trained on
a row the scorer would reject.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import annotated_types
import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from contracts import (
    CSV_FEATURE_COLUMNS,
    FEATURE_BY_CSV_COLUMN,
    ID_COLUMN,
    TARGET_COLUMN,
    LoanApplication,
)
from training.errors import DatasetError
from training.packaging import as_model_input

_MAX_REPORTED_PROBLEMS: Final = 5


@dataclass(frozen=True)
class Dataset:
    """A validated dataset.

    ``frame`` is the file as read (UCI column names, logged to MLflow for its digest);
    ``features`` the model input (contract names, float64, ``FEATURE_COLUMNS`` order);
    ``target`` 1 for a default next month, 0 otherwise. All share one index.
    """

    source: Path
    frame: pd.DataFrame
    features: pd.DataFrame
    target: pd.Series


@dataclass(frozen=True)
class _Domain:
    integer: bool
    lower: float
    lower_inclusive: bool
    upper: float
    upper_inclusive: bool

    def violations(self, values: pd.Series) -> pd.Series:
        too_low = values < self.lower if self.lower_inclusive else values <= self.lower
        too_high = values > self.upper if self.upper_inclusive else values >= self.upper
        bad = too_low | too_high | ~np.isfinite(values)
        if self.integer:
            bad |= values % 1 != 0
        return bad

    def describe(self) -> str:
        low = "[" if self.lower_inclusive else "("
        high = "]" if self.upper_inclusive else ")"
        kind = "integer" if self.integer else "number"
        return f"{kind} in {low}{self.lower:g}, {self.upper:g}{high}"


def load_dataset(path: Path) -> Dataset:
    """Read the CSV at ``path`` and validate it against the message contract.

    Raises :class:`DatasetError` naming the file, and for bad values the column and the
    data row (1-based, header excluded), when the file is missing, unreadable, lacks
    a column, holds a missing or non-numeric value, or a value outside the contract's
    domain, or a target other than 0/1.
    """
    frame = _read_csv(path)
    missing = [c for c in (*CSV_FEATURE_COLUMNS, TARGET_COLUMN) if c not in frame.columns]
    if missing:
        raise DatasetError(
            f"{path}: missing column(s) {', '.join(missing)}; expected the UCI layout "
            f"({ID_COLUMN}, {', '.join(CSV_FEATURE_COLUMNS)}, {TARGET_COLUMN})"
        )
    if frame.empty:
        raise DatasetError(f"{path}: the file has a header but no rows")
    numeric = _numeric_columns(frame, path)
    _check_domains(frame, numeric, path)
    features = as_model_input(
        numeric.loc[:, list(CSV_FEATURE_COLUMNS)].rename(columns=FEATURE_BY_CSV_COLUMN)
    )
    target = numeric[TARGET_COLUMN].astype(np.int64).rename("default")
    return Dataset(source=path, frame=frame, features=features, target=target)


def _read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DatasetError(f"dataset not found: {path} (set --data or RUMOS_DATA)")
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path} is not a readable CSV file: {exc}") from exc
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc


def _numeric_columns(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    columns = [*CSV_FEATURE_COLUMNS, TARGET_COLUMN]
    numeric = frame.loc[:, columns].apply(pd.to_numeric, errors="coerce").astype(np.float64)
    problems = []
    for column in columns:
        bad = numeric[column].isna()
        if bad.any():
            row = _first(bad)
            raw = frame[column].iloc[row]
            what = "missing value" if pd.isna(raw) else f"non-numeric value {raw!r}"
            problems.append(_problem(frame, column, bad, row, what))
    _raise_if(problems, path)
    return numeric


def _check_domains(frame: pd.DataFrame, numeric: pd.DataFrame, path: Path) -> None:
    problems = []
    for column, name in FEATURE_BY_CSV_COLUMN.items():
        domain = _contract_domain(name)
        bad = domain.violations(numeric[column])
        if bad.any():
            row = _first(bad)
            value = numeric[column].iloc[row]
            problems.append(
                _problem(frame, column, bad, row, f"{value:g} is not a {domain.describe()}")
            )
    bad_target = ~numeric[TARGET_COLUMN].isin((0.0, 1.0))
    if bad_target.any():
        row = _first(bad_target)
        value = numeric[TARGET_COLUMN].iloc[row]
        problems.append(_problem(frame, TARGET_COLUMN, bad_target, row, f"{value:g} is not 0 or 1"))
    _raise_if(problems, path)


def _contract_domain(field_name: str) -> _Domain:
    """The bounds ``LoanApplication`` puts on a feature, read from its field metadata."""
    field = LoanApplication.model_fields[field_name]
    lower, lower_inclusive, upper, upper_inclusive = -math.inf, True, math.inf, True
    for constraint in field.metadata:
        if isinstance(constraint, annotated_types.Ge):
            lower, lower_inclusive = float(constraint.ge), True  # type: ignore[arg-type]
        elif isinstance(constraint, annotated_types.Gt):
            lower, lower_inclusive = float(constraint.gt), False  # type: ignore[arg-type]
        elif isinstance(constraint, annotated_types.Le):
            upper, upper_inclusive = float(constraint.le), True  # type: ignore[arg-type]
        elif isinstance(constraint, annotated_types.Lt):
            upper, upper_inclusive = float(constraint.lt), False  # type: ignore[arg-type]
    return _Domain(field.annotation is int, lower, lower_inclusive, upper, upper_inclusive)


def _first(mask: pd.Series) -> int:
    return int(np.flatnonzero(mask.to_numpy())[0])


def _problem(frame: pd.DataFrame, column: str, bad: pd.Series, row: int, what: str) -> str:
    where = f"data row {row + 1}"
    if ID_COLUMN in frame.columns:
        where += f" ({ID_COLUMN} {frame[ID_COLUMN].iloc[row]})"
    count = int(bad.sum())
    more = f" ({count} bad rows in this column)" if count > 1 else ""
    return f"column {column}, {where}: {what}{more}"


def _raise_if(problems: list[str], path: Path) -> None:
    if problems:
        shown = problems[:_MAX_REPORTED_PROBLEMS]
        hidden = len(problems) - len(shown)
        tail = f"\n  … and {hidden} more column(s)" if hidden else ""
        raise DatasetError(f"{path}: invalid data\n  " + "\n  ".join(shown) + tail)


QUICK_ROWS: Final = 4000
"""Rows kept (stratified) by ``--quick`` before splitting."""
VALIDATION_FRACTION: Final = 0.2
_MIN_ROWS_PER_CLASS: Final = 20


@dataclass(frozen=True)
class Split:
    """Stratified train/validation split of a dataset's features and target."""

    train_features: pd.DataFrame
    train_target: pd.Series
    validation_features: pd.DataFrame
    validation_target: pd.Series


def split_dataset(dataset: Dataset, *, seed: int, quick: bool) -> Split:
    """Hold out ``VALIDATION_FRACTION`` of the rows, stratified on the target.

    ``quick`` first keeps a stratified sample of ``QUICK_ROWS`` rows. The same data
    and seed give the same split. Raises :class:`DatasetError` when a class has too
    few rows to stratify and cross-validate.
    """
    counts = dataset.target.value_counts()
    if len(counts) < 2 or counts.min() < _MIN_ROWS_PER_CLASS:
        raise DatasetError(
            f"{dataset.source}: training needs at least {_MIN_ROWS_PER_CLASS} rows of each "
            f"class of {TARGET_COLUMN}; found {counts.to_dict()}"
        )
    features, target = dataset.features, dataset.target
    if quick and len(features) > QUICK_ROWS:
        features, _, target, _ = train_test_split(
            features, target, train_size=QUICK_ROWS, stratify=target, random_state=seed
        )
    train_x, val_x, train_y, val_y = train_test_split(
        features, target, test_size=VALIDATION_FRACTION, stratify=target, random_state=seed
    )
    return Split(train_x, train_y, val_x, val_y)
