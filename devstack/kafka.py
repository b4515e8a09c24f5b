"""Kafka for local runs: a ``scripts/kafka-local`` broker, a broker run elsewhere, topics.
Every broker here has the interface of ``Broker``; ``container.ContainerBroker`` too."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from contracts.topics import APPLICATIONS_TOPIC, DEAD_LETTER_TOPIC, PREDICTIONS_TOPIC, SCORES_TOPIC
from devstack.processes import ROOT, DevstackError, free_port, unique_name, wait_until

_START_TIMEOUT_S: Final = 120
_STOP_TIMEOUT_S: Final = 60
# The first start of a machine resolves the broker's jars with Maven.
_MAVEN_ALLOWANCE_S: Final = 600
_METADATA_TIMEOUT_S: Final = 2.0
_TOPIC_TIMEOUT_S: Final = 30.0


class Broker(Protocol):
    """A broker as its users see it: ``start()`` (again) returns once it answers a metadata
    request, ``stop()`` keeps its address and data for the next start, ``close()`` releases
    it for good."""

    bootstrap_servers: str

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def close(self) -> None: ...


class LocalBroker:
    """A ``scripts/kafka-local`` broker on 127.0.0.1, its data in ``directory``, its ports
    free ones unless given. ``config`` files are appended to its server.properties and
    ``scram`` credentials (``SCRAM-SHA-512=[name=u,password=p]``) created when its storage is
    formatted. ``stop`` works from ``directory`` alone, so it also stops a broker whose
    ``start`` was interrupted after the JVM was launched."""

    def __init__(
        self,
        directory: Path,
        *,
        port: int | None = None,
        controller_port: int | None = None,
        config: Sequence[Path] = (),
        scram: Sequence[str] = (),
    ) -> None:
        self.directory, self.port = directory, port or free_port()
        self.bootstrap_servers, self.log_path = f"127.0.0.1:{self.port}", directory / "kafka.log"
        self.controller_port = controller_port or free_port()
        while self.controller_port == self.port:
            self.controller_port = free_port()
        self._extra_args = [
            *(arg for path in config for arg in ("--config", str(path))),
            *(arg for credential in scram for arg in ("--add-scram", credential)),
        ]

    @property
    def pid(self) -> int | None:
        """The broker JVM's pid as ``kafka-local`` recorded it (None before the JVM starts)."""
        try:
            return int((self.directory / "kafka.pid").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def start(self, timeout_s: int = _START_TIMEOUT_S) -> None:
        """Start the broker (a no-op while it runs); return once it answers metadata."""
        ports = ["--port", str(self.port), "--controller-port", str(self.controller_port)]
        self._kafka_local("start", timeout_s, *ports, *self._extra_args)

    def stop(self, timeout_s: int = _STOP_TIMEOUT_S) -> None:
        """Stop the broker (controlled shutdown; SIGKILL after ``timeout_s``)."""
        self._kafka_local("stop", timeout_s)

    close = stop  # its directory is the caller's to delete

    def _kafka_local(self, command: str, timeout_s: int, *args: str) -> None:
        """``kafka-local <command>``; ``DevstackError`` with its reason line, not the log tail
        it quotes next."""
        arguments = [command, "--dir", str(self.directory), "--timeout", str(timeout_s), *args]
        # The readiness probe runs with this interpreter, which has confluent_kafka.
        env = {**os.environ, "KAFKA_LOCAL_PYTHON": sys.executable}
        allowance = _MAVEN_ALLOWANCE_S if command == "start" else 0
        failed = f"scripts/kafka-local {command} failed"
        try:
            result = subprocess.run(  # noqa: S603 (the project's own script, no shell)
                [str(ROOT / "scripts" / "kafka-local"), *arguments],
                capture_output=True,
                text=True,
                env=env,
                timeout=timeout_s + allowance + 30,
                check=False,
                start_new_session=True,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DevstackError(f"{failed}: {exc}") from exc
        if result.returncode != 0:
            lines = result.stderr.splitlines()
            reason = next((line for line in lines if line.startswith("kafka-local:")), failed)
            raise DevstackError(reason, self.log_path)


class ExternalBroker:
    """A broker managed elsewhere: waited for, never started or stopped from here."""

    def __init__(self, bootstrap_servers: str, ready_timeout_s: float = _TOPIC_TIMEOUT_S) -> None:
        self.bootstrap_servers = bootstrap_servers
        wait_until_serving(bootstrap_servers, ready_timeout_s)

    def start(self) -> None:
        raise DevstackError(f"the broker at {self.bootstrap_servers} cannot be started here")

    def stop(self) -> None:
        raise DevstackError(f"the broker at {self.bootstrap_servers} cannot be stopped here")

    def close(self) -> None:
        pass  # nothing to release: the broker is not ours


def wait_until_serving(
    bootstrap_servers: str, timeout_s: float, alive: Callable[[], bool] = lambda: True
) -> None:
    """Return once a metadata request to the broker lists at least one broker;
    ``DevstackError`` when ``alive()`` turns false or ``timeout_s`` passes."""
    admin = AdminClient(
        {"bootstrap.servers": bootstrap_servers, "reconnect.backoff.max.ms": 250, "log_level": 0}
    )

    def serving() -> bool:
        if not alive():
            raise DevstackError(f"the broker at {bootstrap_servers} exited while starting")
        try:
            return bool(admin.list_topics(timeout=1).brokers)
        except KafkaException:
            return False

    wait_until(serving, timeout_s, f"no broker answered a metadata request at {bootstrap_servers}")


def create_topics(
    bootstrap_servers: str,
    partitions_by_topic: Mapping[str, int],
    timeout_s: float = _TOPIC_TIMEOUT_S,
) -> None:
    """Create the topics; return once each exists with its partitions, every one led."""
    admin = AdminClient({"bootstrap.servers": bootstrap_servers, "log_level": 0})

    def led(topic: str, partitions: int) -> bool:
        try:
            metadata = admin.list_topics(topic=topic, timeout=_METADATA_TIMEOUT_S).topics.get(topic)
        except KafkaException:
            return False
        return (
            metadata is not None
            and metadata.error is None
            and len(metadata.partitions) == partitions
            and all(p.error is None and p.leader >= 0 for p in metadata.partitions.values())
        )

    futures = admin.create_topics(
        [NewTopic(name, num_partitions=count) for name, count in partitions_by_topic.items()],
        operation_timeout=timeout_s,
    )
    try:
        for future in futures.values():
            future.result(timeout=timeout_s)
    except KafkaException as exc:
        raise DevstackError(f"cannot create topics {sorted(partitions_by_topic)}: {exc}") from exc
    wait_until(
        lambda: all(led(name, n) for name, n in partitions_by_topic.items()),
        timeout_s,
        f"topics {sorted(partitions_by_topic)} had no leaders",
    )


@dataclass(frozen=True)
class ScorerTopics:
    """A worker's input topic and its three output topics; by default the contract's names."""

    applications: str = APPLICATIONS_TOPIC
    scores: str = SCORES_TOPIC
    predictions: str = PREDICTIONS_TOPIC
    dead_letters: str = DEAD_LETTER_TOPIC

    @classmethod
    def unique(cls, prefix: str) -> ScorerTopics:
        """Names no other test or run uses: ``<prefix>-<contract name>-<12 hex digits>``."""
        return cls(*(unique_name(f"{prefix}-{name}") for name in cls().names))

    @property
    def names(self) -> tuple[str, str, str, str]:
        return (self.applications, self.scores, self.predictions, self.dead_letters)

    def settings(self) -> dict[str, str]:
        """The topics as ``consumer.settings.Settings`` fields (for ``worker_env``)."""
        fields = ("input_topic", "scores_topic", "predictions_topic", "dead_letter_topic")
        return dict(zip(fields, self.names, strict=True))

    def create(self, bootstrap_servers: str, partitions: int, *, outputs: int = 1) -> None:
        """Create the four topics: the input with ``partitions``, each output with ``outputs``."""
        counts = dict.fromkeys(self.names[1:], outputs)
        create_topics(bootstrap_servers, {self.applications: partitions, **counts})
