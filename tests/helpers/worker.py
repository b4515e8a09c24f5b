"""Run ``python -m consumer`` as a real subprocess, and read its output topics.

``ScorerProcess`` starts the worker with an environment built by ``scorer_env``, waits
for ``/readyz`` with a deadline (failing at once if the process dies), and stops it
with SIGTERM (graceful) or SIGKILL (crash). Its JSON log goes to a file that failures
quote. ``read_committed`` reads topics with ``isolation.level=read_committed`` until a
condition holds or a deadline passes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer

from consumer.sinks import Headers
from scripts import services
from scripts.services import free_port as free_port  # re-exported for the tests

ROOT = Path(__file__).resolve().parents[2]
_POLL_S = 0.2
_LOG_TAIL_CHARS = 6000


def scorer_env(
    *,
    bootstrap_servers: str,
    tracking_uri: str,
    input_topic: str,
    scores_topic: str,
    dead_letter_topic: str,
    predictions_topic: str,
    group_id: str,
    model_name: str,
    cache_dir: Path,
    worker_id: str,
    http_port: int,
    **extra: str,
) -> dict[str, str]:
    """The environment of a worker process: this one's, plus the scorer's settings.

    ``extra`` adds ``SCORER_<NAME>`` variables (``reload_interval_s="1"``).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCORER_")}
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=bootstrap_servers,
        MLFLOW_TRACKING_URI=tracking_uri,
        SCORER_INPUT_TOPIC=input_topic,
        SCORER_SCORES_TOPIC=scores_topic,
        SCORER_DEAD_LETTER_TOPIC=dead_letter_topic,
        SCORER_PREDICTIONS_TOPIC=predictions_topic,
        SCORER_GROUP_ID=group_id,
        SCORER_MODEL_NAME=model_name,
        SCORER_MODEL_CACHE_DIR=str(cache_dir),
        SCORER_WORKER_ID=worker_id,
        SCORER_HTTP_HOST="127.0.0.1",
        SCORER_HTTP_PORT=str(http_port),
        PYTHONUNBUFFERED="1",
    )
    env.update({f"SCORER_{name.upper()}": value for name, value in extra.items()})
    return env


class ScorerProcess:
    """One ``python -m consumer`` subprocess."""

    def __init__(self, env: Mapping[str, str], log_path: Path) -> None:
        self.url = f"http://127.0.0.1:{env['SCORER_HTTP_PORT']}"
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "consumer"],
                env=dict(env),
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def log_tail(self) -> str:
        return services.log_tail(self.log_path, _LOG_TAIL_CHARS)

    def get(self, path: str) -> tuple[int, Any]:
        """``(status, parsed JSON or text)`` of ``GET path``; ``(0, reason)`` if nobody answers."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as response:  # noqa: S310
                status, body = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read()
        except OSError as exc:
            return 0, str(exc)
        try:
            return status, json.loads(body)
        except ValueError:
            return status, body.decode(errors="replace")

    def wait_ready(self, timeout_s: float = 180.0) -> None:
        """Return when ``/readyz`` answers 200; fail if the process exits or time runs out."""
        deadline = time.monotonic() + timeout_s
        last: tuple[int, Any] = (0, "not polled")
        while time.monotonic() < deadline:
            last = self.get("/readyz")
            if last[0] == 200:
                return
            try:
                code = self.process.wait(timeout=_POLL_S)
            except subprocess.TimeoutExpired:
                continue
            pytest.fail(f"worker exited with {code} before ready:\n{self.log_tail()}")
        pytest.fail(f"worker not ready in {timeout_s:.0f}s (last {last}):\n{self.log_tail()}")

    def terminate(self, timeout_s: float = 60.0) -> int:
        """SIGTERM, then the exit code (fails the test if it does not exit in time)."""
        return self._signal(signal.SIGTERM, timeout_s)

    def kill(self) -> int:
        """SIGKILL: a crash at whatever point the worker is."""
        return self._signal(signal.SIGKILL, 30.0)

    def stop_quietly(self) -> None:
        """Teardown: make sure the process is gone, whatever state it is in."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

    def _signal(self, signum: signal.Signals, timeout_s: float) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.stop_quietly()
            pytest.fail(
                f"worker did not exit {timeout_s:.0f}s after {signum.name}:\n{self.log_tail()}"
            )


