"""The seven candidate families: each one sklearn Pipeline (preprocessing inside) plus a grid.

Every pipeline takes the contract's 23 float64 features (``FEATURE_COLUMNS`` order)
and exposes ``predict_proba``. Grids are deliberately small: the full run has to fit
in ten minutes on two cores, the quick run in one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

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

from contracts import FEATURE_COLUMNS
from training.settings import Family

CODED_FEATURES: Final = ("sex", "education", "marriage")
"""Nominal codes: one-hot encoded where a family needs numbers with a meaning."""
AMOUNT_FEATURES: Final = tuple(n for n in FEATURE_COLUMNS if n.startswith(("bill_", "pay_amt")))
"""Heavy-tailed amounts (negative bills included): mapped to normal scores for
distance- and gradient-based families, for which raw amounts span six decades."""
OTHER_FEATURES: Final = tuple(
    n for n in FEATURE_COLUMNS if n not in CODED_FEATURES and n not in AMOUNT_FEATURES
)

_TREE: Final = "sklearn.tree._tree.Tree"

CV_FOLDS: Final = 5
QUICK_CV_FOLDS: Final = 3


@dataclass(frozen=True)
class CandidateSpec:
    """How to build and tune one family."""

    family: Family
    build: Callable[[int], Pipeline]
    grid: dict[str, list[Any]]
    quick_grid: dict[str, list[Any]]
    trusted_types: tuple[str, ...] = ()
    """scikit-learn internals the fitted pipeline holds beyond skops' default allow-list
    (see :func:`training.packaging.log_credit_model`)."""


def make_search(spec: CandidateSpec, *, seed: int, quick: bool, n_jobs: int) -> GridSearchCV:
    """A stratified K-fold grid search over ``spec``'s pipeline, scored by ROC-AUC.

    ``refit=True``: the best pipeline is refitted on the whole training split.
    """
    folds = QUICK_CV_FOLDS if quick else CV_FOLDS
    return GridSearchCV(
        spec.build(seed),
        spec.quick_grid if quick else spec.grid,
        scoring="roc_auc",
        cv=StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed),
        n_jobs=n_jobs,
        refit=True,
        error_score="raise",
    )


def _scaled_inputs() -> ColumnTransformer:
    """One-hot codes, normal-score amounts, standardised limit/age/repayment status."""
    return ColumnTransformer(
        [
            ("codes", OneHotEncoder(handle_unknown="ignore", sparse_output=False), CODED_FEATURES),
            (
                "amounts",
                QuantileTransformer(n_quantiles=200, output_distribution="normal"),
                AMOUNT_FEATURES,
            ),
            ("other", StandardScaler(), OTHER_FEATURES),
        ],
        verbose_feature_names_out=False,
    )


def _pipeline(model: BaseEstimator, *, scaled: bool) -> Pipeline:
    steps: list[tuple[str, Any]] = [("preprocess", _scaled_inputs())] if scaled else []
    return Pipeline([*steps, ("model", model)])


def _logistic_regression(seed: int) -> Pipeline:
    return _pipeline(LogisticRegression(max_iter=2000, random_state=seed), scaled=True)


def _knn(seed: int) -> Pipeline:
    return _pipeline(KNeighborsClassifier(), scaled=True)


def _svm(seed: int) -> Pipeline:
    # An exact RBF SVC with probability=True is quadratic in rows (minutes on 21k):
    # a Nyström approximation of the RBF kernel feeds a linear SVM, and sigmoid
    # calibration turns its margins into probabilities.
    return Pipeline(
        [
            ("preprocess", _scaled_inputs()),
            ("kernel", Nystroem(kernel="rbf", n_components=300, random_state=seed)),
            (
                "model",
                CalibratedClassifierCV(LinearSVC(C=1.0, random_state=seed), method="sigmoid", cv=3),
            ),
        ]
    )


def _decision_tree(seed: int) -> Pipeline:
    # Trees split on thresholds: codes and raw amounts need no preprocessing.
    return _pipeline(DecisionTreeClassifier(random_state=seed), scaled=False)


def _random_forest(seed: int) -> Pipeline:
    return _pipeline(
        RandomForestClassifier(n_estimators=200, n_jobs=1, random_state=seed), scaled=False
    )


def _mlp(seed: int) -> Pipeline:
    return _pipeline(
        MLPClassifier(early_stopping=True, max_iter=200, random_state=seed), scaled=True
    )


def _hist_gradient_boosting(seed: int) -> Pipeline:
    # Native categorical splits for the codes (unknown codes are treated as missing).
    return _pipeline(
        HistGradientBoostingClassifier(
            categorical_features=list(CODED_FEATURES),
            max_iter=500,
            early_stopping=True,
            random_state=seed,
        ),
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
            trusted_types=(
                "sklearn.calibration._CalibratedClassifier",
                "sklearn.calibration._SigmoidCalibration",
            ),
        ),
        CandidateSpec(
            Family.DECISION_TREE,
            _decision_tree,
            grid={"model__max_depth": [4, 6, 8], "model__min_samples_leaf": [20, 100]},
            quick_grid={"model__max_depth": [4, 6]},
            trusted_types=(_TREE,),
        ),
        CandidateSpec(
            Family.RANDOM_FOREST,
            _random_forest,
            grid={"model__max_depth": [8, 12], "model__min_samples_leaf": [5, 20]},
            quick_grid={"model__max_depth": [8], "model__n_estimators": [50]},
            trusted_types=(_TREE,),
        ),
        CandidateSpec(
            Family.MLP,
            _mlp,
            grid={"model__hidden_layer_sizes": [(32,), (64, 32)], "model__alpha": [1e-4, 1e-2]},
            quick_grid={"model__hidden_layer_sizes": [(32,)]},
            trusted_types=("sklearn.neural_network._stochastic_optimizers.AdamOptimizer",),
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
            # The fitted model keeps a functools.partial of check_array for its inputs.
            trusted_types=(
                "functools.partial",
                "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
                "sklearn.utils.validation.check_array",
            ),
        ),
    )
}
