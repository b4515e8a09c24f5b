"""Versions an attacker with write access to the registry could register, for refusal tests.

Each malicious one would create ``marker`` if any of its code ran: a ``python_function``
model whose ``load_context`` writes it, and an sklearn pipeline serialized with skops that
holds ``MarkerTrap``, whose ``__setstate__`` writes it when skops builds the object (and
whose ``MLmodel`` lists it as trusted). ``register_copy`` re-registers a signed version's
files, altered or not, with the original's signature tags copied, as someone without the
private key would have to.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

import mlflow
import mlflow.artifacts
import mlflow.pyfunc
import mlflow.sklearn
import numpy as np
import pandas as pd
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from contracts import TARGET_COLUMN
from contracts.model_names import CHAMPION_ALIAS, EXPERIMENT_NAME, THRESHOLD_METADATA_KEY
from contracts.model_trust import KEY_ID_TAG, MANIFEST_TAG, SIGNATURE_TAG
from tests.helpers.signing import sign
from training.packaging import as_model_input, pinned_requirements
from training.tracking import using_tracking_uri

MARKER_TRAP_TYPE = f"{__name__}.MarkerTrap"


class MarkerTrap(BaseEstimator, TransformerMixin):  # type: ignore[misc]
    """A pass-through step that writes ``marker`` when deserialised in any process but the
    one that made it (MLflow round-trips the pipeline while saving it): code run by a load."""

    def __init__(self, marker: str = "", creator_pid: int = 0) -> None:
        self.marker = marker
        self.creator_pid = creator_pid

    def fit(self, X: Any, y: Any = None) -> Self:  # noqa: N803 (sklearn's name)
        return self

    def transform(self, X: Any) -> Any:  # noqa: N803
        return X

    def __setstate__(self, state: dict[str, Any]) -> None:
        if state.get("creator_pid") != os.getpid():
            Path(state["marker"]).write_text("MarkerTrap.__setstate__ ran")
        super().__setstate__(state)


class Backdoor(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
    """A pyfunc model with the contract's signature whose ``load_context`` writes ``marker``."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def load_context(self, context: Any) -> None:
        Path(self.marker).write_text("Backdoor.load_context ran")

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        return np.zeros((len(model_input), 2))


def register_backdoor(
    tracking_uri: str, feature_frame: pd.DataFrame, marker: Path, *, model_name: str
) -> str:
    """Register and sign a :class:`Backdoor` version and make it champion; its version."""
    model_input = as_model_input(feature_frame.head(50))
    signature = infer_signature(model_input, np.zeros((len(model_input), 2)))
    return _registered(
        tracking_uri,
        model_name,
        lambda: mlflow.pyfunc.log_model(
            name="model",
            python_model=Backdoor(str(marker)),
            signature=signature,
            metadata={THRESHOLD_METADATA_KEY: 0.35},
            registered_model_name=model_name,
            pip_requirements=pinned_requirements(),
        ),
    )


def register_trap(
    tracking_uri: str, feature_frame: pd.DataFrame, marker: Path, *, model_name: str
) -> str:
    """Register and sign an sklearn/skops version holding a :class:`MarkerTrap` (listed as
    trusted in its own ``MLmodel``) and make it champion; its version."""
    sample = feature_frame.sample(n=400, random_state=0)
    inputs = as_model_input(sample)
    trap = MarkerTrap(str(marker), os.getpid())
    pipeline = make_pipeline(trap, LogisticRegression(max_iter=1_000))
    pipeline.fit(inputs, sample[TARGET_COLUMN])
    return _registered(
        tracking_uri,
        model_name,
        lambda: mlflow.sklearn.log_model(
            pipeline,
            name="model",
            signature=infer_signature(inputs, pipeline.predict_proba(inputs)),
            metadata={THRESHOLD_METADATA_KEY: 0.35},
            pyfunc_predict_fn="predict_proba",
            registered_model_name=model_name,
            skops_trusted_types=[MARKER_TRAP_TYPE],
            pip_requirements=pinned_requirements(),
        ),
    )


def download_version(tracking_uri: str, model_name: str, version: str, into: Path) -> Path:
    """The files of ``version`` as a scorer downloads them."""
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    return Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=client.get_model_version_download_uri(model_name, version),
            dst_path=str(into),
            tracking_uri=tracking_uri,
        )
    )


def register_copy(
    tracking_uri: str, directory: Path, *, model_name: str, signed_like: str | None = None
) -> str:
    """Register ``directory`` as a new version; copy ``signed_like``'s signature tags onto it."""
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    with using_tracking_uri(tracking_uri):
        mlflow.set_experiment(EXPERIMENT_NAME)
        with mlflow.start_run() as run:
            mlflow.log_artifacts(str(directory), "model")
        version = str(mlflow.register_model(f"runs:/{run.info.run_id}/model", model_name).version)
    if signed_like is not None:
        tags = client.get_model_version(model_name, signed_like).tags
        for key in (MANIFEST_TAG, SIGNATURE_TAG, KEY_ID_TAG):
            client.set_model_version_tag(model_name, version, key, tags[key])
    return version


def _registered(tracking_uri: str, model_name: str, log: Callable[[], Any]) -> str:
    with using_tracking_uri(tracking_uri):
        mlflow.set_experiment(EXPERIMENT_NAME)
        with mlflow.start_run():
            version = str(log().registered_model_version)
    sign(tracking_uri, model_name, version)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    client.set_registered_model_alias(model_name, CHAMPION_ALIAS, version)
    return version
