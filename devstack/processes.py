"""What every service shares: the error type, free ports, unique names, logs, waiting,
environments built from settings, and ``python -m`` processes (``ModuleProcess``)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Final

import requests
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from pydantic_settings import BaseSettings

from contracts.kafka import reveal

ROOT: Final = Path(__file__).resolve().parents[1]
"""The repository: the working directory of workers, the home of ``scripts/kafka-local``."""

POLL_S: Final = 0.25
_LOG_TAIL_CHARS: Final = 6000
_STOP_TIMEOUT_S: Final = 60.0
_KILL_TIMEOUT_S: Final = 30.0


class DevstackError(Exception):
    """A service could not be started, reached or stopped: a one-line message, and in
    ``log_path`` (if set) the service's log with the details."""

    def __init__(self, message: str, log_path: Path | None = None) -> None:
        super().__init__(message)
        self.log_path = log_path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def unique_name(prefix: str) -> str:
    """A topic, group or model name no other test or run uses: ``<prefix>-<12 hex digits>``."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def log_tail(path: Path, chars: int = _LOG_TAIL_CHARS) -> str:
    """The last ``chars`` characters of a log ("" if it cannot be read)."""
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-chars:]
    except OSError:
        return ""


def wait_until(
    ready: Callable[[], object],
    timeout_s: float,
    failure: str,
    *,
    watch: Sequence[ModuleProcess] = (),
    poll_s: float = POLL_S,
) -> float:
    """Return once ``ready()``, the seconds it took, trying ``poll_s`` apart. Raises
    ``DevstackError``: "<failure>: python -m <module> (pid <pid>) exited with <code>" (with that
    process's log) once a process in ``watch`` has exited, or "<failure> within <timeout_s>s"
    (with the log of the one process watched, if just one)."""
    started = time.monotonic()
    while not ready():
        time.sleep(poll_s)
        for watched in watch:
            if (code := watched.process.poll()) is not None:
                exited = f"python -m {watched.module} (pid {watched.pid}) exited with {code}"
                raise DevstackError(f"{failure}: {exited}", watched.log_path)
        if time.monotonic() - started > timeout_s:
            log_path = watch[0].log_path if len(watch) == 1 else None
            raise DevstackError(f"{failure} within {timeout_s:.0f}s", log_path)
    return time.monotonic() - started


def settings_env(
    model: type[BaseSettings], values: Mapping[str, object], never: Collection[str], inherit: bool
) -> dict[str, str]:
    """This process's environment without ``never`` and, unless ``inherit``, ``model``'s prefix;
    plus ``values`` (by field of ``model``) under the variable each is read from (the alias, else
    ``<prefix><FIELD>``). Dicts and lists as JSON, secrets in clear: never log the result."""
    prefix = model.model_config.get("env_prefix", "")
    env = {name: value for name, value in os.environ.items() if name not in never}
    if not inherit:
        env = {name: value for name, value in env.items() if not name.startswith(prefix)}
    for field, value in values.items():
        alias = model.model_fields[field].validation_alias
        env[alias if isinstance(alias, str) else f"{prefix}{field.upper()}"] = _text(value)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _text(value: object) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, dict):
        return json.dumps(reveal(value))
    if isinstance(value, list):
        return json.dumps(value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def scrape(url: str, timeout_s: float = 5.0) -> dict[str, float]:
    """Every sample of the Prometheus endpoint at ``url``, keyed ``name{label="value",...}``
    (labels sorted); empty when it does not answer 200."""
    try:
        response = requests.get(url, timeout=timeout_s)
    except requests.RequestException:
        return {}
    if response.status_code != 200:
        return {}
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


class ModuleProcess:
    """One ``python -m <module> <arguments>`` process with exactly ``env`` in ``cwd``, its output
    appended to ``log_path``, started by the constructor in a session of its own: its pid is
    also its process group, so one signal reaches its children too."""

    def __init__(
        self, module: str, env: Mapping[str, str], log_path: Path, *arguments: str, cwd: Path = ROOT
    ) -> None:
        self.module, self.log_path, self._env = module, log_path, dict(env)
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 (fixed command, no shell)
                [sys.executable, "-m", module, *arguments],
                env=self._env,
                cwd=cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, chars: int = _LOG_TAIL_CHARS) -> str:
        return log_tail(self.log_path, chars)

    def exit_code(self, timeout_s: float, failure: str) -> int:
        """Its exit code; killed and ``DevstackError(failure)`` if it runs ``timeout_s`` more."""
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise DevstackError(failure, self.log_path) from None

    def terminate(self, timeout_s: float = _STOP_TIMEOUT_S) -> int:
        """SIGTERM (it finishes the batch in hand and exits); the exit code (``exit_code``)."""
        if self.running:
            self.process.send_signal(signal.SIGTERM)
        failure = f"python -m {self.module} did not exit {timeout_s:.0f}s after SIGTERM"
        return self.exit_code(timeout_s, failure)

    def kill(self, timeout_s: float = _KILL_TIMEOUT_S) -> int:
        """SIGKILL: a crash wherever it is, or a teardown; the exit code."""
        if self.running:
            self.process.kill()
        return self.process.wait(timeout=timeout_s)
