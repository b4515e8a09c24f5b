"""The scoring worker (``python -m consumer``): Kafka in, champion model, Kafka out, exactly once.

Modules: ``settings`` (typed configuration from the environment), ``errors`` (the
``ScorerError`` tree), ``transport`` (confluent-kafka behind the ``Transport``
Protocol), ``decoding`` (bytes → application or ``DecodeFailure``), ``scoring`` (one
model call per batch), ``sinks`` (score, prediction and dead-letter records),
``model`` (registry loader, local cache, alias watcher), ``worker`` (the transactional
run loop), ``ops`` (metrics and the HTTP server), ``logs`` (JSON log lines) and
``__main__`` (wiring).
"""
