"""A registry that checks who is asking: MLflow's basic-auth app with the compose accounts.

One authenticated server for the module (tests/fixtures/mlflow_server.py), its accounts made
by ``training.accounts``. The scorer's account reads the champion, as the worker loads it,
and nothing else; its attempts to register a version, move an alias or delete one are
answered 403 and leave the registry as it was. The trainer's account does all three. A
worker and a trainer given a wrong password stop well inside a deadline far shorter than
retrying would take, saying the registry refused their credentials, and no password shows
in anything they print (the worker a process of its own, started with the module so that its
start overlaps the set-up; the trainer's command line in this one).
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from typer.testing import CliRunner, Result

from consumer.model import RegistryLoader
from consumer.vetting import ModelTrust
from contracts.model_names import CHAMPION_ALIAS, PREVIOUS_ALIAS
from contracts.model_trust import load_public_keys
from contracts.registry_access import ADMIN_ACCOUNT, SCORER_ACCOUNT, TRAINER_ACCOUNT
from devstack import ROOT, worker_env
from tests.fixtures.mlflow_server import AuthenticatedMlflow
from tests.helpers.champion import RegisteredChampion, register_champion
from tests.helpers.signing import public_key_pem_text
from training import cli as training_cli
from training.registry import aliases, promote

pytestmark = pytest.mark.integration

# Far longer than refusing takes, far shorter than retrying for ever: reaching it fails.
_FAIL_FAST_DEADLINE_S = 90.0
_WRONG_PASSWORD = secrets.token_urlsafe(16)

Switch = Callable[[str], MlflowClient]


@pytest.fixture
def ask_as(authenticated_mlflow: AuthenticatedMlflow, monkeypatch: pytest.MonkeyPatch) -> Switch:
    """Make this process's MLflow clients ask as an account; returns a client for the server."""

    def switch(account: str) -> MlflowClient:
        for name, value in authenticated_mlflow.env(account).items():
            monkeypatch.setenv(name, value)
        return MlflowClient(authenticated_mlflow.url, authenticated_mlflow.url)

    return switch


