"""The champion model: what a loaded model is, how it is fetched, and how it is kept current.

``RegistryLoader`` resolves ``models:/<name>@<alias>`` to a version, downloads that
version's artifacts once into ``<cache>/<name>/v<version>-<run id>`` (a restart
reuses them) and loads them the way ``training.packaging`` documents.
``AliasWatcher`` runs in a daemon thread: it loads the first model (retrying with
backoff while MLflow or the alias is missing) and then re-checks the alias every
reload interval. A new version is loaded completely before it is published with a
single reference assignment, so the worker, which reads ``current`` once per batch,
swaps models between batches and never sees a half-loaded one. A version that fails
to load, or whose input signature is not a subset of the contract's features, leaves
the old one serving. A version's features are its signature's columns (its feature
policy chose them at training time); its explainer, when its metadata names one, is
built at load time: a version that cannot be explained still serves, its scores
marked ``reasons_unavailable``.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

import mlflow
import mlflow.artifacts
import mlflow.pyfunc
import numpy as np
import pandas as pd
import requests
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.types import Schema

from consumer.errors import ModelLoadError, RegistryUnreachableError
from consumer.explaining import Explainer, ExplanationError, build_explainer
from consumer.settings import redact_uri
from contracts import FEATURE_COLUMNS
from contracts.model_names import (
    EXPLANATION_METADATA_KEY,
    FEATURE_POLICY_METADATA_KEY,
    THRESHOLD_METADATA_KEY,
)
from contracts.reasons import REASON_TABLE_VERSION

_log = logging.getLogger(__name__)

_FIRST_RETRY_S: Final = 1.0
_MAX_CAUSES: Final = 10
_UNSAFE_PATH_CHARS: Final = re.compile(r"[^A-Za-z0-9._-]")


class ProbabilityModel(Protocol):
    """What scoring needs from a model: sklearn's ``predict_proba``."""

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray: ...  # noqa: N803 (sklearn's name)


@dataclass(frozen=True)
class ModelRef:
    """A registered model version, as the alias currently resolves."""

    name: str
    version: str
    run_id: str | None


@dataclass(frozen=True)
class LoadedModel:
    """A fully loaded model version and everything reported about it."""

    name: str
    version: str
    run_id: str | None
    threshold: float
    pipeline: ProbabilityModel
    metrics: Mapping[str, float] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    features: tuple[str, ...] = FEATURE_COLUMNS
    """The contract fields the model takes, in its signature's order."""
    feature_policy: str | None = None
    explainer: Explainer | None = None
    """None: the model's scores carry no reasons (``explanation_problem`` says why)."""
    explanation_problem: str | None = None

    def describe(self) -> dict[str, Any]:
        """JSON-safe description for ``/model`` and logs (no artifacts, no credentials)."""
        return {
            "name": self.name,
            "version": self.version,
            "run_id": self.run_id,
            "threshold": self.threshold,
            "feature_policy": self.feature_policy,
            "features": list(self.features),
            "reason_table_version": REASON_TABLE_VERSION,
            "explanation_method": self.explainer.method if self.explainer else None,
            "explanation_problem": self.explanation_problem,
            "metrics": dict(self.metrics),
            "params": dict(self.params),
            "loaded_at": self.loaded_at.isoformat(),
        }


class ModelLoader(Protocol):
    """Resolves the alias and loads versions; ``RegistryLoader`` or a test fake."""

    def resolve(self) -> ModelRef: ...

    def load(self, ref: ModelRef) -> LoadedModel: ...


# Errors a registry round trip can raise; anything else is a bug and is logged as one.
_REGISTRY_ERRORS: Final = (MlflowException, OSError, requests.RequestException)


