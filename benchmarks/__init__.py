"""Scoring throughput and latency, measured against their limits on a real local broker.

``python -m benchmarks`` (``make bench``) starts a ``scripts/kafka-local`` broker and a
SQLite MLflow store in a temporary directory, trains a real champion with
``python -m training --quick``, and measures in one run: the Kafka passthrough ceiling,
the champion's batch inference ceiling, a naive per-message scorer (the floor), one and
two ``python -m consumer`` workers draining preloaded applications, and end-to-end
latency at steady rates. Results go to ``benchmarks/results/<run>/``; a full run also
rewrites the table in ``benchmarks/README.md``.
"""
