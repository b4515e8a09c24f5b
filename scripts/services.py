"""Local services as processes: an MLflow server, a Kafka broker, and the scoring worker.

Shared by the demo (``scripts/demo.py``) and the test fixtures. Every ``start`` returns
only once the service answers its own readiness check (MLflow ``/health``, a Kafka
metadata request, the worker's ``/readyz``) and raises ``ServiceError`` otherwise, after
stopping whatever it had launched; every ``stop`` is safe on a service that already
exited. Services run in sessions of their own, so a Ctrl-C in the terminal reaches only
the caller, which stops them in its own order.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import requests
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

ROOT: Final = Path(__file__).resolve().parents[1]
KAFKA_LOCAL: Final = ROOT / "scripts" / "kafka-local"

_POLL_S: Final = 0.25
_HTTP_TIMEOUT_S: Final = 2.0
_LOG_TAIL_CHARS: Final = 4000
_MLFLOW_READY_TIMEOUT_S: Final = 120.0
_MLFLOW_STOP_TIMEOUT_S: Final = 30.0
# Clients keep idle keep-alive connections: the server must not wait on them at shutdown.
_MLFLOW_GRACEFUL_SHUTDOWN_S: Final = 3
_MLFLOW_START_ATTEMPTS: Final = 3
_MLFLOW_JOBS_ENV: Final = "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"
_BROKER_START_TIMEOUT_S: Final = 120
_BROKER_STOP_TIMEOUT_S: Final = 60
# The first start of a machine resolves the broker's jars with Maven.
_MAVEN_ALLOWANCE_S: Final = 600
_TOPIC_TIMEOUT_S: Final = 30.0
_WORKER_STOP_TIMEOUT_S: Final = 60.0


class ServiceError(Exception):
    """A service could not be started, reached or stopped.

    The message is one line; ``log_path``, when set, is the service's log with the details.
    """

    def __init__(self, message: str, log_path: Path | None = None) -> None:
        super().__init__(message)
        self.log_path = log_path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def log_tail(path: Path, chars: int = _LOG_TAIL_CHARS) -> str:
    """The last ``chars`` characters of a log ("" if it cannot be read)."""
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-chars:]
    except OSError:
        return ""


def stop_process_group(process: subprocess.Popen[bytes], timeout_s: float) -> None:
    """SIGTERM the process's group (its own session), then SIGKILL once ``timeout_s`` passes."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout_s)


# --- MLflow ---------------------------------------------------------------------------


def mlflow_command() -> list[str]:
    """The venv's ``mlflow`` script next to this interpreter, else ``python -m mlflow``."""
    script = Path(sys.executable).with_name("mlflow")
    if script.is_file():
        return [str(script)]
    found = shutil.which("mlflow")
    return [found] if found else [sys.executable, "-m", "mlflow"]


