"""Model loading and hot reload: the registry loader (real MLflow, local store) and the watcher."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from consumer.errors import ModelLoadError, ModelRefusedError, RegistryUnreachableError
from consumer.model import AliasWatcher, LoadedModel, ModelRef, RegistryLoader
from consumer.ops import Metrics
from consumer.scoring import score_applications
from consumer.vetting import ModelTrust
from contracts.model_trust import TrustFailure
from contracts.reasons import REASON_TABLE_VERSION
from tests.helpers.applications import applications_from_frame, as_frame
from tests.helpers.champion import (
    register_champion,
    register_foreign_inputs,
    register_unloadable,
)
from tests.helpers.signing import signing_key
from training.packaging import as_model_input
from training.policies import FAIR_LENDING, POLICIES


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.chdir(tmp_path)  # the local store puts artifacts under the working directory
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture
def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _loader(uri: str, cache: Path, name: str = "credit-default") -> RegistryLoader:
    trust = ModelTrust(public_keys=(signing_key().public_key(),))
    return RegistryLoader(
        tracking_uri=uri, model_name=name, alias="champion", cache_dir=cache, trust=trust
    )


def test_the_champion_loads_with_its_threshold_run_and_probabilities(
    registry: str, tmp_path: Path, feature_frame: pd.DataFrame
) -> None:
    champion = register_champion(
        registry, feature_frame, model_name="credit-default", threshold=0.3
    )
    loader = _loader(registry, tmp_path / "cache")

    ref = loader.resolve()
    model = loader.load(ref)

    assert ref == ModelRef("credit-default", champion.version, champion.run_id)
    assert (model.version, model.run_id, model.threshold) == ("1", champion.run_id, 0.3)
    assert model.params["rows"] == "400"
    assert model.metrics["threshold"] == 0.3
    rows = as_model_input(as_frame(applications_from_frame(feature_frame, 100)))
    mlflow.set_registry_uri(registry)  # models:/ resolves through it; the guard restores it
    offline = mlflow.pyfunc.load_model(champion.uri).predict(rows)
    np.testing.assert_array_equal(model.pipeline.predict_proba(rows), np.asarray(offline))
    assert model.describe()["version"] == "1"


def test_a_cached_version_loads_without_the_artifact_store(
    registry: str, tmp_path: Path, feature_frame: pd.DataFrame
) -> None:
    champion = register_champion(registry, feature_frame, model_name="credit-default")
    cache = tmp_path / "cache"
    first = _loader(registry, cache)
    first.load(first.resolve())
    assert (cache / "credit-default" / f"v1-{champion.run_id}" / "MLmodel").is_file()
    for artifacts in ("mlruns", "mlartifacts"):
        shutil.rmtree(tmp_path / artifacts, ignore_errors=True)

    fresh = _loader(registry, cache)
    model = fresh.load(fresh.resolve())

    assert model.version == champion.version


def test_the_loader_ignores_a_process_wide_registry_uri_set_elsewhere(
    registry: str, tmp_path: Path, feature_frame: pd.DataFrame
) -> None:
    champion = register_champion(registry, feature_frame, model_name="credit-default")
    mlflow.set_registry_uri(f"sqlite:///{tmp_path / 'another-registry.db'}")

    loader = _loader(registry, tmp_path / "cache")
    model = loader.load(loader.resolve())

    assert (model.version, model.run_id) == (champion.version, champion.run_id)


def test_a_version_fitted_on_other_columns_is_refused_at_load(
    registry: str, tmp_path: Path, feature_frame: pd.DataFrame
) -> None:
    register_foreign_inputs(registry, feature_frame, model_name="credit-default")
    loader = _loader(registry, tmp_path / "cache")

    refused = r"version 1 does not take a subset of the contract's 23 features: not contract"
    with pytest.raises(ModelLoadError, match=refused):
        loader.load(loader.resolve())


def test_a_policy_version_loads_with_its_own_features_and_explainer(
    registry: str, tmp_path: Path, feature_frame: pd.DataFrame
) -> None:
    fair = POLICIES[FAIR_LENDING].features
    register_champion(registry, feature_frame, model_name="credit-default", features=fair)
    loader = _loader(registry, tmp_path / "cache")

    model = loader.load(loader.resolve())

    assert model.features == fair
    assert not {"sex", "marriage", "age"} & set(model.features)
    assert model.explainer is not None
    assert model.explainer.features == fair
    described = model.describe()
    assert described["features"] == list(fair)
    assert described["explanation_method"] == "linear"
    assert described["reason_table_version"] == REASON_TABLE_VERSION
    scores = score_applications(applications_from_frame(feature_frame, 20), model)
    assert scores.frame is not None
    assert list(scores.frame.columns) == list(fair)


def test_a_version_without_an_explanation_serves_without_reasons(
    registry: str, tmp_path: Path, feature_frame: pd.DataFrame
) -> None:
    register_champion(registry, feature_frame, model_name="credit-default", explanation=None)
    loader = _loader(registry, tmp_path / "cache")

    model = loader.load(loader.resolve())

    assert model.explainer is None
    assert model.describe()["explanation_problem"] == (
        "the model's metadata describes no explanation method"
    )


def test_a_version_whose_artifacts_do_not_deserialize_is_a_model_load_error(
    registry: str, tmp_path: Path, feature_frame: pd.DataFrame
) -> None:
    register_unloadable(registry, feature_frame, tmp_path, model_name="credit-default")
    loader = _loader(registry, tmp_path / "cache")

    with pytest.raises(ModelLoadError, match=r"version 1: its artifacts do not load: BadZipFile"):
        loader.load(loader.resolve())


def test_a_missing_alias_is_a_model_load_error(registry: str, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"models:/absent@champion"):
        _loader(registry, tmp_path / "cache", name="absent").resolve()


def test_an_unreachable_registry_is_a_model_load_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unused_port: int
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with pytest.raises(ModelLoadError, match="cannot resolve"):
        _loader(f"http://127.0.0.1:{unused_port}", tmp_path).resolve()


def test_an_unreachable_registry_is_told_apart_from_an_answer(
    registry: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unused_port: int
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    url = f"http://scorer:secret@127.0.0.1:{unused_port}"
    with pytest.raises(RegistryUnreachableError, match=r"unreachable at .*:\*\*\*@.*ConnectionErr"):
        _loader(url, tmp_path).resolve()
    with pytest.raises(ModelLoadError) as answered:  # the registry answered: no such alias
        _loader(registry, tmp_path / "cache", name="absent").resolve()
    assert not isinstance(answered.value, RegistryUnreachableError)


class FakeLoader:
    """Resolves to ``version``; loading a version listed in ``broken`` fails."""

    def __init__(self) -> None:
        self.version = "1"
        self.broken: set[str] = set()
        self.untrusted: set[str] = set()
        self.resolvable = threading.Event()
        self.resolvable.set()
        self.loads: list[str] = []
        self.resolves = 0

    def resolve(self) -> ModelRef:
        self.resolves += 1
        if not self.resolvable.is_set():
            raise ModelLoadError("registry unreachable")
        return ModelRef("credit-default", self.version, f"run-{self.version}")

    def load(self, ref: ModelRef) -> LoadedModel:
        self.loads.append(ref.version)
        if ref.version in self.broken:
            raise ModelLoadError(f"version {ref.version} is broken")
        if ref.version in self.untrusted:
            raise ModelRefusedError(TrustFailure.UNSIGNED, f"version {ref.version} is not signed")
        return LoadedModel(ref.name, ref.version, ref.run_id, 0.5, pipeline=None)  # type: ignore[arg-type]


def _loads(metrics: Metrics, outcome: str) -> float | None:
    return metrics.registry.get_sample_value("scorer_model_loads_total", {"outcome": outcome})


def test_the_watcher_loads_once_per_version_and_keeps_the_old_one_on_failure() -> None:
    loader, metrics = FakeLoader(), Metrics()
    watcher = AliasWatcher(loader, interval_s=60, events=metrics)
    assert watcher.current is None

    watcher.check()
    watcher.check()
    assert watcher.current is not None
    assert watcher.current.version == "1"
    assert loader.loads == ["1"]

    loader.version, loader.broken = "2", {"2"}
    with pytest.raises(ModelLoadError):
        watcher.check()
    assert watcher.current.version == "1"

    loader.version = "3"
    watcher.check()
    assert watcher.current.version == "3"
    assert loader.loads == ["1", "2", "3"]
    assert (_loads(metrics, "success"), _loads(metrics, "failure")) == (2, 0)
    assert metrics.registry.get_sample_value("scorer_model_version") == 3
    assert (
        metrics.registry.get_sample_value(
            "scorer_model_info", {"name": "credit-default", "version": "3", "run_id": "run-3"}
        )
        == 1
    )


def _refusals(metrics: Metrics, failure: TrustFailure) -> float | None:
    return metrics.registry.get_sample_value(
        "scorer_model_refusals_total", {"failure": failure.value}
    )


def test_a_refused_version_is_not_tried_again_until_the_alias_moves() -> None:
    loader, metrics = FakeLoader(), Metrics()
    watcher = AliasWatcher(loader, interval_s=0.02, events=metrics)
    watcher.start()
    try:
        assert watcher.wait_loaded(10)
        loader.version, loader.untrusted = "2", {"2"}
        _wait_for(lambda: watcher.refused is not None)
        loads, resolves = len(loader.loads), loader.resolves
        # Ten more alias checks, all finding version 2: none loads it again.
        _wait_for(lambda: loader.resolves >= resolves + 10)
        assert loader.loads[loads - 1 :] == ["2"]
        assert watcher.refused is not None
        assert watcher.refused.describe() == {
            "version": "2",
            "failure": "unsigned",
            "reason": "version 2 is not signed",
        }
        assert watcher.problem == "version 2 is not signed (serving version 1)"
        assert watcher.current is not None
        assert watcher.current.version == "1"
        assert _refusals(metrics, TrustFailure.UNSIGNED) == 1

        loader.version = "1"  # the alias moves back: the refusal is forgotten
        _wait_for(lambda: watcher.refused is None and watcher.problem is None)
        loader.version = "2"  # and moving to 2 again tries it again
        _wait_for(lambda: _refusals(metrics, TrustFailure.UNSIGNED) == 2)
        assert loader.loads.count("2") == 2
    finally:
        watcher.stop()


def test_the_watcher_thread_retries_until_the_registry_answers() -> None:
    loader, metrics = FakeLoader(), Metrics()
    loader.resolvable.clear()
    watcher = AliasWatcher(loader, interval_s=0.02, events=metrics)
    watcher.start()
    try:
        _wait_for(lambda: (_loads(metrics, "failure") or 0) >= 2)
        assert watcher.current is None
        loader.resolvable.set()
        assert watcher.wait_loaded(10)
        loader.version = "2"
        _wait_for(lambda: watcher.current is not None and watcher.current.version == "2")
    finally:
        watcher.stop()


class UnreachableLoader(FakeLoader):
    """A ``FakeLoader`` whose registry goes away while ``reachable`` is clear."""

    def __init__(self) -> None:
        super().__init__()
        self.reachable = threading.Event()
        self.reachable.set()

    def resolve(self) -> ModelRef:
        if not self.reachable.is_set():
            raise RegistryUnreachableError("model registry unreachable at http://mlflow")
        return super().resolve()


def _reachable(metrics: Metrics) -> float | None:
    return metrics.registry.get_sample_value("scorer_registry_reachable")


def test_the_watcher_reports_an_unreachable_registry_and_a_refused_version() -> None:
    loader, metrics = UnreachableLoader(), Metrics()
    watcher = AliasWatcher(loader, interval_s=0.02, events=metrics)
    watcher.start()
    try:
        assert watcher.wait_loaded(10)
        _wait_for(lambda: _reachable(metrics) == 1 and watcher.problem is None)

        loader.reachable.clear()
        _wait_for(lambda: _reachable(metrics) == 0)
        assert watcher.problem == "model registry unreachable at http://mlflow (serving version 1)"

        loader.reachable.set()
        loader.version, loader.broken = "2", {"2"}
        _wait_for(lambda: "version 2 is broken" in str(watcher.problem))
        assert _reachable(metrics) == 1
        assert watcher.current is not None
        assert watcher.current.version == "1"

        loader.version = "3"
        _wait_for(lambda: watcher.problem is None)
        assert watcher.current.version == "3"
    finally:
        watcher.stop()


def _wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("condition not met in time")
        time.sleep(0.01)
