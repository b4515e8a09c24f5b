"""Training against a real ``mlflow server`` over HTTP (artifacts proxied by the server)."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
import pytest
from rich.console import Console

from contracts import FEATURE_BY_CSV_COLUMN, FEATURE_COLUMNS
from contracts.model_names import (
    CANDIDATE_TAG,
    CHAMPION_ALIAS,
    PREVIOUS_ALIAS,
    THRESHOLD_METADATA_KEY,
)
from tests.fixtures.mlflow_server import MlflowNamespace
from training import (
    Family,
    NoPreviousChampionError,
    TrainingSettings,
    UnknownVersionError,
    aliases,
    promote,
    registry_client,
    rollback,
    train,
)
from training.tracking import using_tracking_uri


@pytest.mark.integration
def test_quick_training_over_http_registers_and_promotes(
    mlflow_tracking_uri: str, mlflow_namespace: MlflowNamespace, credit_csv: Path
) -> None:
    assert mlflow_tracking_uri.startswith("http://")
    settings = TrainingSettings(
        data=credit_csv,
        tracking_uri=mlflow_tracking_uri,
        experiment=mlflow_namespace.experiment,
        model_name=mlflow_namespace.model_name,
        quick=True,
        families=(Family.LOGISTIC_REGRESSION, Family.HIST_GRADIENT_BOOSTING),
        # About the registry over HTTP, not speed: on a loaded machine the default budget
        # (20 µs/row) can leave no candidate eligible, and then nothing is promoted.
        latency_budget_us=1_000.0,
        # Nor about fairness (test_training tests the gate): on the quick split both of these
        # families exceed the default limit by age band, and then nothing is promoted.
        fairness_limit=1.0,
    )
    report = train(settings, console=Console(quiet=True))
    assert report.champion is not None
    client = registry_client(settings)
    name = settings.model_name

    assert aliases(client, name) == {CHAMPION_ALIAS: report.champion.version}
    for candidate in report.candidates:
        version = client.get_model_version(name, candidate.version)
        assert version.tags[CANDIDATE_TAG] == candidate.family
        artifacts = {a.path for a in client.list_artifacts(candidate.run_id, "plots")}
        assert "plots/roc_curve.png" in artifacts  # uploaded through the artifact proxy

    with using_tracking_uri(mlflow_tracking_uri):
        model = mlflow.pyfunc.load_model(f"models:/{name}@{CHAMPION_ALIAS}")
    assert float(model.metadata.metadata[THRESHOLD_METADATA_KEY]) == report.champion.threshold
    rows = pd.read_csv(credit_csv, nrows=10).rename(columns=FEATURE_BY_CSV_COLUMN)
    proba = model.predict(rows.loc[:, list(FEATURE_COLUMNS)].astype("float64"))
    assert proba.shape == (10, 2)

    # The registry operations over REST: refusals, promotion, rollback.
    with pytest.raises(NoPreviousChampionError):
        rollback(client, name)
    with pytest.raises(UnknownVersionError):
        promote(client, name, "999")
    other = next(c.version for c in report.candidates if c is not report.champion)
    promote(client, name, other, reason="integration test")
    assert aliases(client, name) == {
        CHAMPION_ALIAS: other,
        PREVIOUS_ALIAS: report.champion.version,
    }
    rollback(client, name)
    assert aliases(client, name) == {
        CHAMPION_ALIAS: report.champion.version,
        PREVIOUS_ALIAS: other,
    }
