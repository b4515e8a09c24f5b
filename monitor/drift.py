"""Population stability index of a live window against a model version's reference profile. Pure.

``PSI = sum over bins of (live% - ref%) * ln(live% / ref%)``, with both shares floored at
``SHARE_FLOOR`` so a bin empty on one side adds a large but finite term. Read as: below
0.1 stable, 0.1-0.2 moderate shift, above 0.2 (the default alert limit) a real shift.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import numpy as np
import numpy.typing as npt

from contracts.profile import Histogram, ReferenceProfile

SHARE_FLOOR: Final = 1e-4
SCORE_SUBJECT: Final = "score"
"""The drift subject of the model's score; every other subject is a feature's name."""


def psi(reference: npt.ArrayLike, live: npt.ArrayLike) -> float:
    """PSI between two count vectors over the same bins; 0.0 when either is empty."""
    expected = np.asarray(reference, dtype=float)
    actual = np.asarray(live, dtype=float)
    if expected.shape != actual.shape:
        raise ValueError(f"bins differ: {expected.shape} reference, {actual.shape} live")
    if expected.sum() == 0 or actual.sum() == 0:
        return 0.0
    ref_share = np.maximum(expected / expected.sum(), SHARE_FLOOR)
    live_share = np.maximum(actual / actual.sum(), SHARE_FLOOR)
    return float(np.sum((live_share - ref_share) * np.log(live_share / ref_share)))


def histogram_psi(reference: Histogram, values: npt.ArrayLike) -> float:
    """PSI of live ``values``, counted in ``reference``'s bins, against its counts."""
    return psi(reference.counts, reference.count(values))


def window_psi(
    profile: ReferenceProfile,
    features: Mapping[str, npt.ArrayLike],
    scores: npt.ArrayLike,
) -> dict[str, float]:
    """PSI per profiled feature present in ``features``, and of the score (``SCORE_SUBJECT``)."""
    result = {
        name: histogram_psi(histogram, features[name])
        for name, histogram in profile.features.items()
        if name in features
    }
    result[SCORE_SUBJECT] = histogram_psi(profile.score, scores)
    return result
