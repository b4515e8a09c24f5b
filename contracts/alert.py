"""The model-alert message: a monitored limit was crossed (one record per crossing)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class AlertKind(StrEnum):
    """What was measured."""

    PSI = "psi"
    """Population stability index of a feature or of the score over the live window."""
    ROC_AUC = "roc_auc"
    """Live ROC-AUC of the newest version, below its validation ROC-AUC by more than the
    monitor's margin; ``limit`` is that validation ROC-AUC minus the margin."""
    FAIRNESS = "fairness"
    """A gap training's fairness gate checks, over the live window, above the gate."""


class ModelAlert(BaseModel):
    """One record on the alerts topic, keyed by ``subject``.

    Written once when ``value`` crosses ``limit`` (goes above it; for ``roc_auc``, below
    it); the subject must come back past its re-arm level before it can alert again.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: AlertKind
    subject: str = Field(
        description="psi: a feature's name, or 'score'; roc_auc: 'roc_auc'; fairness: the "
        "gap's name, as training logs it (e.g. 'demographic_parity_difference_sex')"
    )
    value: float
    limit: float
    window_rows: int = Field(description="live rows the value was measured on")
    model_run_id: str = Field(
        description="the run of the version measured: whose reference profile (bins, "
        "validation ROC-AUC) was used"
    )
    raised_at: datetime