@dataclass(frozen=True)
class ScorerTopics:
    """A worker's four topics, freshly created for one test."""

    applications: str
    scores: str
    dead_letters: str
    predictions: str

    def env(self) -> dict[str, str]:
        """The ``scorer_env`` keyword arguments naming these topics."""
        return {
            "input_topic": self.applications,
            "scores_topic": self.scores,
            "dead_letter_topic": self.dead_letters,
            "predictions_topic": self.predictions,
        }


def publish(
    bootstrap_servers: str,
    topic: str,
    records: Iterable[tuple[bytes | None, bytes | None, Headers | None]],
) -> None:
    """Produce ``(key, value, headers)`` records in order (idempotent) and wait for all acks."""
    producer = Producer({"bootstrap.servers": bootstrap_servers, "enable.idempotence": True})
    for key, value, headers in records:
        producer.produce(topic, value=value, key=key, headers=headers)
        producer.poll(0)
    remaining = producer.flush(60)
    assert remaining == 0, f"{remaining} records not acknowledged"


def _committed_reader(bootstrap_servers: str, group_id: str, **extra: object) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": group_id,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            **extra,
        }
    )


def read_committed(
    bootstrap_servers: str,
    topics: list[str],
    done: Callable[[dict[str, list[Message]]], bool],
    *,
    group_id: str,
    timeout_s: float = 120.0,
) -> dict[str, list[Message]]:
    """Read ``topics`` from the beginning (read_committed) until ``done(read so far)``.

    Fails the test at the deadline, saying how many records each topic gave.
    """
    consumer = _committed_reader(bootstrap_servers, group_id)
    consumer.subscribe(topics)
    read: dict[str, list[Message]] = {topic: [] for topic in topics}
    deadline = time.monotonic() + timeout_s
    try:
        while not done(read):
            if time.monotonic() > deadline:
                counts = {topic: len(messages) for topic, messages in read.items()}
                pytest.fail(f"topics not complete in {timeout_s:.0f}s: {counts}")
            for message in consumer.consume(500, _POLL_S):
                if message.error():
                    raise KafkaException(message.error())
                read[message.topic() or ""].append(message)
    finally:
        consumer.close()
    return read


def read_to_end(
    bootstrap_servers: str,
    topics: list[str],
    *,
    group_id: str,
    timeout_s: float = 120.0,
    uncommitted: bool = False,
) -> dict[str, list[Message]]:
    """Every committed record of ``topics``, read until each partition reports its end.

    Use it once no transaction is open on the topics (writers stopped): the end of a
    partition is then final, so extra or duplicate records cannot arrive later.
    ``uncommitted=True`` reads aborted records too (``read_uncommitted``).
    """
    extra: dict[str, object] = {"enable.partition.eof": True}
    if uncommitted:
        extra["isolation.level"] = "read_uncommitted"
    consumer = _committed_reader(bootstrap_servers, group_id, **extra)
    metadata = consumer.list_topics(timeout=30).topics
    pending = {(t, p) for t in topics for p in metadata[t].partitions}
    consumer.subscribe(topics)
    read: dict[str, list[Message]] = {topic: [] for topic in topics}
    deadline = time.monotonic() + timeout_s
    try:
        while pending:
            if time.monotonic() > deadline:
                pytest.fail(f"partitions {sorted(pending)} not read to the end in {timeout_s:.0f}s")
            for message in consumer.consume(500, _POLL_S):
                error = message.error()
                if error is not None and error.code() == KafkaError._PARTITION_EOF:
                    pending.discard((message.topic() or "", message.partition() or 0))
                elif error is not None:
                    raise KafkaException(error)
                else:
                    read[message.topic() or ""].append(message)
    finally:
        consumer.close()
    return read


def byte_headers(message: Message) -> dict[str, bytes]:
    """A consumed record's headers with bytes values, by name."""
    headers = message.headers() or []
    assert isinstance(headers, list)
    return {name: value for name, value in headers if isinstance(value, bytes)}
