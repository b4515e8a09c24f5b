"""When a monitored measure crosses its limit, and the alert that says so. Pure.

A subject (a feature or the score for PSI, ``roc_auc``, a fairness gap) alerts when its value
crosses the limit while it was not beyond it already; it re-arms only once the value is
back past a re-arm level on the safe side (PSI 0.1 by default, "stable" by the usual reading
of PSI), so a value hovering around the limit raises one alert, not one per batch that
happens to straddle it (the first kill -9 test run, with 40-record batches, raised pay_amt3
three times with re-arming at the limit). PSI and fairness gaps alert going above their
limit; live ROC-AUC going below its own (the version's validation ROC-AUC minus a margin).
The state ("beyond" per subject) is stored with the batch, so a replayed batch re-derives
the same decision and a crossing alerts exactly once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Final

from contracts.alert import AlertKind, ModelAlert
from monitor.fairness import LiveFairness
from monitor.measures import Drift, VersionAuc
from monitor.settings import Settings

AUC_SUBJECT: Final = "roc_auc"

Crossings = tuple[list[ModelAlert], dict[str, bool]]
"""The alerts of new crossings, and the new state ("beyond the limit") of each subject."""


def crossings(
    values: Mapping[str, float],
    beyond: Mapping[str, bool],
    *,
    kind: AlertKind,
    limit: float,
    rearm: float,
    window_rows: int,
    model_run_id: str,
    now: datetime,
    falling: bool = False,
) -> Crossings:
    """The alerts for subjects of ``values`` that just crossed ``limit`` (upwards; downwards
    when ``falling``), and those subjects' new state; ``beyond`` is their previous state."""

    def past(value: float, level: float) -> bool:
        return value < level if falling else value > level

    states = {
        subject: past(value, rearm if beyond.get(subject, False) else limit)
        for subject, value in values.items()
    }
    alerts = [
        ModelAlert(
            kind=kind,
            subject=subject,
            value=values[subject],
            limit=limit,
            window_rows=window_rows,
            model_run_id=model_run_id,
            raised_at=now,
        )
        for subject, is_beyond in sorted(states.items())
        if is_beyond and not beyond.get(subject, False)
    ]
    return alerts, states


def psi_crossings(
    drift: Drift | None, beyond: Mapping[str, bool], settings: Settings, now: datetime
) -> Crossings:
    """``crossings`` of each subject's PSI above ``psi_limit``, re-armed at ``psi_rearm``;
    nothing while the window is too short to measure (``drift`` None)."""
    if drift is None:
        return [], {}
    return crossings(
        drift.psi, beyond, kind=AlertKind.PSI, limit=settings.psi_limit,
        rearm=settings.psi_rearm, window_rows=drift.rows, model_run_id=drift.model_run_id,
        now=now,
    )  # fmt: skip


def auc_crossing(
    auc: VersionAuc | None, beyond: Mapping[str, bool], settings: Settings, now: datetime
) -> Crossings:
    """``crossings`` of live ROC-AUC below the validation ROC-AUC minus ``auc_margin``,
    re-armed within ``auc_rearm_margin``; nothing while ``auc`` is None (too few rows,
    one class only, or a profile without a validation ROC-AUC)."""
    if auc is None:
        return [], {}
    return crossings(
        {AUC_SUBJECT: auc.live}, beyond, kind=AlertKind.ROC_AUC,
        limit=auc.validation - settings.auc_margin,
        rearm=auc.validation - settings.auc_rearm_margin,
        window_rows=auc.rows, model_run_id=auc.model_run_id, now=now, falling=True,
    )  # fmt: skip


def fairness_crossings(
    fairness: LiveFairness,
    beyond: Mapping[str, bool],
    settings: Settings,
    *,
    model_run_id: str,
    now: datetime,
) -> Crossings:
    """``crossings`` of each measurable live gap above ``fairness_limit``, re-armed at
    ``fairness_rearm``; nothing before ``min_joined_rows`` rows with personal fields."""
    if fairness.rows < settings.min_joined_rows:
        return [], {}
    gaps = {name: value for name, value in fairness.gaps.items() if math.isfinite(value)}
    return crossings(
        gaps, beyond, kind=AlertKind.FAIRNESS, limit=settings.fairness_limit,
        rearm=settings.fairness_rearm, window_rows=fairness.rows, model_run_id=model_run_id,
        now=now,
    )  # fmt: skip
