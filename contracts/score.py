"""Messages the worker writes: a score per application, and its prediction metadata."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from contracts.reasons import REASON_TABLE_VERSION, Reason, reason_table

Probability = Annotated[float, Field(ge=0.0, le=1.0)]


class LoanScore(BaseModel):
    """One record on the scores topic, keyed by ``application_id``.

    ``reasons`` lists the features that raised this applicant's risk most, drawn from the
    reason table documented in the schema (``x-reason-codes``); it is absent when the
    worker's reason codes are switched off. ``reasons_unavailable`` is true when they are
    on but this application's explanation failed: the score itself is still valid.
    """

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "x-reason-table-version": REASON_TABLE_VERSION,
            "x-reason-codes": reason_table(),
        },
    )

    application_id: str
    default_probability: Probability
    predicted_default: bool = Field(description="default_probability >= threshold")
    threshold: Probability
    model_name: str
    model_version: str
    scored_at: datetime
    reasons: list[Reason] | None = Field(
        default=None,
        description="top reasons (largest contribution first) that raised the risk; only "
        "features the model uses are cited; null when reason codes are off or unavailable",
    )
    reasons_unavailable: bool = Field(
        default=False,
        description="true when reason codes are on but could not be computed for this "
        "application (the score is still valid)",
    )


class PredictionRecord(BaseModel):
    """One record on the prediction-metadata topic per scored application.

    Carries no feature values: personal data stays out of monitoring by default.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    application_id: str
    model_name: str
    model_version: str
    model_run_id: str
    default_probability: Probability
    predicted_default: bool
    threshold: Probability
    batch_size: int
    batch_latency_ms: float
    input_topic: str
    input_partition: int
    input_offset: int
    worker_id: str
    scored_at: datetime
    personal_fields: dict[str, int] | None = Field(
        default=None,
        description="sex, education, marriage and age; only when the worker's "
        "SCORER_MONITOR_PERSONAL_FIELDS is on (off by default)",
    )


class ShadowScore(BaseModel):
    """One record on the shadow-scores topic: what the challenger would have decided.

    Written by the worker in the same transaction as the official ``LoanScore`` of the same
    application, so the two describe the same applications exactly once each;
    ``champion_version`` names the version whose score was the official one. Never a
    decision: nothing downstream of the scores topic reads it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    application_id: str
    default_probability: Probability
    predicted_default: bool = Field(description="default_probability >= threshold")
    threshold: Probability
    model_name: str
    model_version: str
    model_run_id: str
    champion_version: str
    scored_at: datetime
