"""Drift and live performance as of the database's current state (the loop and the report)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from contracts.profile import ReferenceProfile
from monitor.drift import window_psi
from monitor.performance import LivePerformance, live_performance
from monitor.records import feature_columns
from monitor.settings import Settings
from monitor.store import Store, StoreTransaction
from training.evaluation import CostMatrix

ProfileSource = Callable[[str], ReferenceProfile]
"""A model run id -> that version's reference profile."""


@dataclass(frozen=True, slots=True)
class Drift:
    """PSI per subject over ``rows`` live rows, against the profile of ``model_run_id``."""

    psi: dict[str, float]
    rows: int
    model_run_id: str


def drift_now(tx: StoreTransaction, profiles: ProfileSource, settings: Settings) -> Drift | None:
    """PSI of the window against the newest prediction's model; None while too few rows."""
    scores, run_id = tx.score_window(settings.window_rows)
    features = tx.window_features()
    rows = min(len(scores), len(features))
    if run_id is None or rows < settings.min_window_rows:
        return None
    return Drift(window_psi(profiles(run_id), feature_columns(features), scores), rows, run_id)


def performance_now(tx: StoreTransaction, settings: Settings) -> LivePerformance:
    """Live performance over every prediction joined with its outcome."""
    costs = CostMatrix(false_negative=settings.cost_fn, false_positive=settings.cost_fp)
    defaulted, scores, thresholds = tx.joined()
    return live_performance(defaulted, scores, thresholds, costs)


def measure(
    store: Store, profiles: ProfileSource, settings: Settings
) -> tuple[Drift | None, LivePerformance]:
    """Both, read in one transaction."""
    with store.transaction() as tx:
        return drift_now(tx, profiles, settings), performance_now(tx, settings)
