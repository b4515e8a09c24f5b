"""The reference profile: bins fixed on training values, and live values read into the same bins."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from contracts import FEATURE_COLUMNS
from contracts.profile import Histogram, ReferenceProfile
from training.profile import PROFILE_BINS, fit_histogram, reference_profile


def test_a_continuous_feature_gets_deciles_of_its_training_values() -> None:
    values = np.random.default_rng(3).lognormal(10, 1, size=5_000)

    histogram = fit_histogram(values)

    assert len(histogram.counts) == PROFILE_BINS
    assert sum(histogram.counts) == values.size
    tenth = values.size // PROFILE_BINS
    assert all(abs(count - tenth) <= 2 for count in histogram.counts)  # equal-frequency bins
    assert histogram.edges == sorted(histogram.edges)


def test_a_discrete_feature_gets_one_bin_per_band_its_quantiles_separate() -> None:
    values = np.array([1] * 600 + [2] * 400)  # sex: 1 male, 2 female

    histogram = fit_histogram(values)

    assert histogram.edges == [1.0, 2.0]
    assert histogram.counts == [600, 400, 0]  # nothing above the largest training value


def test_live_values_land_in_the_training_bins_including_outside_their_range() -> None:
    histogram = Histogram(edges=[0.0, 10.0], counts=[1, 1, 1])

    assert histogram.bin_of([-5, 0, 0.1, 10, 10.5, 1e9]).tolist() == [0, 0, 1, 1, 2, 2]
    assert histogram.count([-5, 3, 4, 99]).tolist() == [1, 2, 1]


@pytest.mark.parametrize(
    ("edges", "counts", "problem"),
    [([0.0, 1.0], [1, 1], "2 edges need 3 counts"), ([1.0, 1.0], [1, 1, 1], "ascending")],
)
def test_a_malformed_histogram_is_refused(
    edges: list[float], counts: list[int], problem: str
) -> None:
    with pytest.raises(ValidationError, match=problem):
        Histogram(edges=edges, counts=counts)


def test_fitting_needs_finite_values() -> None:
    with pytest.raises(ValueError, match="finite"):
        fit_histogram([1.0, np.nan])
    with pytest.raises(ValueError, match="at least one"):
        fit_histogram([])


def test_profile_covers_every_feature_and_the_score_and_round_trips_as_json(
    feature_frame: pd.DataFrame,
) -> None:
    train = feature_frame.head(2_000)
    scores = np.random.default_rng(5).beta(2, 6, size=700)

    profile = reference_profile(train, scores, 0.78)

    assert profile.validation_roc_auc == 0.78
    assert list(profile.features) == list(FEATURE_COLUMNS)
    assert all(sum(h.counts) == len(train) for h in profile.features.values())
    assert sum(profile.score.counts) == profile.validation_rows == len(scores)
    assert profile.training_rows == len(train)
    assert ReferenceProfile.model_validate_json(profile.model_dump_json()) == profile


def test_a_profile_written_before_the_validation_roc_auc_is_still_read(
    feature_frame: pd.DataFrame,
) -> None:
    current = reference_profile(feature_frame.head(500), [0.1, 0.2, 0.3], 0.7)
    older = current.model_dump(exclude={"validation_roc_auc"})

    assert ReferenceProfile.model_validate(older).validation_roc_auc is None
