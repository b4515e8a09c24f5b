"""Logging to MLflow: experiment, git provenance, dataset input, and run artifacts."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.data.pandas_dataset import PandasDataset, from_pandas
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

from contracts import TARGET_COLUMN
from training import fairness, plots
from training.data import Dataset

GIT_COMMIT_TAG: Final = "mlflow.source.git.commit"
GIT_DIRTY_TAG: Final = "git_dirty"
_GIT_TIMEOUT_SECONDS: Final = 10


@contextmanager
def using_tracking_uri(uri: str) -> Iterator[None]:
    """Point MLflow's fluent API (runs, ``log_model``, registration) at ``uri`` for the
    block, then back: other code in the process keeps its own tracking server."""
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)


def ensure_experiment(client: MlflowClient, name: str, artifact_location: str | None) -> str:
    """The id of experiment ``name``, created (with ``artifact_location``) if missing."""
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        return str(existing.experiment_id)
    try:
        return str(client.create_experiment(name, artifact_location=artifact_location))
    except MlflowException as exc:
        # Another training call created it between our read and our write.
        if exc.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
            raise
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return str(found.experiment_id)


def git_tags(source: Path) -> dict[str, str]:
    """The commit (and whether the tree has uncommitted changes) of the checkout holding
    ``source``; empty outside a git checkout or without git."""
    git = shutil.which("git")
    if git is None:
        return {}
    commit = _git(git, source, "rev-parse", "HEAD")
    if commit is None:
        return {}
    changes = _git(git, source, "status", "--porcelain", "--untracked-files=no")
    return {GIT_COMMIT_TAG: commit, GIT_DIRTY_TAG: str(bool(changes)).lower()}


def _git(git: str, source: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(  # noqa: S603 -- fixed arguments, no shell, resolved git binary
            [git, "-C", str(source), *args],
            capture_output=True,
            text=True,
            timeout=_GIT_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def dataset_input(dataset: Dataset) -> PandasDataset:
    """The dataset file as an MLflow dataset (schema, profile and content digest)."""
    with warnings.catch_warnings():
        # Two harmless MLflow hints: its local-file source is registered under two URI
        # schemes (so any path is "ambiguous" between one class and itself), and the
        # file's integer columns could not hold missing values (the model's input is
        # float64 anyway).
        warnings.filterwarnings("ignore", message="The specified dataset source")
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        logged = from_pandas(
            dataset.frame,
            source=str(dataset.source.resolve()),
            name=dataset.source.name,
            targets=TARGET_COLUMN,
        )
        _ = logged.schema  # inferred once (a cached property), under this filter
    return logged


@contextmanager
def artifact_dir() -> Iterator[Path]:
    """A scratch directory whose content is logged as the active run's artifacts."""
    with tempfile.TemporaryDirectory(prefix="rumos-training-") as scratch:
        yield Path(scratch)
        mlflow.log_artifacts(scratch)


def write_diagnostics(
    directory: Path,
    title: str,
    features: pd.DataFrame,
    y_true: np.ndarray,
    proba: np.ndarray,
    threshold: float,
) -> pd.DataFrame:
    """Write the candidate's curves and fairness table under ``directory``.

    Returns the per-attribute disparities (see :func:`training.fairness.disparities`).
    """
    plot_dir = directory / "plots"
    plot_dir.mkdir()
    plots.roc_plot(y_true, proba, title, plot_dir / "roc_curve.png")
    plots.pr_plot(y_true, proba, title, plot_dir / "pr_curve.png")
    plots.confusion_plot(y_true, proba >= threshold, title, plot_dir / "confusion_matrix.png")
    plots.calibration_plot(y_true, proba, title, plot_dir / "calibration_curve.png")

    table = fairness.group_table(features, y_true, proba, threshold)
    disparities = fairness.disparities(table)
    fairness_dir = directory / "fairness"
    fairness_dir.mkdir()
    table.to_csv(fairness_dir / "fairness_by_group.csv", index=False)
    disparities.to_csv(fairness_dir / "fairness_disparities.csv")
    summary = {
        "threshold": threshold,
        "min_group_size_for_differences": fairness.MIN_GROUP_SIZE,
        "groups": json.loads(table.to_json(orient="records")),
        "disparities": json.loads(disparities.to_json(orient="index")),
    }
    (fairness_dir / "fairness.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    html = (
        f"<h2>Fairness of {title} at threshold {threshold:.4f}</h2>"
        + table.to_html(index=False, float_format="{:.3f}".format, na_rep="n/a")
        + f"<h3>Differences (groups of at least {fairness.MIN_GROUP_SIZE} rows)</h3>"
        + disparities.to_html(float_format="{:.3f}".format)
    )
    (fairness_dir / "fairness.html").write_text(html, encoding="utf-8")
    return disparities
