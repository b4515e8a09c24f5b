"""Live fairness: the gaps training's fairness gate checks, on joined live outcomes. Pure.

The same computation as training's fairness table (``training.fairness``: groups by sex and
age band, groups under ``MIN_GROUP_SIZE`` left out) on the rows of the live window whose
prediction carried the applicant's personal fields; each decision at its own version's
threshold. Without such rows (``SCORER_MONITOR_PERSONAL_FIELDS`` off, the default) there is
nothing to measure, and ``LiveFairness.available`` says so: no gap is reported as zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from training.fairness import disparities, disparity_metrics, group_table
from training.selection import FAIRNESS_GATE_METRICS


@dataclass(frozen=True, slots=True)
class LiveFairness:
    """``gaps`` by gated metric name (NaN: groups too small to compare) over ``rows`` joined
    applications with personal fields."""

    rows: int
    gaps: dict[str, float]

    @property
    def available(self) -> bool:
        return self.rows > 0


def live_fairness(
    defaulted: npt.ArrayLike,
    scores: npt.ArrayLike,
    thresholds: npt.ArrayLike,
    personal: pd.DataFrame,
) -> LiveFairness:
    """The gated gaps over the rows of ``personal`` (sex, age, marriage; NaN where the
    prediction carried none) that have values, aligned with the other arguments."""
    known = personal[["sex", "age", "marriage"]].notna().all(axis=1).to_numpy()
    if not known.any():
        return LiveFairness(0, {})
    features = personal.loc[known].astype(int).reset_index(drop=True)
    table = group_table(
        features,
        np.asarray(defaulted, dtype=int)[known],
        np.asarray(scores, dtype=float)[known],
        np.asarray(thresholds, dtype=float)[known],
    )
    measured = disparity_metrics(disparities(table))
    return LiveFairness(
        int(known.sum()), {name: measured.get(name, math.nan) for name in FAIRNESS_GATE_METRICS}
    )