def wait_until_healthy(url: str, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    """Return once ``GET {url}/health`` answers 200.

    Between probes it waits on the process itself, so a server that dies is noticed at
    once. Raises ``ServiceError`` if the process exits or the deadline passes.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/health", timeout=_HTTP_TIMEOUT_S).status_code == 200:
                return
        except requests.RequestException:
            pass
        try:
            code = process.wait(timeout=_POLL_S)
        except subprocess.TimeoutExpired:
            continue
        raise ServiceError(f"mlflow server exited with code {code} while starting")
    raise ServiceError(f"mlflow server at {url} not healthy within {timeout_s:.0f}s")


@dataclass(frozen=True)
class MlflowServer:
    """A running ``mlflow server``: SQLite store and proxied artifacts under ``root``."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        """The server's pid, also its process group (uvicorn's workers belong to it)."""
        return self.process.pid

    @classmethod
    def start(
        cls,
        root: Path,
        *,
        attempts: int = _MLFLOW_START_ATTEMPTS,
        ready_timeout_s: float = _MLFLOW_READY_TIMEOUT_S,
    ) -> MlflowServer:
        """Start a server on a free port of 127.0.0.1 and return once it is healthy.

        The store is ``root/mlflow.db``, artifacts go to ``root/artifacts`` through the
        server, the log to ``root/server-<attempt>.log``. A failed attempt (the port was
        taken between probing and binding) is retried on a fresh port.
        """
        root = root.resolve()
        root.mkdir(parents=True, exist_ok=True)
        failure = ServiceError("mlflow server was not started (no attempts)")
        for attempt in range(1, attempts + 1):
            try:
                return cls._start_once(root, root / f"server-{attempt}.log", ready_timeout_s)
            except ServiceError as exc:
                failure = exc
        raise failure

    @classmethod
    def _start_once(cls, root: Path, log_path: Path, ready_timeout_s: float) -> MlflowServer:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        command = [
            *mlflow_command(),
            "server",
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--serve-artifacts",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--uvicorn-opts",
            f"--timeout-graceful-shutdown {_MLFLOW_GRACEFUL_SHUTDOWN_S}",
        ]
        # The job runner (a pool of huey processes for MLflow's GenAI jobs) is of no use to
        # training or the worker, and starting it costs seconds: off unless asked for.
        env = {_MLFLOW_JOBS_ENV: "false", **os.environ}
        with log_path.open("wb") as log:
            process = subprocess.Popen(  # noqa: S603 (fixed command, no shell)
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=root,
                env=env,
                start_new_session=True,
            )
        server = cls(url=url, process=process, log_path=log_path)
        try:
            wait_until_healthy(url, process, ready_timeout_s)
        except ServiceError as exc:
            server.stop()
            raise ServiceError(str(exc), log_path) from exc
        return server

    def stop(self) -> None:
        """Stop the server and its workers (SIGTERM, then SIGKILL if it lingers)."""
        stop_process_group(self.process, _MLFLOW_STOP_TIMEOUT_S)


# --- Kafka ----------------------------------------------------------------------------


class LocalBroker:
    """A ``scripts/kafka-local`` broker on free ports of 127.0.0.1, its data in ``directory``.

    ``stop`` works from ``directory`` alone, so it also stops a broker whose ``start``
    was interrupted after the JVM was launched.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.controller_port = free_port()
        while self.controller_port == self.port:
            self.controller_port = free_port()

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.directory / "kafka.log"

    @property
    def pid(self) -> int | None:
        """The broker JVM's pid as ``kafka-local`` recorded it (None before the JVM starts)."""
        try:
            return int((self.directory / "kafka.pid").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def start(self, timeout_s: int = _BROKER_START_TIMEOUT_S) -> None:
        """Start the broker; return once it answers a metadata request."""
        self._kafka_local(
            "start",
            "--port",
            str(self.port),
            "--controller-port",
            str(self.controller_port),
            "--dir",
            str(self.directory),
            "--timeout",
            str(timeout_s),
            timeout_s=timeout_s + _MAVEN_ALLOWANCE_S,
        )

    def stop(self, timeout_s: int = _BROKER_STOP_TIMEOUT_S) -> None:
        """Stop the broker (controlled shutdown; SIGKILL after ``timeout_s``)."""
        self._kafka_local(
            "stop", "--dir", str(self.directory), "--timeout", str(timeout_s), timeout_s=timeout_s
        )

    def _kafka_local(self, *args: str, timeout_s: float) -> None:
        # The readiness probe runs with this interpreter, which has confluent_kafka.
        env = {**os.environ, "KAFKA_LOCAL_PYTHON": sys.executable}
        try:
            result = subprocess.run(  # noqa: S603 (the project's own script, no shell)
                [str(KAFKA_LOCAL), *args],
                capture_output=True,
                text=True,
                env=env,
                timeout=timeout_s + 30,
                check=False,
                start_new_session=True,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ServiceError(f"scripts/kafka-local {args[0]} failed: {exc}") from exc
        if result.returncode != 0:
            raise ServiceError(_first_reason(result.stderr, args[0]), self.log_path)


def _first_reason(stderr: str, command: str) -> str:
    """The line where ``kafka-local`` says what went wrong (it then quotes the broker log)."""
    lines = [line for line in stderr.splitlines() if line.startswith("kafka-local:")]
    return lines[0] if lines else f"scripts/kafka-local {command} failed"


def create_topics(
    bootstrap_servers: str,
    partitions_by_topic: Mapping[str, int],
    timeout_s: float = _TOPIC_TIMEOUT_S,
) -> None:
    """Create the topics; return once every partition of each has a leader."""
    admin = AdminClient({"bootstrap.servers": bootstrap_servers, "log_level": 0})
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=count) for name, count in partitions_by_topic.items()],
        operation_timeout=timeout_s,
    )
    try:
        for future in futures.values():
            future.result(timeout=timeout_s)
    except KafkaException as exc:
        raise ServiceError(f"cannot create topics {sorted(partitions_by_topic)}: {exc}") from exc
    deadline = time.monotonic() + timeout_s
    while not all(topic_led(admin, name, n) for name, n in partitions_by_topic.items()):
        if time.monotonic() > deadline:
            raise ServiceError(f"topics {sorted(partitions_by_topic)} had no leaders in time")
        time.sleep(_POLL_S)


