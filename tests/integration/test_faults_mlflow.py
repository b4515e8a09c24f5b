"""MLflow down: scoring never needs the registry; reloading waits for it to come back.

Mid-stream, the worker keeps scoring with the model it loaded, stays ready, and says
the registry is unreachable (``scorer_registry_reachable`` 0, a ``/readyz`` warning);
once MLflow is back the warning clears and moving ``champion`` swaps models again. At
start-up, a worker whose registry is down is not ready and says why, then becomes
ready by itself when MLflow comes up. Each test runs its own MLflow server, stopped
and restarted on the same port with the same store.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from devstack import MlflowServer, WorkerProcess, unique_name
from tests.fixtures.kafka import TopicFactory
from tests.fixtures.mlflow_server import MlflowNamespace
from tests.helpers.observe import metric_value, wait_for
from tests.helpers.scenario import Scenario, scored_so_far
from tests.helpers.stream import dataset_stream

pytestmark = pytest.mark.integration

_RATE_PER_S = 100.0
_TAIL = 300


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[MlflowServer]:
    server = MlflowServer.start(tmp_path / "mlflow")
    yield server
    server.stop()


@pytest.fixture
def scenario(
    kafka_bootstrap_servers: str,
    mlflow_server: MlflowServer,
    mlflow_namespace: MlflowNamespace,
    feature_frame: pd.DataFrame,
    new_topic: TopicFactory,
    tmp_path: Path,
) -> Iterator[Scenario]:
    world = Scenario.create(
        bootstrap_servers=kafka_bootstrap_servers,
        tracking_uri=mlflow_server.url,
        namespace=mlflow_namespace,
        feature_frame=feature_frame,
        new_topic=new_topic,
        workdir=tmp_path,
    )
    yield world
    world.close()


def _registry(worker: WorkerProcess) -> tuple[float | None, int, dict[str, list[str]]]:
    """``(scorer_registry_reachable, /readyz status, /readyz reasons and warnings)``."""
    metrics_status, metrics = worker.get("/metrics")
    status, body = worker.get("/readyz")
    body = body if isinstance(body, dict) else {}
    lists = {key: list(body.get(key, [])) for key in ("reasons", "warnings")}
    reachable = metric_value(metrics, "scorer_registry_reachable") if metrics_status else None
    return reachable, status, lists


def _unreachable_warned(state: tuple[float | None, int, dict[str, list[str]]]) -> bool:
    reachable, _, lists = state
    return reachable == 0 and any("registry unreachable" in w for w in lists["warnings"])


def test_mlflow_down_mid_stream_scoring_goes_on_and_reloads_resume_when_it_is_back(
    scenario: Scenario, mlflow_server: MlflowServer, feature_frame: pd.DataFrame
) -> None:
    first = scenario.register()
    worker = scenario.start_worker("mlflow-0")
    publisher = scenario.publish(
        dataset_stream(feature_frame, unique_name("mlflow")), rate_per_s=_RATE_PER_S
    )
    wait_for(
        lambda: scored_so_far(worker),
        lambda scored: scored >= 200,
        timeout_s=120,
        what="200 applications scored",
    )
    assert _registry(worker)[0] == 1.0

    try:
        mlflow_server.stop()
        _, status, lists = wait_for(
            lambda: _registry(worker),
            _unreachable_warned,
            timeout_s=90,
            what="the registry reported unreachable",
        )
        assert (status, lists["reasons"]) == (200, []), "an unreachable registry made it unready"
        assert f"serving version {first.version}" in lists["warnings"][0]
        down_at = scored_so_far(worker)
        wait_for(
            lambda: scored_so_far(worker),
            lambda scored: scored >= down_at + 200,
            timeout_s=120,
            what="200 more applications scored while MLflow is down",
        )
    finally:
        mlflow_server.restart()
    wait_for(
        lambda: _registry(worker),
        lambda state: state[0] == 1.0 and not state[2]["warnings"],
        timeout_s=90,
        what="the registry reachable again, warning cleared",
    )

    second = scenario.register(seed=1, threshold=0.45)  # the alias moves once MLflow is back
    wait_for(
        lambda: worker.get("/model")[1].get("version"),
        lambda version: version == second.version,
        timeout_s=60,
        what=f"version {second.version} serving",
    )
    ids = publisher.stop_after(_TAIL)
    scenario.wait_for_outcomes(ids)
    scenario.stop_workers()

    audit = scenario.audit()
    audit.assert_exactly_once(ids)
    assert {s.model_version for s in audit.scores} == {first.version, second.version}
    audit.assert_versions_never_go_back()


def test_mlflow_down_at_start_up_is_not_ready_with_the_reason_then_recovers(
    scenario: Scenario, mlflow_server: MlflowServer, feature_frame: pd.DataFrame
) -> None:
    champion = scenario.register()
    try:
        mlflow_server.stop()
        worker = scenario.start_worker("mlflow-late-0", wait_ready=False)
        _, status, lists = wait_for(
            lambda: _registry(worker),
            _unreachable_warned,
            timeout_s=90,
            what="the worker reporting the registry unreachable",
        )
        assert status == 503
        assert "no model loaded" in lists["reasons"]
        assert lists["warnings"][0].startswith(
            f"cannot resolve models:/{scenario.namespace.model_name}@champion: "
            f"model registry unreachable at {mlflow_server.url}"
        )
    finally:
        mlflow_server.restart()
    worker.wait_ready()  # by itself: the watcher keeps retrying
    assert worker.get("/model")[1]["version"] == champion.version

    publisher = scenario.publish(dataset_stream(feature_frame, unique_name("late")), rate_per_s=500)
    ids = publisher.stop_after(300)
    scenario.wait_for_outcomes(ids)
    assert worker.process.poll() is None
    scenario.stop_workers()
    scenario.audit().assert_exactly_once(ids)
