"""The training package's pure parts: dataset validation, threshold, selection, fairness."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from contracts import FEATURE_COLUMNS, ID_COLUMN, TARGET_COLUMN
from contracts.reasons import REASONS
from monitor.measures import ShadowComparison
from monitor.performance import LivePerformance
from training import DatasetError, Family, TrainingSettings
from training.candidates import CANDIDATES, make_search
from training.data import QUICK_ROWS, load_dataset, split_dataset
from training.errors import EvidenceError
from training.evaluation import CostMatrix, choose_threshold, expected_cost
from training.fairness import MIN_GROUP_SIZE, disparities, group_table
from training.packaging import as_model_input, typical_applicant
from training.policies import ALL_FEATURES, FAIR_LENDING, POLICIES
from training.results import CandidateResult
from training.selection import select_champion
from training.shadow import ShadowVerdict, judge, read_evidence

COSTS = CostMatrix(false_negative=5.0, false_positive=1.0)


@pytest.fixture
def small_frame(credit_frame: pd.DataFrame) -> pd.DataFrame:
    return credit_frame.head(200).copy()


def _write(frame: pd.DataFrame, tmp_path: Path) -> Path:
    path = tmp_path / "data.csv"
    frame.to_csv(path, index=False)
    return path


# --- dataset --------------------------------------------------------------------------


def test_dataset_features_are_the_contract_features_as_float64(sample_csv: Path) -> None:
    dataset = load_dataset(sample_csv)
    assert list(dataset.features.columns) == list(FEATURE_COLUMNS)
    assert ID_COLUMN.lower() not in dataset.features.columns  # the ID is never a feature
    assert (dataset.features.dtypes == np.float64).all()
    assert set(dataset.target.unique()) == {0, 1}
    assert len(dataset.features) == len(dataset.target) == 3000


def test_missing_file_is_a_dataset_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="dataset not found"):
        load_dataset(tmp_path / "absent.csv")


def test_missing_column_is_named(small_frame: pd.DataFrame, tmp_path: Path) -> None:
    path = _write(small_frame.drop(columns=["PAY_AMT3", TARGET_COLUMN]), tmp_path)
    with pytest.raises(DatasetError, match=rf"missing column\(s\) PAY_AMT3, {TARGET_COLUMN}"):
        load_dataset(path)


def test_non_numeric_value_names_column_and_row(small_frame: pd.DataFrame, tmp_path: Path) -> None:
    small_frame["LIMIT_BAL"] = small_frame["LIMIT_BAL"].astype(object)
    small_frame.loc[small_frame.index[41], "LIMIT_BAL"] = "twenty thousand"
    path = _write(small_frame, tmp_path)
    with pytest.raises(DatasetError) as caught:
        load_dataset(path)
    message = str(caught.value)
    assert "column LIMIT_BAL, data row 42" in message
    assert "non-numeric value 'twenty thousand'" in message


def test_empty_cell_is_reported_as_missing(small_frame: pd.DataFrame, tmp_path: Path) -> None:
    small_frame.loc[small_frame.index[3], "AGE"] = np.nan
    with pytest.raises(DatasetError, match=r"column AGE, data row 4 .*missing value"):
        load_dataset(_write(small_frame, tmp_path))


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        ("AGE", 150, "150 is not a integer in [18, 120]"),
        ("SEX", 3, "3 is not a integer in [1, 2]"),
        ("PAY_0", -3, "-3 is not a integer in [-2, 9]"),
        ("EDUCATION", 2.5, "2.5 is not a integer in [0, 6]"),
        ("LIMIT_BAL", 0, "0 is not a number in (0, 1e+08]"),
        ("PAY_AMT1", -1, "-1 is not a number in [0, 1e+08]"),
        (TARGET_COLUMN, 2, "2 is not 0 or 1"),
    ],
)
def test_values_outside_the_contract_domain_are_named(
    small_frame: pd.DataFrame, tmp_path: Path, column: str, value: float, expected: str
) -> None:
    small_frame[column] = small_frame[column].astype(float)
    small_frame.loc[small_frame.index[9], column] = value
    with pytest.raises(DatasetError) as caught:
        load_dataset(_write(small_frame, tmp_path))
    row_id = small_frame[ID_COLUMN].iloc[9]
    assert f"column {column}, data row 10 ({ID_COLUMN} {row_id}): {expected}" in str(caught.value)


def test_the_quirky_codes_of_the_real_data_are_accepted(
    small_frame: pd.DataFrame, tmp_path: Path
) -> None:
    quirky = {"EDUCATION": 0, "MARRIAGE": 0, "PAY_0": -2, "BILL_AMT1": -165580}
    for column, value in quirky.items():
        small_frame.loc[small_frame.index[0], column] = value
    assert len(load_dataset(_write(small_frame, tmp_path)).features) == 200


def test_binary_garbage_is_a_dataset_error(tmp_path: Path) -> None:
    path = tmp_path / "garbage.csv"
    path.write_bytes(b"\xff\xfe\x00\x81" * 100)
    with pytest.raises(DatasetError):
        load_dataset(path)


def test_split_is_stratified_and_reproducible(sample_csv: Path) -> None:
    dataset = load_dataset(sample_csv)
    first = split_dataset(dataset, seed=3, quick=False)
    again = split_dataset(dataset, seed=3, quick=False)
    other = split_dataset(dataset, seed=4, quick=False)
    assert len(first.validation_features) == 600
    assert first.validation_features.index.equals(again.validation_features.index)
    assert not first.validation_features.index.equals(other.validation_features.index)
    rates = [first.train_target.mean(), first.validation_target.mean()]
    assert rates == pytest.approx([dataset.target.mean()] * 2, abs=0.005)
    assert set(first.train_features.index).isdisjoint(first.validation_features.index)


def test_quick_mode_subsamples_large_datasets(credit_csv: Path) -> None:
    split = split_dataset(load_dataset(credit_csv), seed=0, quick=True)
    assert len(split.train_features) + len(split.validation_features) == QUICK_ROWS


def test_a_class_too_small_to_stratify_is_a_dataset_error(
    small_frame: pd.DataFrame, tmp_path: Path
) -> None:
    small_frame[TARGET_COLUMN] = 0
    small_frame.loc[small_frame.index[:5], TARGET_COLUMN] = 1
    dataset = load_dataset(_write(small_frame, tmp_path))
    with pytest.raises(DatasetError, match="at least 20 rows of each class"):
        split_dataset(dataset, seed=0, quick=False)


# --- settings -------------------------------------------------------------------------


def test_families_accept_comma_separated_and_repeated_values() -> None:
    settings = TrainingSettings(families=["knn,svm", "mlp", "knn"])
    assert settings.families == (Family.KNN, Family.SVM, Family.MLP)
    assert TrainingSettings(families="decision_tree").families == (Family.DECISION_TREE,)


def test_an_empty_variable_means_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Compose passes ``TRAINING_FAMILIES`` unset in ``.env`` as an empty variable."""
    monkeypatch.setenv("RUMOS_TRAINING_FAMILIES", "")
    assert TrainingSettings().families == tuple(Family)
    monkeypatch.setenv("RUMOS_TRAINING_FAMILIES", "svm")
    assert TrainingSettings().families == (Family.SVM,)


