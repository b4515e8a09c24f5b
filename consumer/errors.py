"""The worker's exceptions: one root, library errors translated at the boundary."""

from __future__ import annotations

from contracts.model_trust import TrustFailure


class ScorerError(Exception):
    """Root of every error the scoring worker raises on purpose."""


class ModelLoadError(ScorerError):
    """The champion could not be resolved, downloaded or loaded from the registry."""


class ModelRefusedError(ModelLoadError):
    """The version itself is not fit to serve (untrusted, unsigned, wrong inputs, corrupt).

    Retrying cannot help: the watcher does not try it again until the alias moves.
    """

    def __init__(self, failure: TrustFailure, message: str) -> None:
        super().__init__(message)
        self.failure = failure


class RegistryUnreachableError(ModelLoadError):
    """The registry did not answer at all (connection refused, timed out)."""


class RegistryAccessError(ModelLoadError):
    """The registry refused the worker's credentials (401) or its reading the model (403).

    Waiting does not fix it: at start-up the worker stops (``consumer.cli``).
    """


class TransportError(ScorerError):
    """A Kafka operation failed; the subclass says what the worker must do about it."""


class RetriableTransportError(TransportError):
    """A transient failure (timeout, coordinator moving): the same call may succeed again."""


class AbortableTransactionError(TransportError):
    """The open transaction cannot commit: abort it and rewind the consumer."""


class FatalTransportError(TransportError):
    """The Kafka client cannot go on (fenced, misconfigured, unrecoverable): stop the worker."""


class WorkerStuckError(ScorerError):
    """The worker cannot consume and replacing its Kafka clients did not help: restart it."""
