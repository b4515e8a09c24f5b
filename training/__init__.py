"""Training: candidate models tuned, logged and registered in MLflow; a champion chosen.

Public API (the CLI in :mod:`training.cli` is a thin layer over it)::

    report = train(TrainingSettings(quick=True))
    promote(registry_client(settings), settings.model_name, "7")
    rollback(registry_client(settings), settings.model_name)
"""

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
