"""Contributions and reason codes, proved against brute force on hand-built models.

The brute force is the definition: exact Shapley values of the log-odds (or of a
forest's probability) with the reference row as baseline (every coalition of features
enumerated), and the leave-one-in-reference loop for the substitution method, one
applicant and one feature at a time.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from interpret.glassbox import ExplainableBoostingClassifier
from scipy.special import logit
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.kernel_approximation import Nystroem
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, QuantileTransformer, StandardScaler
from sklearn.tree import DecisionTreeClassifier

from consumer.explaining import (
    ADDITIVE,
    LINEAR,
    SUBSTITUTION,
    TREE,
    ExplanationError,
    build_explainer,
    top_reasons,
)
from contracts.reasons import REASONS

FEATURES = ["limit_bal", "education", "pay_0", "bill_amt1", "pay_amt1"]


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(7)
    n = 600
    frame = pd.DataFrame(
        {
            "limit_bal": rng.choice([20_000, 50_000, 200_000], n).astype(float),
            "education": rng.choice([1, 2, 3, 4], n).astype(float),
            "pay_0": rng.integers(-2, 4, n).astype(float),
            "bill_amt1": rng.lognormal(9, 1.5, n),
            "pay_amt1": rng.lognormal(7, 1.5, n),
        }
    )
    risk = 0.8 * frame["pay_0"] - frame["limit_bal"] / 100_000 + (frame["education"] == 3)
    y = (risk + rng.normal(size=n) > 0.5).astype(int).to_numpy()
    return frame, y


def _reference(frame: pd.DataFrame) -> dict[str, float]:
    return {name: float(v) for name, v in frame.median().round().items()}


def _log_odds(model: object, rows: pd.DataFrame) -> np.ndarray:
    proba = model.predict_proba(rows)[:, 1]  # type: ignore[attr-defined]
    return np.asarray(logit(np.clip(proba, 1e-12, 1 - 1e-12)))


def _probability(model: object, rows: pd.DataFrame) -> np.ndarray:
    return np.asarray(model.predict_proba(rows)[:, 1])  # type: ignore[attr-defined]


def brute_force_shapley(
    model: object,
    row: pd.Series,
    reference: dict[str, float],
    output: Callable[..., np.ndarray] = _log_odds,
) -> np.ndarray:
    """Exact Shapley values of one row's ``output`` (log-odds), baseline = reference, by
    enumeration."""
    k = len(FEATURES)
    coalitions = list(itertools.product([False, True], repeat=k))
    rows = pd.DataFrame(
        [[row[f] if keep else reference[f] for f, keep in zip(FEATURES, mask, strict=True)]
         for mask in coalitions],
        columns=FEATURES,
    )  # fmt: skip
    value = dict(zip(coalitions, output(model, rows), strict=True))
    phi = np.zeros(k)
    for mask in coalitions:
        for i in range(k):
            if mask[i]:
                continue
            size = sum(mask)
            weight = math.factorial(size) * math.factorial(k - size - 1) / math.factorial(k)
            with_i = tuple(True if j == i else m for j, m in enumerate(mask))
            phi[i] += weight * (value[with_i] - value[mask])
    return phi


def brute_force_substitution(
    model: object, row: pd.Series, reference: dict[str, float]
) -> np.ndarray:
    """The substitution method's definition, one applicant and one feature at a time."""
    full = _log_odds(model, row.to_frame().T)[0]
    out = []
    for feature in FEATURES:
        changed = row.copy()
        changed[feature] = reference[feature]
        out.append(full - _log_odds(model, changed.to_frame().T)[0])
    return np.array(out)


def _scorecard(frame: pd.DataFrame, y: np.ndarray) -> Pipeline:
    """A logistic regression behind the same kinds of preprocessing the candidates use."""
    pre = ColumnTransformer(
        [
            ("codes", OneHotEncoder(handle_unknown="ignore", sparse_output=False), ["education"]),
            ("amounts", QuantileTransformer(n_quantiles=50), ["bill_amt1", "pay_amt1"]),
            ("other", StandardScaler(), ["limit_bal", "pay_0"]),
        ]
    )
    return make_pipeline(pre, LogisticRegression(max_iter=2000)).fit(frame, y)


def _explain(model: object, method: str, frame: pd.DataFrame, rows: pd.DataFrame) -> np.ndarray:
    explainer = build_explainer(model, method, _reference(frame), FEATURES, check_on=frame)
    return explainer.contributions(rows, model.predict_proba(rows)[:, 1])  # type: ignore[attr-defined]


