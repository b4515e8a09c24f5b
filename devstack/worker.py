"""The scoring worker as a process: ``python -m consumer``, observed through its HTTP endpoints."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import requests

from consumer.cli import DUMP_STACKS_SIGNAL
from consumer.settings import ENV_PREFIX, Settings
from devstack.processes import (
    POLL_S,
    DevstackError,
    ModuleProcess,
    free_port,
    scrape,
    settings_env,
    wait_until,
)

_HTTP_TIMEOUT_S: Final = 5.0  # for each probe: a worker at full load answers slowly
_READY_TIMEOUT_S: Final = 180.0
_STACKS_END: Final = "Current thread"
# A deployed worker is told only the tracking URI; an inherited registry URI would win.
_NEVER_INHERITED: Final = ("MLFLOW_REGISTRY_URI",)


def worker_env(inherit_settings: bool = False, /, **settings: object) -> dict[str, str]:
    """The environment of a worker: this process's, plus ``settings`` by ``Settings`` field
    name (``settings_env``), ``http_host`` 127.0.0.1 and ``http_port`` a free port unless given.
    A misspelt setting raises ``DevstackError`` here instead of being ignored by the worker.
    This process's ``SCORER_*`` variables are dropped unless ``inherit_settings`` (positional,
    so it never collides with a setting; ``settings`` still win).
    """
    if unknown := sorted(set(settings) - set(Settings.model_fields)):
        raise DevstackError(f"not worker settings (consumer.settings.Settings): {unknown}")
    chosen = {"http_host": "127.0.0.1", "http_port": free_port(), **settings}
    return settings_env(Settings, chosen, _NEVER_INHERITED, inherit_settings)


class WorkerProcess(ModuleProcess):
    """One ``python -m consumer`` process (``ModuleProcess``) and its HTTP endpoints."""

    def __init__(self, env: Mapping[str, str], log_path: Path) -> None:
        self.worker_id = env.get(f"{ENV_PREFIX}WORKER_ID", "")
        self.url = f"http://{env[f'{ENV_PREFIX}HTTP_HOST']}:{env[f'{ENV_PREFIX}HTTP_PORT']}"
        super().__init__("consumer", env, log_path)

    def get(self, path: str) -> tuple[int, Any]:
        """``(status, parsed JSON or text)`` of ``GET path``; ``(0, reason)`` if nobody answers."""
        try:
            response = requests.get(self.url + path, timeout=_HTTP_TIMEOUT_S)
        except requests.RequestException as exc:
            return 0, str(exc)
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, response.text

    def metrics(self) -> dict[str, float]:
        return scrape(self.url + "/metrics", _HTTP_TIMEOUT_S)

    def ready(self) -> bool:
        """Whether ``/readyz`` answers 200 (model loaded, partitions assigned)."""
        return self.get("/readyz")[0] == 200

    def wait_ready(self, timeout_s: float = _READY_TIMEOUT_S) -> None:
        """Return once ``ready()``; ``DevstackError`` if it exits first or ``timeout_s`` passes."""
        wait_until(self.ready, timeout_s, "the worker was not ready", watch=[self])

    def dump_stacks(self, timeout_s: float = _HTTP_TIMEOUT_S) -> str:
        """Every thread's stack (SIGUSR1, ``consumer.cli.DUMP_STACKS_SIGNAL``), as the worker
        logged it; "" if it is not running or wrote none within ``timeout_s``. The worker
        carries on: this is how a test that failed shows where a worker was."""
        if not self.running:
            return ""
        start = self.log_path.stat().st_size
        self.process.send_signal(DUMP_STACKS_SIGNAL)
        deadline = time.monotonic() + timeout_s
        written = ""
        while time.monotonic() < deadline:
            with self.log_path.open("rb") as log:  # only what came after the signal
                log.seek(start)
                fresh = log.read().decode("utf-8", errors="replace")
            if _STACKS_END in written and fresh == written:
                return written  # the current thread is written and nothing more came
            written = fresh
            time.sleep(POLL_S)  # waiting for a file to stop growing: nothing to block on
        return written
