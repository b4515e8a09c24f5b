"""One training call: every candidate family trained, logged, registered; a champion chosen.

Layout in MLflow: one parent run per call in the experiment, one nested run per
candidate (params, metrics, dataset input, diagnostics, the model registered as a
new version of the registered model), and on the parent a comparison of the
candidates. The champion alias then moves as :mod:`training.selection` decides.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from mlflow import MlflowClient
from mlflow.data.pandas_dataset import PandasDataset
from mlflow.exceptions import MlflowException
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from consumer.explaining import Explainer, ExplanationError, build_explainer
from contracts.model_names import (
    CANDIDATE_TAG,
    EXPECTED_COST_TAG,
    FEATURE_POLICY_TAG,
    FEATURES_TAG,
    PREVIOUS_ALIAS,
    SELECTION_REASON_TAG,
)
from contracts.model_trust import SigningKeyError, load_private_key
from contracts.profile import REFERENCE_PROFILE_ARTIFACT
from training import plots, tracking
from training.candidates import CANDIDATES, CV_FOLDS, QUICK_CV_FOLDS, make_search
from training.data import Split, load_dataset, split_dataset
from training.errors import ExplanationBuildError, TrainingError
from training.evaluation import (
    CostMatrix,
    choose_threshold,
    explanation_us_per_row,
    inference_us_per_row,
    validation_metrics,
)
from training.explanations import write_explanation_plots
from training.fairness import disparity_metrics
from training.packaging import log_credit_model, pinned_requirements, typical_applicant
from training.policies import POLICIES, FeaturePolicy
from training.profile import reference_profile
from training.registry import aliases, check_access, promote, registry_client
from training.results import CandidateResult, TrainingReport
from training.selection import Selection, select_champion
from training.settings import Family, TrainingSettings
from training.signing import sign_version, verify_version

_PACKAGE_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class _Context:
    """What every candidate of one call shares."""

    settings: TrainingSettings
    split: Split
    data_input: PandasDataset
    git: Mapping[str, str]
    requirements: list[str]
    costs: CostMatrix
    signing_key: Ed25519PrivateKey | None
    policy: FeaturePolicy


def train(settings: TrainingSettings, *, console: Console | None = None) -> TrainingReport:
    """Train, log and register every family in ``settings.families``; promote a champion.

    MLflow's fluent API points at ``settings.tracking_uri`` during the call. Raises
    :class:`~training.errors.DatasetError` for a bad dataset and
    :class:`~training.errors.TrainingError` when MLflow fails. When no candidate
    meets the latency budget nothing is promoted and the report's ``champion`` is None.
    """
    started = time.perf_counter()
    console = console or Console(stderr=True)
    signing_key = _signing_key(settings, console)
    client = registry_client(settings)
    check_access(client, settings)
    dataset = load_dataset(settings.data)
    split = split_dataset(dataset, seed=settings.seed, quick=settings.quick)
    try:
        context = _Context(
            settings=settings,
            split=split,
            data_input=tracking.dataset_input(dataset),
            git=tracking.git_tags(_PACKAGE_DIR),
            requirements=pinned_requirements(),
            costs=CostMatrix(false_negative=settings.cost_fn, false_positive=settings.cost_fp),
            signing_key=signing_key,
            policy=POLICIES[settings.feature_policy],
        )
        with tracking.using_tracking_uri(settings.tracking_uri):
            return _train_logged(context, client, console, started)
    except MlflowException as exc:
        raise TrainingError(f"MLflow at {settings.tracking_uri} failed: {exc}") from exc


def _train_logged(
    context: _Context, client: MlflowClient, console: Console, started: float
) -> TrainingReport:
    settings = context.settings
    experiment_id = tracking.ensure_experiment(
        client, settings.experiment, settings.artifact_location
    )
    mode = "quick" if settings.quick else "full"
    with mlflow.start_run(
        experiment_id=experiment_id, run_name=f"training-{mode}-seed{settings.seed}"
    ) as parent:
        mlflow.set_tags(dict(context.git))
        mlflow.log_params(_call_params(context))
        mlflow.log_input(context.data_input, context="training")
        results = _train_candidates(context, experiment_id, console)
        selection = select_champion(
            results,
            settings.latency_budget_us,
            fairness_limit=settings.fairness_limit,
            research_only=context.policy.name if context.policy.research_only else None,
        )
        _tag_versions(client, settings.model_name, results, selection, context.policy)
        verify = _sign_versions(context, client, results)
        if selection.champion is not None:
            promote(client, settings.model_name, selection.champion.version, verify=verify)
        _log_comparison(results, selection, settings)
    state = aliases(client, settings.model_name)
    return TrainingReport(
        experiment_id=experiment_id,
        parent_run_id=parent.info.run_id,
        model_name=settings.model_name,
        candidates=tuple(results),
        champion=selection.champion,
        previous_version=state.get(PREVIOUS_ALIAS),
        selection_reason=selection.reason,
        verdicts=selection.verdicts,
        wall_seconds=time.perf_counter() - started,
    )


def _signing_key(settings: TrainingSettings, console: Console) -> Ed25519PrivateKey | None:
    if settings.signing_key is None:
        console.print(
            "[yellow]warning:[/] no signing key (RUMOS_TRAINING_SIGNING_KEY): versions are "
            "registered unsigned, and scorers refuse them unless SCORER_ALLOW_UNSIGNED_MODELS=true",
            highlight=False,
        )
        return None
    try:
        return load_private_key(settings.signing_key.get_secret_value())
    except SigningKeyError as exc:
        raise TrainingError(f"cannot read the signing key: {exc}") from exc


def _sign_versions(
    context: _Context, client: MlflowClient, results: list[CandidateResult]
) -> partial[None] | None:
    """Sign every registered version; the check promote then makes (None when unsigned).

    Promotion verifies the champion against the registry's copy, exactly as a scorer
    will, so a version that was changed after signing is never promoted.
    """
    key, settings = context.signing_key, context.settings
    if key is None:
        return None
    for result in results:
        sign_version(client, settings.tracking_uri, settings.model_name, result.version, key)
    return partial(
        verify_version,
        client,
        settings.tracking_uri,
        settings.model_name,
        public_keys=[key.public_key()],
    )


def _call_params(context: _Context) -> dict[str, Any]:
    settings, split = context.settings, context.split
    return {
        "data": str(settings.data),
        "quick": settings.quick,
        "seed": settings.seed,
        "cost_fn": settings.cost_fn,
        "cost_fp": settings.cost_fp,
        "latency_budget_us": settings.latency_budget_us,
        "feature_policy": settings.feature_policy,
        "features": ",".join(context.policy.features),
        "fairness_limit": settings.fairness_limit,
        "families": ",".join(settings.families),
        "model_name": settings.model_name,
        "cv_folds": QUICK_CV_FOLDS if settings.quick else CV_FOLDS,
        "train_rows": len(split.train_features),
        "validation_rows": len(split.validation_features),
    }


def _train_candidates(
    context: _Context, experiment_id: str, console: Console
) -> list[CandidateResult]:
    families = context.settings.families
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
    )
    results = []
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("training", total=len(families))
        for family in families:
            progress.update(task, description=f"training [bold]{family}[/]")
            result = _train_candidate(context, experiment_id, family)
            progress.console.print(
                f"{family}: ROC-AUC {result.roc_auc:.3f}, expected cost "
                f"{result.expected_cost:.3f} at threshold {result.threshold:.3f}, "
                f"{result.scoring_us_per_row:.1f} µs/row with reasons → version {result.version}"
            )
            results.append(result)
            progress.advance(task)
    return results


def _train_candidate(context: _Context, experiment_id: str, family: Family) -> CandidateResult:
    settings, split = context.settings, context.split
    spec = CANDIDATES[family]
    features = context.policy.features
    x_train = split.train_features.loc[:, list(features)]
    x_val = split.validation_features.loc[:, list(features)]
    y_val = split.validation_target.to_numpy()
    # Nested runs do not inherit the parent's experiment: name it.
    with mlflow.start_run(experiment_id=experiment_id, run_name=str(family), nested=True) as run:
        mlflow.set_tags({**context.git, CANDIDATE_TAG: str(family)})
        mlflow.log_input(context.data_input, context="training")
        search = make_search(
            spec, features, seed=settings.seed, quick=settings.quick, n_jobs=settings.n_jobs
        )
        fit_started = time.perf_counter()
        search.fit(x_train, split.train_target)
        fit_seconds = time.perf_counter() - fit_started
        pipeline = search.best_estimator_
        explainer = _explainer(family, spec.explanation, pipeline, x_val)
        proba = pipeline.predict_proba(x_val)[:, 1]
        choice = choose_threshold(y_val, proba, context.costs)
        metrics = {
            **validation_metrics(y_val, proba, choice.threshold, context.costs),
            "cv_roc_auc": float(search.best_score_),
            "fit_seconds": fit_seconds,
            "inference_us_per_row": inference_us_per_row(pipeline, x_val),
            "explanation_us_per_row": explanation_us_per_row(explainer, pipeline, x_val),
        }
        with tracking.artifact_dir() as directory:
            # The fairness table groups by the personal fields, used by the model or not.
            disparities = tracking.write_diagnostics(
                directory, str(family), split.validation_features, y_val, proba, choice.threshold
            )
            write_explanation_plots(
                directory, str(family), pipeline, explainer, x_val, typical_applicant(x_val)
            )
            _cv_table(search.cv_results_).to_csv(directory / "cv_results.csv", index=False)
        metrics.update(disparity_metrics(disparities))
        profile = reference_profile(split.train_features, proba, metrics["roc_auc"])
        mlflow.log_text(profile.model_dump_json(indent=1), REFERENCE_PROFILE_ARTIFACT)
        mlflow.log_params(
            {
                "family": str(family),
                "seed": settings.seed,
                "cv_folds": search.cv.get_n_splits(),
                "param_grid": json.dumps(spec.quick_grid if settings.quick else spec.grid),
                "feature_policy": context.policy.name,
                "explanation": spec.explanation,
                **{f"best_{name}": value for name, value in search.best_params_.items()},
            }
        )
        mlflow.log_metrics(metrics)
        info = log_credit_model(
            pipeline,
            threshold=choice.threshold,
            sample=split.validation_features,
            registered_model_name=settings.model_name,
            pip_requirements=context.requirements,
            features=features,
            feature_policy=context.policy.name,
            explanation=spec.explanation,
        )
    return CandidateResult(
        family=family,
        run_id=run.info.run_id,
        model_uri=info.model_uri,
        version=str(info.registered_model_version),
        threshold=choice.threshold,
        metrics=metrics,
        best_params=dict(search.best_params_),
    )


def _explainer(family: Family, method: str, pipeline: Any, sample: pd.DataFrame) -> Explainer:
    """The candidate's explainer, checked on ``sample``; refused with its family named."""
    reference = {str(k): float(v) for k, v in typical_applicant(sample).iloc[0].items()}
    try:
        return build_explainer(
            pipeline, method, reference, list(sample.columns), check_on=sample.iloc[:200]
        )
    except ExplanationError as exc:
        raise ExplanationBuildError(
            f"{family}: its scores cannot be explained by the {method!r} method ({exc}); "
            "the candidate is refused"
        ) from exc