def test_linear_contributions_are_the_exact_shapley_values(data) -> None:  # type: ignore[no-untyped-def]
    frame, y = data
    model = _scorecard(frame, y)
    sample = frame.iloc[:8]
    got = _explain(model, LINEAR, frame, sample)
    expected = np.array(
        [brute_force_shapley(model, r, _reference(frame)) for _, r in sample.iterrows()]
    )
    np.testing.assert_allclose(got, expected, atol=1e-9)
    assert np.abs(got).max() > 0.1  # the sample is not all at the reference


@pytest.fixture(scope="module")
def glass_box(data) -> ExplainableBoostingClassifier:  # type: ignore[no-untyped-def]
    frame, y = data
    model = ExplainableBoostingClassifier(interactions=0, outer_bags=2, n_jobs=1, random_state=0)
    return model.fit(frame, y)


@pytest.mark.parametrize("method", [ADDITIVE, SUBSTITUTION])
def test_an_additive_glass_box_is_explained_by_its_exact_shapley_values(  # type: ignore[no-untyped-def]
    data, glass_box, method
) -> None:
    frame, _ = data
    sample = frame.iloc[:6]
    got = _explain(glass_box, method, frame, sample)
    expected = np.array(
        [brute_force_shapley(glass_box, r, _reference(frame)) for _, r in sample.iterrows()]
    )
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert np.abs(got).max() > 0.1


def test_a_glass_box_pair_term_is_split_equally_between_its_features(data) -> None:  # type: ignore[no-untyped-def]
    frame, y = data
    model = ExplainableBoostingClassifier(
        interactions=[(0, 2)], outer_bags=2, n_jobs=1, random_state=0
    ).fit(frame, y)
    sample, reference = frame.iloc[:6], _reference(frame)
    got = _explain(model, ADDITIVE, frame, sample)
    base = pd.DataFrame([reference])[FEATURES]
    for i, (_, row) in enumerate(sample.iterrows()):
        # Term by term: each term's change from the reference, shared among its features.
        change = model.eval_terms(row.to_frame().T)[0] - model.eval_terms(base)[0]
        expected = np.zeros(len(FEATURES))
        for term, features in enumerate(model.term_features_):
            for feature in features:
                expected[feature] += change[term] / len(features)
        np.testing.assert_allclose(got[i], expected, atol=1e-9)
        gap = _log_odds(model, row.to_frame().T)[0] - _log_odds(model, base)[0]
        assert got[i].sum() == pytest.approx(gap, abs=1e-9)
    assert (0, 2) in [tuple(t) for t in model.term_features_]


def test_boosted_trees_are_explained_by_their_exact_shapley_values(data) -> None:  # type: ignore[no-untyped-def]
    frame, y = data
    # Native categorical splits on the codes, as the candidate family has them.
    model = HistGradientBoostingClassifier(
        categorical_features=["education"], max_iter=30, max_leaf_nodes=15, random_state=0
    ).fit(frame, y)
    sample = frame.iloc[:8]
    got = _explain(model, TREE, frame, sample)
    expected = np.array(
        [brute_force_shapley(model, r, _reference(frame)) for _, r in sample.iterrows()]
    )
    np.testing.assert_allclose(got, expected, atol=1e-9)
    assert np.abs(got[:, FEATURES.index("education")]).max() > 0.01  # categorical splits used


@pytest.mark.parametrize(
    "model",
    [
        DecisionTreeClassifier(max_depth=5, min_samples_leaf=10, random_state=0),
        RandomForestClassifier(n_estimators=8, max_depth=5, random_state=0),
    ],
    ids=["tree", "forest"],
)
def test_forests_get_probability_shapley_values_scaled_to_the_log_odds_gap(  # type: ignore[no-untyped-def]
    data, model
) -> None:
    frame, y = data
    model.fit(frame, y)
    sample, reference = frame.iloc[:8], _reference(frame)
    got = _explain(model, TREE, frame, sample)
    base = _log_odds(model, pd.DataFrame([reference])[FEATURES])[0]
    for i, (_, row) in enumerate(sample.iterrows()):
        shares = brute_force_shapley(model, row, reference, output=_probability)
        gap = _log_odds(model, row.to_frame().T)[0] - base
        if abs(shares.sum()) > 1e-9:
            scale = gap / shares.sum()
        else:  # the reference's probability: any positive factor keeps the order
            scale = got[i] @ shares / max(shares @ shares, 1e-300)
            assert scale > 0 or not shares.any()
        np.testing.assert_allclose(got[i], shares * scale, atol=1e-9)
        assert got[i].sum() == pytest.approx(gap, abs=1e-6)
    assert np.abs(got).max() > 0.1


