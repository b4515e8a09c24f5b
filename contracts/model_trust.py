"""What makes a registered model version trustworthy: one definition for training and scorer.

Guarantee: a scorer that checks a version with :func:`verify_signed_manifest` and
:func:`check_files` before reading anything else from it only ever loads files that the
holder of a configured Ed25519 private key signed, byte for byte, no file more and no
file less. Training writes, the scorer checks:

    training:  files = file_digests(artifact dir)                # every file, sha256
               manifest = manifest_bytes(files)                 # canonical JSON
               tags[MANIFEST_TAG] = manifest; tags[SIGNATURE_TAG] = sign(key, manifest)
    scorer:    expected = verify_signed_manifest(tags, public keys)   # signature first
               check_files(expected, downloaded dir)                    # then the bytes

Why it holds: the signature covers the canonical bytes of the whole manifest, and the
manifest names every file with its digest, so writing the registry (tags, artifacts,
aliases) without the private key yields either a version that fails to verify or an
exact copy of a signed one. It does not stop re-pointing an alias to an older signed
version; see ``docs/security.md``.

``SKOPS_ALLOWED_TYPES`` is the scorer's allow-list of types beyond skops' defaults: the
scikit-learn internals the candidate families hold once fitted. Training refuses to log
a pipeline holding anything else, and the scorer loads with this list, never with the
one an artifact's ``MLmodel`` carries.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

MANIFEST_TAG: Final = "signed_manifest"
"""Model version tag: the canonical JSON manifest of the version's artifact files."""
SIGNATURE_TAG: Final = "manifest_signature"
"""Model version tag: base64 Ed25519 signature of ``MANIFEST_TAG``'s UTF-8 bytes."""
KEY_ID_TAG: Final = "manifest_key_id"
"""Model version tag: :func:`key_id` of the signing key (to say which key, not to trust it)."""
MANIFEST_FORMAT: Final = "rumos-model-manifest/1"
PRIVATE_KEY_FILE: Final = "model-signing.key"
PUBLIC_KEY_FILE: Final = "model-signing.pub"
_PRIVATE_KEY_MODE: Final = 0o600


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
    descriptor = os.open(files.private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _PRIVATE_KEY_MODE)
    with os.fdopen(descriptor, "wb") as out:
        out.write(private_key_pem(key))
    files.public.write_bytes(public_key_pem(key.public_key()))
    return files


SKOPS_ALLOWED_TYPES: Final = frozenset(
    {
        # SVM: sigmoid-calibrated LinearSVC.
        "sklearn.calibration._CalibratedClassifier",
        "sklearn.calibration._SigmoidCalibration",
        # Decision tree and random forest.
        "sklearn.tree._tree.Tree",
        # MLP.
        "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
        # Histogram gradient boosting keeps a functools.partial of check_array.
        "functools.partial",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.utils.validation.check_array",
        # Explainable boosting machine (interpret-core): arrays and plain containers inside.
        "interpret.glassbox._ebm._ebm.ExplainableBoostingClassifier",
    }
)
"""Types a scorer lets skops build beyond skops' own default allow-list."""

_PEM_BLOCK: Final = "-----BEGIN"
_KEY_ID_HEX: Final = 16


class TrustFailure(StrEnum):
    """Why a version is not trusted: the ``reason`` label of the scorer's refusal counter."""

    UNSIGNED = "unsigned"
    UNKNOWN_KEY = "unknown_key"
    BAD_MANIFEST = "bad_manifest"
    FILES_MISMATCH = "files_mismatch"
    FORMAT = "format"
    UNTRUSTED_TYPE = "untrusted_type"
    INVALID = "invalid"


class UntrustedModelError(Exception):
    """A model version failed a trust check; ``failure`` says which."""

    def __init__(self, failure: TrustFailure, message: str) -> None:
        super().__init__(message)
        self.failure = failure


class SigningKeyError(ValueError):
    """A signing key could not be read: the message names the source, never the key."""


