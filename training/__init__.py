"""Training: candidate models tuned, logged and registered in MLflow; a champion chosen.

Public API (the CLI in :mod:`training.cli` is a thin layer over it)::

    report = train(TrainingSettings(quick=True))
    promote(registry_client(settings), settings.model_name, "7")
    rollback(registry_client(settings), settings.model_name)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from training.errors import (
        DatasetError,
        NoPreviousChampionError,
        RegistryError,
        TrainingError,
        UnknownVersionError,
    )
    from training.registry import AliasState, aliases, promote, registry_client, rollback
    from training.results import CandidateResult, TrainingReport
    from training.settings import Family, RegistrySettings, TrainingSettings
    from training.trainer import train

# Imported on first use, not with the package: the monitor imports training.fairness and
# training.evaluation only, and the trainer's imports (MLflow models, matplotlib, skops)
# cost it 55 MB at import (benchmarks/README.md, finding 10).
_HOME = {
    **dict.fromkeys(
        (
            "DatasetError",
            "NoPreviousChampionError",
            "RegistryError",
            "TrainingError",
            "UnknownVersionError",
        ),
        "training.errors",
    ),
    **dict.fromkeys(
        ("AliasState", "aliases", "promote", "registry_client", "rollback"), "training.registry"
    ),
    **dict.fromkeys(("CandidateResult", "TrainingReport"), "training.results"),
    **dict.fromkeys(("Family", "RegistrySettings", "TrainingSettings"), "training.settings"),
    "train": "training.trainer",
}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'training' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOME[name]), name)


__all__ = [
    "AliasState",
    "CandidateResult",
    "DatasetError",
    "Family",
    "NoPreviousChampionError",
    "RegistryError",
    "RegistrySettings",
    "TrainingError",
    "TrainingReport",
    "TrainingSettings",
    "UnknownVersionError",
    "aliases",
    "promote",
    "registry_client",
    "rollback",
    "train",
]
