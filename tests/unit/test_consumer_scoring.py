"""Scoring: one model call per batch, probabilities equal to the model's own predict_proba."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from consumer.model import LoadedModel
from consumer.scoring import feature_frame as model_input
from consumer.scoring import score_applications
from contracts import FEATURE_COLUMNS
from tests.helpers.applications import applications_from_frame, as_frame
from tests.helpers.champion import fit_tiny_pipeline
from training.packaging import as_model_input


class CountingModel:
    """Wraps a model and counts predict_proba calls and rows."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.calls: list[int] = []

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:  # noqa: N803
        self.calls.append(len(X))
        return self.inner.predict_proba(X)  # type: ignore[attr-defined]


class FixedModel:
    """Returns the given probabilities of default, whatever the input."""

    def __init__(self, probabilities: list[float]) -> None:
        self.probabilities = np.array(probabilities)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:  # noqa: N803
        return np.column_stack([1 - self.probabilities, self.probabilities])


@pytest.fixture(scope="module")
def tiny_model(feature_frame: pd.DataFrame) -> LoadedModel:
    return LoadedModel("credit-default", "1", "run-1", 0.35, fit_tiny_pipeline(feature_frame))


def test_probabilities_equal_the_pipelines_own(
    feature_frame: pd.DataFrame, tiny_model: LoadedModel
) -> None:
    applications = applications_from_frame(feature_frame, 500, offset=1_000)
    scores = score_applications(applications, tiny_model)
    offline = tiny_model.pipeline.predict_proba(as_model_input(as_frame(applications)))[:, 1]
    assert scores.probabilities.dtype == np.float64
    np.testing.assert_array_equal(scores.probabilities, offline)
    np.testing.assert_array_equal(scores.decisions, offline >= tiny_model.threshold)
    assert 0 < scores.decisions.sum() < len(applications)


def test_the_model_input_is_the_training_input(feature_frame: pd.DataFrame) -> None:
    applications = applications_from_frame(feature_frame, 50)
    expected = as_model_input(feature_frame.iloc[:50]).reset_index(drop=True)
    pd.testing.assert_frame_equal(model_input(applications), expected)
    assert list(model_input(applications).columns) == list(FEATURE_COLUMNS)


def test_the_model_is_called_once_per_batch(
    feature_frame: pd.DataFrame, tiny_model: LoadedModel
) -> None:
    counting = CountingModel(tiny_model.pipeline)
    model = LoadedModel("credit-default", "1", "run-1", 0.35, counting)
    applications = applications_from_frame(feature_frame, 300)
    score_applications(applications, model)
    score_applications(applications[:1], model)
    assert counting.calls == [300, 1]


def test_an_empty_batch_does_not_call_the_model() -> None:
    counting = CountingModel(FixedModel([]))
    scores = score_applications([], LoadedModel("m", "1", None, 0.5, counting))
    assert len(scores) == 0
    assert counting.calls == []


def test_the_threshold_is_inclusive(feature_frame: pd.DataFrame) -> None:
    model = LoadedModel("m", "1", None, 0.5, FixedModel([0.4999, 0.5, 0.9]))
    scores = score_applications(applications_from_frame(feature_frame, 3), model)
    assert scores.decisions.tolist() == [False, True, True]
