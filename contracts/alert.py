"""The model-alert message: a monitored limit was crossed (one record per crossing)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class AlertKind(StrEnum):
    """What was measured."""

    PSI = "psi"
    """Population stability index of a feature or of the score over the live window."""


class ModelAlert(BaseModel):
    """One record on the alerts topic, keyed by ``subject``.

    Written once when ``value`` goes above ``limit``; the subject must come back to or
    below the limit before it can alert again.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: AlertKind
    subject: str = Field(description="a feature's name, or 'score'")
    value: float
    limit: float
    window_rows: int = Field(description="live rows the value was measured on")
    model_run_id: str = Field(description="the run whose reference profile was used")
    raised_at: datetime
