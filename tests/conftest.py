"""Shared fixtures: the dataset, and (via plugins) a real Kafka broker and MLflow server."""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import _model_registry, _tracking_service

from contracts import FEATURE_BY_CSV_COLUMN, TARGET_COLUMN
from devstack import ROOT, DevstackError, log_tail

pytest_plugins = [
    "tests.fixtures.kafka",
    "tests.fixtures.kafka_secure",
    "tests.fixtures.mlflow_server",
]

_MLFLOW_URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave ``soak`` tests out unless the ``-m`` expression names them (``pytest -m soak``).

    A marker expression in ``addopts`` would not do: any ``-m`` on the command line
    replaces it, and CI's ``-m integration`` must not start a ten-minute run.
    """
    if "soak" in (config.option.markexpr or ""):
        return
    soak = [item for item in items if item.get_closest_marker("soak")]
    if soak:
        config.hook.pytest_deselected(items=soak)
        items[:] = [item for item in items if not item.get_closest_marker("soak")]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Quote the log of a service that failed (``DevstackError.log_path``) in the report,
    and, when a test with a ``Scenario`` fails, where each of its workers is and what it logged.

    ``devstack`` keeps its messages to one line for the demo's sake; a test needs the log.
    """
    report: pytest.TestReport = yield
    error = call.excinfo.value if call.excinfo is not None else None
    if isinstance(error, DevstackError) and error.log_path is not None:
        report.sections.append((f"log {error.log_path}", log_tail(error.log_path)))
    # Looked up by name: importing tests.helpers.scenario here would import the fixture
    # plugins before pytest can rewrite their asserts.
    world = getattr(item, "funcargs", {}).get("scenario")
    if report.failed and call.when == "call" and hasattr(world, "failure_sections"):
        report.sections.extend(world.failure_sections())
    return report


@contextmanager
def _mlflow_uris_kept() -> Iterator[None]:
    """Undo any change to MLflow's process-wide tracking and registry URIs made inside.

    ``mlflow.set_tracking_uri``/``set_registry_uri`` write module globals and export
    environment variables; code that leaves them set sends later registrations and
    ``models:/`` loads to its store. The globals are private, hence this one place.
    """
    tracking, registry = _tracking_service.utils, _model_registry.utils
    saved_globals = (tracking._tracking_uri, registry._registry_uri)
    saved_env = {name: os.environ.get(name) for name in _MLFLOW_URI_VARIABLES}
    try:
        yield
    finally:
        tracking._tracking_uri, registry._registry_uri = saved_globals
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(autouse=True, scope="module")
def _mlflow_uris_kept_per_module() -> Iterator[None]:
    """For module-scoped fixtures (a training run a module shares): they are set up before
    any test's own guard below, so without this one their changes outlive the module (seen
    as "Registered Model not found" in a later module of the same pytest process)."""
    with _mlflow_uris_kept():
        yield


@pytest.fixture(autouse=True)
def _mlflow_uris_kept_per_test() -> Iterator[None]:
    with _mlflow_uris_kept():
        yield


def _dataset_path() -> Path:
    configured = os.environ.get("RUMOS_DATA")
    return Path(configured) if configured else ROOT / "data" / "credit_default.csv"


@pytest.fixture(scope="session")
def credit_csv() -> Path:
    """The real dataset. Missing data is an error, never a skip: CI must prove the real thing."""
    path = _dataset_path()
    if not path.is_file():
        pytest.fail(
            f"dataset not found at {path}: set RUMOS_DATA or run scripts/bootstrap "
            "with ../shared/data/credit_default.csv present"
        )
    return path


@pytest.fixture(scope="session")
def credit_frame(credit_csv: Path) -> pd.DataFrame:
    """All rows of the dataset, as read from the CSV (UCI column names)."""
    return pd.read_csv(credit_csv)


@pytest.fixture(scope="session")
def sample_csv(credit_frame: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stratified 3,000-row sample of the dataset, for quick training in tests."""
    sample = credit_frame.groupby(TARGET_COLUMN, group_keys=False).sample(
        frac=3000 / len(credit_frame), random_state=7
    )
    path = tmp_path_factory.mktemp("data") / "sample.csv"
    sample.to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def feature_frame(credit_frame: pd.DataFrame) -> pd.DataFrame:
    """The dataset with contract (snake_case) column names, target included."""
    return credit_frame.rename(columns=FEATURE_BY_CSV_COLUMN)
