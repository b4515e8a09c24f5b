"""Training end to end against a local SQLite MLflow store, on the 3,000-row sample.

One module fixture trains twice with the same seed (quick mode, three families): the
first call's champion must become ``previous``, and the metrics must repeat exactly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient
from rich.console import Console

from contracts import FEATURE_COLUMNS
from contracts.model_names import (
    CANDIDATE_TAG,
    CHAMPION_ALIAS,
    EXPECTED_COST_TAG,
    EXPLANATION_METADATA_KEY,
    FEATURE_POLICY_TAG,
    FEATURES_TAG,
    FORCED_PROMOTION_TAG,
    PREVIOUS_ALIAS,
    SELECTION_REASON_TAG,
    THRESHOLD_METADATA_KEY,
)
from contracts.profile import REFERENCE_PROFILE_ARTIFACT, ReferenceProfile
from devstack import ROOT, unique_name
from training import (
    Family,
    NoPreviousChampionError,
    TrainingReport,
    TrainingSettings,
    UnknownVersionError,
    aliases,
    promote,
    rollback,
    train,
)
from training.candidates import CANDIDATES
from training.data import load_dataset, split_dataset
from training.errors import ExplanationBuildError
from training.evaluation import TIMING_METRICS
from training.policies import ALL_FEATURES, FAIR_LENDING, POLICIES
from training.selection import fairness_problems
from training.tracking import using_tracking_uri

FAMILIES = (Family.LOGISTIC_REGRESSION, Family.DECISION_TREE, Family.HIST_GRADIENT_BOOSTING)
CANDIDATE_METRICS = {
    "roc_auc",
    "pr_auc",
    "f1",
    "precision",
    "recall",
    "brier",
    "log_loss",
    "expected_cost",
    "threshold",
    "fit_seconds",
    "inference_us_per_row",
    "cv_roc_auc",
    "demographic_parity_difference_sex",
    "equalized_odds_difference_sex",
    "demographic_parity_difference_age_band",
    "equalized_odds_difference_marriage",
}
CANDIDATE_ARTIFACTS = {
    "plots/roc_curve.png",
    "plots/pr_curve.png",
    "plots/confusion_matrix.png",
    "plots/calibration_curve.png",
    "fairness/fairness_by_group.csv",
    "fairness/fairness_disparities.csv",
    "fairness/fairness.json",
    "fairness/fairness.html",
    "cv_results.csv",
    "explanations/global_importance.png",
    "explanations/waterfall_typical.png",
    "explanations/waterfall_recently_late.png",
}
PROTECTED = {"sex", "marriage", "age"}


@dataclass(frozen=True)
class Store:
    tracking_uri: str
    artifact_location: str
    client: MlflowClient


@dataclass(frozen=True)
class TwoTrainings:
    settings: TrainingSettings
    first: TrainingReport
    second: TrainingReport


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    root = tmp_path_factory.mktemp("mlflow-sqlite")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    return Store(uri, str(root / "artifacts"), MlflowClient(uri, uri))


@pytest.fixture(scope="module")
def trainings(store: Store, sample_csv: Path) -> TwoTrainings:
    settings = TrainingSettings(
        data=sample_csv,
        tracking_uri=store.tracking_uri,
        artifact_location=store.artifact_location,
        experiment=unique_name("training-test"),
        model_name=unique_name("credit-default"),
        quick=True,
        seed=11,
        families=FAMILIES,
        n_jobs=1,
        # The 3,000-row sample's validation groups have a few dozen rows: their gaps are
        # mostly noise. The gate itself is proved in test_training_components.
        fairness_limit=0.5,
    )
    quiet = Console(quiet=True)
    return TwoTrainings(settings, train(settings, console=quiet), train(settings, console=quiet))


def _child_runs(client: MlflowClient, report: TrainingReport) -> list[mlflow.entities.Run]:
    return client.search_runs(
        [report.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{report.parent_run_id}'",
    )


def _artifact_paths(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    found = set()
    for entry in client.list_artifacts(run_id, path):
        found |= _artifact_paths(client, run_id, entry.path) if entry.is_dir else {entry.path}
    return found


def test_each_candidate_is_a_nested_run_with_metrics_params_and_artifacts(
    trainings: TwoTrainings, store: Store
) -> None:
    report = trainings.second
    children = _child_runs(store.client, report)
    assert sorted(run.data.tags[CANDIDATE_TAG] for run in children) == sorted(FAMILIES)
    for run in children:
        assert set(run.data.metrics) >= CANDIDATE_METRICS, run.info.run_name
        assert run.data.params["family"] == run.data.tags[CANDIDATE_TAG]
        assert run.data.params["cv_folds"] == "3"
        assert any(name.startswith("best_model__") for name in run.data.params)
        assert _artifact_paths(store.client, run.info.run_id) >= CANDIDATE_ARTIFACTS
        (dataset,) = [d.dataset for d in run.inputs.dataset_inputs]
        assert dataset.name == trainings.settings.data.name
        assert len(dataset.digest) >= 8


def test_runs_carry_the_git_commit_of_the_checkout(trainings: TwoTrainings, store: Store) -> None:
    parent = store.client.get_run(trainings.second.parent_run_id)
    commit = parent.data.tags["mlflow.source.git.commit"]
    # Other work may have committed since: the tag must name HEAD or one of its ancestors.
    ancestry = subprocess.run(
        ["git", "-C", str(ROOT), "merge-base", "--is-ancestor", commit, "HEAD"], check=False
    )
    assert ancestry.returncode == 0, commit
    assert parent.data.tags["git_dirty"] in {"true", "false"}
    for run in _child_runs(store.client, trainings.second):
        assert run.data.tags["mlflow.source.git.commit"] == commit


def test_parent_run_compares_the_candidates(trainings: TwoTrainings, store: Store) -> None:
    report = trainings.second
    assert report.champion is not None
    parent = store.client.get_run(report.parent_run_id)
    assert parent.data.tags["champion_version"] == report.champion.version
    assert parent.data.tags[SELECTION_REASON_TAG] == report.selection_reason
    assert {
        "comparison/candidates.csv",
        "comparison/candidates.html",
        "comparison/candidates.png",
    } <= _artifact_paths(store.client, report.parent_run_id)
    local = store.client.download_artifacts(report.parent_run_id, "comparison/candidates.csv")
    table = pd.read_csv(local, index_col="family")
    assert sorted(table.index) == sorted(FAMILIES)
    assert table.loc[str(report.champion.family), "champion"]


def test_fairness_table_covers_sex_age_band_and_marriage(
    trainings: TwoTrainings, store: Store
) -> None:
    champion = trainings.second.champion
    assert champion is not None
    local = store.client.download_artifacts(champion.run_id, "fairness/fairness.json")
    summary = json.loads(Path(local).read_text(encoding="utf-8"))
    groups = {(g["attribute"], g["group"]) for g in summary["groups"]}
    assert {("sex", "male"), ("sex", "female"), ("age_band", "25-34")} <= groups
    assert {("marriage", "married"), ("marriage", "single")} <= groups
    assert set(summary["disparities"]) == {"sex", "age_band", "marriage"}
    assert summary["threshold"] == pytest.approx(champion.threshold)


def test_each_version_stores_its_reference_profile_binned_on_its_training_split(
    trainings: TwoTrainings, store: Store, sample_csv: Path
) -> None:
    champion = trainings.second.champion
    assert champion is not None
    version = store.client.get_model_version(trainings.settings.model_name, champion.version)
    local = store.client.download_artifacts(version.run_id, REFERENCE_PROFILE_ARTIFACT)
    profile = ReferenceProfile.model_validate_json(Path(local).read_text(encoding="utf-8"))

    split = split_dataset(load_dataset(sample_csv), seed=11, quick=True)
    assert set(profile.features) == set(FEATURE_COLUMNS)
    assert profile.training_rows == len(split.train_features)
    for name, histogram in profile.features.items():
        assert sum(histogram.counts) == len(split.train_features), name
        assert histogram.count(split.train_features[name]).tolist() == histogram.counts
    assert sum(profile.score.counts) == profile.validation_rows == len(split.validation_features)
    assert len(profile.score.counts) >= 5  # deciles of a continuous score, not one lump
    assert profile.validation_roc_auc == pytest.approx(champion.roc_auc)  # live AUC's yardstick


def test_every_candidate_is_registered_and_tagged(trainings: TwoTrainings, store: Store) -> None:
    name = trainings.settings.model_name
    versions = store.client.search_model_versions(f"name = '{name}'")
    assert len(versions) == 2 * len(FAMILIES)
    for report in (trainings.first, trainings.second):
        for candidate in report.candidates:
            tags = store.client.get_model_version(name, candidate.version).tags
            assert float(tags[EXPECTED_COST_TAG]) == pytest.approx(candidate.expected_cost)
            assert tags[CANDIDATE_TAG] == candidate.family
            assert tags[SELECTION_REASON_TAG] == report.verdicts[candidate.family]


def test_champion_has_the_lowest_cost_under_the_budget(trainings: TwoTrainings) -> None:
    report = trainings.second
    assert report.champion is not None
    limit = trainings.settings.fairness_limit
    eligible = [
        c
        for c in report.candidates
        if c.scoring_us_per_row <= trainings.settings.latency_budget_us
        and not fairness_problems(c, limit)
    ]
    assert report.champion.expected_cost == min(c.expected_cost for c in eligible)
    assert report.selection_reason.startswith(f"{report.champion.family}: lowest expected cost")


def test_second_training_moves_champion_and_keeps_the_first_as_previous(
    trainings: TwoTrainings, store: Store
) -> None:
    first, second = trainings.first.champion, trainings.second.champion
    assert first is not None
    assert second is not None
    assert first.version != second.version
    state = aliases(store.client, trainings.settings.model_name)
    assert state == {CHAMPION_ALIAS: second.version, PREVIOUS_ALIAS: first.version}
    assert trainings.second.previous_version == first.version


def test_loaded_champion_carries_its_threshold_and_scores(
    trainings: TwoTrainings, store: Store, sample_csv: Path
) -> None:
    champion = trainings.second.champion
    assert champion is not None
    with using_tracking_uri(store.tracking_uri):
        model = mlflow.pyfunc.load_model(
            f"models:/{trainings.settings.model_name}@{CHAMPION_ALIAS}"
        )
    assert float(model.metadata.metadata[THRESHOLD_METADATA_KEY]) == champion.threshold
    fair = list(POLICIES[FAIR_LENDING].features)
    assert model.metadata.get_input_schema().input_names() == fair
    features = pd.read_csv(sample_csv).head(20).rename(columns=str.lower).loc[:, fair]
    proba = model.predict(features.astype("float64"))
    assert proba.shape == (20, 2)
    assert ((proba >= 0) & (proba <= 1)).all()


def test_every_version_excludes_what_its_policy_names_in_its_logged_signature(
    trainings: TwoTrainings, store: Store
) -> None:
    fair = POLICIES[FAIR_LENDING].features
    assert POLICIES[FAIR_LENDING].excluded >= PROTECTED
    for candidate in trainings.second.candidates:
        with using_tracking_uri(store.tracking_uri):
            logged = mlflow.models.get_model_info(candidate.model_uri)
        assert logged.signature is not None
        assert tuple(logged.signature.inputs.input_names()) == fair, candidate.family
        assert not PROTECTED & set(logged.signature.inputs.input_names())
        assert logged.metadata[EXPLANATION_METADATA_KEY]["method"] == (
            CANDIDATES[candidate.family].explanation
        )
        tags = store.client.get_model_version(trainings.settings.model_name, candidate.version).tags
        assert tags[FEATURE_POLICY_TAG] == FAIR_LENDING
        assert tags[FEATURES_TAG] == ",".join(fair)


@pytest.fixture(scope="module")
def research(store: Store, sample_csv: Path) -> TrainingReport:
    settings = TrainingSettings(
        data=sample_csv,
        tracking_uri=store.tracking_uri,
        artifact_location=store.artifact_location,
        experiment=unique_name("training-test"),
        model_name=unique_name("research"),
        quick=True,
        families=(Family.LOGISTIC_REGRESSION,),
        feature_policy=ALL_FEATURES,
        n_jobs=1,
    )
    return train(settings, console=Console(quiet=True))


def test_a_research_only_policy_uses_every_field_and_is_never_promoted(
    research: TrainingReport, store: Store
) -> None:
    (candidate,) = research.candidates
    with using_tracking_uri(store.tracking_uri):
        logged = mlflow.models.get_model_info(candidate.model_uri)
    assert logged.signature is not None
    assert logged.signature.inputs.input_names() == list(FEATURE_COLUMNS)
    assert research.champion is None
    assert "research-only" in research.verdicts[Family.LOGISTIC_REGRESSION]
    assert aliases(store.client, research.model_name) == {}


def test_promote_refuses_a_research_only_version_unless_forced_and_records_it(
    research: TrainingReport, store: Store, tmp_path: Path
) -> None:
    version = research.candidates[0].version
    common = ("--tracking-uri", store.tracking_uri, "--model-name", research.model_name)
    unsigned = {"RUMOS_TRAINING_ALLOW_UNSIGNED_MODELS": "true"}  # the fixture's versions
    refused = _cli("promote", version, *common, cwd=tmp_path, **unsigned)
    _assert_clear_error(refused, 2, "research-only feature policy 'all'")
    assert aliases(store.client, research.model_name) == {}

    forced = _cli("promote", version, *common, "--force-research-policy", cwd=tmp_path, **unsigned)

    assert forced.returncode == 0, forced.stderr
    assert aliases(store.client, research.model_name) == {CHAMPION_ALIAS: version}
    tags = store.client.get_model_version(research.model_name, version).tags
    assert "forced" in tags[FORCED_PROMOTION_TAG]


def test_a_candidate_that_cannot_be_explained_is_refused_with_its_family_named(
    store: Store, sample_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A tree cannot be split into linear terms: ask for that and training must refuse it.
    spec = CANDIDATES[Family.DECISION_TREE]
    monkeypatch.setitem(CANDIDATES, Family.DECISION_TREE, replace(spec, explanation="linear"))
    settings = TrainingSettings(
        data=sample_csv,
        tracking_uri=store.tracking_uri,
        artifact_location=store.artifact_location,
        experiment=unique_name("training-test"),
        model_name=unique_name("unexplainable"),
        quick=True,
        families=(Family.DECISION_TREE,),
        n_jobs=1,
    )
    with pytest.raises(ExplanationBuildError, match=r"^decision_tree: .*'linear'.* refused"):
        train(settings, console=Console(quiet=True))
    assert store.client.search_model_versions(f"name = '{settings.model_name}'") == []


def test_same_data_and_seed_give_the_same_metrics(trainings: TwoTrainings) -> None:
    for first, second in zip(trainings.first.candidates, trainings.second.candidates, strict=True):
        assert first.family == second.family
        assert first.best_params == second.best_params
        for name, value in first.metrics.items():
            if name not in TIMING_METRICS:
                assert second.metrics[name] == value, (first.family, name)


def test_champion_roc_auc_is_plausible(trainings: TwoTrainings) -> None:
    # 3,000 rows in quick mode: well above chance, and no sign of a leak (which
    # would push the AUC far above the ~0.78 the full data reaches).
    champion = trainings.second.champion
    assert champion is not None
    assert 0.65 < champion.roc_auc < 0.85


# --- promote / rollback ---------------------------------------------------------------


@pytest.fixture
def three_versions(trainings: TwoTrainings, store: Store) -> str:
    """A fresh registered model with versions 1-3 (copies of trained candidates)."""
    name = unique_name("registry-test")
    store.client.create_registered_model(name)
    # The model's source (models:/m-…) resolves through the fluent tracking URI.
    with using_tracking_uri(store.tracking_uri):
        for candidate in trainings.first.candidates:
            store.client.create_model_version(name, candidate.model_uri, run_id=candidate.run_id)
    return name


def test_promote_and_rollback_move_champion_and_previous(three_versions: str, store: Store) -> None:
    client, name = store.client, three_versions
    first = promote(client, name, "1")
    assert (first.champion, first.previous, first.changed) == ("1", None, True)
    promote(client, name, "3", reason="manual test promotion")
    assert aliases(client, name) == {CHAMPION_ALIAS: "3", PREVIOUS_ALIAS: "1"}
    tags = client.get_model_version(name, "3").tags
    assert tags[SELECTION_REASON_TAG] == "manual test promotion"

    rolled = rollback(client, name)
    assert (rolled.champion, rolled.previous) == ("1", "3")
    assert aliases(client, name) == {CHAMPION_ALIAS: "1", PREVIOUS_ALIAS: "3"}
    rollback(client, name)  # rolling back a rollback restores the promotion
    assert aliases(client, name) == {CHAMPION_ALIAS: "3", PREVIOUS_ALIAS: "1"}

    again = promote(client, name, "3")
    assert not again.changed
    assert aliases(client, name) == {CHAMPION_ALIAS: "3", PREVIOUS_ALIAS: "1"}


@pytest.mark.parametrize("version", ["99", "0", "abc"])
def test_promoting_an_unknown_version_is_refused(
    three_versions: str, store: Store, version: str
) -> None:
    promote(store.client, three_versions, "2")
    with pytest.raises(UnknownVersionError, match=f"no version '{version}'"):
        promote(store.client, three_versions, version)
    assert aliases(store.client, three_versions) == {CHAMPION_ALIAS: "2"}


def test_rollback_without_previous_is_refused(three_versions: str, store: Store) -> None:
    with pytest.raises(NoPreviousChampionError):
        rollback(store.client, three_versions)
    promote(store.client, three_versions, "2")
    with pytest.raises(NoPreviousChampionError):
        rollback(store.client, three_versions)
    assert aliases(store.client, three_versions) == {CHAMPION_ALIAS: "2"}


# --- the CLI --------------------------------------------------------------------------


def _cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "RUMOS_"))}
    return subprocess.run(
        [sys.executable, "-m", "training", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**clean, **env},
        timeout=300,
        check=False,
    )


def _assert_clear_error(done: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    assert done.returncode == code, done.stderr
    assert text in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_cli_missing_csv_is_a_clear_error(tmp_path: Path, store: Store) -> None:
    done = _cli(
        "--data", str(tmp_path / "nope.csv"), "--tracking-uri", store.tracking_uri, cwd=tmp_path
    )
    _assert_clear_error(done, 2, f"dataset not found: {tmp_path / 'nope.csv'}")


def test_cli_malformed_csv_is_a_clear_error(tmp_path: Path, store: Store) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("ID,LIMIT_BAL\n1,20000\n", encoding="utf-8")
    done = _cli("--data", str(path), "--tracking-uri", store.tracking_uri, cwd=tmp_path)
    _assert_clear_error(done, 2, "missing column(s) SEX, EDUCATION")


def test_cli_rejects_unknown_families(tmp_path: Path) -> None:
    done = _cli("--families", "svm,xgboost", cwd=tmp_path)
    _assert_clear_error(done, 2, "invalid setting RUMOS_TRAINING_FAMILIES.1: Input should be")


def test_cli_promote_and_rollback(three_versions: str, store: Store, tmp_path: Path) -> None:
    registry = ("--tracking-uri", store.tracking_uri, "--model-name", three_versions)
    unsigned = {"RUMOS_TRAINING_ALLOW_UNSIGNED_MODELS": "true"}  # the fixture's versions
    _assert_clear_error(_cli("rollback", *registry, cwd=tmp_path), 2, "no 'previous' version")
    _assert_clear_error(
        _cli("promote", "42", *registry, cwd=tmp_path, **unsigned), 2, "no version '42'"
    )
    assert aliases(store.client, three_versions) == {}

    promoted = _cli("promote", "2", *registry, cwd=tmp_path, **unsigned)
    assert promoted.returncode == 0, promoted.stderr
    assert "promoting without verifying" in promoted.stderr
    assert _cli("promote", "1", *registry, cwd=tmp_path, **unsigned).returncode == 0
    rolled = _cli("rollback", *registry, cwd=tmp_path)
    assert rolled.returncode == 0, rolled.stderr
    assert "champion is now version 2; previous: 1" in rolled.stdout
    assert aliases(store.client, three_versions) == {CHAMPION_ALIAS: "2", PREVIOUS_ALIAS: "1"}


def test_cli_promote_verifies_the_version_before_moving_any_alias(
    three_versions: str, store: Store, tmp_path: Path
) -> None:
    registry = ("--tracking-uri", store.tracking_uri, "--model-name", three_versions)
    keys = _cli("keygen", str(tmp_path / "keys"), cwd=tmp_path)
    assert keys.returncode == 0, keys.stderr
    assert (tmp_path / "keys" / "model-signing.key").stat().st_mode & 0o777 == 0o600
    again = _cli("keygen", str(tmp_path / "keys"), cwd=tmp_path)
    _assert_clear_error(again, 2, "cannot write a key pair")
    public = str(tmp_path / "keys" / "model-signing.pub")

    _assert_clear_error(_cli("promote", "2", *registry, cwd=tmp_path), 2, "no public key to verify")
    _assert_clear_error(
        _cli("promote", "2", *registry, cwd=tmp_path, RUMOS_TRAINING_SIGNING_PUBLIC_KEY=public),
        2,
        f"version 2 of '{three_versions}' does not verify: it is not signed",
    )
    assert aliases(store.client, three_versions) == {}


def test_cli_trains_and_promotes_nothing_when_no_candidate_is_fast_enough(
    sample_csv: Path, store: Store, tmp_path: Path
) -> None:
    model_name = unique_name("cli-test")
    done = _cli(
        "--data", str(sample_csv),
        "--tracking-uri", store.tracking_uri,
        "--experiment", unique_name("cli-test"),
        "--model-name", model_name,
        "--quick",
        "--families", "decision_tree",
        "--latency-budget-us", "0.000001",
        cwd=tmp_path,
    )  # fmt: skip
    _assert_clear_error(done, 1, "nothing promoted: no candidate under 1e-06 µs/row")
    assert "decision_tree" in done.stdout  # the comparison table is still shown
    versions = store.client.search_model_versions(f"name = '{model_name}'")
    assert len(versions) == 1
    assert versions[0].tags[SELECTION_REASON_TAG].startswith("not promoted:")
    assert aliases(store.client, model_name) == {}