def test_environment_supplies_data_and_tracking_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUMOS_DATA", "/somewhere/data.csv")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    settings = TrainingSettings()
    assert settings.data == Path("/somewhere/data.csv")
    assert settings.tracking_uri == "http://mlflow.example:5000"
    assert TrainingSettings(data=Path("x.csv")).data == Path("x.csv")


# --- candidates -----------------------------------------------------------------------


def test_every_family_is_one_pipeline_with_probabilities(sample_csv: Path) -> None:
    split = split_dataset(load_dataset(sample_csv), seed=0, quick=True)
    features = list(POLICIES[FAIR_LENDING].features)  # 'all' is trained in test_training
    for family in Family:
        search = make_search(CANDIDATES[family], tuple(features), seed=0, quick=True, n_jobs=1)
        search.fit(split.train_features[features], split.train_target)
        proba = search.best_estimator_.predict_proba(split.validation_features[features])
        assert proba.shape == (len(split.validation_features), 2), family
        assert np.allclose(proba.sum(axis=1), 1.0), family


def test_the_reason_table_covers_every_feature_of_every_policy() -> None:
    codes = [REASONS[name].code for name in FEATURE_COLUMNS]
    assert len(set(codes)) == len(codes)  # one stable code per feature
    for policy in POLICIES.values():
        for name in policy.features:
            assert REASONS[name].feature == name
            assert REASONS[name].describe(1.0)
    assert REASONS["pay_0"].describe(2) == "Payment 2 months late in the most recent month"
    assert REASONS["pay_2"].describe(-1) == "Balance paid in full in the month before"


