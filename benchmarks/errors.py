"""The benchmark's exceptions: one root, so the CLI reports them without a traceback."""

from __future__ import annotations


class BenchmarkError(Exception):
    """Root of every error the benchmark raises on purpose."""


class StackError(BenchmarkError):
    """The broker, the MLflow store, the champion or a worker could not be started or reached."""


class PhaseError(BenchmarkError):
    """A measurement phase did not complete (timeout, lost records, a worker died)."""
