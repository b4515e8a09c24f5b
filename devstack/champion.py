"""A registry ready for workers: its accounts as compose provisions them (``python -m
training accounts``'s own code), a champion trained as production trains it (``python -m
training --quick``), every version signed, and a shadow challenger among the others. Import
it on its own: it imports training, and with it MLflow, which ``import devstack`` does not."""

from __future__ import annotations

import secrets
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from mlflow.utils.autologging_utils import MlflowEventsAndWarningsBehaviorGlobally
from pydantic import SecretStr
from rich.console import Console

from contracts.model_names import EXPERIMENT_NAME, MODEL_NAME, SHADOW_ALIAS
from contracts.model_trust import keygen
from contracts.registry_access import (
    ADMIN_ACCOUNT,
    SCORER_ACCOUNT,
    TRAINER_ACCOUNT,
    use_credentials,
)
from devstack.processes import DevstackError
from training import (
    CandidateResult,
    TrainingError,
    TrainingReport,
    TrainingSettings,
    registry_client,
    train,
)
from training.accounts import Account, provision_accounts

ACCOUNTS: Final = (ADMIN_ACCOUNT, TRAINER_ACCOUNT, SCORER_ACCOUNT)


def new_passwords() -> dict[str, str]:
    """A fresh throw-away password for each of ``ACCOUNTS``, by account name."""
    return {name: secrets.token_urlsafe(18) for name in ACCOUNTS}


def provision(
    tracking_uri: str,
    passwords: dict[str, str],
    *,
    model_name: str = MODEL_NAME,
    experiment: str = EXPERIMENT_NAME,
) -> None:
    """The trainer's and the scorer's accounts and grants on ``model_name`` and ``experiment``,
    made as compose's registry-accounts one-shot makes them. This process asks as the admin
    (``passwords[ADMIN_ACCOUNT]``) from then on, until something switches its account."""
    use_credentials(ADMIN_ACCOUNT, SecretStr(passwords[ADMIN_ACCOUNT]))
    accounts = [Account(name, SecretStr(passwords[name])) for name in ACCOUNTS[1:]]
    try:
        provision_accounts(
            tracking_uri,
            accounts,
            model_name=model_name,
            experiment=experiment,
            admin=ADMIN_ACCOUNT,
        )
    except TrainingError as exc:
        raise DevstackError(f"cannot provision the registry's accounts: {exc}") from exc


@dataclass(frozen=True)
class SignedChampion:
    """What ``train_signed_champion`` left in the registry: every candidate (``report``), each
    a signed version; ``public_key`` verifies them (``SCORER_MODEL_SIGNING_PUBLIC_KEY``)."""

    champion: CandidateResult
    report: TrainingReport
    settings: TrainingSettings
    public_key: Path


def train_signed_champion(
    tracking_uri: str,
    data: Path,
    key_dir: Path,
    *,
    console: Console,
    account: tuple[str, str] | None = None,
) -> SignedChampion:
    """Train every family in quick mode on ``data`` as ``account`` (name, password) if given,
    each version signed with a new key pair in ``key_dir``; the champion the registry's
    selection promoted, else ``DevstackError``. Training's report and MLflow's prints go to
    ``console``; MLflow's event messages ("Created version 3 ...") are muted by its counting
    context (its own nested uses re-enable a plain ``disable_logging()`` when they exit)."""
    keys = keygen(key_dir)
    username, password = account or (None, None)
    try:
        settings = TrainingSettings(
            quick=True,
            data=data,
            tracking_uri=tracking_uri,
            tracking_username=username,
            tracking_password=None if password is None else SecretStr(password),
            signing_key=SecretStr(str(keys.private)),
        )
        with (
            MlflowEventsAndWarningsBehaviorGlobally(True, False, False),
            redirect_stdout(console.file),
        ):
            report = train(settings, console=console)
    except TrainingError as exc:
        raise DevstackError(f"training failed: {exc}") from exc
    if report.champion is None:
        raise DevstackError(f"training promoted nothing: {report.selection_reason}")
    return SignedChampion(report.champion, report, settings, keys.public)


def name_shadow_challenger(trained: SignedChampion) -> CandidateResult | None:
    """Give ``SHADOW_ALIAS`` to the cheapest other candidate within training's latency budget,
    asking as training asked, and return it; None, and no alias, when there is no such one."""
    settings, champion = trained.settings, trained.champion
    others = [
        candidate
        for candidate in trained.report.candidates
        if candidate is not champion
        and candidate.inference_us_per_row <= settings.latency_budget_us
    ]
    challenger = min(others, key=lambda c: c.expected_cost, default=None)
    if challenger is not None:
        client = registry_client(settings)
        client.set_registered_model_alias(settings.model_name, SHADOW_ALIAS, challenger.version)
    return challenger