def test_the_default_policy_keeps_protected_fields_out() -> None:
    assert TrainingSettings().feature_policy == FAIR_LENDING
    fair = POLICIES[FAIR_LENDING]
    assert not {"sex", "marriage", "age"} & set(fair.features)
    assert not fair.research_only
    assert POLICIES[ALL_FEATURES].features == FEATURE_COLUMNS
    assert POLICIES[ALL_FEATURES].research_only
    with pytest.raises(ValueError, match="unknown feature policy 'lax'"):
        TrainingSettings(feature_policy="lax")


# --- threshold ------------------------------------------------------------------------


def test_threshold_minimises_expected_cost_over_every_cut() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        size = int(rng.integers(1, 30))
        y_true = rng.integers(0, 2, size)
        proba = np.round(rng.random(size), 1)
        choice = choose_threshold(y_true, proba, COSTS)
        cuts = list(np.unique(proba))
        if proba.max() < 1.0:  # "flag nobody" exists only while it is a probability
            cuts.append(np.nextafter(proba.max(), 2.0))
        brute = min(expected_cost(y_true, proba >= cut, COSTS) for cut in cuts)
        assert choice.expected_cost == pytest.approx(brute)
        assert expected_cost(y_true, proba >= choice.threshold, COSTS) == pytest.approx(brute)
        assert 0.0 <= choice.threshold <= 1.0


def test_threshold_follows_the_cost_matrix() -> None:
    y_true = np.array([0, 0, 0, 1, 0, 1, 1])
    proba = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.9])
    # Missed defaulters expensive: flag from 0.4 up (one good client flagged: cost 1/7).
    choice = choose_threshold(y_true, proba, COSTS)
    assert (choice.threshold, choice.expected_cost) == pytest.approx((0.4, 1 / 7))
    # Flagged good clients expensive: flag only from 0.6 (one defaulter missed: 1/7).
    strict = choose_threshold(y_true, proba, CostMatrix(false_negative=1, false_positive=5))
    assert (strict.threshold, strict.expected_cost) == pytest.approx((0.6, 1 / 7))


def test_flagging_nobody_is_chosen_when_cheapest() -> None:
    choice = choose_threshold(np.array([0, 0]), np.array([0.2, 0.5]), COSTS)
    assert choice.expected_cost == 0.0
    assert 0.5 < choice.threshold <= 1.0
    # A score of exactly 1 cannot be left unflagged by a probability threshold.
    certain = choose_threshold(np.array([0, 1]), np.array([1.0, 0.4]), COSTS)
    assert certain.threshold == pytest.approx(0.4)
    assert certain.expected_cost == pytest.approx(0.5)


# --- selection ------------------------------------------------------------------------


def _candidate(family: Family, cost: float, auc: float, latency: float) -> CandidateResult:
    metrics = {"expected_cost": cost, "roc_auc": auc, "inference_us_per_row": latency}
    return CandidateResult(family, f"run-{family}", "models:/m", str(len(family)), 0.2, metrics, {})