class RegistryLoader:
    """Loads ``models:/<model_name>@<alias>`` from an MLflow registry, with a local cache."""

    def __init__(self, *, tracking_uri: str, model_name: str, alias: str, cache_dir: Path) -> None:
        self._tracking_uri = tracking_uri
        self._client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self._model_name = model_name
        self._alias = alias
        self._cache_dir = cache_dir

    def resolve(self) -> ModelRef:
        """The version the alias points at now. Raises ``ModelLoadError``."""
        try:
            version = self._client.get_model_version_by_alias(self._model_name, self._alias)
        except _REGISTRY_ERRORS as exc:
            action = f"cannot resolve models:/{self._model_name}@{self._alias}"
            raise self._error(action, exc) from exc
        return ModelRef(self._model_name, str(version.version), version.run_id)

    def load(self, ref: ModelRef) -> LoadedModel:
        """Download (or reuse from the cache) and load ``ref``. Raises ``ModelLoadError``."""
        try:
            local = self._cached_artifacts(ref)
            run = self._client.get_run(ref.run_id) if ref.run_id else None
        except _REGISTRY_ERRORS as exc:
            raise self._error(f"cannot load {ref.name} version {ref.version}", exc) from exc
        try:
            pyfunc_model = mlflow.pyfunc.load_model(str(local))
        except Exception as exc:  # a corrupt artifact fails in whichever library reads it
            raise ModelLoadError(
                f"{ref.name} version {ref.version}: its artifacts do not load: "
                f"{type(exc).__name__}: {_first_line(exc)}"
            ) from exc
        features = _check_inputs(pyfunc_model.metadata.get_input_schema(), ref)
        pipeline = pyfunc_model.get_raw_model()
        if not callable(getattr(pipeline, "predict_proba", None)):
            raise ModelLoadError(f"{ref.name} version {ref.version} has no predict_proba")
        metadata = pyfunc_model.metadata.metadata or {}
        explainer, problem = _explainer(pipeline, metadata, features)
        return LoadedModel(
            name=ref.name,
            version=ref.version,
            run_id=ref.run_id,
            threshold=_threshold(pyfunc_model.metadata.metadata, ref),
            pipeline=pipeline,
            metrics=dict(run.data.metrics) if run else {},
            params=dict(run.data.params) if run else {},
            features=features,
            feature_policy=metadata.get(FEATURE_POLICY_METADATA_KEY),
            explainer=explainer,
            explanation_problem=problem,
        )

    def _error(self, action: str, exc: BaseException) -> ModelLoadError:
        """The ``ModelLoadError`` for ``exc``: ``RegistryUnreachableError`` if nothing answered."""
        if (cause := _connection_failure(exc)) is not None:
            where = redact_uri(self._tracking_uri)
            return RegistryUnreachableError(
                f"{action}: model registry unreachable at {where} ({type(cause).__name__})"
            )
        return ModelLoadError(f"{action}: {self._reason(exc)}")

    def _reason(self, exc: BaseException) -> str:
        """``exc``'s first line without the tracking URI's password: MLflow errors quote URLs."""
        reason = _first_line(exc)
        password = urlsplit(self._tracking_uri).password
        return reason.replace(password, "***") if password else reason

    def _cached_artifacts(self, ref: ModelRef) -> Path:
        key = _UNSAFE_PATH_CHARS.sub("_", f"v{ref.version}-{ref.run_id or 'no-run'}")
        target = self._cache_dir / _UNSAFE_PATH_CHARS.sub("_", ref.name) / key
        if target.is_dir():
            _log.info("model %s version %s found in cache %s", ref.name, ref.version, target)
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        # Download next to the target and rename: a crash mid-download never leaves a
        # directory that looks complete.
        staging = Path(tempfile.mkdtemp(prefix=".download-", dir=target.parent))
        try:
            # The version's own artifact location, resolved through this loader's client:
            # a ``models:/`` URI would be resolved through MLflow's process-global
            # registry URI instead, whatever the arguments say.
            downloaded = mlflow.artifacts.download_artifacts(
                artifact_uri=self._client.get_model_version_download_uri(ref.name, ref.version),
                dst_path=str(staging),
                tracking_uri=self._tracking_uri,
            )
            Path(downloaded).rename(target)
        except OSError:
            if not target.is_dir():  # not a concurrent download by a sibling worker
                raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target


def _check_inputs(schema: Schema | None, ref: ModelRef) -> tuple[str, ...]:
    """The model's input columns; ``ModelLoadError`` unless they are contract features.

    The worker builds each batch's frame from the applications' fields named by the
    signature; a model fitted on any other column (a raw CSV name, a derived feature)
    would fail every batch, so it is refused here and the current model keeps serving.
    """
    names = [str(name) for name in schema.input_names()] if schema is not None else None
    if not names:
        detail = "it has no input signature"
    elif unexpected := [name for name in names if name not in FEATURE_COLUMNS]:
        detail = f"not contract fields: {unexpected[:3]}"
    elif len(set(names)) != len(names):
        detail = "a column appears twice"
    else:
        return tuple(names)
    raise ModelLoadError(
        f"{ref.name} version {ref.version} does not take a subset of the contract's "
        f"{len(FEATURE_COLUMNS)} features: {detail}"
    )


