"""Feature contributions and reason codes for a batch of scored applications. Pure.

A contribution is how much one feature moves the log-odds of default of this
applicant away from the model's *reference* row (a typical applicant: the median of
each feature, stored with the model). Four methods, chosen per family at training time
and recorded in the model's metadata, each one vectorised call per batch:

``linear``
    A logistic regression behind column-wise preprocessing (scaling, quantile maps,
    one-hot codes): the log-odds are a sum of per-feature terms, so the contribution of
    feature j is exactly ``coef · (t(x) - t(reference))`` over the columns ``t`` derives
    from j. One ``transform`` and one matrix product per batch.
``additive``
    An explainable boosting machine: the log-odds are the intercept plus one learned term
    per feature (and per pair, if it has interactions), which ``eval_terms`` returns for
    a whole batch. Contribution j = j's term at x minus at the reference: the exact
    Shapley value. A pair's term change is split equally between its two features (its
    own Shapley split would need the pair evaluated at mixed points); the contributions
    still add up to the log-odds exactly.
``tree``
    A decision tree, random forest or histogram gradient boosting: exact Shapley values
    against the reference by interventional TreeSHAP (:mod:`consumer.treeshap`). Of the
    log-odds for boosting; for forests, whose output is a probability, of the
    probability, scaled per applicant to its log-odds gap (a positive factor: the order
    and the signs of the reasons are the Shapley values').
``substitution``
    Any model with ``predict_proba``: contribution j = logit p(x) - logit p(x with
    feature j set to its reference value), all ``n x k`` substituted rows scored in one
    call: the leave-one-in-reference attribution, which tells which features pushed this
    applicant's risk up without claiming additivity. It costs k model calls' worth of
    rows per batch: the fallback for families with no exact method (k-NN, SVM, MLP).

Each is proved against a brute-force computation (every coalition enumerated, or the
definition applied one applicant and one feature at a time) in
``tests/unit/test_consumer_explaining.py``. :func:`build_explainer` checks a model on a
sample (additivity for the exact methods, finite values for all): training calls it
before registering a version, so a model that cannot be explained never gets registered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import numpy as np
import pandas as pd
from scipy.special import logit

from consumer import treeshap
from consumer.errors import ScorerError
from consumer.treeshap import TreeEnsemble
from contracts.reasons import REASONS

LINEAR: Final = "linear"
ADDITIVE: Final = "additive"
TREE: Final = "tree"
SUBSTITUTION: Final = "substitution"
METHODS: Final = (LINEAR, ADDITIVE, TREE, SUBSTITUTION)
_EXACT: Final = (LINEAR, ADDITIVE, TREE)
"""Methods whose contributions add up to the log-odds gap to the reference: checked."""

_EPS: Final = 1e-12
_ADDITIVITY_TOLERANCE: Final = 1e-6
_SAME_PROBABILITY: Final = 1e-9
_FLATTEST_SLOPE: Final = 0.01 * 0.99


class ExplanationError(ScorerError):
    """A model's contributions cannot be computed by the method asked for."""


class Explainer(Protocol):
    """Per-feature log-odds contributions of a batch, one row per application."""

    @property
    def method(self) -> str: ...

    @property
    def features(self) -> tuple[str, ...]: ...

    def contributions(self, frame: pd.DataFrame, probabilities: np.ndarray) -> np.ndarray: ...