def test_cheapest_candidate_under_the_budget_wins_and_slow_ones_are_named() -> None:
    candidates = [
        _candidate(Family.LOGISTIC_REGRESSION, 0.66, 0.75, 2.0),
        _candidate(Family.SVM, 0.55, 0.79, 85.0),
        _candidate(Family.HIST_GRADIENT_BOOSTING, 0.61, 0.78, 3.0),
        _candidate(Family.KNN, 0.60, 0.77, 21.0),
    ]
    selection = select_champion(candidates, latency_budget_us=20.0)
    assert selection.champion is candidates[2]
    assert "lowest expected cost 0.610" in selection.reason
    assert "among 2 candidate(s) under 20 µs/row" in selection.reason
    assert "rejected svm (85 µs/row), knn (21 µs/row)" in selection.reason
    assert selection.verdicts[Family.SVM].startswith("not promoted: 85.0 µs/row is over")
    assert selection.verdicts[Family.LOGISTIC_REGRESSION].startswith("not promoted: expected")
    assert selection.verdicts[Family.HIST_GRADIENT_BOOSTING].startswith("promoted: ")


def test_the_budget_counts_the_reason_codes_too() -> None:
    cheap = _candidate(Family.RANDOM_FOREST, 0.50, 0.78, 5.0)
    cheap.metrics["explanation_us_per_row"] = 30.0  # fast to score, slow to explain
    glass_box = _candidate(Family.EXPLAINABLE_BOOSTING, 0.55, 0.77, 1.0)
    glass_box.metrics["explanation_us_per_row"] = 2.0
    selection = select_champion([cheap, glass_box], latency_budget_us=20.0)
    assert selection.champion is glass_box
    assert selection.verdicts[Family.RANDOM_FOREST] == (
        "not promoted: 35.0 µs/row is over the 20 µs/row budget"
    )
    assert "(ROC-AUC 0.770, 3.0 µs/row)" in selection.reason


def test_cost_ties_go_to_the_higher_roc_auc() -> None:
    candidates = [
        _candidate(Family.DECISION_TREE, 0.6, 0.70, 1.0),
        _candidate(Family.RANDOM_FOREST, 0.6, 0.78, 1.0),
    ]
    assert select_champion(candidates, 20.0).champion is candidates[1]


def test_the_fairness_gate_refuses_a_deliberately_biased_candidate() -> None:
    # Same applicants, same defaults; the biased model flags women far more often.
    rng = np.random.default_rng(3)
    n = 2000
    features = pd.DataFrame(
        {
            "sex": rng.choice([1.0, 2.0], n),
            "age": rng.integers(25, 55, n).astype(float),
            "marriage": rng.choice([1.0, 2.0], n),
        }
    )
    y_true = rng.binomial(1, 0.22, n)
    honest = np.clip(0.22 + 0.5 * (y_true - 0.22) + rng.normal(0, 0.2, n), 0, 1)
    biased = np.clip(honest + np.where(features["sex"] == 2, 0.3, 0.0), 0, 1)
    candidates = []
    for family, proba, cost in (
        (Family.LOGISTIC_REGRESSION, honest, 0.60),
        (Family.HIST_GRADIENT_BOOSTING, biased, 0.50),  # cheaper, and unfair
    ):
        gaps = disparities(group_table(features, y_true, proba, threshold=0.4))
        metrics = {
            "expected_cost": cost,
            "roc_auc": 0.75,
            "inference_us_per_row": 2.0,
            **{f"{column}_{attribute}": value for attribute, row in gaps.iterrows()
               for column, value in row.items()},
        }  # fmt: skip
        candidates.append(CandidateResult(family, "r", "m", str(cost), 0.4, metrics, {}))

    selection = select_champion(candidates, 20.0, fairness_limit=0.2)

    assert selection.champion is candidates[0]
    verdict = selection.verdicts[Family.HIST_GRADIENT_BOOSTING]
    assert verdict.startswith("not promoted: demographic_parity_difference_sex 0.")
    assert "over the fairness limit 0.2" in verdict
    assert "hist_gradient_boosting (unfair: " in selection.reason
    assert select_champion(candidates, 20.0).champion is candidates[1]  # no gate, no refusal


def test_no_candidate_under_the_budget_means_no_champion() -> None:
    candidates = [_candidate(Family.KNN, 0.5, 0.8, 50.0)]
    selection = select_champion(candidates, latency_budget_us=20.0)
    assert selection.champion is None
    assert selection.reason == "no candidate under 20 µs/row: knn (50 µs/row)"


# --- fairness -------------------------------------------------------------------------


