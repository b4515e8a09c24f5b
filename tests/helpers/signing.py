"""The test session's model-signing keys: generated in memory once per test process.

Helpers that register versions sign with ``signing_key()``; workers get
``public_key_pem()`` as ``SCORER_MODEL_SIGNING_PUBLIC_KEY``. Tests that need a stranger's
key generate their own.
"""

from __future__ import annotations

from functools import cache

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from mlflow.tracking import MlflowClient

from contracts.model_trust import public_key_pem
from training.signing import sign_version


@cache
def signing_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def public_key_pem_text(key: Ed25519PrivateKey | None = None) -> str:
    """The PEM public key of ``key`` (default: the session's)."""
    return public_key_pem((key or signing_key()).public_key()).decode()


def sign(
    tracking_uri: str, model_name: str, version: str, key: Ed25519PrivateKey | None = None
) -> None:
    """Sign ``version`` as training does, with ``key`` (default: the session's)."""
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    sign_version(client, tracking_uri, model_name, version, key or signing_key())
