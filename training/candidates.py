"""The candidate families: each one sklearn Pipeline (preprocessing inside) plus a grid.

Every pipeline takes the float64 features its feature policy allows (contract order;
see :mod:`training.policies`) and exposes ``predict_proba``. Grids are deliberately
small: the full run has to fit in ten minutes on two cores, the quick run in one.
Each family names how its scores are explained (:mod:`consumer.explaining`):
``linear`` for the logistic regression and ``additive`` for the explainable boosting
machine (their own exact terms), ``tree`` for the tree families (exact TreeSHAP against
the reference), ``substitution`` for the rest (an attribution, k model calls' worth of
rows per batch).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from interpret.glassbox import ExplainableBoostingClassifier
from sklearn.base import BaseEstimator
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.kernel_approximation import Nystroem
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, QuantileTransformer, StandardScaler
from sklearn.svm import LinearSVC
from sklearn.tree import DecisionTreeClassifier

from consumer.explaining import ADDITIVE, LINEAR, SUBSTITUTION, TREE
from training.settings import Family

CODED_FEATURES: Final = ("sex", "education", "marriage")
"""Nominal codes: one-hot encoded where a family needs numbers with a meaning."""
AMOUNT_PREFIXES: Final = ("bill_", "pay_amt")
"""Heavy-tailed amounts (negative bills included): mapped to normal scores for
distance- and gradient-based families, for which raw amounts span six decades."""


CV_FOLDS: Final = 5
QUICK_CV_FOLDS: Final = 3


@dataclass(frozen=True)
class CandidateSpec:
    """How to build and tune one family."""

    family: Family
    build: Callable[[int, tuple[str, ...]], Pipeline]
    """``build(seed, features)``: the untrained pipeline for those input columns."""
    grid: dict[str, list[Any]]
    quick_grid: dict[str, list[Any]]
    explanation: str = SUBSTITUTION
    """How its scores are explained: a method of :mod:`consumer.explaining`."""


def make_search(
    spec: CandidateSpec, features: tuple[str, ...], *, seed: int, quick: bool, n_jobs: int
) -> GridSearchCV:
    """A stratified K-fold grid search over ``spec``'s pipeline, scored by ROC-AUC.

    ``refit=True``: the best pipeline is refitted on the whole training split.
    """
    folds = QUICK_CV_FOLDS if quick else CV_FOLDS
    return GridSearchCV(
        spec.build(seed, features),
        spec.quick_grid if quick else spec.grid,
        scoring="roc_auc",
        cv=StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed),
        n_jobs=n_jobs,
        refit=True,
        error_score="raise",
    )


def _coded(features: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(n for n in features if n in CODED_FEATURES)


def _scaled_inputs(features: tuple[str, ...]) -> ColumnTransformer:
    """One-hot codes, normal-score amounts, standardised limit/age/repayment status."""
    codes = _coded(features)
    amounts = tuple(n for n in features if n.startswith(AMOUNT_PREFIXES))
    other = tuple(n for n in features if n not in codes and n not in amounts)
    return ColumnTransformer(
        [
            ("codes", OneHotEncoder(handle_unknown="ignore", sparse_output=False), codes),
            (
                "amounts",
                QuantileTransformer(n_quantiles=200, output_distribution="normal"),
                amounts,
            ),
            ("other", StandardScaler(), other),
        ],
        verbose_feature_names_out=False,
    )


def _pipeline(model: BaseEstimator, *, scaled: bool, features: tuple[str, ...] = ()) -> Pipeline:
    steps: list[tuple[str, Any]] = [("preprocess", _scaled_inputs(features))] if scaled else []
    return Pipeline([*steps, ("model", model)])


def _logistic_regression(seed: int, features: tuple[str, ...]) -> Pipeline:
    return _pipeline(
        LogisticRegression(max_iter=2000, random_state=seed), scaled=True, features=features
    )


def _knn(seed: int, features: tuple[str, ...]) -> Pipeline:
    return _pipeline(KNeighborsClassifier(), scaled=True, features=features)


def _svm(seed: int, features: tuple[str, ...]) -> Pipeline:
    # An exact RBF SVC with probability=True is quadratic in rows (minutes on 21k):
    # a Nyström approximation of the RBF kernel feeds a linear SVM, and sigmoid
    # calibration turns its margins into probabilities.
    return Pipeline(
        [
            ("preprocess", _scaled_inputs(features)),
            ("kernel", Nystroem(kernel="rbf", n_components=300, random_state=seed)),
            (
                "model",
                CalibratedClassifierCV(LinearSVC(C=1.0, random_state=seed), method="sigmoid", cv=3),
            ),
        ]
    )


def _decision_tree(seed: int, features: tuple[str, ...]) -> Pipeline:
    # Trees split on thresholds: codes and raw amounts need no preprocessing.
    return _pipeline(DecisionTreeClassifier(random_state=seed), scaled=False)


def _random_forest(seed: int, features: tuple[str, ...]) -> Pipeline:
    return _pipeline(
        RandomForestClassifier(n_estimators=200, n_jobs=1, random_state=seed), scaled=False
    )


def _mlp(seed: int, features: tuple[str, ...]) -> Pipeline:
    return _pipeline(
        MLPClassifier(early_stopping=True, max_iter=200, random_state=seed),
        scaled=True,
        features=features,
    )


def _hist_gradient_boosting(seed: int, features: tuple[str, ...]) -> Pipeline:
    # Native categorical splits for the codes (unknown codes are treated as missing).
    return _pipeline(
        HistGradientBoostingClassifier(
            categorical_features=list(_coded(features)) or None,
            max_iter=500,
            early_stopping=True,
            random_state=seed,
        ),
        scaled=False,
    )


def _explainable_boosting(seed: int, features: tuple[str, ...]) -> Pipeline:
    # A glass box: the log-odds are a sum of one learned shape function per feature
    # (interactions=0 keeps it additive, so every score is explained exactly).
    # Raw inputs: it bins them itself. n_jobs=1: the grid search parallelises.
    return _pipeline(
        ExplainableBoostingClassifier(interactions=0, outer_bags=4, n_jobs=1, random_state=seed),
        scaled=False,
    )


CANDIDATES: Final[dict[Family, CandidateSpec]] = {
    spec.family: spec
    for spec in (
        CandidateSpec(
            Family.LOGISTIC_REGRESSION,
            _logistic_regression,
            grid={"model__C": [0.01, 0.1, 1.0]},
            quick_grid={"model__C": [0.1]},
            explanation=LINEAR,
        ),
        CandidateSpec(
            Family.KNN,
            _knn,
            grid={"model__n_neighbors": [50, 150], "model__weights": ["uniform", "distance"]},
            quick_grid={"model__n_neighbors": [50]},
        ),
        CandidateSpec(
            Family.SVM,
            _svm,
            grid={"kernel__gamma": [0.01, 0.03], "model__estimator__C": [0.1, 1.0]},
            quick_grid={"kernel__gamma": [0.01], "model__estimator__C": [0.1]},
        ),
        CandidateSpec(
            Family.DECISION_TREE,
            _decision_tree,
            grid={"model__max_depth": [4, 6, 8], "model__min_samples_leaf": [20, 100]},
            quick_grid={"model__max_depth": [4, 6]},
            explanation=TREE,
        ),
        CandidateSpec(
            Family.RANDOM_FOREST,
            _random_forest,
            grid={"model__max_depth": [8, 12], "model__min_samples_leaf": [5, 20]},
            quick_grid={"model__max_depth": [8], "model__n_estimators": [50]},
            explanation=TREE,
        ),
        CandidateSpec(
            Family.MLP,
            _mlp,
            grid={"model__hidden_layer_sizes": [(32,), (64, 32)], "model__alpha": [1e-4, 1e-2]},
            quick_grid={"model__hidden_layer_sizes": [(32,)]},
        ),
        CandidateSpec(
            Family.HIST_GRADIENT_BOOSTING,
            _hist_gradient_boosting,
            grid={
                "model__learning_rate": [0.05, 0.1],
                "model__max_leaf_nodes": [15, 31],
                "model__l2_regularization": [0.0, 1.0],
            },
            quick_grid={"model__learning_rate": [0.1]},
            explanation=TREE,
        ),
        CandidateSpec(
            Family.EXPLAINABLE_BOOSTING,
            _explainable_boosting,
            grid={"model__max_bins": [64, 256], "model__learning_rate": [0.015, 0.04]},
            quick_grid={"model__max_bins": [64], "model__learning_rate": [0.04]},
            explanation=ADDITIVE,
        ),
    )
}