def build_explainer(
    pipeline: Any,
    method: str,
    reference: Mapping[str, float],
    features: Sequence[str],
    *,
    check_on: pd.DataFrame | None = None,
) -> Explainer:
    """The explainer of ``pipeline`` by ``method`` against ``reference``; checked on ``check_on``.

    Raises :class:`ExplanationError` when the method does not apply to the pipeline (no
    linear model behind column-wise preprocessing, for ``linear``; no explainable boosting
    machine on the raw features, for ``additive``; no binary tree model on the raw
    features, for ``tree``), the reference lacks a feature, or the contributions on
    ``check_on`` are not finite (or, for the exact methods, do not add up to the log-odds).
    """
    missing = [name for name in features if name not in reference]
    if missing:
        raise ExplanationError(f"the reference row lacks {missing}")
    ref = pd.DataFrame([[float(reference[name]) for name in features]], columns=list(features))
    explainer: Explainer
    if method == LINEAR:
        explainer = _LinearExplainer.of(pipeline, ref)
    elif method == ADDITIVE:
        explainer = _AdditiveExplainer.of(pipeline, ref)
    elif method == TREE:
        explainer = _TreeExplainer.of(pipeline, ref)
    elif method == SUBSTITUTION:
        explainer = _SubstitutionExplainer(SUBSTITUTION, tuple(features), pipeline, ref)
    else:
        raise ExplanationError(f"unknown explanation method {method!r} (known: {METHODS})")
    if check_on is not None:
        _check(explainer, pipeline, ref, check_on.loc[:, list(features)])
    return explainer


def _log_odds(probabilities: np.ndarray) -> np.ndarray:
    return np.asarray(logit(np.clip(probabilities, _EPS, 1 - _EPS)), dtype=np.float64)


def _check(explainer: Explainer, pipeline: Any, ref: pd.DataFrame, sample: pd.DataFrame) -> None:
    try:
        proba = np.asarray(pipeline.predict_proba(sample)[:, 1], dtype=np.float64)
        values = explainer.contributions(sample, proba)
    except Exception as exc:  # whichever library the model comes from
        raise ExplanationError(f"{explainer.method}: {type(exc).__name__}: {exc}") from exc
    if values.shape != (len(sample), len(explainer.features)) or not np.isfinite(values).all():
        raise ExplanationError(f"{explainer.method} gives non-finite or misshapen contributions")
    if explainer.method in _EXACT:
        base = _log_odds(pipeline.predict_proba(ref)[:, 1])[0]
        gap = np.abs(values.sum(axis=1) - (_log_odds(proba) - base)).max()
        if gap > _ADDITIVITY_TOLERANCE:
            raise ExplanationError(
                f"{explainer.method} contributions miss the log-odds by {gap:.2g}"
            )


@dataclass(frozen=True)
class _SubstitutionExplainer:
    method: str
    features: tuple[str, ...]
    pipeline: Any
    reference: pd.DataFrame

    def contributions(self, frame: pd.DataFrame, probabilities: np.ndarray) -> np.ndarray:
        n, k = len(frame), len(self.features)
        values = frame.to_numpy(dtype=np.float64)
        # Block j holds every row with feature j replaced by its reference value.
        stacked = np.tile(values, (k, 1))
        stacked[np.arange(k * n), np.repeat(np.arange(k), n)] = np.repeat(
            self.reference.to_numpy()[0], n
        )
        substituted = self.pipeline.predict_proba(
            pd.DataFrame(stacked, columns=list(self.features), copy=False)
        )[:, 1]
        without = _log_odds(np.asarray(substituted)).reshape(k, n).T
        return _log_odds(probabilities)[:, None] - without


@dataclass(frozen=True)
class _LinearExplainer:
    method: str
    features: tuple[str, ...]
    transform: Any
    weights: np.ndarray
    """(transformed columns x features): each column's coefficient, in its feature's column."""
    reference_terms: np.ndarray

    @classmethod
    def of(cls, pipeline: Any, ref: pd.DataFrame) -> _LinearExplainer:
        steps = getattr(pipeline, "steps", None)
        coef = getattr(steps[-1][1], "coef_", None) if steps else None
        if coef is None or np.shape(coef)[0] != 1:
            raise ExplanationError("linear needs a pipeline ending in a binary linear model")
        transform = pipeline[:-1]
        owners = _column_owners(transform, ref)
        weights = np.zeros((len(owners), ref.shape[1]))
        weights[np.arange(len(owners)), owners] = np.asarray(coef)[0]
        terms = np.asarray(transform.transform(ref), dtype=np.float64) @ weights
        return cls(LINEAR, tuple(ref.columns), transform, weights, terms)

    def contributions(self, frame: pd.DataFrame, probabilities: np.ndarray) -> np.ndarray:
        terms = np.asarray(self.transform.transform(frame), dtype=np.float64) @ self.weights
        return terms - self.reference_terms