def _cv_table(cv_results: Mapping[str, Any]) -> pd.DataFrame:
    table = pd.DataFrame(cv_results)
    columns = ["params", "mean_test_score", "std_test_score", "rank_test_score", "mean_fit_time"]
    return table.loc[:, columns].sort_values("rank_test_score")


def _tag_versions(
    client: MlflowClient,
    model_name: str,
    results: list[CandidateResult],
    selection: Selection,
    policy: FeaturePolicy,
) -> None:
    for result in results:
        tags = {
            FEATURE_POLICY_TAG: policy.name,
            FEATURES_TAG: ",".join(policy.features),
            EXPECTED_COST_TAG: f"{result.expected_cost:.6f}",
            CANDIDATE_TAG: str(result.family),
            "roc_auc": f"{result.roc_auc:.6f}",
            "inference_us_per_row": f"{result.inference_us_per_row:.2f}",
            SELECTION_REASON_TAG: selection.verdicts[result.family],
        }
        for key, value in tags.items():
            client.set_model_version_tag(model_name, result.version, key, value)


def _log_comparison(
    results: list[CandidateResult], selection: Selection, settings: TrainingSettings
) -> None:
    table = pd.DataFrame(
        [
            {
                "family": str(r.family),
                "version": r.version,
                "run_id": r.run_id,
                **r.metrics,
                "champion": r is selection.champion,
                "verdict": selection.verdicts[r.family],
            }
            for r in results
        ]
    ).set_index("family")
    with tracking.artifact_dir() as directory:
        comparison = directory / "comparison"
        comparison.mkdir()
        table.to_csv(comparison / "candidates.csv")
        table.to_html(comparison / "candidates.html", float_format="{:.4f}".format)
        plots.comparison_plot(table, settings.latency_budget_us, comparison / "candidates.png")
    tags = {SELECTION_REASON_TAG: selection.reason}
    if selection.champion is not None:
        tags |= {
            "champion_version": selection.champion.version,
            "champion_family": str(selection.champion.family),
        }
        mlflow.log_metrics({f"champion_{k}": v for k, v in selection.champion.metrics.items()})
    mlflow.set_tags(tags)
