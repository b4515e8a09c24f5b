"""Drift, live performance and fairness as of the database's current state (the loop and the
report)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_auc_score

from contracts.profile import ReferenceProfile
from monitor.drift import window_psi
from monitor.fairness import LiveFairness, live_fairness
from monitor.performance import LivePerformance, live_performance
from monitor.records import feature_columns
from monitor.settings import Settings
from monitor.store import JoinedRows, PairedRows, Store, StoreTransaction
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


@dataclass(frozen=True, slots=True)
class Live:
    """Live performance and fairness, both over ``window``, and the shadow comparison on
    its rows that the versions of the newest shadow score both scored (None before the
    first shadow score)."""

    window: JoinedRows
    performance: LivePerformance
    fairness: LiveFairness
    comparison: ShadowComparison | None


def live_now(tx: StoreTransaction, settings: Settings) -> Live:
    """Live measures over the ``performance_window_rows`` most recent joined outcomes."""
    pair = tx.newest_shadow_pair()
    window = tx.joined(settings.performance_window_rows, pair)
    decided = (window.defaulted, window.scores, window.thresholds)
    costs = costs_of(settings)
    return Live(
        window=window,
        performance=live_performance(*decided, costs),
        fairness=live_fairness(*decided, window.personal),
        comparison=(
            _compared(*pair, window.paired, costs)
            if pair is not None and window.paired is not None
            else None
        ),
    )


@dataclass(frozen=True, slots=True)
class VersionAuc:
    """Live ROC-AUC of one version (``model_run_id``) over its ``rows`` joined outcomes in
    the live window, and the ROC-AUC its training measured on the validation split."""

    model_run_id: str
    rows: int
    live: float
    validation: float


def version_auc(live: Live, profiles: ProfileSource, settings: Settings) -> VersionAuc | None:
    """The live ROC-AUC of the version that scored the newest joined outcome, over that
    version's rows in the window, beside its validation ROC-AUC. None below
    ``min_joined_rows`` rows or with one class only, and for a version whose profile
    predates the validation ROC-AUC (it has nothing to be held to)."""
    window = live.window
    if not window.run_ids:
        return None
    run_id = window.run_ids[-1]
    mine = np.array([r == run_id for r in window.run_ids])
    defaulted = window.defaulted[mine]
    if defaulted.size < settings.min_joined_rows or defaulted.all() or not defaulted.any():
        return None
    validation = profiles(run_id).validation_roc_auc
    if validation is None:
        return None
    live_auc = float(roc_auc_score(defaulted, window.scores[mine]))
    return VersionAuc(run_id, int(defaulted.size), live_auc, validation)


@dataclass(frozen=True, slots=True)
class ShadowComparison:
    """Champion and shadow challenger measured on the same labelled applications."""

    champion_version: str
    challenger_version: str
    champion: LivePerformance
    challenger: LivePerformance

    @property
    def rows(self) -> int:
        return self.champion.rows


def compare(
    tx: StoreTransaction, costs: CostMatrix, champion_version: str, challenger_version: str
) -> ShadowComparison:
    """Both versions' live performance on every application ``champion_version`` scored
    officially and ``challenger_version`` in the shadow, whose outcome is known (promote's
    evidence; ``live_now`` compares them over the live window)."""
    rows = tx.paired(champion_version, challenger_version)
    return _compared(champion_version, challenger_version, rows, costs)


def _compared(
    champion_version: str, challenger_version: str, rows: PairedRows, costs: CostMatrix
) -> ShadowComparison:
    return ShadowComparison(
        champion_version=champion_version,
        challenger_version=challenger_version,
        champion=live_performance(rows.defaulted, *rows.champion, costs),
        challenger=live_performance(rows.defaulted, *rows.challenger, costs),
    )


def costs_of(settings: Settings) -> CostMatrix:
    return CostMatrix(false_negative=settings.cost_fn, false_positive=settings.cost_fp)


def measure(
    store: Store, profiles: ProfileSource, settings: Settings
) -> tuple[Drift | None, LivePerformance, LiveFairness, ShadowComparison | None]:
    """Drift, live performance and fairness, and the shadow comparison, read in one
    transaction."""
    with store.transaction() as tx:
        live = live_now(tx, settings)
        return (
            drift_now(tx, profiles, settings),
            live.performance,
            live.fairness,
            live.comparison,
        )
