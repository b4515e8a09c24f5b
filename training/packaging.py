"""How a credit-default model is stored in MLflow: the format the scorer relies on.

A candidate is logged with the scikit-learn flavor. Its pyfunc ``predict`` returns
``predict_proba`` (column 1 is the probability of default), its input is a frame of
the contract features its feature policy allows, as ``float64`` in ``FEATURE_COLUMNS``
order (the signature names them), and its ``MLmodel`` metadata carries the decision
threshold, the feature policy and how its scores are explained (method and reference
row, see :mod:`consumer.explaining`), so a scorer needs nothing else. The pipeline is
serialized with skops and holds only types in ``contracts.model_trust.SKOPS_ALLOWED_TYPES``;
the scorer reads ``MLmodel`` as data and loads the skops file with that list
(``consumer.vetting``), never through ``mlflow.pyfunc``. Offline, MLflow's own loader
gives the same probabilities::

    model = mlflow.pyfunc.load_model("models:/credit-default/7")
    threshold = float(model.metadata.metadata["threshold"])
    pipeline = model.get_raw_model()          # the fitted sklearn Pipeline
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.metadata import version
from typing import Any

import mlflow
import mlflow.sklearn
import numpy as np
import pandas as pd
import skops.io
from mlflow.models import infer_signature
from mlflow.models.model import ModelInfo
from sklearn.pipeline import Pipeline

from consumer.explaining import build_explainer
from contracts import FEATURE_COLUMNS
from contracts.model_names import (
    EXPLANATION_METADATA_KEY,
    FEATURE_POLICY_METADATA_KEY,
    THRESHOLD_METADATA_KEY,
)
from contracts.model_trust import SKOPS_ALLOWED_TYPES
from training.errors import PackagingError

MODEL_ARTIFACT_NAME = "model"
_RUNTIME_DISTRIBUTIONS = (
    "interpret-core",
    "mlflow",
    "numpy",
    "pandas",
    "scikit-learn",
    "scipy",
    "skops",
)

_EXPLANATION_CHECK_ROWS = 200
"""Rows an explanation method is checked on at logging time: enough to meet every
preprocessing path, few enough for the slow families (k-NN scores k x 200 rows)."""


def as_model_input(
    features: pd.DataFrame, columns: Sequence[str] = FEATURE_COLUMNS
) -> pd.DataFrame:
    """The model's input frame: ``columns`` (default: every contract feature), as float64."""
    return features.loc[:, list(columns)].astype(np.float64)


def typical_applicant(model_input: pd.DataFrame) -> pd.DataFrame:
    """One synthetic row: each feature's median over ``model_input``, rounded to a whole number.

    An aggregate of many applicants describes none of them, so it is safe to ship as an
    input example, and it stays inside the contract's domains (medians of valid values).
    """
    return model_input.median().round().to_frame().T.astype(np.float64)


def log_credit_model(
    pipeline: Pipeline,
    *,
    threshold: float,
    sample: pd.DataFrame,
    registered_model_name: str | None = None,
    pip_requirements: Sequence[str] | None = None,
    features: Sequence[str] = FEATURE_COLUMNS,
    feature_policy: str | None = None,
    explanation: str | None = None,
) -> ModelInfo:
    """Log ``pipeline`` into the active run in the scorer's format; optionally register it.

    ``sample`` is a frame of contract features used for the signature. The stored input
    example is :func:`typical_applicant` of it, never a real client's row: model
    artifacts are copied to every scorer's cache and must carry no personal data.
    The types the pipeline holds beyond skops' default allow-list (trees, optimisers,
    calibrators) are recorded in ``MLmodel`` so ``mlflow.sklearn.load_model`` works with no
    extra argument. ``pip_requirements`` (e.g. :func:`pinned_requirements`) skips MLflow's
    requirement inference, a subprocess that reloads the model (seconds per model).

    Scorers ignore that recorded list and load with their own,
    ``contracts.model_trust.SKOPS_ALLOWED_TYPES``: a pipeline holding any type outside
    it raises :class:`~training.errors.PackagingError` here, before anything is logged.
    ``features`` are the columns the pipeline takes (its policy's); ``explanation`` a
    method of :mod:`consumer.explaining`, checked here on ``sample`` against the typical
    applicant as reference: a model it cannot explain raises
    :class:`~consumer.explaining.ExplanationError` before anything is logged.
    """
    trusted_types = check_scorer_trusts(pipeline)
    model_input = as_model_input(sample, features)
    example = typical_applicant(model_input)
    metadata: dict[str, Any] = {THRESHOLD_METADATA_KEY: float(threshold)}
    if feature_policy is not None:
        metadata[FEATURE_POLICY_METADATA_KEY] = feature_policy
    if explanation is not None:
        reference = {str(name): float(value) for name, value in example.iloc[0].items()}
        check_on = model_input.iloc[:_EXPLANATION_CHECK_ROWS]
        build_explainer(pipeline, explanation, reference, list(features), check_on=check_on)
        metadata[EXPLANATION_METADATA_KEY] = {"method": explanation, "reference": reference}
    signature = infer_signature(model_input, pipeline.predict_proba(model_input))
    return mlflow.sklearn.log_model(
        pipeline,
        name=MODEL_ARTIFACT_NAME,
        signature=signature,
        input_example=example,
        metadata=metadata,
        pyfunc_predict_fn="predict_proba",
        registered_model_name=registered_model_name,
        skops_trusted_types=trusted_types or None,
        pip_requirements=list(pip_requirements) if pip_requirements is not None else None,
    )


def check_scorer_trusts(pipeline: Pipeline) -> list[str]:
    """The types in ``pipeline`` beyond skops' default allow-list, sorted.

    Raises :class:`~training.errors.PackagingError` naming every one of them that scorers
    will not build (outside ``SKOPS_ALLOWED_TYPES``): the allow-list is decided in one place,
    never per family or per artifact.
    """
    untrusted = sorted(set(skops.io.get_untrusted_types(data=skops.io.dumps(pipeline))))
    if refused := [name for name in untrusted if name not in SKOPS_ALLOWED_TYPES]:
        raise PackagingError(
            f"scorers would refuse this model: it holds {refused}, outside "
            "contracts.model_trust.SKOPS_ALLOWED_TYPES (add them there only after review)"
        )
    return untrusted


def pinned_requirements() -> list[str]:
    """Pins, from the running environment, of what a logged pipeline needs to load.

    The same set MLflow infers for these pipelines (the sklearn flavor stores them
    with skops), without its per-model inference subprocess.
    """
    return [f"{name}=={version(name)}" for name in _RUNTIME_DISTRIBUTIONS]
