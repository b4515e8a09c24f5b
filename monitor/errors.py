"""The monitor package's exceptions: everything it raises derives from ``MonitorError``."""

from __future__ import annotations


class MonitorError(Exception):
    """Root of every error raised by the ``monitor`` package."""


class StoreError(MonitorError):
    """The monitor's database cannot be opened or failed a transaction."""


class ProfileError(MonitorError):
    """A model version's reference profile cannot be loaded."""
