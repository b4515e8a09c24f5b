"""Fixtures shared by the worker's integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from devstack import WorkerProcess
from tests.fixtures.kafka import TopicFactory
from tests.fixtures.mlflow_server import MlflowNamespace
from tests.helpers.scenario import Scenario


@pytest.fixture
def scenario(
    kafka_bootstrap_servers: str,
    mlflow_tracking_uri: str,
    mlflow_namespace: MlflowNamespace,
    feature_frame: pd.DataFrame,
    new_topic: TopicFactory,
    tmp_path: Path,
) -> Iterator[Scenario]:
    """A champion in the session's MLflow server, fresh topics, and workers to start.

    Modules that need other partitions or another MLflow server override this fixture.
    """
    world = Scenario.create(
        bootstrap_servers=kafka_bootstrap_servers,
        tracking_uri=mlflow_tracking_uri,
        namespace=mlflow_namespace,
        feature_frame=feature_frame,
        new_topic=new_topic,
        workdir=tmp_path,
    )
    yield world
    world.close()


@pytest.fixture
def scorers() -> Iterator[list[WorkerProcess]]:
    """Workers a test starts (append them): stopped at teardown, whatever happened."""
    started: list[WorkerProcess] = []
    yield started
    for scorer in started:
        scorer.kill()
