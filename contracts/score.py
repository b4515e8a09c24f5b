"""Messages the worker writes: a score per application, and its prediction metadata."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

Probability = Annotated[float, Field(ge=0.0, le=1.0)]


class LoanScore(BaseModel):
    """One record on the scores topic, keyed by ``application_id``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    application_id: str
    default_probability: Probability
    predicted_default: bool = Field(description="default_probability >= threshold")
    threshold: Probability
    model_name: str
    model_version: str
    scored_at: datetime


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
