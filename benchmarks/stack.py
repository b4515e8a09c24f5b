"""The services a run measures: a local broker, an MLflow server with a trained champion,
fresh topics, and ``python -m consumer`` worker processes.

Everything here is started explicitly and stopped by the caller (``Stack`` is a context
manager whose exit stops what it started, also on Ctrl-C); nothing is shared with
other runs: ports are free ones, names are unique, state lives in a temporary directory.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final, Self

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.errors import StackError
from benchmarks.settings import ROOT
from contracts.registry import CANDIDATE_TAG, CHAMPION_ALIAS, MODEL_NAME
from scripts import services
from scripts.services import ServiceError, free_port

_BROKER_START_TIMEOUT_S: Final = 180
_BROKER_STOP_TIMEOUT_S: Final = 60
_TRAINING_TIMEOUT_S: Final = 900
_SERVER_START_TIMEOUT_S: Final = 120.0
_SERVER_STOP_TIMEOUT_S: Final = 30.0
_WORKER_READY_TIMEOUT_S: Final = 180.0
_HTTP_TIMEOUT_S: Final = 5.0
_POLL_S: Final = 0.2
_LOG_TAIL_CHARS: Final = 3_000


def unique_name(prefix: str) -> str:
    """A topic or group name no other run uses: ``<prefix>-<12 hex digits>``."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _tail(path: Path) -> str:
    return services.log_tail(path, _LOG_TAIL_CHARS)


def _stack_error(exc: ServiceError) -> StackError:
    """``exc`` as the benchmark's own error, quoting the service's log when it has one."""
    detail = f":\n{_tail(exc.log_path)}" if exc.log_path is not None else ""
    return StackError(f"{exc}{detail}")


@dataclass(frozen=True)
class Champion:
    """The registered model the workers serve."""

    tracking_uri: str
    model_name: str
    version: str
    family: str

    @property
    def uri(self) -> str:
        return f"models:/{self.model_name}@{CHAMPION_ALIAS}"


@dataclass(frozen=True)
class Topics:
    """A worker's input and output topics."""

    applications: str
    scores: str
    predictions: str
    dead_letters: str


def point_mlflow_at(uri: str) -> None:
    """Set this process's MLflow tracking and registry URIs to ``uri``.

    ``models:/`` downloads resolve through the global registry URI whatever client
    arguments say (MLflow 3.17), so in-process loads need it. MLflow also exports both
    as environment variables; ``worker_env`` keeps the registry one out of the workers.
    """
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)


class Broker(services.LocalBroker):
    """A ``scripts/kafka-local`` broker on free ports, its data in ``directory``.

    ``start`` allows the first run of a machine more time than the tests do; failures
    surface as ``StackError``.
    """

    def start(self, timeout_s: int = _BROKER_START_TIMEOUT_S) -> None:
        try:
            super().start(timeout_s)
        except ServiceError as exc:
            raise _stack_error(exc) from exc

    def stop(self, timeout_s: int = _BROKER_STOP_TIMEOUT_S) -> None:
        try:
            super().stop(timeout_s)
        except ServiceError as exc:
            raise _stack_error(exc) from exc

    @property
    def pid(self) -> int:
        """The broker JVM's pid (for CPU accounting)."""
        pid = super().pid
        if pid is None:
            raise StackError(f"the broker in {self.directory} recorded no pid")
        return pid


def create_topics(bootstrap_servers: str, names: list[str], partitions: int) -> None:
    """Create ``names`` with ``partitions`` each; return once every partition has a leader."""
    try:
        services.create_topics(bootstrap_servers, dict.fromkeys(names, partitions))
    except ServiceError as exc:
        raise _stack_error(exc) from exc


