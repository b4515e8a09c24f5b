"""An MLflow server a test can stop and start again: same port, same store, same artifacts.

``scripts.services.MlflowServer`` starts it; a restart runs the very same command line
(so the same ``--port``, SQLite file and artifact directory) and waits for ``/health``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from scripts.services import MlflowServer, wait_until_healthy

_READY_TIMEOUT_S = 120.0


class RestartableMlflow:
    """A running ``mlflow server`` under ``root``; ``stop()`` and ``start()`` keep its URL."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._server = MlflowServer.start(root)
        self._starts = 1

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def running(self) -> bool:
        return self._server.process.poll() is None

    def stop(self) -> None:
        """Stop the server (it answers nothing until ``start()``)."""
        self._server.stop()

    def start(self) -> None:
        """Start the stopped server again with the same command; return once it is healthy.

        A no-op while it runs, so teardown code may call it unconditionally.
        """
        if self.running:
            return
        self._starts += 1
        log_path = self._root / f"server-restart-{self._starts}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                self._server.process.args,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self._root,
                start_new_session=True,  # one killpg stops its workers too
            )
        self._server = MlflowServer(url=self.url, process=process, log_path=log_path)
        wait_until_healthy(self.url, process, _READY_TIMEOUT_S)
