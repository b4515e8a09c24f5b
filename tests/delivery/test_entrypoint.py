"""docker/entrypoint.sh, run here as the image runs it: job dispatch and the trainer's check.

The champion check talks to a real MLflow registry (a SQLite store in a temp dir), so the
three outcomes are the ones compose's trainer meets: no champion, a champion, no registry.
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest
from mlflow import MlflowClient

from contracts.model_names import CHAMPION_ALIAS, MODEL_NAME
from devstack import ROOT
from tests.delivery.support import VENV_BIN

ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"


def _run(
    *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    """The entry point under POSIX sh with the venv's python first on PATH, as in the image."""
    base = {
        k: v for k, v in os.environ.items() if not k.startswith(("SCORER_", "MLFLOW_", "KAFKA_"))
    }
    base["PATH"] = f"{VENV_BIN}:{base.get('PATH', '/usr/bin:/bin')}"
    base["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        ["/bin/sh", str(ENTRYPOINT), *args],
        env={**base, **(env or {})}, cwd=cwd, capture_output=True, text=True, timeout=300,
        check=False,
    )  # fmt: skip


def _registry(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'registry.db'}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_no_argument_runs_the_worker() -> None:
    result = _run()
    # The worker itself answered: it names the setting it misses and exits 2.
    assert result.returncode == 2
    assert "KAFKA_BOOTSTRAP_SERVERS" in result.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("train", "--help"), "Usage: python -m training"),
        (("producer", "publish", "--help"), "Publish applications"),
        (("publish", "--help"), "Publish applications"),
        (("follow", "--help"), "committed scores"),
        (("monitor", "--help"), "Watch the champion live"),
        (("echo", "any command"), "any command"),
    ],
)
def test_the_first_argument_picks_the_job(args: tuple[str, ...], expected: str) -> None:
    result = _run(*args)
    assert result.returncode == 0, result.stderr
    assert expected in " ".join(result.stdout.split())


def test_trains_when_the_registry_has_no_champion(tmp_path: Path) -> None:
    env = {"MLFLOW_TRACKING_URI": _registry(tmp_path)}
    result = _run("train-if-no-champion", "--help", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"no champion: models:/{MODEL_NAME}@{CHAMPION_ALIAS}" in result.stdout
    assert "Usage: python -m training" in " ".join(result.stdout.split())


def test_trains_when_the_model_exists_without_a_champion(tmp_path: Path) -> None:
    uri = _registry(tmp_path)
    MlflowClient(tracking_uri=uri, registry_uri=uri).create_registered_model(MODEL_NAME)
    result = _run("train-if-no-champion", "--help", env={"MLFLOW_TRACKING_URI": uri}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"no champion: models:/{MODEL_NAME}@{CHAMPION_ALIAS}" in result.stdout
    assert "Usage: python -m training" in " ".join(result.stdout.split())


def test_skips_training_when_a_champion_exists(tmp_path: Path) -> None:
    uri = _registry(tmp_path)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model(MODEL_NAME)
    version = client.create_model_version(MODEL_NAME, source=str(tmp_path / "model"))
    client.set_registered_model_alias(MODEL_NAME, CHAMPION_ALIAS, version.version)
    # An option training would reject (exit 2) proves training never ran.
    env = {"MLFLOW_TRACKING_URI": uri}
    result = _run("train-if-no-champion", "--no-such-option", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"champion exists: models:/{MODEL_NAME}@{CHAMPION_ALIAS} is version 1" in result.stdout


def test_an_unreachable_registry_is_an_error_not_a_reason_to_train(tmp_path: Path) -> None:
    env = {
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{_free_port()}",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
    }
    result = _run("train-if-no-champion", "--help", env=env, cwd=tmp_path)
    assert result.returncode not in (0, 3)
    assert "could not ask the registry for a champion" in result.stderr
    assert "Usage: python -m training" not in result.stdout
