"""What a training call produces: one result per candidate, and the call's report."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from training.settings import Family


@dataclass(frozen=True)
class CandidateResult:
    """One trained, logged and registered candidate.

    ``metrics`` are the values logged on its MLflow run (validation split, at
    ``threshold``); ``best_params`` the grid point cross-validation chose.
    """

    family: Family
    run_id: str
    model_uri: str
    version: str
    threshold: float
    metrics: Mapping[str, float]
    best_params: Mapping[str, Any]

    @property
    def roc_auc(self) -> float:
        return self.metrics["roc_auc"]

    @property
    def expected_cost(self) -> float:
        return self.metrics["expected_cost"]

    @property
    def inference_us_per_row(self) -> float:
        return self.metrics["inference_us_per_row"]

    @property
    def scoring_us_per_row(self) -> float:
        """What the worker computes per row with reason codes on: inference and reasons."""
        return self.inference_us_per_row + self.metrics.get("explanation_us_per_row", 0.0)


@dataclass(frozen=True)
class TrainingReport:
    """The outcome of :func:`training.train`.

    ``champion`` is None when no candidate met the latency budget (nothing was
    promoted; ``selection_reason`` says why). ``verdicts`` gives, per family, why it
    was or was not promoted (also tagged on its version as ``selection_reason``).
    """

    experiment_id: str
    parent_run_id: str
    model_name: str
    candidates: tuple[CandidateResult, ...]
    champion: CandidateResult | None
    previous_version: str | None
    selection_reason: str
    verdicts: Mapping[Family, str]
    wall_seconds: float

    def comparison(self) -> pd.DataFrame:
        """One row per candidate (index: family) with its version, threshold and metrics."""
        rows = [
            {"family": str(c.family), "version": c.version, **c.metrics} for c in self.candidates
        ]
        table = pd.DataFrame(rows).set_index("family")
        table["champion"] = [
            self.champion is not None and c.version == self.champion.version
            for c in self.candidates
        ]
        return table
