"""Local services for the demo, the benchmarks and the tests: one launcher per service.

- ``kafka``: a ``scripts/kafka-local`` broker, a broker managed elsewhere, a worker's topics.
- ``container``: a Kafka container through testcontainers (needs a container engine).
- ``compose``: docker-compose.yml as one project on free host ports, and ``make demo-compose``.
- ``mlflow_server``: ``mlflow server`` with a SQLite store and proxied artifacts.
- ``worker``: ``python -m consumer`` processes and the environment they are given.
- ``monitor``: ``python -m monitor`` processes on given settings, and whether they caught up.
- ``champion``: a registry's accounts and a quick-trained, signed champion (import it on
  its own: it loads training and MLflow).

Every ``start`` returns only once the service answers its own readiness check and raises
``DevstackError`` otherwise; every ``stop`` is safe on a service that already exited.
Processes run in sessions of their own, so a Ctrl-C in the terminal reaches only the
caller, which stops them in its own order. Nothing starts at import time.
"""

from devstack.kafka import (
    Broker,
    ExternalBroker,
    LocalBroker,
    ScorerTopics,
    create_topics,
)
from devstack.mlflow_server import MlflowServer
from devstack.monitor import MonitorProcess, monitor_env
from devstack.processes import (
    ROOT,
    DevstackError,
    free_port,
    log_tail,
    unique_name,
)
from devstack.worker import WorkerProcess, worker_env

__all__ = [
    "ROOT",
    "Broker",
    "DevstackError",
    "ExternalBroker",
    "LocalBroker",
    "MlflowServer",
    "MonitorProcess",
    "ScorerTopics",
    "WorkerProcess",
    "create_topics",
    "free_port",
    "log_tail",
    "monitor_env",
    "unique_name",
    "worker_env",
]
