"""``mlflow server`` as a process: SQLite store and proxied artifacts under one directory.

Workers reach the registry over HTTP, as deployed ones do (a SQLite tracking URI would load
MLflow's SQLAlchemy stores into every worker, about 50 MB more). Given an admin password, the
server runs MLflow's basic-auth app with the compose registry's configuration
(docker/mlflow-auth.ini: no permission without a grant), its accounts in the same directory;
accounts beyond the admin are ``python -m training accounts``'s business."""

from __future__ import annotations

import configparser
import os
import secrets
import signal
import subprocess
from contextlib import suppress
from itertools import chain
from pathlib import Path
from typing import Final

import requests

from devstack.processes import ROOT, DevstackError, ModuleProcess, free_port, wait_until

_HTTP_TIMEOUT_S: Final = 2.0
_READY_TIMEOUT_S: Final = 120.0
_STOP_TIMEOUT_S: Final = 30.0
_START_ATTEMPTS: Final = 3
# Clients keep idle keep-alive connections: the server must not wait on them at shutdown.
_GRACEFUL_SHUTDOWN_S: Final = 3
_JOBS_ENV: Final = "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"
AUTH_CONFIG: Final = ROOT / "docker" / "mlflow-auth.ini"


class MlflowServer:
    """A running ``mlflow server`` on 127.0.0.1, made by ``start``; ``stop()`` then
    ``restart()`` keeps its URL, store and artifacts. Each launch logs to a file of its own,
    ``root/server-<n>.log``; ``log_path`` is the latest."""

    def __init__(self, root: Path, port: int, admin_password: str | None) -> None:
        self.root, self.url = root, f"http://127.0.0.1:{port}"
        self._auth_env = {} if admin_password is None else _auth_env(root, admin_password)
        options = {
            "--backend-store-uri": f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination": str(root / "artifacts"),
            "--host": "127.0.0.1",
            "--port": str(port),
            "--workers": "1",
            "--uvicorn-opts": f"--timeout-graceful-shutdown {_GRACEFUL_SHUTDOWN_S}",
            **({"--app-name": "basic-auth"} if admin_password is not None else {}),
        }
        self._arguments = ["server", "--serve-artifacts", *chain(*options.items())]
        self._launches = 0
        self._launch()

    @classmethod
    def start(cls, root: Path, *, admin_password: str | None = None) -> MlflowServer:
        """Start a server on a free port; return once ``GET /health`` answers 200. With
        ``admin_password`` it authenticates every request (basic-auth app, admin ``admin``).
        A port taken between probing and binding fails an attempt: each of the
        ``_START_ATTEMPTS`` has a fresh port, and the last one's failure is raised."""
        root = root.resolve()
        root.mkdir(parents=True, exist_ok=True)
        for _ in range(_START_ATTEMPTS - 1):
            with suppress(DevstackError):
                return cls(root, free_port(), admin_password)
        return cls(root, free_port(), admin_password)

    @property
    def pid(self) -> int:
        """The server's pid, also its process group (uvicorn's workers belong to it)."""
        return self._server.pid

    def restart(self) -> None:
        """Launch the same command again (a no-op while it runs); return once it is healthy."""
        if not self._server.running:
            self._launch()

    def stop(self, timeout_s: float = _STOP_TIMEOUT_S) -> None:
        """SIGTERM the server's process group (uvicorn's workers too), SIGKILL if it lingers."""
        process = self._server.process
        for stop in (signal.SIGTERM, signal.SIGKILL):
            if process.poll() is not None:
                return
            os.killpg(process.pid, stop)
            with suppress(subprocess.TimeoutExpired):
                process.wait(timeout=timeout_s)

    def _launch(self) -> None:
        self._launches += 1
        self.log_path = self.root / f"server-{self._launches}.log"
        # The job runner (a pool of huey processes for MLflow's GenAI jobs) is of no use to
        # training or the worker, and starting it costs seconds: off unless asked for.
        env = {_JOBS_ENV: "false", **os.environ, **self._auth_env}
        self._server = ModuleProcess("mlflow", env, self.log_path, *self._arguments, cwd=self.root)
        failure = f"mlflow server at {self.url} was not healthy"
        try:
            wait_until(self._healthy, _READY_TIMEOUT_S, failure, watch=[self._server])
        except DevstackError:
            self.stop()
            raise

    def _healthy(self) -> bool:
        try:
            return requests.get(f"{self.url}/health", timeout=_HTTP_TIMEOUT_S).status_code == 200
        except requests.RequestException:
            return False


def _auth_env(root: Path, admin_password: str) -> dict[str, str]:
    """The basic-auth app's environment: docker/mlflow-auth.ini with its accounts database
    under ``root``, the admin's first password, and a CSRF key for its sign-up form."""
    config = configparser.ConfigParser()
    config.read(AUTH_CONFIG, encoding="utf-8")
    config["mlflow"]["database_uri"] = f"sqlite:///{root / 'basic_auth.db'}"
    path = root / "basic_auth.ini"
    with path.open("w", encoding="utf-8") as file:
        config.write(file)
    return {
        "MLFLOW_AUTH_CONFIG_PATH": str(path),
        "MLFLOW_AUTH_ADMIN_PASSWORD": admin_password,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
    }
