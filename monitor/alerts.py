"""When a drift measure crosses its limit, and the alert that says so. Pure.

A subject (a feature, or the score) alerts when its PSI goes above the limit while it
was not above it already; it re-arms only once PSI is back at or below ``rearm`` (0.1 by
default, "stable" by the usual reading of PSI), so a window hovering around the limit
raises one alert, not one per batch that happens to straddle it (the first kill -9 test
run, with 40-record batches, raised pay_amt3 three times with re-arming at the limit).
The state ("above" per subject) is stored with the batch, so a replayed batch re-derives
the same decision and a crossing alerts exactly once.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from contracts.alert import AlertKind, ModelAlert


def psi_crossings(
    values: Mapping[str, float],
    above: Mapping[str, bool],
    *,
    limit: float,
    rearm: float,
    window_rows: int,
    model_run_id: str,
    now: datetime,
) -> tuple[list[ModelAlert], dict[str, bool]]:
    """The alerts for subjects that just crossed ``limit``, and every subject's new state."""
    states = {
        subject: value > (rearm if above.get(subject, False) else limit)
        for subject, value in values.items()
    }
    alerts = [
        ModelAlert(
            kind=AlertKind.PSI,
            subject=subject,
            value=values[subject],
            limit=limit,
            window_rows=window_rows,
            model_run_id=model_run_id,
            raised_at=now,
        )
        for subject, is_above in sorted(states.items())
        if is_above and not above.get(subject, False)
    ]
    return alerts, states
