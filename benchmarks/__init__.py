"""Scoring throughput and latency, measured against their limits on a real local broker:
``python -m benchmarks`` (``make bench``). ``benchmarks/README.md`` says what one run
measures and what the runs found; ``benchmarks.runner`` runs the phases.
"""

from typing import Final

PHASE_TIMEOUT_S: Final = 900.0
"""The longest any phase may take before the run fails."""


class BenchmarkError(Exception):
    """A phase of the run failed (timeout, lost or duplicated records, a worker died)."""
