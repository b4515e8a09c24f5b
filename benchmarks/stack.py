"""The services a run measures, launched through ``devstack``: a local broker, an MLflow
server with a champion trained for the run, fresh topics, and worker processes.

``Stack`` is a context manager whose exit stops everything it started, also on Ctrl-C;
nothing is shared with other runs: ports are free ones, names are unique, state lives in
a temporary directory, and every log is kept with the run's results.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from benchmarks import BenchmarkError
from contracts.model_names import CANDIDATE_TAG, CHAMPION_ALIAS, MODEL_NAME
from devstack import (
    ROOT,
    DevstackError,
    LocalBroker,
    MlflowServer,
    WorkerProcess,
    create_topics,
    log_tail,
    unique_name,
    worker_env,
)
from training.signing import keygen

# The first start of a machine (JVM, page cache) is slower than the tests allow.
_BROKER_START_TIMEOUT_S: Final = 180
_TRAINING_TIMEOUT_S: Final = 900


@dataclass(frozen=True)
class Champion:
    """The registered model the workers serve."""

    tracking_uri: str
    model_name: str
    version: str
    family: str
    public_key: Path
    """The PEM public key the champion is signed with (workers verify it)."""

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

    def settings(self) -> dict[str, str]:
        """The topics as a worker's settings."""
        return {
            "input_topic": self.applications,
            "scores_topic": self.scores,
            "predictions_topic": self.predictions,
            "dead_letter_topic": self.dead_letters,
        }


def point_mlflow_at(uri: str) -> None:
    """Set this process's MLflow tracking and registry URIs to ``uri``.

    ``models:/`` downloads resolve through the global registry URI whatever client
    arguments say (MLflow 3.17), so in-process loads need it. ``worker_env`` keeps the
    registry one out of the workers: a deployed worker is told only the tracking URI.
    """
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)


def check_alive(worker: WorkerProcess) -> None:
    """Raise ``DevstackError`` (with the worker's log) when ``worker`` has exited."""
    if not worker.running:
        raise DevstackError(
            f"worker {worker.worker_id} exited with {worker.process.returncode}", worker.log_path
        )


class Stack(ExitStack):
    """Broker, MLflow server and champion for one run; starts workers, stops all on exit."""

    def __init__(self, workdir: Path, logs: Path) -> None:
        super().__init__()
        self.workdir = workdir
        self.logs = logs
        logs.mkdir(parents=True, exist_ok=True)
        self.broker = LocalBroker(workdir / "kafka")
        self._mlflow: MlflowServer | None = None
        self._champion: Champion | None = None

    @property
    def bootstrap_servers(self) -> str:
        return self.broker.bootstrap_servers

    @property
    def broker_pid(self) -> int:
        """The broker JVM's pid (for CPU accounting)."""
        if (pid := self.broker.pid) is None:
            raise BenchmarkError(f"the broker in {self.broker.directory} recorded no pid")
        return pid

    @property
    def champion(self) -> Champion:
        if self._champion is None:
            raise BenchmarkError("no champion trained yet")
        return self._champion

    def start(self) -> None:
        """The broker and the MLflow server; their logs are copied to ``logs`` at exit."""
        self._keep_log(self.broker.log_path, "kafka.log")
        self.callback(self.broker.stop)  # also after a start that failed half-way
        self.broker.start(_BROKER_START_TIMEOUT_S)
        self._mlflow = MlflowServer.start(self.workdir / "mlflow")
        self._keep_log(self._mlflow.log_path, "mlflow-server.log")
        self.callback(self._mlflow.stop)

    def _keep_log(self, path: Path, name: str) -> None:
        self.callback(lambda: path.is_file() and shutil.copyfile(path, self.logs / name))

    def train(self, data: Path) -> Champion:
        """``python -m training --quick`` against the server: every family is trained and
        the registry's own selection picks the champion, as in production."""
        if self._mlflow is None:
            raise BenchmarkError("start() the stack before training")
        uri, log_path = self._mlflow.url, self.logs / "training.log"
        command = [sys.executable, "-m", "training", "--quick", "--data", str(data)]
        command += ["--tracking-uri", uri, "--model-name", MODEL_NAME]
        keys = keygen(Path(tempfile.mkdtemp(prefix="model-signing-", dir=self.workdir)))
        # This tree's training code, whatever the working directory.
        env = {**os.environ, "COLUMNS": "120", "PYTHONPATH": str(ROOT)}
        env["RUMOS_TRAINING_SIGNING_KEY"] = str(keys.private)
        with log_path.open("wb") as log:
            try:
                subprocess.run(
                    command,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.workdir,
                    env=env,
                    timeout=_TRAINING_TIMEOUT_S,
                    check=True,
                )
            except (OSError, subprocess.SubprocessError) as exc:
                raise DevstackError(f"training failed: {exc}", log_path) from exc
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        try:
            version = client.get_model_version_by_alias(MODEL_NAME, CHAMPION_ALIAS)
        except MlflowException as exc:
            raise BenchmarkError(f"training registered no champion: {exc}") from exc
        family = str(version.tags.get(CANDIDATE_TAG, "unknown"))
        self._champion = Champion(uri, MODEL_NAME, str(version.version), family, keys.public)
        return self._champion

    def topics(self, prefix: str, partitions: int, input_topic: str | None = None) -> Topics:
        """Fresh output topics (and a fresh input topic unless ``input_topic`` is given)."""
        topics = Topics(
            applications=input_topic or unique_name(f"{prefix}-applications"),
            scores=unique_name(f"{prefix}-scores"),
            predictions=unique_name(f"{prefix}-predictions"),
            dead_letters=unique_name(f"{prefix}-dlq"),
        )
        names = [topics.scores, topics.predictions, topics.dead_letters]
        names += [] if input_topic else [topics.applications]
        create_topics(self.bootstrap_servers, dict.fromkeys(names, partitions))
        return topics

    def start_worker(self, topics: Topics, group_id: str, worker_id: str) -> WorkerProcess:
        """A worker with this process's ``SCORER_*`` settings and the run's broker, registry
        and topics; stopped (SIGTERM) when the stack closes if not before."""
        env = worker_env(
            True,  # inherit this process's SCORER_* settings
            kafka_bootstrap_servers=self.bootstrap_servers,
            mlflow_tracking_uri=self.champion.tracking_uri,
            model_name=self.champion.model_name,
            model_cache_dir=self.workdir / "model-cache",
            model_signing_public_key=self.champion.public_key,
            **topics.settings(),
            group_id=group_id,
            worker_id=worker_id,
        )
        worker = WorkerProcess(env, self.logs / f"{worker_id}.log")
        self.callback(worker.terminate)
        return worker


def failure_detail(exc: BaseException) -> str:
    """``exc``'s message, with the end of the service's log when it names one."""
    log_path = getattr(exc, "log_path", None)
    return f"{exc}:\n{log_tail(log_path)}" if log_path is not None else str(exc)
