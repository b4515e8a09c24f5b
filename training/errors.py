"""The training package's exceptions: one root, so callers can catch everything it raises."""

from __future__ import annotations


class TrainingError(Exception):
    """Root of every error the training package raises on purpose."""


class DatasetError(TrainingError):
    """The dataset CSV is missing, unreadable or violates the message contract's domains."""


class ExplanationBuildError(TrainingError):
    """A candidate's scores cannot be explained by its family's method: it is refused."""


class PolicyError(TrainingError):
    """A version's feature policy forbids what was asked (promoting a research-only one)."""


class RegistryError(TrainingError):
    """A model-registry operation cannot be carried out as asked."""


class RegistryAccessError(RegistryError):
    """The registry refused the credentials (401) or what the account asked for (403)."""


class UnknownVersionError(RegistryError):
    """The requested version of the registered model does not exist."""


class NoPreviousChampionError(RegistryError):
    """Rollback was asked for but no version holds the ``previous`` alias."""


class UnverifiedVersionError(RegistryError):
    """A version is unsigned, signed by an unknown key, or its files differ from what was signed."""


class EvidenceError(TrainingError):
    """The monitor's database, the evidence promote --from-shadow judges by, cannot be read."""


class PackagingError(TrainingError):
    """A model cannot be stored in the scorer's format (e.g. a type scorers do not trust)."""
