"""Local services for the demo, the benchmarks and the tests: one launcher per service, a
module each (``kafka``, ``container``, ``compose``, ``mlflow_server``, ``worker``, ``monitor``;
``champion``, imported on its own, loads training and MLflow).

Every ``start`` returns only once the service answers its own readiness check, else raises
``DevstackError``; every ``stop`` is safe on a service that already exited. Processes run in
sessions of their own, so a Ctrl-C in the terminal reaches only the caller, which stops them
in its own order. Nothing starts at import time.
"""

from devstack.kafka import Broker, ExternalBroker, LocalBroker, ScorerTopics, create_topics
from devstack.mlflow_server import MlflowServer
from devstack.monitor import MonitorProcess, monitor_env
from devstack.processes import ROOT, DevstackError, free_port, log_tail, unique_name
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