def file_digests(directory: Path) -> dict[str, str]:
    """Every entry under ``directory`` (POSIX relative path → sha256 hex).

    Anything that is not a regular file (a symlink, a device) gets the digest
    ``"not-a-regular-file"``, which no manifest lists, so it is refused as altered or extra.
    """
    digests = {}
    for path in sorted(directory.rglob("*")):
        if path.is_dir() and not path.is_symlink():
            continue
        name = path.relative_to(directory).as_posix()
        if path.is_symlink() or not path.is_file():
            digests[name] = "not-a-regular-file"
        else:
            digests[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def manifest_bytes(digests: Mapping[str, str]) -> bytes:
    """The canonical manifest of ``digests``: the exact bytes that are signed."""
    document = {"format": MANIFEST_FORMAT, "files": dict(sorted(digests.items()))}
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def key_id(public_key: Ed25519PublicKey) -> str:
    """A short, stable name of ``public_key`` (hex of its raw bytes' sha256, truncated)."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:_KEY_ID_HEX]


def signature_tags(private_key: Ed25519PrivateKey, digests: Mapping[str, str]) -> dict[str, str]:
    """The model version tags that sign ``digests`` with ``private_key``."""
    manifest = manifest_bytes(digests)
    return {
        MANIFEST_TAG: manifest.decode(),
        SIGNATURE_TAG: base64.b64encode(private_key.sign(manifest)).decode(),
        KEY_ID_TAG: key_id(private_key.public_key()),
    }


def verify_signed_manifest(
    tags: Mapping[str, str], public_keys: Iterable[Ed25519PublicKey]
) -> dict[str, str]:
    """The file digests the version's tags sign, once the signature verifies with a key.

    Raises ``UntrustedModelError``: no manifest or signature (``UNSIGNED``), a signature
    no configured key made (``UNKNOWN_KEY``), or a signed manifest that is not one
    (``BAD_MANIFEST``).
    """
    manifest, signature = tags.get(MANIFEST_TAG), tags.get(SIGNATURE_TAG)
    if not manifest or not signature:
        raise UntrustedModelError(TrustFailure.UNSIGNED, "it is not signed (no manifest tags)")
    try:
        raw_signature = base64.b64decode(signature, validate=True)
    except ValueError as exc:
        raise UntrustedModelError(TrustFailure.UNKNOWN_KEY, "its signature is not base64") from exc
    if not any(_verifies(key, raw_signature, manifest.encode()) for key in public_keys):
        claimed = tags.get(KEY_ID_TAG, "none")
        raise UntrustedModelError(
            TrustFailure.UNKNOWN_KEY,
            f"its manifest signature does not verify with any configured public key "
            f"(it names key id {claimed[:_KEY_ID_HEX]!r})",
        )
    return _parse_manifest(manifest)


def check_files(expected: Mapping[str, str], directory: Path) -> None:
    """Raise ``UntrustedModelError`` (``FILES_MISMATCH``) unless ``directory`` holds exactly
    the files ``expected`` lists, with those digests; the message names the first few."""
    actual = file_digests(directory)
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    altered = sorted(n for n in set(expected) & set(actual) if expected[n] != actual[n])
    problems = [
        f"{what} {names[:3]}"
        for what, names in (
            ("altered", altered),
            ("missing", missing),
            ("not in the manifest", extra),
        )
        if names
    ]
    if problems:
        raise UntrustedModelError(
            TrustFailure.FILES_MISMATCH,
            "its files do not match its signed manifest: " + "; ".join(problems),
        )


def load_public_keys(source: str) -> list[Ed25519PublicKey]:
    """Ed25519 public keys from PEM text, or from comma-separated PEM file paths.

    PEM text or a file may hold several ``PUBLIC KEY`` blocks (key rotation). Raises
    ``SigningKeyError`` for an unreadable file, a block that is not an Ed25519 public key, or none.
    """
    keys = []
    for name, text in _pem_sources(source):
        for block in _pem_blocks(text):
            try:
                key = serialization.load_pem_public_key(block.encode())
            except ValueError as exc:
                raise SigningKeyError(f"{name}: not a PEM public key") from exc
            if not isinstance(key, Ed25519PublicKey):
                raise SigningKeyError(f"{name}: not an Ed25519 public key")
            keys.append(key)
    if not keys:
        raise SigningKeyError("no PEM public key found")
    return keys


def load_private_key(source: str) -> Ed25519PrivateKey:
    """The Ed25519 private key in PEM text or a PEM file (unencrypted); ``SigningKeyError``."""
    ((name, text),) = _pem_sources(source, several=False)
    try:
        key = serialization.load_pem_private_key(text.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"{name}: not an unencrypted PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{name}: not an Ed25519 private key")
    return key


def private_key_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_key_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _verifies(key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


def _parse_manifest(manifest: str) -> dict[str, str]:
    try:
        document = json.loads(manifest)
        files = document["files"] if document.get("format") == MANIFEST_FORMAT else None
    except (ValueError, TypeError, KeyError, AttributeError):
        files = None
    valid = isinstance(files, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in files.items()
    )
    if not valid or not files:
        raise UntrustedModelError(
            TrustFailure.BAD_MANIFEST, f"its signed manifest is not a {MANIFEST_FORMAT} one"
        )
    return dict(files)


def _pem_sources(source: str, *, several: bool = True) -> list[tuple[str, str]]:
    """``(name, PEM text)`` pairs: ``source`` itself if it is PEM, else the files it names."""
    if _PEM_BLOCK in source:
        return [("the PEM text", source)]
    paths = [p.strip() for p in source.split(",") if p.strip()] if several else [source.strip()]
    sources = []
    for path in paths:
        try:
            sources.append((path, Path(path).expanduser().read_text()))
        except (OSError, UnicodeDecodeError) as exc:
            raise SigningKeyError(f"{path}: cannot read ({type(exc).__name__})") from exc
    return sources


def _pem_blocks(text: str) -> list[str]:
    return [_PEM_BLOCK + part for part in text.split(_PEM_BLOCK)[1:]]
