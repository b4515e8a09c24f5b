"""Who the MLflow registry lets do what, and how a process tells it who is asking.

The registry runs MLflow's basic-auth app (docs/security.md, "The model supply chain"). Its
``admin`` provisions two accounts (``python -m training accounts``): the trainer, which
writes runs, registers versions of the model and moves its aliases, and the scorer, which
only reads the model and the experiment its versions come from. Anyone else is refused.

MLflow's client takes credentials only from ``MLFLOW_TRACKING_USERNAME`` /
``MLFLOW_TRACKING_PASSWORD`` in the process environment. Settings hold the password as a
``SecretStr`` (masked in reprs, logs and HTTP output); ``credentials_environment`` is the one
place it is revealed, for that environment.
"""

from __future__ import annotations

import os
from typing import Final

from pydantic import SecretStr

TRAINER_ACCOUNT: Final = "trainer"
SCORER_ACCOUNT: Final = "scorer"
ADMIN_ACCOUNT: Final = "admin"
"""The basic-auth app's administrator (``admin_username`` in docker/mlflow-auth.ini)."""

USERNAME_VARIABLE: Final = "MLFLOW_TRACKING_USERNAME"
PASSWORD_VARIABLE: Final = "MLFLOW_TRACKING_PASSWORD"  # noqa: S105 (a variable name)
MIN_PASSWORD_LENGTH: Final = 12
"""MLflow refuses to create an account with a shorter password."""

# MLflow's error codes for HTTP 401 and 403.
_REFUSED: Final = "UNAUTHENTICATED"
_DENIED: Final = "PERMISSION_DENIED"


def credentials_environment(username: str | None, password: SecretStr | None) -> dict[str, str]:
    """The variables MLflow's client authenticates with (empty when there is no username).

    The password in clear: put the result in an environment, never in a log.
    """
    if not username:
        return {}
    return {
        USERNAME_VARIABLE: username,
        PASSWORD_VARIABLE: password.get_secret_value() if password else "",
    }


def use_credentials(username: str | None, password: SecretStr | None) -> None:
    """Make this process's MLflow clients present ``username`` (nothing when it is None)."""
    os.environ.update(credentials_environment(username, password))


def access_refusal(exc: BaseException, tracking_uri: str, username: str | None) -> str | None:
    """What the registry refused, in one line without any secret; None if ``exc`` is not a
    401 or 403 from the registry."""
    code = getattr(exc, "error_code", None)  # an MlflowException's; no import of MLflow here
    who = f"account {username!r}" if username else f"no account (set {USERNAME_VARIABLE})"
    if code == _REFUSED:
        return (
            f"registry authentication failed: {tracking_uri} refused the credentials of {who} "
            f"(HTTP 401); check {USERNAME_VARIABLE} and {PASSWORD_VARIABLE}"
        )
    if code == _DENIED:
        # MLflow answers an alias lookup on a model that does not exist with 403 too.
        return (
            f"registry permission denied: {tracking_uri} does not let {who} do this (HTTP 403: "
            "not granted, or the model it names does not exist)"
        )
    return None
