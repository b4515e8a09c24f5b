"""Scoring throughput and latency, measured against their limits on a real local broker:
``python -m benchmarks`` (``make bench``). ``benchmarks/README.md`` says what one run
measures and what the runs found; ``benchmarks.runner`` runs the phases.
"""


class BenchmarkError(Exception):
    """A phase of the run failed (timeout, lost or duplicated records, a worker died)."""
