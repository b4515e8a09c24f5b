"""Signing registered versions, and verifying them before they become champion.

A version is signed by tagging it with the Ed25519-signed manifest of its artifact
files (``contracts.model_trust``), computed from the files as the registry serves them,
so what is signed is byte for byte what a scorer will download. The private key stays
with whoever trains; scorers and ``promote`` hold public keys only.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import mlflow.artifacts
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from contracts.model_trust import (
    UntrustedModelError,
    check_files,
    file_digests,
    signature_tags,
    verify_signed_manifest,
)
from training.errors import RegistryError, UnverifiedVersionError
from training.registry import get_version


def sign_version(
    client: MlflowClient,
    tracking_uri: str,
    model_name: str,
    version: str,
    private_key: Ed25519PrivateKey,
) -> None:
    """Tag ``version`` with the signed manifest of its artifact files as served."""
    with tempfile.TemporaryDirectory(prefix="sign-") as scratch:
        local = _download(client, tracking_uri, model_name, version, Path(scratch))
        tags = signature_tags(private_key, file_digests(local))
    try:
        for key, value in tags.items():
            client.set_model_version_tag(model_name, version, key, value)
    except MlflowException as exc:
        raise RegistryError(f"cannot sign version {version} of {model_name!r}: {exc}") from exc


def verify_version(
    client: MlflowClient,
    tracking_uri: str,
    model_name: str,
    version: str,
    public_keys: Sequence[Ed25519PublicKey],
) -> None:
    """Raise :class:`UnverifiedVersionError` unless ``version`` is signed by one of
    ``public_keys`` and its files are exactly the ones signed: the scorer's own check."""
    tags = dict(get_version(client, model_name, version).tags or {})
    try:
        expected = verify_signed_manifest(tags, public_keys)
        with tempfile.TemporaryDirectory(prefix="verify-") as scratch:
            check_files(
                expected, _download(client, tracking_uri, model_name, version, Path(scratch))
            )
    except UntrustedModelError as exc:
        raise UnverifiedVersionError(
            f"version {version} of {model_name!r} does not verify: {exc}"
        ) from exc


def _download(
    client: MlflowClient, tracking_uri: str, model_name: str, version: str, into: Path
) -> Path:
    """The version's artifacts, fetched exactly as the scorer fetches them."""
    try:
        return Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=client.get_model_version_download_uri(model_name, version),
                dst_path=str(into),
                tracking_uri=tracking_uri,
            )
        )
    except (MlflowException, OSError) as exc:
        raise RegistryError(f"cannot download version {version} of {model_name!r}: {exc}") from exc