def _final_model(pipeline: Any, ref: pd.DataFrame, method: str) -> Any:
    """The pipeline's model when it takes the raw features (no step before it), else refused."""
    steps = getattr(pipeline, "steps", None)
    model = steps[-1][1] if steps and len(steps) == 1 else pipeline if not steps else None
    names = list(getattr(model, "feature_names_in_", []))
    if model is None or names != list(ref.columns):
        raise ExplanationError(
            f"{method} needs the model alone on the features {list(ref.columns)}"
        )
    return model


@dataclass(frozen=True)
class _AdditiveExplainer:
    method: str
    features: tuple[str, ...]
    model: Any
    weights: np.ndarray
    """(terms x features): 1 where a main term is its feature's, 1/2 for each of a pair's."""
    reference_terms: np.ndarray

    @classmethod
    def of(cls, pipeline: Any, ref: pd.DataFrame) -> _AdditiveExplainer:
        model = _final_model(pipeline, ref, ADDITIVE)
        terms = getattr(model, "term_features_", None)
        if terms is None or not callable(getattr(model, "eval_terms", None)):
            raise ExplanationError("additive needs an explainable boosting machine")
        if len(getattr(model, "classes_", ())) != 2:
            raise ExplanationError("additive needs a binary classifier")
        weights = np.zeros((len(terms), ref.shape[1]))
        for row, features in enumerate(terms):
            weights[row, list(features)] = 1.0 / len(features)
        reference_terms = np.asarray(model.eval_terms(ref), dtype=np.float64) @ weights
        return cls(ADDITIVE, tuple(ref.columns), model, weights, reference_terms)

    def contributions(self, frame: pd.DataFrame, probabilities: np.ndarray) -> np.ndarray:
        terms = np.asarray(self.model.eval_terms(frame), dtype=np.float64) @ self.weights
        return terms - self.reference_terms


@dataclass(frozen=True)
class _TreeExplainer:
    method: str
    features: tuple[str, ...]
    ensemble: TreeEnsemble
    reference: pd.DataFrame
    reference_probability: float

    @classmethod
    def of(cls, pipeline: Any, ref: pd.DataFrame) -> _TreeExplainer:
        ensemble = treeshap.ensemble_of(_final_model(pipeline, ref, TREE))
        if ensemble is None:
            raise ExplanationError("tree needs a binary decision tree, forest or gradient boosting")
        reference_probability = float(pipeline.predict_proba(ref)[0, 1])
        return cls(TREE, tuple(ref.columns), ensemble, ref, reference_probability)

    def contributions(self, frame: pd.DataFrame, probabilities: np.ndarray) -> np.ndarray:
        values = self.ensemble.shapley_values(frame, self.reference)
        if self.ensemble.log_odds:
            return values
        # Probability shares scaled to the log-odds gap; where there is none (the
        # reference's probability, the shares cancel out), by logit's slope at p, with p
        # kept within [1%, 99%]: at p = 0 the slope is infinite.
        p, p0 = probabilities, self.reference_probability
        gap = p - p0
        close = np.abs(gap) < _SAME_PROBABILITY
        slope = 1.0 / np.maximum(p * (1 - p), _FLATTEST_SLOPE)
        odds_gap = _log_odds(p) - _log_odds(np.array([p0]))[0]
        scale = np.where(close, slope, odds_gap / np.where(close, 1.0, gap))
        return values * scale[:, None]