def topic_led(admin: AdminClient, topic: str, partitions: int) -> bool:
    """``topic`` exists with ``partitions`` partitions, each with a leader and no error."""
    try:
        metadata = admin.list_topics(topic=topic, timeout=_HTTP_TIMEOUT_S).topics.get(topic)
    except KafkaException:
        return False
    return (
        metadata is not None
        and metadata.error is None
        and len(metadata.partitions) == partitions
        and all(p.error is None and p.leader >= 0 for p in metadata.partitions.values())
    )


# --- the scoring worker ---------------------------------------------------------------


class WorkerProcess:
    """One ``python -m consumer`` process, observed through its HTTP endpoints."""

    def __init__(self, env: Mapping[str, str], log_path: Path) -> None:
        """Start the worker with exactly ``env``; its JSON log goes to ``log_path``."""
        self.url = f"http://{env['SCORER_HTTP_HOST']}:{env['SCORER_HTTP_PORT']}"
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "consumer"],
                env=dict(env),
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def get_json(self, path: str) -> tuple[int, Any]:
        """``(status, parsed JSON body)`` of ``GET path``; ``(0, reason)`` if nobody answers."""
        try:
            response = requests.get(self.url + path, timeout=_HTTP_TIMEOUT_S)
        except requests.RequestException as exc:
            return 0, str(exc)
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, response.text

    def wait_ready(self, timeout_s: float) -> None:
        """Return once ``/readyz`` answers 200 (model loaded, partitions assigned).

        Raises ``ServiceError`` when the process exits first or the deadline passes,
        giving the last reasons ``/readyz`` reported.
        """
        deadline = time.monotonic() + timeout_s
        status, body = 0, "not asked yet"
        while time.monotonic() < deadline:
            status, body = self.get_json("/readyz")
            if status == 200:
                return
            try:
                code = self.process.wait(timeout=_POLL_S)
            except subprocess.TimeoutExpired:
                continue
            raise ServiceError(
                f"the worker exited with code {code} before it was ready", self.log_path
            )
        reasons = body.get("reasons") if isinstance(body, dict) else body
        raise ServiceError(
            f"the worker was not ready within {timeout_s:.0f}s ({reasons})", self.log_path
        )

    def terminate(self, timeout_s: float = _WORKER_STOP_TIMEOUT_S) -> int:
        """SIGTERM (the worker commits the batch in hand and exits), SIGKILL if it lingers.

        Returns the exit code.
        """
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(timeout=timeout_s)


# --- services left running by an earlier process -------------------------------------


def _running_command(pid: int) -> str | None:
    """The command line of ``pid`` while it runs (None once it is gone or a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":
        return None
    return command.replace(b"\0", b" ").decode(errors="replace")


def stop_detached(
    pid: int, *, marker: str, group: bool, timeout_s: float = _WORKER_STOP_TIMEOUT_S
) -> bool:
    """Stop a process another process started, if it still runs a command containing ``marker``.

    SIGTERM (to its whole group when ``group``), then SIGKILL once ``timeout_s`` passes.
    Returns False, sending nothing, when no such process runs (gone, or its pid reused).
    """
    command = _running_command(pid)
    if command is None or marker not in command:
        return False
    send = os.killpg if group else os.kill
    for signum, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, timeout_s)):
        try:
            send(pid, signum)
        except ProcessLookupError:
            return True
        deadline = time.monotonic() + wait_s
        while _running_command(pid) is not None and time.monotonic() < deadline:
            time.sleep(_POLL_S)
        if _running_command(pid) is None:
            return True
    raise ServiceError(f"pid {pid} ({marker}) survived SIGKILL")
