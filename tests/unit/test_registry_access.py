"""The registry account: read as a secret, revealed only for MLflow's client, refusals named."""

from __future__ import annotations

import json
import secrets

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import (
    PERMISSION_DENIED,
    RESOURCE_DOES_NOT_EXIST,
    UNAUTHENTICATED,
)

from consumer.settings import Settings as WorkerSettings
from contracts.cli import EXIT_USAGE, settings_or_exit
from contracts.registry_access import access_refusal, credentials_environment
from training.settings import RegistrySettings

_PASSWORD = f"s3cr3t-{secrets.token_hex(8)}"


@pytest.fixture
def account(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker:9092")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "scorer")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", _PASSWORD)
    return monkeypatch


def test_both_services_read_the_account_and_mask_its_password(account: pytest.MonkeyPatch) -> None:
    worker = WorkerSettings()  # type: ignore[call-arg]
    registry = RegistrySettings()
    assert (worker.mlflow_tracking_username, registry.tracking_username) == ("scorer", "scorer")
    for shown in (repr(worker), json.dumps(worker.redacted()), repr(registry), str(registry)):
        assert _PASSWORD not in shown
    assert credentials_environment(registry.tracking_username, registry.tracking_password) == {
        "MLFLOW_TRACKING_USERNAME": "scorer",
        "MLFLOW_TRACKING_PASSWORD": _PASSWORD,
    }
    assert credentials_environment(None, None) == {}


@pytest.mark.parametrize(
    ("unset", "password"),
    [
        ("MLFLOW_TRACKING_USERNAME", _PASSWORD),
        ("MLFLOW_TRACKING_PASSWORD", _PASSWORD),
        (None, "w3ak-pass"),
    ],
    ids=["password alone", "username alone", "password under 12 characters"],
)
def test_a_half_or_weak_account_is_refused_without_echoing_it(
    account: pytest.MonkeyPatch,
    unset: str | None,
    password: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    account.setenv("MLFLOW_TRACKING_PASSWORD", password)
    if unset:
        account.delenv(unset)
    for settings, prefix in ((WorkerSettings, "SCORER_"), (RegistrySettings, "RUMOS_TRAINING_")):
        with pytest.raises(SystemExit) as caught:
            settings_or_exit(settings, prefix)
        assert caught.value.code == EXIT_USAGE
        message = capsys.readouterr().err
        assert "MLFLOW_TRACKING_" in message
        assert password not in message


def test_refusals_say_what_was_refused_and_how_to_fix_it() -> None:
    def error(code: int) -> MlflowException:
        return MlflowException("HTTP error", error_code=code)

    refused = access_refusal(error(UNAUTHENTICATED), "http://mlflow:5000", "scorer")
    assert refused == (
        "registry authentication failed: http://mlflow:5000 refused the credentials of account "
        "'scorer' (HTTP 401); check MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
    )
    anonymous = access_refusal(error(UNAUTHENTICATED), "http://mlflow:5000", None)
    assert anonymous is not None
    assert "no account (set MLFLOW_TRACKING_USERNAME)" in anonymous
    denied = access_refusal(error(PERMISSION_DENIED), "http://mlflow:5000", "scorer")
    assert denied is not None
    assert denied.startswith("registry permission denied:")
    assert "does not let account 'scorer' do this (HTTP 403: not granted, or" in denied
    assert access_refusal(error(RESOURCE_DOES_NOT_EXIST), "http://mlflow:5000", "scorer") is None
    assert access_refusal(OSError("refused"), "http://mlflow:5000", "scorer") is None
