"""The reference profile of a model version: bins fixed once, on the data it was trained on. Pure.

Bins are deciles of the training values (``PROFILE_BINS`` quantiles taken at observed
values, repeated cut points merged), so every bin of a continuous feature holds about a
tenth of the training rows and PSI is not dominated by a near-empty bin; a discrete
feature (sex, repayment status) gets one bin per value band its quantiles separate.

The score histogram is taken on the validation split: live scores are out-of-sample,
and in-sample scores of a flexible model are sharper than any it will see live, which
would read as drift on its first day.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from contracts import FEATURE_COLUMNS
from contracts.profile import Histogram, ReferenceProfile

PROFILE_BINS: Final = 10


def fit_histogram(values: npt.ArrayLike, bins: int = PROFILE_BINS) -> Histogram:
    """A histogram of ``values`` with cut points at their ``bins``-quantiles."""
    data = np.asarray(values, dtype=float)
    if data.size == 0 or not np.isfinite(data).all():
        raise ValueError("a reference histogram needs at least one value, all finite")
    # Cut at observed values (no interpolation), so a discrete feature is cut between its values.
    levels = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    cuts = np.unique(np.quantile(data, levels, method="inverted_cdf"))
    shell = Histogram(edges=cuts.tolist(), counts=[0] * (len(cuts) + 1))
    return Histogram(edges=shell.edges, counts=shell.count(data).tolist())


def reference_profile(
    train_features: pd.DataFrame, validation_scores: npt.ArrayLike, validation_roc_auc: float
) -> ReferenceProfile:
    """Every contract feature's histogram on ``train_features``, the score's on the
    validation split's predicted probabilities of default, and the version's ROC-AUC on
    that split (the monitor alerts when live ROC-AUC falls well below it)."""
    scores = np.asarray(validation_scores, dtype=float)
    return ReferenceProfile(
        features={name: fit_histogram(train_features[name]) for name in FEATURE_COLUMNS},
        score=fit_histogram(scores),
        training_rows=len(train_features),
        validation_rows=len(scores),
        validation_roc_auc=validation_roc_auc,
    )