def _column_owners(transform: Any, ref: pd.DataFrame) -> np.ndarray:
    """For each transformed column, the index of the one input feature it depends on.

    Found by moving each feature of the reference row in turn (to a few values around it)
    and seeing which columns change. A column moved by two features is an interaction the
    linear method cannot split: refused.
    """
    base = np.asarray(transform.transform(ref), dtype=np.float64)[0]
    owner = np.full(base.shape[0], -1)
    value = ref.to_numpy(dtype=np.float64)[0]
    for j in range(ref.shape[1]):
        probes = np.tile(value, (4, 1))
        probes[:, j] = value[j] + np.array([-2.0, -1.0, 1.0, 3.0]) * max(1.0, abs(value[j]))
        moved = np.asarray(transform.transform(pd.DataFrame(probes, columns=ref.columns)))
        changed = np.flatnonzero((np.abs(moved - base) > 0).any(axis=0))
        if (owner[changed] >= 0).any():
            raise ExplanationError("linear needs column-wise preprocessing (features interact)")
        owner[changed] = j
    # A column no probe moved (a one-hot level none of the probes hit) still belongs to
    # one feature: the first one whose encoder produced it. One-hot levels are found by
    # probing each category the encoder knows.
    for column in np.flatnonzero(owner < 0):
        owner[column] = _one_hot_owner(transform, ref, int(column))
    return owner


def _one_hot_owner(transform: Any, ref: pd.DataFrame, column: int) -> int:
    base = ref.to_numpy(dtype=np.float64)[0]
    for j, name in enumerate(ref.columns):
        for candidate in _known_values(transform, name):
            probe = base.copy()
            probe[j] = candidate
            row = np.asarray(transform.transform(pd.DataFrame([probe], columns=ref.columns)))[0]
            if row[column] != np.asarray(transform.transform(ref))[0][column]:
                return j
    raise ExplanationError(f"transformed column {column} depends on no input feature")


def _known_values(transform: Any, name: str) -> list[float]:
    """Categories a one-hot encoder inside ``transform`` knows for input ``name``."""
    found: list[float] = []
    for step in getattr(transform, "steps", [("", transform)]):
        for _, encoder, columns in getattr(step[1], "transformers_", []):
            categories = getattr(encoder, "categories_", None)
            if categories is not None and name in list(columns):
                found.extend(float(v) for v in categories[list(columns).index(name)])
    return found


@dataclass(frozen=True, slots=True)
class BatchReasons:
    """Per application, its reasons as JSON-ready dicts; None where they are unavailable."""

    reasons: list[list[dict[str, Any]] | None]

    @property
    def unavailable(self) -> int:
        return sum(r is None for r in self.reasons)


def top_reasons(
    explainer: Explainer,
    frame: pd.DataFrame,
    probabilities: np.ndarray,
    count: int,
) -> BatchReasons:
    """The ``count`` features that raised each application's log-odds most (positive only).

    One vectorised contribution call for the batch. Rows whose contributions are not
    finite get None (reasons unavailable); the caller decides what a failure of the
    whole call means.
    """
    values = explainer.contributions(frame, probabilities)
    count = min(count, values.shape[1])
    order = np.argsort(-values, axis=1, kind="stable")[:, :count]
    top = np.take_along_axis(values, order, axis=1)
    inputs = frame.to_numpy(dtype=np.float64)
    entries = [REASONS[name] for name in explainer.features]
    finite = np.isfinite(values).all(axis=1).tolist()
    out: list[list[dict[str, Any]] | None] = []
    for row, (columns, contributions, ok) in enumerate(
        zip(order.tolist(), top.tolist(), finite, strict=True)
    ):
        if not ok:
            out.append(None)
            continue
        reasons = []
        for column, contribution in zip(columns, contributions, strict=True):
            if contribution <= 0:
                break
            entry, value = entries[column], float(inputs[row, column])
            reasons.append(
                {
                    "code": entry.code,
                    "feature": entry.feature,
                    "value": value,
                    "text": entry.describe(value),
                    "contribution": round(contribution, 6),
                }
            )
        out.append(reasons)
    return BatchReasons(out)
