"""The registry's accounts: the trainer writes the model, the scorer only reads it.

Run as the basic-auth app's admin (``python -m training accounts``, compose's
``registry-accounts`` one-shot). Idempotent, so it runs at every start: an account that
exists gets the password it is given now (rotating one is editing ``.env`` and starting
again), and each grant is set to the level below, whatever it was.

==========  ================================  ==========================================
account     registered model (by name)        experiment the versions are logged in
==========  ================================  ==========================================
trainer     MANAGE: register versions, tag    EDIT: runs, metrics, logged models and
            them, set and delete aliases      their artifacts
scorer      READ: versions, aliases, tags     READ: the runs and artifacts of versions
==========  ================================  ==========================================

Every other request of theirs is refused (403), and so is everyone else's: the server's
default permission is NO_PERMISSIONS (docker/mlflow-auth.ini). The experiment is created
here when missing, so it can be granted before the trainer's first run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode
from pydantic import SecretStr

from contracts.registry_access import SCORER_ACCOUNT, TRAINER_ACCOUNT, access_refusal
from training.errors import RegistryAccessError, RegistryError
from training.tracking import ensure_experiment

if TYPE_CHECKING:
    from mlflow.server.auth.client import AuthServiceClient

_EXISTS: Final = ErrorCode.Name(RESOURCE_ALREADY_EXISTS)
_EXPERIMENT: Final = "experiment"
_REGISTERED_MODEL: Final = "registered_model"
_GRANTS: Final = {
    TRAINER_ACCOUNT: {_REGISTERED_MODEL: "MANAGE", _EXPERIMENT: "EDIT"},
    SCORER_ACCOUNT: {_REGISTERED_MODEL: "READ", _EXPERIMENT: "READ"},
}


@dataclass(frozen=True)
class Account:
    """One of the accounts in ``_GRANTS`` and the password it must have."""

    username: str
    password: SecretStr


def provision_accounts(
    tracking_uri: str,
    accounts: Sequence[Account],
    *,
    model_name: str,
    experiment: str,
    admin: str | None = None,
) -> None:
    """Create (or re-password) each account and grant it its levels on ``model_name`` and
    ``experiment``; the process must be asking as the server's admin (``admin`` names it in
    errors). Raises :class:`RegistryAccessError` when the server refuses that, and
    :class:`RegistryError` for any other failure."""
    # Imported here: the module imports MLflow's whole basic-auth server app (and Flask-WTF),
    # seconds that only this command needs.
    from mlflow.server.auth.client import AuthServiceClient

    auth = AuthServiceClient(tracking_uri)
    try:
        experiment_id = ensure_experiment(MlflowClient(tracking_uri), experiment, None)
        for account in accounts:
            _set_password(auth, account)
            resources = {_REGISTERED_MODEL: model_name, _EXPERIMENT: experiment_id}
            for kind, level in _GRANTS[account.username].items():
                _grant(auth, account.username, kind, resources[kind], level)
    except MlflowException as exc:
        if refusal := access_refusal(exc, tracking_uri, admin):
            raise RegistryAccessError(refusal) from exc
        raise RegistryError(f"cannot provision the registry's accounts: {exc}") from exc


def _set_password(auth: AuthServiceClient, account: Account) -> None:
    password = account.password.get_secret_value()
    try:
        auth.create_user(account.username, password)
    except MlflowException as exc:
        if exc.error_code != _EXISTS:
            raise
        auth.update_user_password(account.username, password)


def _grant(auth: AuthServiceClient, username: str, kind: str, resource: str, level: str) -> None:
    """Grant ``level``; a grant already there is replaced (the server does not update one)."""
    try:
        auth.grant_user_permission(username, kind, resource, level)
    except MlflowException as exc:
        if exc.error_code != _EXISTS:
            raise
        auth.revoke_user_permission(username, kind, resource)
        auth.grant_user_permission(username, kind, resource, level)