class MlflowServer:
    """``mlflow server`` on a free port: SQLite backend and proxied artifacts in ``directory``.

    The workers reach the registry over HTTP, as deployed ones do (a SQLite tracking URI
    would load MLflow's SQLAlchemy stores into every worker, about 50 MB more). The
    server's job runner is off: it would start a pool of processes nothing here uses.
    """

    def __init__(self, directory: Path, log_path: Path) -> None:
        self.directory = directory
        self.log_path = log_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        command = [
            *services.mlflow_command(),
            "server",
            "--backend-store-uri",
            f"sqlite:///{self.directory / 'mlflow.db'}",
            "--serve-artifacts",
            "--artifacts-destination",
            str(self.directory / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(  # own session: one killpg stops its workers
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                env=env,
                start_new_session=True,
            )
        try:
            services.wait_until_healthy(self.url, self._process, _SERVER_START_TIMEOUT_S)
        except ServiceError as exc:
            raise StackError(f"{exc}:\n{_tail(self.log_path)}") from exc

    def stop(self) -> None:
        if self._process is not None:
            services.stop_process_group(self._process, _SERVER_STOP_TIMEOUT_S)


def train_champion(tracking_uri: str, data: Path, workdir: Path, log_path: Path) -> Champion:
    """Run ``python -m training --quick`` against ``tracking_uri`` (in ``workdir``).

    Every family is trained and the registry's own selection picks the champion, as
    in production; its output goes to ``log_path``.
    """
    # This tree's training code, whatever the working directory.
    env = {**os.environ, "COLUMNS": "120", "PYTHONPATH": str(ROOT)}
    command = [
        sys.executable,
        "-m",
        "training",
        "--quick",
        "--data",
        str(data),
        "--tracking-uri",
        tracking_uri,
        "--model-name",
        MODEL_NAME,
    ]
    with log_path.open("wb") as log:
        try:
            result = subprocess.run(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=workdir,
                env=env,
                timeout=_TRAINING_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise StackError(f"training failed: {exc}") from exc
    if result.returncode != 0:
        raise StackError(f"training exited {result.returncode}:\n{_tail(log_path)}")
    return _champion(tracking_uri)


def _champion(tracking_uri: str) -> Champion:
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        version = client.get_model_version_by_alias(MODEL_NAME, CHAMPION_ALIAS)
    except MlflowException as exc:
        raise StackError(f"training registered no champion: {exc}") from exc
    family = str(version.tags.get(CANDIDATE_TAG, "unknown"))
    return Champion(tracking_uri, MODEL_NAME, str(version.version), family)


class WorkerProcess(services.WorkerProcess):
    """One ``python -m consumer`` subprocess, observed through its HTTP endpoints.

    Probes allow ``_HTTP_TIMEOUT_S``: a worker at full load answers slower than in tests.
    """

    def __init__(self, env: Mapping[str, str], log_path: Path) -> None:
        super().__init__(env, log_path)
        self.name = env["SCORER_WORKER_ID"]

    def alive(self) -> bool:
        return self.process.poll() is None

    def check_alive(self) -> None:
        """Raise ``StackError`` (quoting the log) if the worker has exited."""
        if not self.alive():
            raise StackError(
                f"worker {self.name} exited with {self.process.returncode}:\n{_tail(self.log_path)}"
            )

    def ready(self) -> bool:
        """``/readyz`` answers 200: model loaded, partitions assigned, producer healthy."""
        return self._get("/readyz") is not None

    def wait_ready(self, timeout_s: float = _WORKER_READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.ready():
            self.check_alive()
            if time.monotonic() > deadline:
                raise StackError(
                    f"worker {self.name} not ready in {timeout_s:.0f}s:\n{_tail(self.log_path)}"
                )
            time.sleep(_POLL_S)

    def metrics(self) -> dict[str, float]:
        """Every ``/metrics`` sample, keyed ``name{label="value",...}`` (empty if unreachable)."""
        body = self._get("/metrics")
        if body is None:
            return {}
        samples: dict[str, float] = {}
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return samples

    def scored(self) -> int:
        return int(self.metrics().get("scorer_applications_scored_total", 0))

    def _get(self, path: str) -> bytes | None:
        try:
            with urllib.request.urlopen(self.url + path, timeout=_HTTP_TIMEOUT_S) as response:  # noqa: S310
                return bytes(response.read()) if response.status == 200 else None
        except (urllib.error.URLError, OSError):
            return None


class Stack:
    """Broker + champion for one run; starts workers and stops all of it on exit."""

    def __init__(self, workdir: Path, logs: Path) -> None:
        self.workdir = workdir
        self.logs = logs
        self.broker = Broker(workdir / "kafka")
        self.mlflow = MlflowServer(workdir / "mlflow", logs / "mlflow-server.log")
        self._exit = ExitStack()
        self._champion: Champion | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._exit.close()

    @property
    def bootstrap_servers(self) -> str:
        return self.broker.bootstrap_servers

    @property
    def champion(self) -> Champion:
        if self._champion is None:
            raise StackError("no champion trained yet")
        return self._champion

    def start_broker(self) -> None:
        self._exit.callback(self.broker.stop)  # also after a start that failed half-way
        self.broker.start()

    def start_mlflow(self) -> None:
        self._exit.callback(self.mlflow.stop)
        self.mlflow.start()

    def train(self, data: Path) -> Champion:
        self._champion = train_champion(
            self.mlflow.url, data, self.workdir, self.logs / "training.log"
        )
        return self._champion

    def topics(self, prefix: str, partitions: int, *, input_topic: str | None = None) -> Topics:
        """Fresh output topics (and a fresh input topic unless ``input_topic`` is given)."""
        topics = Topics(
            applications=input_topic or unique_name(f"{prefix}-applications"),
            scores=unique_name(f"{prefix}-scores"),
            predictions=unique_name(f"{prefix}-predictions"),
            dead_letters=unique_name(f"{prefix}-dlq"),
        )
        names = [topics.scores, topics.predictions, topics.dead_letters]
        if input_topic is None:
            names.append(topics.applications)
        create_topics(self.bootstrap_servers, names, partitions)
        return topics

    def worker_env(self, topics: Topics, group_id: str, worker_id: str) -> dict[str, str]:
        """The environment of a worker: this one's (``SCORER_*`` overrides included) plus
        the run's broker, registry, topics and a free HTTP port. Like a deployed worker,
        it is told only ``MLFLOW_TRACKING_URI``."""
        champion = self.champion
        inherited = {k: v for k, v in os.environ.items() if k != "MLFLOW_REGISTRY_URI"}
        return {
            **inherited,
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
            "MLFLOW_TRACKING_URI": champion.tracking_uri,
            "SCORER_MODEL_NAME": champion.model_name,
            "SCORER_MODEL_CACHE_DIR": str(self.workdir / "model-cache"),
            "SCORER_INPUT_TOPIC": topics.applications,
            "SCORER_SCORES_TOPIC": topics.scores,
            "SCORER_PREDICTIONS_TOPIC": topics.predictions,
            "SCORER_DEAD_LETTER_TOPIC": topics.dead_letters,
            "SCORER_GROUP_ID": group_id,
            "SCORER_WORKER_ID": worker_id,
            "SCORER_HTTP_HOST": "127.0.0.1",
            "SCORER_HTTP_PORT": str(free_port()),
            "PYTHONUNBUFFERED": "1",
        }

    def start_worker(self, topics: Topics, group_id: str, worker_id: str) -> WorkerProcess:
        """A worker process, stopped (SIGTERM) when the stack closes if not before."""
        worker = WorkerProcess(
            self.worker_env(topics, group_id, worker_id), self.logs / f"{worker_id}.log"
        )
        self._exit.callback(worker.terminate)
        return worker
