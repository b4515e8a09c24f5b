"""Moving the ``champion`` and ``previous`` aliases of the registered model.

The scorer follows ``champion``; ``previous`` remembers the version that held it
before, so a bad promotion is undone by :func:`rollback`. MLflow errors are
translated into :class:`~training.errors.RegistryError` subclasses here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import (
    INVALID_PARAMETER_VALUE,
    RESOURCE_DOES_NOT_EXIST,
    ErrorCode,
)

from contracts.model_names import CHAMPION_ALIAS, PREVIOUS_ALIAS, SELECTION_REASON_TAG
from contracts.registry_access import access_refusal, use_credentials
from training.errors import (
    NoPreviousChampionError,
    RegistryAccessError,
    RegistryError,
    UnknownVersionError,
)
from training.settings import RegistrySettings

_NOT_FOUND = frozenset(
    ErrorCode.Name(code) for code in (RESOURCE_DOES_NOT_EXIST, INVALID_PARAMETER_VALUE)
)


@dataclass(frozen=True)
class AliasState:
    """Which versions hold ``champion`` and ``previous`` after an operation."""

    champion: str | None
    previous: str | None
    changed: bool


def registry_client(settings: RegistrySettings) -> MlflowClient:
    """A client for the tracking server and model registry named in ``settings``, asking as
    its account, if it names one (MLflow's clients read the account from the process
    environment: every client in this process then asks as that account)."""
    use_credentials(settings.tracking_username, settings.tracking_password)
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)


def check_access(client: MlflowClient, settings: RegistrySettings) -> None:
    """Raise :class:`RegistryAccessError` if the tracking server refuses the account: asked
    once, before any work whose result could then not be stored. Other failures are left to
    the first real call."""
    try:
        client.search_experiments(max_results=1)
    except MlflowException as exc:
        if refusal := access_refusal(exc, settings.tracking_uri, settings.tracking_username):
            raise RegistryAccessError(refusal) from exc


def aliases(client: MlflowClient, model_name: str) -> Mapping[str, str]:
    """The registered model's aliases (alias → version); empty if the model does not exist."""
    try:
        found = client.get_registered_model(model_name).aliases
    except MlflowException as exc:
        if exc.error_code in _NOT_FOUND:
            return {}
        raise RegistryError(f"cannot read the aliases of {model_name!r}: {exc}") from exc
    # The SQL store gives versions as ints: the registry API names them as strings.
    return {alias: str(version) for alias, version in found.items()}


def get_version(client: MlflowClient, model_name: str, version: str) -> ModelVersion:
    """The model version, or :class:`UnknownVersionError` naming it."""
    try:
        return client.get_model_version(model_name, version)
    except MlflowException as exc:
        if exc.error_code in _NOT_FOUND:
            raise UnknownVersionError(f"{model_name!r} has no version {version!r}") from exc
        raise RegistryError(f"cannot read version {version} of {model_name!r}: {exc}") from exc


def promote(
    client: MlflowClient,
    model_name: str,
    version: str,
    *,
    reason: str | None = None,
    verify: Callable[[str], None] | None = None,
) -> AliasState:
    """Make ``version`` the champion; the version that held ``champion`` becomes ``previous``.

    Promoting the current champion changes nothing. ``reason``, when given, is stored
    on the version as its ``selection_reason`` tag. ``verify`` (e.g. a partial of
    :func:`training.signing.verify_version`) is called with ``version`` before any
    alias moves and refuses it by raising. Raises :class:`UnknownVersionError` for a
    version that does not exist.
    """
    get_version(client, model_name, version)
    if verify is not None:
        verify(version)
    current = aliases(client, model_name)
    old_champion = current.get(CHAMPION_ALIAS)
    if old_champion == version:
        return AliasState(champion=version, previous=current.get(PREVIOUS_ALIAS), changed=False)
    try:
        if reason is not None:
            client.set_model_version_tag(model_name, version, SELECTION_REASON_TAG, reason)
        # ``previous`` first: the scorer only follows ``champion``, which moves last.
        if old_champion is not None:
            client.set_registered_model_alias(model_name, PREVIOUS_ALIAS, old_champion)
        client.set_registered_model_alias(model_name, CHAMPION_ALIAS, version)
    except MlflowException as exc:
        raise RegistryError(f"cannot promote version {version} of {model_name!r}: {exc}") from exc
    return AliasState(
        champion=version, previous=old_champion or current.get(PREVIOUS_ALIAS), changed=True
    )


def rollback(client: MlflowClient, model_name: str) -> AliasState:
    """Swap the aliases: ``previous`` becomes champion and the old champion ``previous``.

    Rolling back twice restores the original state. Raises
    :class:`NoPreviousChampionError` when no version holds ``previous``.
    """
    current = aliases(client, model_name)
    previous = current.get(PREVIOUS_ALIAS)
    if previous is None:
        raise NoPreviousChampionError(
            f"{model_name!r} has no {PREVIOUS_ALIAS!r} version to roll back to"
        )
    old_champion = current.get(CHAMPION_ALIAS)
    try:
        client.set_registered_model_alias(model_name, CHAMPION_ALIAS, previous)
        if old_champion is None:
            client.delete_registered_model_alias(model_name, PREVIOUS_ALIAS)
        else:
            client.set_registered_model_alias(model_name, PREVIOUS_ALIAS, old_champion)
    except MlflowException as exc:
        raise RegistryError(f"cannot roll back {model_name!r}: {exc}") from exc
    return AliasState(champion=previous, previous=old_champion, changed=True)
