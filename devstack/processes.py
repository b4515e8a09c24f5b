"""What every service shares: the error type, free ports, unique names, logs, stopping.

A process started here runs in a session of its own (``start_new_session=True``), so its
pid is also its process group and one signal reaches its children too.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import uuid
from pathlib import Path
from typing import Final

import requests
from prometheus_client.parser import text_string_to_metric_families

ROOT: Final = Path(__file__).resolve().parents[1]
"""The repository: the working directory of workers, the home of ``scripts/kafka-local``."""

POLL_S: Final = 0.25
_LOG_TAIL_CHARS: Final = 6000


class DevstackError(Exception):
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


def unique_name(prefix: str) -> str:
    """A topic, group or model name no other test or run uses: ``<prefix>-<12 hex digits>``."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


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