def _explainer(
    pipeline: Any, metadata: Mapping[str, Any], features: tuple[str, ...]
) -> tuple[Explainer | None, str | None]:
    """The explainer the model's metadata describes, or None and why not."""
    described = metadata.get(EXPLANATION_METADATA_KEY)
    if not isinstance(described, Mapping):
        return None, "the model's metadata describes no explanation method"
    try:
        explainer = build_explainer(
            pipeline, str(described.get("method")), described.get("reference") or {}, features
        )
    except ExplanationError as exc:
        return None, str(exc)
    return explainer, None


def _threshold(metadata: Mapping[str, Any] | None, ref: ModelRef) -> float:
    raw = (metadata or {}).get(THRESHOLD_METADATA_KEY)
    try:
        threshold = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise ModelLoadError(
            f"{ref.name} version {ref.version} has no numeric '{THRESHOLD_METADATA_KEY}' "
            "in its MLmodel metadata"
        ) from exc
    if not 0.0 <= threshold <= 1.0:
        raise ModelLoadError(
            f"{ref.name} version {ref.version} threshold {threshold} not in [0, 1]"
        )
    return threshold


def _connection_failure(exc: BaseException) -> BaseException | None:
    """The failure to reach the server that ``exc`` is or was raised from, if any.

    MLflow re-raises connection errors and timeouts as a bare ``MlflowException``; the
    original stays its ``__context__``.
    """
    seen: BaseException | None = exc
    for _ in range(_MAX_CAUSES):
        if seen is None or isinstance(seen, (requests.ConnectionError, requests.Timeout)):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


class ModelEvents(Protocol):
    """Where the watcher reports outcomes (the metrics)."""

    def model_loaded(self, model: LoadedModel) -> None: ...

    def model_load_failed(self) -> None: ...

    def registry_checked(self, reachable: bool) -> None:
        """After each alias check: did the registry answer (even with an error)?"""


class AliasWatcher:
    """Keeps ``current`` equal to the alias's version, loading in a background thread."""

    def __init__(self, loader: ModelLoader, *, interval_s: float, events: ModelEvents) -> None:
        self._loader = loader
        self._interval_s = interval_s
        self._events = events
        self._current: LoadedModel | None = None
        self._problem: str | None = None
        self._loaded = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alias-watcher", daemon=True)

    @property
    def current(self) -> LoadedModel | None:
        """The model to score the next batch with (None until the first load succeeds)."""
        return self._current

    @property
    def problem(self) -> str | None:
        """Why the last alias check failed, and what still serves (None once one succeeds)."""
        return self._problem

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()

    def wait_loaded(self, timeout: float) -> bool:
        """True once a model is loaded; False if ``timeout`` seconds pass first."""
        return self._loaded.wait(timeout)

    def check(self) -> None:
        """Resolve the alias once; load and publish its version if it is not the current one.

        Raises ``ModelLoadError`` (the current model, if any, stays).
        """
        ref = self._loader.resolve()
        current = self._current
        if current is not None and current.version == ref.version:
            return
        model = self._loader.load(ref)
        self._current = model  # one reference assignment: the swap is atomic
        self._loaded.set()
        self._events.model_loaded(model)
        _log.info(
            "model loaded",
            extra={"model_version": model.version, "previous_version": current and current.version},
        )

    def _run(self) -> None:
        delay = 0.0
        while not self._stopping.wait(delay):
            try:
                self.check()
            except ModelLoadError as exc:
                self._events.registry_checked(not isinstance(exc, RegistryUnreachableError))
                self._failed(str(exc))
            except Exception as exc:  # a bug must not kill the thread that keeps models fresh
                _log.exception("unexpected error while checking the model alias")
                self._failed(f"{type(exc).__name__}: {exc}")
            else:
                self._problem = None
                self._events.registry_checked(True)
            delay = self._next_delay(delay)

    def _failed(self, reason: str) -> None:
        self._events.model_load_failed()
        serving = self._current.version if self._current else None
        self._problem = f"{reason} (serving version {serving})" if serving else reason
        _log.warning("model load failed", extra={"reason": reason, "serving_version": serving})

    def _next_delay(self, delay: float) -> float:
        if self._loaded.is_set():
            return self._interval_s
        return min(self._interval_s, max(_FIRST_RETRY_S, delay * 2))
