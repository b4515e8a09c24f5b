"""Deciding whether a downloaded model version may be loaded, before anything in it runs.

Guarantee: nothing from a version's artifacts is imported, unpickled or called unless
(1) its files are exactly what a manifest signed by a configured key lists (skipped
only when the operator explicitly allows unsigned models), (2) its ``MLmodel``, read as
YAML data, describes the scikit-learn flavor serialized with skops and no bundled code,
and (3) the skops file's object graph, read as a schema, holds no type outside
``contracts.model_trust.SKOPS_ALLOWED_TYPES``. The loop::

    expected = verify_signed_manifest(version tags, public keys)   # pure crypto on tags
    check_files(expected, directory)                               # sha256 of bytes
    mlmodel = yaml.safe_load(directory / "MLmodel")                # data, no constructors
    refuse unless sklearn flavor + skops format + no code; read signature and threshold
    untrusted = skops.get_untrusted_types(file)                    # reads the schema only
    refuse if untrusted - SKOPS_ALLOWED_TYPES
    skops.load(file, trusted=SKOPS_ALLOWED_TYPES)                  # our list, never theirs

Why it holds: every step before ``skops.load`` parses bytes (JSON, YAML with the safe
loader, a zip's schema) and never resolves a name to code; skops then builds only
types on its own default list or ours. The artifact's ``skops_trusted_types`` and its
``python_function`` loader are never read as instructions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Final

import skops.io
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from contracts.model_names import THRESHOLD_METADATA_KEY
from contracts.model_trust import (
    SKOPS_ALLOWED_TYPES,
    TrustFailure,
    UntrustedModelError,
    check_files,
    verify_signed_manifest,
)

_MLMODEL: Final = "MLmodel"
_SKLEARN_LOADER: Final = "mlflow.sklearn"


@dataclass(frozen=True)
class ModelTrust:
    """What the worker trusts: these public keys; unsigned versions only if ``allow_unsigned``."""

    public_keys: Sequence[Ed25519PublicKey] = ()
    allow_unsigned: bool = False


@dataclass(frozen=True)
class VettedArtifact:
    """A version that passed every check: where its skops file is, and what ``MLmodel`` says."""

    model_file: Path
    input_names: list[str] | None
    threshold: Any
    metadata: Mapping[str, Any]
    """The ``MLmodel`` file's metadata block, as data."""
    signed: bool


def vet(directory: Path, tags: Mapping[str, str], trust: ModelTrust) -> VettedArtifact:
    """Check a downloaded version; raises ``UntrustedModelError`` naming the first failure."""
    signed = _check_signature(directory, tags, trust)
    flavor, metadata, signature = _read_mlmodel(directory)
    model_file = _model_file(directory, flavor)
    _check_types(model_file)
    return VettedArtifact(
        model_file=model_file,
        input_names=_input_names(signature),
        threshold=(metadata or {}).get(THRESHOLD_METADATA_KEY),
        metadata=metadata if isinstance(metadata, Mapping) else {},
        signed=signed,
    )


def load_pipeline(vetted: VettedArtifact) -> Any:
    """Build the vetted skops file's object with the worker's own allow-list.

    Raises whatever skops raises for a corrupt file (the caller translates it).
    """
    return skops.io.load(vetted.model_file, trusted=sorted(SKOPS_ALLOWED_TYPES))


def _check_signature(directory: Path, tags: Mapping[str, str], trust: ModelTrust) -> bool:
    """True if the version's files match a manifest a configured key signed.

    An unsigned version passes (False) only under ``allow_unsigned``; a signed one is
    always checked when keys are configured.
    """
    try:
        expected = verify_signed_manifest(tags, trust.public_keys)
    except UntrustedModelError as exc:
        if exc.failure is TrustFailure.UNSIGNED and trust.allow_unsigned:
            return False
        if trust.allow_unsigned and not trust.public_keys:
            return False  # nothing to verify a signature with: explicitly unsigned mode
        raise
    check_files(expected, directory)
    return True


def _read_mlmodel(directory: Path) -> tuple[Mapping[str, Any], Any, Any]:
    """``(sklearn flavor, metadata, signature)`` of the ``MLmodel`` file, read as data."""
    try:
        document = yaml.safe_load((directory / _MLMODEL).read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise _invalid(f"its {_MLMODEL} is missing or not YAML ({type(exc).__name__})") from exc
    flavors = document.get("flavors") if isinstance(document, dict) else None
    if not isinstance(flavors, dict):
        raise _invalid(f"its {_MLMODEL} has no flavors")
    sklearn = flavors.get("sklearn")
    if not isinstance(sklearn, dict):
        raise UntrustedModelError(
            TrustFailure.FORMAT,
            f"it is not a scikit-learn model (flavors: {sorted(map(str, flavors))}); "
            "only the sklearn flavor serialized with skops is loaded",
        )
    pyfunc = flavors.get("python_function")
    if isinstance(pyfunc, dict) and pyfunc.get("loader_module") != _SKLEARN_LOADER:
        raise UntrustedModelError(
            TrustFailure.FORMAT,
            f"its python_function loader is {pyfunc.get('loader_module')!r}, "
            f"not {_SKLEARN_LOADER!r}",
        )
    return sklearn, document.get("metadata"), document.get("signature")


def _model_file(directory: Path, flavor: Mapping[str, Any]) -> Path:
    if flavor.get("serialization_format") != "skops":
        raise UntrustedModelError(
            TrustFailure.FORMAT,
            f"it is serialized as {flavor.get('serialization_format')!r}, not skops "
            "(pickle and cloudpickle run code when loaded)",
        )
    if flavor.get("code"):
        raise UntrustedModelError(TrustFailure.FORMAT, "it bundles code (the flavor's 'code')")
    name = flavor.get("pickled_model")
    relative = PurePosixPath(name) if isinstance(name, str) else None
    if relative is None or relative.is_absolute() or ".." in relative.parts:
        raise _invalid(f"its model file {name!r} is not a path inside the artifact")
    path = directory / relative
    if not path.is_file():
        raise _invalid(f"its model file {name!r} is missing")
    return path


def _check_types(model_file: Path) -> None:
    try:
        untrusted = set(skops.io.get_untrusted_types(file=model_file))
    except Exception as exc:  # a corrupt zip fails in whichever reader opens it
        raise _invalid(
            f"its artifacts do not load: {type(exc).__name__} reading {model_file.name}"
        ) from exc
    if refused := sorted(untrusted - SKOPS_ALLOWED_TYPES):
        raise UntrustedModelError(
            TrustFailure.UNTRUSTED_TYPE,
            f"it holds types outside the worker's allow-list: {refused[:5]}",
        )


def _input_names(signature: Any) -> list[str] | None:
    """The column names of ``signature.inputs`` (a JSON string in ``MLmodel``), if any."""
    raw = signature.get("inputs") if isinstance(signature, dict) else None
    try:
        columns = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        return None
    if not isinstance(columns, list):
        return None
    return [str(c.get("name")) for c in columns if isinstance(c, dict)]


def _invalid(message: str) -> UntrustedModelError:
    return UntrustedModelError(TrustFailure.INVALID, message)
