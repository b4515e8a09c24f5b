"""The champion model: what a loaded model is, how it is fetched, and how it is kept current.

``RegistryLoader`` resolves ``models:/<name>@<alias>`` to a version, downloads that
version's artifacts once into ``<cache>/<name>/v<version>-<run id>`` (a restart
reuses them), vets them with ``consumer.vetting`` (signed manifest, sklearn flavor
serialized with skops, the worker's own type allow-list: every check made on data
before anything from the artifact runs) and only then builds the pipeline.
``AliasWatcher`` runs in a daemon thread: it loads the first model (retrying with
backoff while MLflow or the alias is missing) and then re-checks the alias every
reload interval. A new version is loaded completely before it is published with a
single reference assignment, so the worker, which reads ``current`` once per batch,
swaps models between batches and never sees a half-loaded one. A version that fails
to load leaves the old one serving; one that is refused (``ModelRefusedError``:
untrusted, or not fit to serve, such as one whose input signature is not a subset of
the contract's features) is also not tried again until the alias moves on. A version's
features are its signature's columns (its feature policy chose them at training time);
its explainer, when its metadata names one, is built at load time: a version that
cannot be explained still serves, its scores marked ``reasons_unavailable``.
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

import mlflow.artifacts
import numpy as np
import pandas as pd
import requests
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from consumer.errors import (
    ModelLoadError,
    ModelRefusedError,
    RegistryAccessError,
    RegistryUnreachableError,
)
from consumer.explaining import Explainer, ExplanationError, build_explainer
from consumer.settings import redact_uri
from consumer.vetting import ModelTrust, load_pipeline, vet
from contracts import FEATURE_COLUMNS
from contracts.model_names import (
    EXPLANATION_METADATA_KEY,
    FEATURE_POLICY_METADATA_KEY,
    THRESHOLD_METADATA_KEY,
)
from contracts.model_trust import TrustFailure, UntrustedModelError
from contracts.reasons import REASON_TABLE_VERSION
from contracts.registry_access import access_refusal

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
    tags: Mapping[str, str] = field(default_factory=dict, compare=False)


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
    signed: bool = False
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
            "signed": self.signed,
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

    def __init__(
        self,
        *,
        tracking_uri: str,
        model_name: str,
        alias: str,
        cache_dir: Path,
        trust: ModelTrust,
        username: str | None = None,
    ) -> None:
        self._tracking_uri = tracking_uri
        self._username = username
        self._trust = trust
        self._client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self._model_name = model_name
        self._alias = alias
        self._cache_dir = cache_dir

    def check_access(self) -> None:
        """Raise ``RegistryAccessError`` if the registry refuses this process's credentials or
        its reading the model; a registry that does not answer, or has no such model yet, is
        left to the watcher's retries."""
        try:
            self._client.get_registered_model(self._model_name)
        except _REGISTRY_ERRORS as exc:
            error = self._error(f"cannot read {self._model_name!r}", exc)
            if isinstance(error, RegistryAccessError):
                raise error from exc

    def resolve(self) -> ModelRef:
        """The version the alias points at now. Raises ``ModelLoadError``."""
        try:
            version = self._client.get_model_version_by_alias(self._model_name, self._alias)
        except _REGISTRY_ERRORS as exc:
            action = f"cannot resolve models:/{self._model_name}@{self._alias}"
            raise self._error(action, exc) from exc
        return ModelRef(
            self._model_name, str(version.version), version.run_id, dict(version.tags or {})
        )

    def load(self, ref: ModelRef) -> LoadedModel:
        """Download (or reuse from the cache) and load ``ref``. Raises ``ModelLoadError``."""
        try:
            local = self.artifacts(ref)
            run = self._client.get_run(ref.run_id) if ref.run_id else None
        except _REGISTRY_ERRORS as exc:
            raise self._error(f"cannot load {ref.name} version {ref.version}", exc) from exc
        try:
            vetted = vet(local, ref.tags, self._trust)
        except UntrustedModelError as exc:
            raise ModelRefusedError(
                exc.failure, f"{ref.name} version {ref.version}: {exc}"
            ) from exc
        features = _check_inputs(vetted.input_names, ref)
        threshold = _threshold(vetted.threshold, ref)
        try:
            pipeline = load_pipeline(vetted)
        except Exception as exc:  # a corrupt artifact fails in whichever library reads it
            raise ModelRefusedError(
                TrustFailure.INVALID,
                f"{ref.name} version {ref.version}: its artifacts do not load: "
                f"{type(exc).__name__}: {_first_line(exc)}",
            ) from exc
        if not callable(getattr(pipeline, "predict_proba", None)):
            raise ModelRefusedError(
                TrustFailure.INVALID, f"{ref.name} version {ref.version} has no predict_proba"
            )
        explainer, problem = _explainer(pipeline, vetted.metadata, features)
        return LoadedModel(
            name=ref.name,
            version=ref.version,
            run_id=ref.run_id,
            threshold=threshold,
            pipeline=pipeline,
            metrics=dict(run.data.metrics) if run else {},
            params=dict(run.data.params) if run else {},
            signed=vetted.signed,
            features=features,
            feature_policy=vetted.metadata.get(FEATURE_POLICY_METADATA_KEY),
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
        if refusal := access_refusal(exc, redact_uri(self._tracking_uri), self._username):
            return RegistryAccessError(f"{action}: {refusal}")
        return ModelLoadError(f"{action}: {self._reason(exc)}")

    def _reason(self, exc: BaseException) -> str:
        """``exc``'s first line without the tracking URI's password: MLflow errors quote URLs."""
        reason = _first_line(exc)
        password = urlsplit(self._tracking_uri).password
        return reason.replace(password, "***") if password else reason

    def artifacts(self, ref: ModelRef) -> Path:
        """The local directory of ``ref``'s files, downloaded on first use (not vetted)."""
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


def _check_inputs(names: list[str] | None, ref: ModelRef) -> tuple[str, ...]:
    """The model's input columns; ``ModelRefusedError`` unless they are contract features.

    The worker builds each batch's frame from the applications' fields named by the
    signature; a model fitted on any other column (a raw CSV name, a derived feature)
    would fail every batch, so it is refused here and the current model keeps serving.
    """
    if not names:
        detail = "it has no input signature"
    elif unexpected := [name for name in names if name not in FEATURE_COLUMNS]:
        detail = f"not contract fields: {unexpected[:3]}"
    elif len(set(names)) != len(names):
        detail = "a column appears twice"
    else:
        return tuple(names)
    raise ModelRefusedError(
        TrustFailure.INVALID,
        f"{ref.name} version {ref.version} does not take a subset of the contract's "
        f"{len(FEATURE_COLUMNS)} features: {detail}",
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


def _threshold(raw: Any, ref: ModelRef) -> float:
    try:
        threshold = float(raw)
    except (TypeError, ValueError) as exc:
        raise ModelRefusedError(
            TrustFailure.INVALID,
            f"{ref.name} version {ref.version} has no numeric '{THRESHOLD_METADATA_KEY}' "
            "in its MLmodel metadata",
        ) from exc
    if not 0.0 <= threshold <= 1.0:
        raise ModelRefusedError(
            TrustFailure.INVALID,
            f"{ref.name} version {ref.version} threshold {threshold} not in [0, 1]",
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

    def model_refused(self, failure: TrustFailure) -> None: ...

    def registry_checked(self, reachable: bool) -> None:
        """After each alias check: did the registry answer (even with an error)?"""


@dataclass(frozen=True)
class Refusal:
    """A version the watcher will not load, and why."""

    version: str
    failure: TrustFailure
    reason: str

    def describe(self) -> dict[str, str]:
        return {"version": self.version, "failure": self.failure.value, "reason": self.reason}


class AliasWatcher:
    """Keeps ``current`` equal to the alias's version, loading in a background thread."""

    def __init__(
        self,
        loader: ModelLoader,
        *,
        interval_s: float,
        events: ModelEvents,
        role: str = "champion",
    ) -> None:
        """``role`` names the model in logs and the thread's name (``champion``, ``shadow``)."""
        self._loader = loader
        self._role = role
        self._interval_s = interval_s
        self._events = events
        self._current: LoadedModel | None = None
        self._refused: Refusal | None = None
        self._problem: str | None = None
        self._loaded = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"alias-watcher-{role}", daemon=True)

    @property
    def current(self) -> LoadedModel | None:
        """The model to score the next batch with (None until the first load succeeds)."""
        return self._current

    @property
    def refused(self) -> Refusal | None:
        """The version the alias points at if the watcher refused it (None otherwise)."""
        return self._refused

    @property
    def problem(self) -> str | None:
        """Why the alias's version is not serving, and what still serves (None when it is)."""
        return self._problem

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()

    def wait_loaded(self, timeout: float) -> bool:
        """True once a model is loaded; False if ``timeout`` seconds pass first."""
        return self._loaded.wait(timeout)

    def check(self) -> None:
        """Resolve the alias once; load and publish its version if it is neither the
        current one nor the one last refused.

        Raises ``ModelLoadError`` (the current model, if any, stays); a
        ``ModelRefusedError`` is remembered so the version is not tried again.
        """
        ref = self._loader.resolve()
        current = self._current
        if current is not None and current.version == ref.version:
            self._refused = None
            return
        refused = self._refused
        if refused is not None and refused.version == ref.version:
            return
        self._refused = None
        try:
            model = self._loader.load(ref)
        except ModelRefusedError as exc:
            self._refused = Refusal(ref.version, exc.failure, str(exc))
            self._events.model_refused(exc.failure)
            _log.error(
                "model version refused",
                extra={
                    "role": self._role,
                    "model_version": ref.version,
                    "failure": exc.failure.value,
                    "reason": str(exc),
                },
            )
            raise
        self._current = model  # one reference assignment: the swap is atomic
        self._loaded.set()
        self._events.model_loaded(model)
        _log.info(
            "model loaded",
            extra={
                "role": self._role,
                "model_version": model.version,
                "previous_version": current and current.version,
            },
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
                _log.exception(
                    "unexpected error while checking the model alias", extra={"role": self._role}
                )
                self._failed(f"{type(exc).__name__}: {exc}")
            else:
                refused = self._refused
                self._problem = self._with_serving(refused.reason) if refused else None
                self._events.registry_checked(True)
            delay = self._next_delay(delay)

    def _failed(self, reason: str) -> None:
        self._events.model_load_failed()
        self._problem = self._with_serving(reason)
        serving = self._current.version if self._current else None
        _log.warning(
            "model load failed",
            extra={"role": self._role, "reason": reason, "serving_version": serving},
        )

    def _with_serving(self, reason: str) -> str:
        serving = self._current.version if self._current else None
        return f"{reason} (serving version {serving})" if serving else reason

    def _next_delay(self, delay: float) -> float:
        if self._loaded.is_set():
            return self._interval_s
        return min(self._interval_s, max(_FIRST_RETRY_S, delay * 2))
