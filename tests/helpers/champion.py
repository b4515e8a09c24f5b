"""Register a tiny, real credit-default model in an MLflow registry and make it champion.

The model is fitted on a few hundred rows of the real data and logged with
``training.packaging.log_credit_model``, exactly the format the worker loads, and signed
with the test session's key (``tests.helpers.signing``) before the alias moves, as
training does. The other helpers register versions the worker must refuse.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import mlflow
import mlflow.pyfunc
import mlflow.sklearn
import numpy as np
import pandas as pd
import yaml
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from contracts import CSV_FEATURE_COLUMNS, FEATURE_COLUMNS, TARGET_COLUMN
from contracts.model_names import CHAMPION_ALIAS, EXPERIMENT_NAME, THRESHOLD_METADATA_KEY
from tests.helpers.signing import sign
from training.packaging import as_model_input, log_credit_model, pinned_requirements
from training.tracking import using_tracking_uri


@dataclass(frozen=True)
class RegisteredChampion:
    """What the registry now holds under ``model_name@champion``."""

    model_name: str
    version: str
    run_id: str
    threshold: float
    pipeline: Pipeline

    @property
    def uri(self) -> str:
        return f"models:/{self.model_name}/{self.version}"


def fit_tiny_pipeline(
    feature_frame: pd.DataFrame,
    *,
    rows: int = 400,
    seed: int = 0,
    features: Sequence[str] = FEATURE_COLUMNS,
) -> Pipeline:
    """A scaler + logistic regression fitted on ``rows`` real rows (both classes present)."""
    sample = feature_frame.sample(n=rows, random_state=seed)
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1_000, C=0.5))
    pipeline.fit(as_model_input(sample, features), sample[TARGET_COLUMN])
    return pipeline


def register_champion(
    tracking_uri: str,
    feature_frame: pd.DataFrame,
    *,
    model_name: str,
    threshold: float = 0.35,
    rows: int = 400,
    seed: int = 0,
    alias: str = CHAMPION_ALIAS,
    experiment: str = EXPERIMENT_NAME,
    signed: bool = True,
    features: Sequence[str] = FEATURE_COLUMNS,
    feature_policy: str | None = None,
    explanation: str | None = "linear",
) -> RegisteredChampion:
    """Fit, log, register (and sign, unless not ``signed``) a new version of ``model_name``;
    point ``alias`` at it.

    ``features`` are the contract fields it uses; ``explanation`` the method its scores'
    reasons are computed by (None: the version carries none, like one logged before
    reason codes existed).
    """
    pipeline = fit_tiny_pipeline(feature_frame, rows=rows, seed=seed, features=features)
    with using_tracking_uri(tracking_uri):
        mlflow.set_experiment(experiment)
        with mlflow.start_run() as run:
            mlflow.log_params({"model": "logistic_regression", "rows": rows, "seed": seed})
            mlflow.log_metric("threshold", threshold)
            info = log_credit_model(
                pipeline,
                threshold=threshold,
                sample=feature_frame.head(50),
                registered_model_name=model_name,
                pip_requirements=pinned_requirements(),
                features=features,
                feature_policy=feature_policy,
                explanation=explanation,
            )
    version = str(info.registered_model_version)
    if signed:
        sign(tracking_uri, model_name, version)
    MlflowClient(tracking_uri=tracking_uri).set_registered_model_alias(model_name, alias, version)
    return RegisteredChampion(model_name, version, run.info.run_id, threshold, pipeline)


def offline_probabilities(tracking_uri: str, model_uri: str, features: pd.DataFrame) -> np.ndarray:
    """Probabilities of default the registered model gives through MLflow's own pyfunc."""
    with using_tracking_uri(tracking_uri):
        model = mlflow.pyfunc.load_model(model_uri)
    columns = model.metadata.get_input_schema().input_names()
    return np.asarray(model.predict(as_model_input(features, columns)))[:, 1]


def register_foreign_inputs(
    tracking_uri: str,
    feature_frame: pd.DataFrame,
    *,
    model_name: str,
    experiment: str = EXPERIMENT_NAME,
    alias: str = CHAMPION_ALIAS,
) -> str:
    """Register a version trained on the raw CSV column names (``LIMIT_BAL``...); its version.

    A loadable model whose signature does not take the contract's features: the
    classic mistake of fitting on the dataset as read.
    """
    sample = feature_frame.sample(n=400, random_state=0)
    inputs = as_model_input(sample).set_axis(list(CSV_FEATURE_COLUMNS), axis=1)
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1_000))
    pipeline.fit(inputs, sample[TARGET_COLUMN])
    with using_tracking_uri(tracking_uri):
        mlflow.set_experiment(experiment)
        with mlflow.start_run():
            info = mlflow.sklearn.log_model(
                pipeline,
                name="model",
                signature=infer_signature(inputs, pipeline.predict_proba(inputs)),
                metadata={THRESHOLD_METADATA_KEY: 0.35},
                pyfunc_predict_fn="predict_proba",
                registered_model_name=model_name,
                pip_requirements=pinned_requirements(),
            )
    version = str(info.registered_model_version)
    sign(tracking_uri, model_name, version)
    MlflowClient(tracking_uri=tracking_uri).set_registered_model_alias(model_name, alias, version)
    return version


def register_unloadable(
    tracking_uri: str,
    feature_frame: pd.DataFrame,
    workdir: Path,
    *,
    model_name: str,
    experiment: str = EXPERIMENT_NAME,
    alias: str = CHAMPION_ALIAS,
) -> str:
    """Register a version whose serialized pipeline is garbage; its version.

    Everything else (``MLmodel``, signature, threshold) is intact, so only
    deserialising the artifact fails, as with a truncated upload.
    """
    local = workdir / "unloadable-model"
    pipeline = fit_tiny_pipeline(feature_frame)
    sample = as_model_input(feature_frame.head(50))
    mlflow.sklearn.save_model(
        pipeline,
        str(local),
        signature=infer_signature(sample, pipeline.predict_proba(sample)),
        metadata={THRESHOLD_METADATA_KEY: 0.35},
        pyfunc_predict_fn="predict_proba",
        pip_requirements=pinned_requirements(),
    )
    serialized = yaml.safe_load((local / "MLmodel").read_text())["flavors"]["sklearn"]
    (local / serialized["pickled_model"]).write_bytes(b"truncated upload")
    with using_tracking_uri(tracking_uri):
        mlflow.set_experiment(experiment)
        with mlflow.start_run() as run:
            mlflow.log_artifacts(str(local), "model")
        version = mlflow.register_model(f"runs:/{run.info.run_id}/model", model_name).version
    sign(tracking_uri, model_name, str(version))
    MlflowClient(tracking_uri=tracking_uri).set_registered_model_alias(model_name, alias, version)
    return str(version)
