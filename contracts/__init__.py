"""The message contract shared by training, the producer and the consumer."""

from contracts.application import FEATURE_COLUMNS, PERSONAL_FIELDS, LoanApplication
from contracts.dataset import (
    CSV_FEATURE_COLUMNS,
    FEATURE_BY_CSV_COLUMN,
    ID_COLUMN,
    TARGET_COLUMN,
)

__all__ = [
    "CSV_FEATURE_COLUMNS",
    "FEATURE_BY_CSV_COLUMN",
    "FEATURE_COLUMNS",
    "ID_COLUMN",
    "PERSONAL_FIELDS",
    "TARGET_COLUMN",
    "LoanApplication",
]