def test_substitution_on_a_tree_matches_its_definition(data) -> None:  # type: ignore[no-untyped-def]
    frame, y = data
    model = DecisionTreeClassifier(max_depth=4, min_samples_leaf=20, random_state=0).fit(frame, y)
    sample = frame.iloc[:10]
    got = _explain(model, SUBSTITUTION, frame, sample)
    expected = np.array(
        [brute_force_substitution(model, r, _reference(frame)) for _, r in sample.iterrows()]
    )
    np.testing.assert_allclose(got, expected, atol=1e-9)


def test_linear_is_refused_for_models_it_cannot_split(data) -> None:  # type: ignore[no-untyped-def]
    frame, y = data
    tree = make_pipeline(StandardScaler(), DecisionTreeClassifier(max_depth=3)).fit(frame, y)
    with pytest.raises(ExplanationError, match="binary linear model"):
        build_explainer(tree, LINEAR, _reference(frame), FEATURES)
    kernel = make_pipeline(StandardScaler(), Nystroem(n_components=20), LogisticRegression())
    kernel.fit(frame, y)
    with pytest.raises(ExplanationError, match="interact"):
        build_explainer(kernel, LINEAR, _reference(frame), FEATURES)


def test_exact_methods_are_refused_for_models_they_do_not_fit(data) -> None:  # type: ignore[no-untyped-def]
    frame, y = data
    reference, scorecard = _reference(frame), _scorecard(frame, y)
    with pytest.raises(ExplanationError, match="tree needs the model alone"):
        build_explainer(scorecard, TREE, reference, FEATURES)
    with pytest.raises(ExplanationError, match="tree needs a binary decision tree"):
        build_explainer(LogisticRegression().fit(frame, y), TREE, reference, FEATURES)
    with pytest.raises(ExplanationError, match="additive needs an explainable boosting"):
        build_explainer(DecisionTreeClassifier().fit(frame, y), ADDITIVE, reference, FEATURES)


def test_an_unknown_method_or_incomplete_reference_is_refused(data) -> None:  # type: ignore[no-untyped-def]
    frame, y = data
    model = _scorecard(frame, y)
    with pytest.raises(ExplanationError, match="unknown explanation method 'magic'"):
        build_explainer(model, "magic", _reference(frame), FEATURES)
    reference = _reference(frame)
    del reference["pay_0"]
    with pytest.raises(ExplanationError, match="lacks"):
        build_explainer(model, LINEAR, reference, FEATURES)


def test_top_reasons_are_the_largest_positive_contributions_in_table_words(data) -> None:  # type: ignore[no-untyped-def]
    frame, y = data
    model = _scorecard(frame, y)
    explainer = build_explainer(model, LINEAR, _reference(frame), FEATURES)
    rows = frame.iloc[:50]
    proba = model.predict_proba(rows)[:, 1]
    values = explainer.contributions(rows, proba)
    batch = top_reasons(explainer, rows, proba, count=3)
    assert batch.unavailable == 0
    for i, reasons in enumerate(batch.reasons):
        assert reasons is not None
        expected = sorted((v for v in values[i] if v > 0), reverse=True)[:3]
        assert [r["contribution"] for r in reasons] == pytest.approx(expected, abs=1e-6)
        for reason in reasons:
            entry = REASONS[reason["feature"]]
            assert reason["feature"] in FEATURES
            assert reason["code"] == entry.code
            assert reason["value"] == rows.iloc[i][reason["feature"]]
            assert reason["text"] == entry.describe(reason["value"])
    late = frame.index[frame["pay_0"] == 3][0]
    one = top_reasons(explainer, frame.loc[[late]], model.predict_proba(frame.loc[[late]])[:, 1], 4)
    assert "Payment 3 months late in the most recent month" in [
        r["text"] for r in one.reasons[0] or []
    ]


def test_rows_with_non_finite_contributions_are_marked_unavailable(data) -> None:  # type: ignore[no-untyped-def]
    frame, y = data
    model = _scorecard(frame, y)
    explainer = build_explainer(model, SUBSTITUTION, _reference(frame), FEATURES)
    rows = frame.iloc[:3]
    proba = model.predict_proba(rows)[:, 1].copy()
    proba[1] = np.nan
    batch = top_reasons(explainer, rows, proba, count=4)
    assert batch.reasons[1] is None
    assert batch.reasons[0] is not None
    assert batch.reasons[2] is not None
    assert batch.unavailable == 1
