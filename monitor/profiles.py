"""Reference profiles from MLflow: the artifact training logged in the version's run."""

from __future__ import annotations

import functools

import mlflow
from mlflow.exceptions import MlflowException
from pydantic import ValidationError

from contracts.profile import REFERENCE_PROFILE_ARTIFACT, ReferenceProfile
from monitor.errors import ProfileError
from monitor.measures import ProfileSource


def mlflow_profiles(tracking_uri: str) -> ProfileSource:
    """A ``ProfileSource`` reading ``runs:/<run id>/reference_profile.json``, each run once."""

    @functools.lru_cache(maxsize=8)
    def load(run_id: str) -> ReferenceProfile:
        uri = f"runs:/{run_id}/{REFERENCE_PROFILE_ARTIFACT}"
        try:
            mlflow.set_tracking_uri(tracking_uri)
            return ReferenceProfile.model_validate_json(mlflow.artifacts.load_text(uri))
        except (MlflowException, OSError, ValidationError) as exc:
            raise ProfileError(f"no usable reference profile at {uri}: {exc}") from exc

    return load