def test_fairness_rates_by_group_and_differences() -> None:
    # 40 men and 40 women, aged 30 (one band), all married: only sex differs.
    features = pd.DataFrame(
        {"sex": [1] * 40 + [2] * 40, "age": [30] * 80, "marriage": [1] * 80}, dtype=float
    )
    y_true = np.array(([1] * 10 + [0] * 30) * 2)
    # Men: 8 of 10 defaulters and 6 of 30 good clients flagged; women: 5/10 and 3/30.
    flags = np.concatenate(
        [[1] * 8 + [0] * 2 + [1] * 6 + [0] * 24, [1] * 5 + [0] * 5 + [1] * 3 + [0] * 27]
    )
    proba = np.where(flags == 1, 0.9, 0.1)
    table = group_table(features, y_true, proba, threshold=0.5)
    men = table[(table.attribute == "sex") & (table.group == "male")].iloc[0]
    women = table[(table.attribute == "sex") & (table.group == "female")].iloc[0]
    assert (men.n, men.selection_rate, men.tpr, men.fpr) == (40, 14 / 40, 0.8, 0.2)
    assert (women.selection_rate, women.tpr, women.fpr) == (8 / 40, 0.5, 0.1)
    diffs = disparities(table)
    assert diffs.loc["sex", "demographic_parity_difference"] == pytest.approx(6 / 40)
    assert diffs.loc["sex", "equalized_odds_difference"] == pytest.approx(0.3)
    assert diffs.loc["age_band", "demographic_parity_difference"] == 0.0
    assert set(table.attribute) == {"sex", "age_band", "marriage"}


def test_small_groups_are_reported_but_not_in_the_differences() -> None:
    features = pd.DataFrame(
        {"sex": [1.0] * 45, "age": [30.0] * 45, "marriage": [1.0] * 40 + [0.0] * 5}
    )
    y_true = np.array([1, 0] * 20 + [0] * 5)
    proba = np.array([0.9, 0.1] * 20 + [0.9] * 5)  # the 5 undocumented all flagged
    table = group_table(features, y_true, proba, threshold=0.5)
    small = table[table.group == "undocumented"].iloc[0]
    assert small.n == 5 < MIN_GROUP_SIZE
    assert np.isnan(small.tpr)  # no defaulter in the group
    assert disparities(table).loc["marriage", "demographic_parity_difference"] == 0.0


def test_input_example_is_a_synthetic_typical_applicant(sample_csv: Path) -> None:
    features = as_model_input(load_dataset(sample_csv).features)
    example = typical_applicant(features)
    assert example.shape == (1, len(FEATURE_COLUMNS))
    assert list(example.columns) == list(FEATURE_COLUMNS)
    assert example.iloc[0]["limit_bal"] == features["limit_bal"].median()
    # No real client's row is shipped with the model.
    assert not (features == example.iloc[0]).all(axis=1).any()


def _compared(champion_cost: float, challenger_cost: float, rows: int) -> ShadowComparison:
    def measured(cost: float) -> LivePerformance:
        return LivePerformance(rows, rows // 4, 0.7, 0.2, cost, ())

    return ShadowComparison("1", "2", measured(champion_cost), measured(challenger_cost))


def test_the_shadow_verdict_needs_enough_rows_and_a_strictly_lower_cost(tmp_path: Path) -> None:
    assert judge(_compared(0.5, 0.4, 1_000), 1_000) == ShadowVerdict(
        True,
        "challenger v2 vs champion v1: expected cost 0.4000 vs 0.5000 per application on "
        "1,000 labelled applications scored by both",
    )
    too_few = judge(_compared(0.5, 0.1, 999), 1_000)
    assert not too_few.promote
    assert "only 999 labelled applications scored by both, 1,000 needed" in too_few.reason
    tie = judge(_compared(0.5, 0.5, 2_000), 1_000)
    assert not tie.promote
    assert "not cheaper" in tie.reason
    with pytest.raises(EvidenceError, match="no monitor database at"):
        read_evidence(f"sqlite:///{tmp_path / 'absent.db'}", CostMatrix(5, 1), "1", "2")
    assert not (tmp_path / "absent.db").exists()  # not created empty by asking
