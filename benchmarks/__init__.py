"""Scoring throughput and latency, measured against their limits on a real local broker.

``python -m benchmarks`` (``make bench``) starts a local broker and an MLflow server,
trains a real champion, and measures in one run: the Kafka passthrough ceiling, the
champion's batch inference ceiling, a naive per-message scorer (the floor), one and two
``python -m consumer`` workers draining preloaded applications, end-to-end latency at
steady rates, and a py-spy profile. ``benchmarks/README.md`` says how, and what it found.
"""


class BenchmarkError(Exception):
    """A phase of the run failed (timeout, lost or duplicated records, a worker died)."""
