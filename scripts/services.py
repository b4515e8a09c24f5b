"""Deprecated: the local services moved to ``devstack``; this shim keeps the old names.

Only ``scripts/demo.py`` and ``benchmarks/stack.py`` still import it; delete it once they
import ``devstack`` directly.
"""

from __future__ import annotations

from typing import Any

import devstack
from devstack import (
    ROOT,
    LocalBroker,
    MlflowServer,
    create_topics,
    free_port,
    log_tail,
    stop_detached,
    stop_process_group,
    topic_led,
)
from devstack import DevstackError as ServiceError
from devstack.kafka import KAFKA_LOCAL
from devstack.mlflow_server import _mlflow_command as mlflow_command
from devstack.mlflow_server import wait_until_healthy

__all__ = [
    "KAFKA_LOCAL",
    "ROOT",
    "LocalBroker",
    "MlflowServer",
    "ServiceError",
    "WorkerProcess",
    "create_topics",
    "free_port",
    "log_tail",
    "mlflow_command",
    "stop_detached",
    "stop_process_group",
    "topic_led",
    "wait_until_healthy",
]


class WorkerProcess(devstack.WorkerProcess):
    """``devstack.WorkerProcess`` under its old probe name."""

    def get_json(self, path: str) -> tuple[int, Any]:
        return self.get(path)
