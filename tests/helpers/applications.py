"""Real applications from the dataset, as the producer would publish them."""

from __future__ import annotations

import orjson
import pandas as pd

from contracts import FEATURE_COLUMNS, ID_COLUMN, LoanApplication


def applications_from_frame(
    feature_frame: pd.DataFrame, count: int, *, prefix: str = "app", offset: int = 0
) -> list[LoanApplication]:
    """``count`` rows of the contract-named dataset as validated applications.

    Ids are ``<prefix>-<dataset ID>``: unique within the dataset.
    """
    rows = feature_frame.iloc[offset : offset + count]
    records = rows.loc[:, list(FEATURE_COLUMNS)].to_dict(orient="records")
    return [
        LoanApplication.model_validate_json(
            orjson.dumps({"application_id": f"{prefix}-{row_id}", **record})
        )
        for record, row_id in zip(records, rows[ID_COLUMN], strict=True)
    ]


def encode(application: LoanApplication) -> bytes:
    """The application's wire form (JSON, no unset optional fields)."""
    return application.model_dump_json(exclude_none=True).encode()


def as_frame(applications: list[LoanApplication]) -> pd.DataFrame:
    """The applications' features as a contract-named frame, one row each."""
    return pd.DataFrame(
        [application.features() for application in applications], columns=list(FEATURE_COLUMNS)
    )
