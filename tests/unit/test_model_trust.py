"""The trust checks as pure functions: manifests, keys, the MLmodel gate and the allow-list."""

from __future__ import annotations

import base64
from pathlib import Path

import mlflow.sklearn
import pandas as pd
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from consumer.vetting import ModelTrust, load_pipeline, vet
from contracts import FEATURE_COLUMNS, TARGET_COLUMN
from contracts.model_trust import (
    MANIFEST_TAG,
    SIGNATURE_TAG,
    SKOPS_ALLOWED_TYPES,
    SigningKeyError,
    TrustFailure,
    UntrustedModelError,
    check_files,
    file_digests,
    load_public_keys,
    private_key_pem,
    public_key_pem,
    signature_tags,
    verify_signed_manifest,
)
from tests.helpers.untrusted import MarkerTrap
from training.candidates import CANDIDATES
from training.errors import PackagingError
from training.packaging import as_model_input, check_scorer_trusts

_UNSIGNED = ModelTrust(allow_unsigned=True)


def _saved(feature_frame: pd.DataFrame, directory: Path, **options: object) -> Path:
    sample = feature_frame.sample(n=200, random_state=0)
    pipeline = make_pipeline(LogisticRegression(max_iter=500))
    pipeline.fit(as_model_input(sample), sample[TARGET_COLUMN])
    mlflow.sklearn.save_model(pipeline, str(directory), **options)  # type: ignore[arg-type]
    return directory


def test_every_candidate_family_fitted_holds_only_types_the_scorer_allows(
    feature_frame: pd.DataFrame,
) -> None:
    sample = feature_frame.sample(n=300, random_state=0)
    features = tuple(FEATURE_COLUMNS)
    needed = set()
    for spec in CANDIDATES.values():
        pipeline = spec.build(0, features)
        pipeline.fit(as_model_input(sample, features), sample[TARGET_COLUMN])
        needed |= set(check_scorer_trusts(pipeline))
    # Every entry of the allow-list is there for a family training produces.
    assert needed == SKOPS_ALLOWED_TYPES


def test_training_refuses_a_pipeline_holding_a_type_scorers_do_not_allow(
    feature_frame: pd.DataFrame,
) -> None:
    sample = feature_frame.sample(n=200, random_state=0)
    pipeline = make_pipeline(MarkerTrap("unused"), LogisticRegression(max_iter=500))
    pipeline.fit(as_model_input(sample), sample[TARGET_COLUMN])
    with pytest.raises(PackagingError, match=r"tests\.helpers\.untrusted\.MarkerTrap"):
        check_scorer_trusts(pipeline)
    assert check_scorer_trusts(pipeline[1:]) == []


def test_signed_files_verify_and_each_difference_is_named(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.bin").write_bytes(b"b")
    key = Ed25519PrivateKey.generate()
    tags = signature_tags(key, file_digests(tmp_path))
    stranger = Ed25519PrivateKey.generate()
    expected = verify_signed_manifest(tags, [stranger.public_key(), key.public_key()])
    check_files(expected, tmp_path)

    (tmp_path / "a.txt").write_text("A")
    (tmp_path / "sub" / "b.bin").unlink()
    (tmp_path / "c.py").write_text("import os")
    with pytest.raises(UntrustedModelError) as mismatch:
        check_files(expected, tmp_path)
    assert mismatch.value.failure is TrustFailure.FILES_MISMATCH
    assert str(mismatch.value) == (
        "its files do not match its signed manifest: altered ['a.txt']; "
        "missing ['sub/b.bin']; not in the manifest ['c.py']"
    )


def test_an_edited_manifest_or_a_signed_non_manifest_is_refused() -> None:
    key = Ed25519PrivateKey.generate()
    tags = signature_tags(key, {"model.skops": "0" * 64})
    edited = {**tags, MANIFEST_TAG: tags[MANIFEST_TAG].replace("0" * 64, "1" * 64)}
    with pytest.raises(UntrustedModelError) as unknown:
        verify_signed_manifest(edited, [key.public_key()])
    assert unknown.value.failure is TrustFailure.UNKNOWN_KEY

    not_a_manifest = {
        MANIFEST_TAG: "[]",
        SIGNATURE_TAG: base64.b64encode(key.sign(b"[]")).decode(),
    }
    with pytest.raises(UntrustedModelError) as bad:
        verify_signed_manifest(not_a_manifest, [key.public_key()])
    assert bad.value.failure is TrustFailure.BAD_MANIFEST


def test_public_keys_come_from_pem_text_or_files_several_at_once(tmp_path: Path) -> None:
    first, second = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    both = (public_key_pem(first.public_key()) + public_key_pem(second.public_key())).decode()
    assert len(load_public_keys(both)) == 2
    (tmp_path / "1.pub").write_bytes(public_key_pem(first.public_key()))
    (tmp_path / "2.pub").write_text(both)
    assert len(load_public_keys(f"{tmp_path / '1.pub'}, {tmp_path / '2.pub'}")) == 3
    (tmp_path / "private.pem").write_bytes(private_key_pem(first))
    with pytest.raises(SigningKeyError, match=r"private\.pem: not a PEM public key"):
        load_public_keys(str(tmp_path / "private.pem"))
    (tmp_path / "empty.pub").touch()
    with pytest.raises(SigningKeyError, match="no PEM public key found"):
        load_public_keys(str(tmp_path / "empty.pub"))


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"serialization_format": "cloudpickle"}, "serialized as 'cloudpickle', not skops"),
        ({"serialization_format": "pickle"}, "serialized as 'pickle', not skops"),
    ],
)
def test_the_gate_refuses_pickled_sklearn_models_from_their_mlmodel(
    feature_frame: pd.DataFrame, tmp_path: Path, options: dict[str, object], reason: str
) -> None:
    directory = _saved(feature_frame, tmp_path / "model", **options)
    with pytest.raises(UntrustedModelError, match=reason) as refused:
        vet(directory, {}, _UNSIGNED)
    assert refused.value.failure is TrustFailure.FORMAT


def test_the_gate_refuses_bundled_code_and_loads_a_plain_skops_model(
    feature_frame: pd.DataFrame, tmp_path: Path
) -> None:
    helper = tmp_path / "helper.py"
    helper.write_text("VALUE = 1\n")
    with_code = _saved(feature_frame, tmp_path / "with-code", code_paths=[str(helper)])
    with pytest.raises(UntrustedModelError, match="bundles code"):
        vet(with_code, {}, _UNSIGNED)

    plain = _saved(feature_frame, tmp_path / "plain")
    vetted = vet(plain, {}, _UNSIGNED)
    assert not vetted.signed
    assert callable(load_pipeline(vetted).predict_proba)
