"""Signed versions against a real MLflow server: what the worker's loader and ``promote`` accept.

Each refused version fails for its own reason, named in the error: altered after
signing, unsigned, signed by a key nobody configured, or holding a file its manifest
does not list. Two configured keys (a rotation) both verify. The worker-level
behaviour around a refusal (old model keeps scoring, not retried) is in
``test_faults_untrusted.py``.
"""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path

import pandas as pd
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from mlflow.tracking import MlflowClient

from consumer.errors import ModelRefusedError
from consumer.model import LoadedModel, ModelRef, RegistryLoader
from consumer.vetting import ModelTrust
from contracts.model_names import CHAMPION_ALIAS
from contracts.model_trust import TrustFailure
from tests.fixtures.mlflow_server import MlflowNamespace
from tests.helpers.champion import register_champion
from tests.helpers.signing import sign, signing_key
from tests.helpers.untrusted import download_version, register_copy
from training.errors import UnverifiedVersionError
from training.registry import aliases, promote
from training.signing import verify_version

pytestmark = pytest.mark.integration


def _load(uri: str, name: str, version: str, cache: Path, *keys: Ed25519PrivateKey) -> LoadedModel:
    """Load ``version`` the way the worker does, trusting the public halves of ``keys``."""
    trust = ModelTrust(public_keys=tuple(k.public_key() for k in keys or (signing_key(),)))
    loader = RegistryLoader(
        tracking_uri=uri, model_name=name, alias=CHAMPION_ALIAS, cache_dir=cache, trust=trust
    )
    tags = MlflowClient(tracking_uri=uri).get_model_version(name, version).tags
    return loader.load(ModelRef(name, version, None, dict(tags)))


def _refusal(
    uri: str, name: str, version: str, cache: Path, *keys: Ed25519PrivateKey
) -> ModelRefusedError:
    with pytest.raises(ModelRefusedError) as refused:
        _load(uri, name, version, cache, *keys)
    assert f"version {version}" in str(refused.value)
    return refused.value


def test_a_file_altered_after_signing_is_refused_naming_the_file(
    mlflow_tracking_uri: str,
    mlflow_namespace: MlflowNamespace,
    feature_frame: pd.DataFrame,
    tmp_path: Path,
) -> None:
    name = mlflow_namespace.model_name
    signed = register_champion(mlflow_tracking_uri, feature_frame, model_name=name)
    files = download_version(mlflow_tracking_uri, name, signed.version, tmp_path / "dl")
    mlmodel = files / "MLmodel"
    mlmodel.write_text(mlmodel.read_text().replace("threshold: 0.35", "threshold: 0.99"))
    altered = register_copy(mlflow_tracking_uri, files, model_name=name, signed_like=signed.version)

    refusal = _refusal(mlflow_tracking_uri, name, altered, tmp_path / "cache")

    assert refusal.failure is TrustFailure.FILES_MISMATCH
    assert "altered ['MLmodel']" in str(refusal)
    assert _load(mlflow_tracking_uri, name, signed.version, tmp_path / "cache").threshold == 0.35


def test_an_unsigned_version_is_refused(
    mlflow_tracking_uri: str,
    mlflow_namespace: MlflowNamespace,
    feature_frame: pd.DataFrame,
    tmp_path: Path,
) -> None:
    name = mlflow_namespace.model_name
    unsigned = register_champion(mlflow_tracking_uri, feature_frame, model_name=name, signed=False)

    refusal = _refusal(mlflow_tracking_uri, name, unsigned.version, tmp_path / "cache")

    assert refusal.failure is TrustFailure.UNSIGNED
    assert "not signed" in str(refusal)


def test_a_version_signed_by_an_unknown_key_is_refused(
    mlflow_tracking_uri: str,
    mlflow_namespace: MlflowNamespace,
    feature_frame: pd.DataFrame,
    tmp_path: Path,
) -> None:
    name = mlflow_namespace.model_name
    stranger = Ed25519PrivateKey.generate()
    version = register_champion(
        mlflow_tracking_uri, feature_frame, model_name=name, signed=False
    ).version
    sign(mlflow_tracking_uri, name, version, stranger)

    refusal = _refusal(mlflow_tracking_uri, name, version, tmp_path / "cache")

    assert refusal.failure is TrustFailure.UNKNOWN_KEY
    assert "does not verify with any configured public key" in str(refusal)


def test_a_file_the_manifest_does_not_list_is_refused(
    mlflow_tracking_uri: str,
    mlflow_namespace: MlflowNamespace,
    feature_frame: pd.DataFrame,
    tmp_path: Path,
) -> None:
    name = mlflow_namespace.model_name
    signed = register_champion(mlflow_tracking_uri, feature_frame, model_name=name)
    files = download_version(mlflow_tracking_uri, name, signed.version, tmp_path / "dl")
    (files / "sitecustomize.py").write_text("print('not listed')\n")
    padded = register_copy(mlflow_tracking_uri, files, model_name=name, signed_like=signed.version)

    refusal = _refusal(mlflow_tracking_uri, name, padded, tmp_path / "cache")

    assert refusal.failure is TrustFailure.FILES_MISMATCH
    assert "not in the manifest ['sitecustomize.py']" in str(refusal)


def test_with_two_keys_configured_versions_signed_by_either_load(
    mlflow_tracking_uri: str,
    mlflow_namespace: MlflowNamespace,
    feature_frame: pd.DataFrame,
    tmp_path: Path,
) -> None:
    name = mlflow_namespace.model_name
    old_key, new_key = signing_key(), Ed25519PrivateKey.generate()
    by_old = register_champion(mlflow_tracking_uri, feature_frame, model_name=name).version
    by_new = register_champion(
        mlflow_tracking_uri, feature_frame, model_name=name, seed=1, signed=False
    ).version
    sign(mlflow_tracking_uri, name, by_new, new_key)
    cache = tmp_path / "cache"

    loaded = [
        _load(mlflow_tracking_uri, name, v, cache, old_key, new_key) for v in (by_old, by_new)
    ]

    assert [m.version for m in loaded] == [by_old, by_new]
    assert all(m.signed for m in loaded)
    retired = _refusal(mlflow_tracking_uri, name, by_old, cache, new_key)
    assert retired.failure is TrustFailure.UNKNOWN_KEY


def test_promote_refuses_a_version_that_does_not_verify_and_moves_no_alias(
    mlflow_tracking_uri: str,
    mlflow_namespace: MlflowNamespace,
    feature_frame: pd.DataFrame,
    tmp_path: Path,
) -> None:
    name, uri = mlflow_namespace.model_name, mlflow_tracking_uri
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    champion = register_champion(uri, feature_frame, model_name=name)
    files = download_version(uri, name, champion.version, tmp_path / "dl")
    (files / "model.skops").write_bytes(b"swapped after signing")
    altered = register_copy(uri, files, model_name=name, signed_like=champion.version)
    unsigned = register_champion(
        uri, feature_frame, model_name=name, signed=False, alias="challenger"
    ).version
    verify = partial(verify_version, client, uri, name, public_keys=[signing_key().public_key()])
    before = aliases(client, name)

    for version, reason in ((altered, "altered ['model.skops']"), (unsigned, "not signed")):
        expected = f"version {version} .*{re.escape(reason)}"
        with pytest.raises(UnverifiedVersionError, match=expected):
            promote(client, name, version, verify=verify)

    assert aliases(client, name) == before
    signed = register_champion(
        uri, feature_frame, model_name=name, seed=2, alias="challenger"
    ).version
    assert promote(client, name, signed, verify=verify).champion == signed
