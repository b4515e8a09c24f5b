"""Scoring a fitted candidate on the validation split: threshold, metrics, latency."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)
from sklearn.pipeline import Pipeline

from consumer.explaining import Explainer

_LATENCY_REPEATS: Final = 5
LATENCY_BATCH_ROWS: Final = 5000
"""Smallest batch timed: smaller validation splits (quick mode, samples) are repeated up
to it, so a pipeline's fixed per-call overhead does not dominate the per-row figure."""

TIMING_METRICS: Final = frozenset({"fit_seconds", "inference_us_per_row", "explanation_us_per_row"})
"""Metrics that measure the machine, not the model: excluded from reproducibility checks."""


@dataclass(frozen=True)
class CostMatrix:
    """Cost of each error, per application; correct decisions cost nothing."""

    false_negative: float
    false_positive: float


@dataclass(frozen=True)
class ThresholdChoice:
    """The cheapest threshold (predict default when probability >= threshold) and its cost."""

    threshold: float
    expected_cost: float


def choose_threshold(y_true: np.ndarray, proba: np.ndarray, costs: CostMatrix) -> ThresholdChoice:
    """The threshold minimising the mean cost per application on ``(y_true, proba)``.

    Candidates are the observed probabilities (each one flags every application
    scoring at least that much) plus "flag nobody" (a threshold just above the top
    score, available only while that stays a probability, i.e. below 1). Ties go to
    the highest threshold, which flags the fewest good clients.
    """
    order = np.argsort(-proba, kind="stable")
    scores, labels = proba[order], y_true[order]
    # Flagging the k top-scoring applications: k = 0 .. n, cut only between distinct scores.
    positives_flagged = np.concatenate([[0], np.cumsum(labels)])
    negatives_flagged = np.concatenate([[0], np.cumsum(1 - labels)])
    cut = np.concatenate([[True], np.append(scores[1:] < scores[:-1], True)])
    false_negatives = positives_flagged[-1] - positives_flagged
    cost = costs.false_negative * false_negatives + costs.false_positive * negatives_flagged
    cut[0] = scores[0] < 1.0
    cost = np.where(cut, cost, np.inf)
    best = int(np.argmin(cost))
    threshold = float(scores[best - 1]) if best > 0 else float(np.nextafter(scores[0], 2.0))
    return ThresholdChoice(threshold=threshold, expected_cost=float(cost[best]) / len(y_true))


def expected_cost(y_true: np.ndarray, flagged: np.ndarray, costs: CostMatrix) -> float:
    """Mean cost per application of the decisions ``flagged`` (boolean) against ``y_true``."""
    false_negatives = np.sum((y_true == 1) & ~flagged)
    false_positives = np.sum((y_true == 0) & flagged)
    total = costs.false_negative * false_negatives + costs.false_positive * false_positives
    return float(total) / len(y_true)


def validation_metrics(
    y_true: np.ndarray, proba: np.ndarray, threshold: float, costs: CostMatrix
) -> dict[str, float]:
    """Ranking, calibration and decision metrics of one candidate at ``threshold``."""
    flagged = proba >= threshold
    return {
        "roc_auc": float(roc_auc_score(y_true, proba)),
        "pr_auc": float(average_precision_score(y_true, proba)),
        "f1": float(f1_score(y_true, flagged, zero_division=0)),
        "precision": float(precision_score(y_true, flagged, zero_division=0)),
        "recall": float(recall_score(y_true, flagged, zero_division=0)),
        "brier": float(brier_score_loss(y_true, proba)),
        "log_loss": float(log_loss(y_true, proba, labels=[0, 1])),
        "expected_cost": expected_cost(y_true, flagged, costs),
        "threshold": float(threshold),
        "flag_rate": float(np.mean(flagged)),
    }


def inference_us_per_row(pipeline: Pipeline, features: pd.DataFrame) -> float:
    """Batch ``predict_proba`` time per row in microseconds, best of a few repeats.

    ``features`` (the validation split) is timed as one batch, its rows repeated up
    to ``LATENCY_BATCH_ROWS``. The best repeat is the least disturbed by other work
    on a shared machine.
    """
    features = _latency_batch(features)
    return _best_us_per_row(lambda: pipeline.predict_proba(features), len(features))


def explanation_us_per_row(
    explainer: Explainer, pipeline: Pipeline, features: pd.DataFrame
) -> float:
    """Time per row of ``explainer``'s contributions for a scored batch, timed like
    :func:`inference_us_per_row`: what reason codes add to scoring, per row."""
    features = _latency_batch(features)
    proba = pipeline.predict_proba(features)[:, 1]
    return _best_us_per_row(lambda: explainer.contributions(features, proba), len(features))


def _latency_batch(features: pd.DataFrame) -> pd.DataFrame:
    if len(features) < LATENCY_BATCH_ROWS:
        features = features.iloc[np.resize(np.arange(len(features)), LATENCY_BATCH_ROWS)]
    return features


def _best_us_per_row(call: Callable[[], object], rows: int) -> float:
    best = np.inf
    for _ in range(_LATENCY_REPEATS):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return float(best) / rows * 1e6
