"""Validated applications + a loaded model → probabilities and decisions. Pure.

The shadow challenger is scored by ``score_challenger``: the same call on the same
applications, reusing the champion's frame when both models take the same columns, with
any failure returned as a value so it can never cost the champion's scores.

The model is called once per batch, on one float64 frame of the contract features it
takes (its signature's columns, ``LoadedModel.features``): exactly the input
``training.packaging.as_model_input`` builds offline, so a probability here equals
the registered model's own. Fields the model does not use never reach it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from operator import attrgetter
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from contracts import FEATURE_COLUMNS, LoanApplication

if TYPE_CHECKING:
    from consumer.model import LoadedModel


@cache
def _getter(columns: tuple[str, ...]) -> Any:
    return attrgetter(*columns)  # one C call per application


@dataclass(frozen=True, slots=True)
class Scores:
    """One probability of default and one decision per application, in input order."""

    probabilities: np.ndarray
    decisions: np.ndarray
    frame: pd.DataFrame | None = None
    """The model's input for the batch (None for an empty one): what reasons explain."""

    def __len__(self) -> int:
        return len(self.probabilities)


def feature_frame(
    applications: Sequence[LoanApplication], columns: Sequence[str] = FEATURE_COLUMNS
) -> pd.DataFrame:
    """The model input for ``applications``: one float64 row each, of ``columns`` in order."""
    features = _getter(tuple(columns))
    matrix = np.array([features(app) for app in applications], dtype=np.float64)
    # Column-major, like the frame ``as_model_input`` builds: the same memory layout
    # makes the BLAS products, and so the probabilities, bit-identical to offline ones.
    matrix = np.asfortranarray(matrix.reshape(len(applications), len(columns)))
    return pd.DataFrame(matrix, columns=list(columns), copy=False)


def score_applications(applications: Sequence[LoanApplication], model: LoadedModel) -> Scores:
    """Score ``applications`` with one ``predict_proba`` call (none for an empty batch).

    ``decisions[i]`` is ``probabilities[i] >= model.threshold``.
    """
    if not applications:
        empty = np.empty(0, dtype=np.float64)
        return Scores(empty, empty.astype(bool))
    frame = feature_frame(applications, model.features)
    probabilities = np.asarray(model.pipeline.predict_proba(frame)[:, 1], dtype=np.float64)
    return Scores(probabilities, probabilities >= model.threshold, frame)


@dataclass(frozen=True, slots=True)
class ScoringFailure:
    """Why the challenger produced no scores for a batch (exception type and first line)."""

    reason: str


def score_challenger(
    applications: Sequence[LoanApplication], model: LoadedModel, champion: Scores
) -> Scores | ScoringFailure:
    """The challenger's ``Scores`` for the applications the champion just scored, or why not.

    Whatever the challenger's library raises, and probabilities that are not one finite
    value in [0, 1] per application, become a ``ScoringFailure``: the champion's batch
    goes on without shadow scores.
    """
    if not applications:
        return score_applications(applications, model)
    frame = champion.frame
    try:
        if frame is None or tuple(frame.columns) != model.features:
            frame = feature_frame(applications, model.features)
        probabilities = np.asarray(model.pipeline.predict_proba(frame)[:, 1], dtype=np.float64)
    except Exception as exc:  # the challenger may come from any library; it must not stop us
        text = str(exc).strip().splitlines()
        return ScoringFailure(f"{type(exc).__name__}: {text[0][:300] if text else ''}")
    in_range = (probabilities >= 0) & (probabilities <= 1)  # False for NaN too
    if probabilities.shape != (len(applications),) or not in_range.all():
        return ScoringFailure("probabilities are not one finite value in [0, 1] per application")
    return Scores(probabilities, probabilities >= model.threshold, frame)
