"""Signing registered versions, and verifying them before they become champion.

A version is signed by tagging it with the Ed25519-signed manifest of its artifact
files (``contracts.model_trust``), computed from the files as the registry serves them,
so what is signed is byte for byte what a scorer will download. The private key stays
with whoever trains; scorers and ``promote`` hold public keys only.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import mlflow.artifacts
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from contracts.model_trust import (
    UntrustedModelError,
    check_files,
    file_digests,
    private_key_pem,
    public_key_pem,
    signature_tags,
    verify_signed_manifest,
)
from training.errors import RegistryError, UnverifiedVersionError
from training.registry import get_version

PRIVATE_KEY_FILE: Final = "model-signing.key"
PUBLIC_KEY_FILE: Final = "model-signing.pub"
_PRIVATE_MODE: Final = 0o600


@dataclass(frozen=True)
class KeyFiles:
    """Where :func:`keygen` wrote a key pair."""

    private: Path
    public: Path


def keygen(directory: Path) -> KeyFiles:
    """Write a new Ed25519 key pair into ``directory`` (private key readable by the owner only).

    Raises ``FileExistsError`` rather than overwrite a key: a lost private key cannot sign
    again, and a replaced one silently invalidates every scorer's configuration.
    """
    directory.mkdir(parents=True, exist_ok=True)
    files = KeyFiles(directory / PRIVATE_KEY_FILE, directory / PUBLIC_KEY_FILE)
    key = Ed25519PrivateKey.generate()
    descriptor = os.open(files.private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _PRIVATE_MODE)
    with os.fdopen(descriptor, "wb") as out:
        out.write(private_key_pem(key))
    files.public.write_bytes(public_key_pem(key.public_key()))
    return files


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
