"""Mapping between the UCI CSV layout and the message contract."""

from __future__ import annotations

from typing import Final

from contracts.application import FEATURE_COLUMNS

ID_COLUMN: Final = "ID"
TARGET_COLUMN: Final = "default.payment.next.month"
CSV_FEATURE_COLUMNS: Final[tuple[str, ...]] = tuple(name.upper() for name in FEATURE_COLUMNS)
"""The dataset's 23 feature columns (``LIMIT_BAL`` … ``PAY_AMT6``, first repayment ``PAY_0``)."""

FEATURE_BY_CSV_COLUMN: Final[dict[str, str]] = dict(
    zip(CSV_FEATURE_COLUMNS, FEATURE_COLUMNS, strict=True)
)