@pytest.fixture(scope="module", autouse=True)
def refused_worker(
    authenticated_mlflow: AuthenticatedMlflow, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[subprocess.Popen[str]]:
    """``python -m consumer`` as the scorer with a wrong password, started as soon as the server
    answers (autouse), so that its interpreter start overlaps the module's other set-up."""
    process = subprocess.Popen(
        [sys.executable, "-m", "consumer"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={
            **worker_env(
                kafka_bootstrap_servers="127.0.0.1:1",  # never reached: the registry refuses first
                mlflow_tracking_uri=authenticated_mlflow.url,
                model_name=authenticated_mlflow.namespace.model_name,
                model_cache_dir=tmp_path_factory.mktemp("refused-worker"),
                model_signing_public_key=public_key_pem_text(),
            ),
            **authenticated_mlflow.env(SCORER_ACCOUNT, _WRONG_PASSWORD),
        },
    )
    yield process
    if process.poll() is None:
        process.kill()
        process.communicate()


@pytest.fixture(scope="module")
def champion(
    authenticated_mlflow: AuthenticatedMlflow, feature_frame: pd.DataFrame
) -> Iterator[RegisteredChampion]:
    """A signed champion registered by the trainer's account."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in authenticated_mlflow.env(TRAINER_ACCOUNT).items():
            patch.setenv(name, value)
        yield register_champion(
            authenticated_mlflow.url,
            feature_frame,
            model_name=authenticated_mlflow.namespace.model_name,
            experiment=authenticated_mlflow.namespace.experiment,
        )


def _registry_state(client: MlflowClient, model_name: str) -> dict[str, Any]:
    versions = client.search_model_versions(f"name = '{model_name}'")
    return {
        "versions": sorted((v.version, v.source, tuple(sorted(v.tags.items()))) for v in versions),
        "aliases": dict(aliases(client, model_name)),
    }


def _refused(action: Callable[[], object]) -> int | None:
    with pytest.raises(MlflowException) as caught:
        action()
    return caught.value.get_http_status_code()


def test_the_scorer_loads_the_champion_but_cannot_change_the_registry(
    authenticated_mlflow: AuthenticatedMlflow,
    champion: RegisteredChampion,
    ask_as: Switch,
    tmp_path: Path,
) -> None:
    model_name = authenticated_mlflow.namespace.model_name
    before = _registry_state(ask_as(ADMIN_ACCOUNT), model_name)
    trainer = ask_as(TRAINER_ACCOUNT)
    other_model = f"{model_name}-other"
    trainer.create_registered_model(other_model)

    scorer = ask_as(SCORER_ACCOUNT)
    loader = RegistryLoader(
        tracking_uri=authenticated_mlflow.url,
        model_name=model_name,
        alias=CHAMPION_ALIAS,
        cache_dir=tmp_path / "models",
        trust=ModelTrust(public_keys=tuple(load_public_keys(public_key_pem_text()))),
        username=SCORER_ACCOUNT,
    )
    loader.check_access()
    loaded = loader.load(loader.resolve())
    assert loaded.signed
    assert loaded.run_id == champion.run_id  # the run, as well as the artifacts, is readable

    champion_version = scorer.get_model_version(model_name, champion.version)
    attempts = {
        "register a version": lambda: scorer.create_model_version(
            model_name, champion_version.source, run_id=champion.run_id
        ),
        "move an alias": lambda: scorer.set_registered_model_alias(
            model_name, CHAMPION_ALIAS, champion.version
        ),
        "delete an alias": lambda: scorer.delete_registered_model_alias(model_name, CHAMPION_ALIAS),
        "delete a version": lambda: scorer.delete_model_version(model_name, champion.version),
        "read another model": lambda: scorer.get_registered_model(other_model),
    }
    statuses = {what: _refused(action) for what, action in attempts.items()}
    assert statuses == dict.fromkeys(attempts, 403)
    assert _registry_state(ask_as(ADMIN_ACCOUNT), model_name) == before


def test_the_trainer_registers_versions_and_moves_and_deletes_aliases(
    authenticated_mlflow: AuthenticatedMlflow,
    champion: RegisteredChampion,
    feature_frame: pd.DataFrame,
    ask_as: Switch,
) -> None:
    model_name = authenticated_mlflow.namespace.model_name
    trainer = ask_as(TRAINER_ACCOUNT)
    old_champion = aliases(trainer, model_name)[CHAMPION_ALIAS]
    challenger = register_champion(
        authenticated_mlflow.url,
        feature_frame,
        model_name=model_name,
        experiment=authenticated_mlflow.namespace.experiment,
        alias="challenger",
        seed=1,
    )
    promote(trainer, model_name, challenger.version, reason="trainer account test")
    trainer.delete_registered_model_alias(model_name, "challenger")

    state = aliases(ask_as(ADMIN_ACCOUNT), model_name)
    assert state == {CHAMPION_ALIAS: challenger.version, PREVIOUS_ALIAS: old_champion}


def test_the_accounts_command_is_idempotent_and_rotates_passwords(
    authenticated_mlflow: AuthenticatedMlflow,
    champion: RegisteredChampion,
    ask_as: Switch,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model_name = authenticated_mlflow.namespace.model_name
    passwords = authenticated_mlflow.passwords

    def accounts(admin_password: str, scorer_password: str) -> Result:
        return CliRunner().invoke(
            training_cli.app,
            ["accounts", "--tracking-uri", authenticated_mlflow.url, "--model-name", model_name],
            env={
                **authenticated_mlflow.env(ADMIN_ACCOUNT, admin_password),
                "RUMOS_TRAINING_TRAINER_PASSWORD": passwords[TRAINER_ACCOUNT],
                "RUMOS_TRAINING_SCORER_PASSWORD": scorer_password,
                "RUMOS_TRAINING_EXPERIMENT": authenticated_mlflow.namespace.experiment,
                "COLUMNS": "200",
            },
        )

    rotated = secrets.token_urlsafe(18)
    assert accounts(passwords[ADMIN_ACCOUNT], rotated).exit_code == 0
    refused = accounts(_WRONG_PASSWORD, passwords[SCORER_ACCOUNT])
    try:
        ask_as(SCORER_ACCOUNT)  # the old password
        assert _refused(lambda: MlflowClient(authenticated_mlflow.url).search_experiments()) == 401
        for name, value in authenticated_mlflow.env(SCORER_ACCOUNT, rotated).items():
            monkeypatch.setenv(name, value)
        scorer = MlflowClient(authenticated_mlflow.url, authenticated_mlflow.url)
        assert scorer.get_registered_model(model_name).aliases[CHAMPION_ALIAS]
    finally:
        restored = accounts(passwords[ADMIN_ACCOUNT], passwords[SCORER_ACCOUNT])
    assert restored.exit_code == 0, restored.output
    assert "accounts 'trainer' (writes) and 'scorer' (reads)" in restored.output
    assert refused.exit_code == 2
    assert f"account '{ADMIN_ACCOUNT}' (HTTP 401)" in " ".join(refused.output.split())
    for output in (refused.output, restored.output):
        for password in (_WRONG_PASSWORD, rotated, *passwords.values()):
            assert password not in output


def _finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    try:
        stdout, stderr = process.communicate(timeout=_FAIL_FAST_DEADLINE_S)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        pytest.fail(f"still running with a wrong password:\n{stderr[-3000:]}")
    return process.returncode, stdout + stderr


def test_wrong_credentials_stop_the_worker_and_the_trainer_with_a_clear_message(
    authenticated_mlflow: AuthenticatedMlflow,
    refused_worker: subprocess.Popen[str],
    tmp_path: Path,
) -> None:
    wrong = authenticated_mlflow.env(TRAINER_ACCOUNT, _WRONG_PASSWORD)
    # In this process (the command line is typer's app, run whole): one interpreter start less.
    trained = CliRunner().invoke(
        training_cli.app,
        [
            *("--quick", "--tracking-uri", authenticated_mlflow.url),
            # Not a dataset: the registry is asked before the data is read.
            *("--data", str(tmp_path / "no-dataset.csv")),
        ],
        env={**wrong, "COLUMNS": "200", "RUMOS_TRAINING_SIGNING_KEY": None},
    )
    trainer_code, trainer_output = trained.exit_code, trained.output
    worker_code, worker_output = _finish(refused_worker)

    assert worker_code == 2, worker_output[-3000:]
    (critical,) = [
        json.loads(line)
        for line in worker_output.splitlines()
        if line.startswith("{") and json.loads(line)["level"] == "CRITICAL"
    ]
    assert "registry authentication failed" in critical["reason"]
    assert f"account '{SCORER_ACCOUNT}' (HTTP 401)" in critical["reason"]

    assert trainer_code == 2, trainer_output[-3000:]
    message = " ".join(trainer_output.split())  # rich wraps long lines
    assert f"error: registry authentication failed: {authenticated_mlflow.url}" in message
    assert f"account '{TRAINER_ACCOUNT}' (HTTP 401)" in message
    assert "Traceback" not in trainer_output

    for output in (worker_output, trainer_output):
        for password in (_WRONG_PASSWORD, *authenticated_mlflow.passwords.values()):
            assert password not in output
