"""A single-node KRaft Kafka in a container, through testcontainers.

The image is ``KAFKA_IMAGE`` from the environment, else the ``KAFKA_IMAGE=`` line of the
git-ignored ``.env.images`` that ``scripts/containers`` writes (a stand-in built where no
registry answers), else the official ``apache/kafka``. Ryuk, testcontainers' reaper, is
off (its image cannot be had where no registry answers), so every container carries
``LABEL`` and the pid of the process that started it: ``remove_orphans`` removes those
whose process is gone, which is what a crashed run leaves behind.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Final

from devstack.kafka import wait_until_serving
from devstack.processes import ROOT, DevstackError, free_port

if TYPE_CHECKING:
    from testcontainers.core.container import DockerContainer

IMAGE_VARIABLE: Final = "KAFKA_IMAGE"
# As docker-compose.yml names it: the official 4.1.1, pinned to its multi-platform digest.
DEFAULT_IMAGE: Final = (
    "apache/kafka:4.1.1@sha256:0bc1bb2478f45b6cea78864df86acdc11e8df2c5172477819a4d12942cbe5d40"
)
IMAGES_FILE: Final = ROOT / ".env.images"
LABEL: Final = "org.rumos.devstack"
_OWNER_LABEL: Final = f"{LABEL}.owner-pid"

_CONTAINER_PORT: Final = 9092
_READY_TIMEOUT_S: Final = 120.0
_STOP_TIMEOUT_S: Final = 60
_ENGINE_TIMEOUT_S: Final = 10
_LOG_TAIL_LINES: Final = 40

# The same broker settings scripts/kafka-local writes into server.properties.
_SINGLE_NODE_SETTINGS: Final = {
    "num.partitions": "1",
    "default.replication.factor": "1",
    "min.insync.replicas": "1",
    "auto.create.topics.enable": "false",
    "offsets.topic.replication.factor": "1",
    "offsets.topic.num.partitions": "5",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "transaction.state.log.num.partitions": "5",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "group.initial.rebalance.delay.ms": "0",
}


def kafka_image(images_file: Path = IMAGES_FILE) -> str:
    """The Kafka image to run: ``$KAFKA_IMAGE``, else ``images_file``'s, else the official one."""
    configured = os.environ.get(IMAGE_VARIABLE)
    if configured:
        return configured
    try:
        lines = images_file.read_text(encoding="utf-8").splitlines()
    except OSError:
        return DEFAULT_IMAGE
    prefix = f"{IMAGE_VARIABLE}="
    found = [line.removeprefix(prefix).strip() for line in lines if line.startswith(prefix)]
    return found[-1] if found and found[-1] else DEFAULT_IMAGE


def engine_unavailable() -> str | None:
    """None when a Docker engine answers, else why not (one line)."""
    docker = shutil.which("docker")
    if docker is None:
        return "no Docker engine (no docker command on PATH)"
    try:
        result = subprocess.run(  # noqa: S603 (fixed arguments, no shell)
            [docker, "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=_ENGINE_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"no Docker engine ({exc})"
    if result.returncode != 0:
        return f"no Docker engine ({result.stderr.strip() or result.returncode})"
    return None


class ContainerBroker:
    """A Kafka container published on a fixed, free host port; started by the constructor.

    The fixed port keeps the advertised address valid across ``stop()``/``start()``. Clients
    use the PLAINTEXT listener; the broker talks to itself (transaction markers) over BROKER.
    """

    def __init__(self, image: str | None = None, ready_timeout_s: float = _READY_TIMEOUT_S) -> None:
        self.image = image or kafka_image()
        self._ready_timeout_s = ready_timeout_s
        self._container, self.bootstrap_servers = _kafka_container(self.image)
        try:
            self._container.start()
        except Exception as exc:  # the docker SDK's errors have no common base worth naming
            raise DevstackError(f"could not start {self.image}: {exc}") from exc
        self._wait()

    def start(self) -> None:
        """Start the stopped container again; return once the broker answers."""
        self._container.get_wrapped_container().start()
        self._wait()

    def stop(self) -> None:
        """Stop the container, keeping it (and its data) for ``start()``."""
        self._container.get_wrapped_container().stop(timeout=_STOP_TIMEOUT_S)

    def close(self) -> None:
        """Remove the container."""
        self._container.stop()

    def _running(self) -> bool:
        wrapped = self._container.get_wrapped_container()
        wrapped.reload()
        return bool(wrapped.status == "running")

    def _wait(self) -> None:
        try:
            wait_until_serving(self.bootstrap_servers, self._ready_timeout_s, self._running)
        except DevstackError as exc:
            logs = self._container.get_wrapped_container().logs(tail=_LOG_TAIL_LINES)
            tail = logs.decode(errors="replace")
            raise DevstackError(f"{exc}; container log tail:\n{tail}") from exc


def remove_orphans() -> list[str]:
    """Remove the containers of processes that are gone (a crashed run's); return their ids."""
    from testcontainers.core.docker_client import DockerClient

    removed = []
    for container in DockerClient().client.containers.list(all=True, filters={"label": LABEL}):
        owner = int(container.labels.get(_OWNER_LABEL, "0"))
        if owner > 0 and not _running(owner):
            container.remove(force=True, v=True)
            removed.append(container.short_id)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def _kafka_container(image: str) -> tuple[DockerContainer, str]:
    """The container, configured but not started, and the address clients use."""
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.docker_client import DockerClient

    _configure_testcontainers()
    host, port = DockerClient().host(), free_port()
    settings = {
        **_SINGLE_NODE_SETTINGS,
        "node.id": "1",
        "process.roles": "broker,controller",
        "controller.quorum.voters": "1@localhost:9093",
        "controller.listener.names": "CONTROLLER",
        "listeners": f"PLAINTEXT://:{_CONTAINER_PORT},BROKER://:9094,CONTROLLER://:9093",
        "advertised.listeners": f"PLAINTEXT://{host}:{port},BROKER://localhost:9094",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,BROKER:PLAINTEXT,"
        "CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "BROKER",
    }
    container = DockerContainer(image).with_bind_ports(_CONTAINER_PORT, port)
    for key, value in settings.items():
        # The image maps KAFKA_FOO_BAR to foo.bar (the stand-in does the same).
        container.with_env("KAFKA_" + key.upper().replace(".", "_"), value)
    container.with_env("CLUSTER_ID", _new_cluster_id())
    container.with_env("KAFKA_HEAP_OPTS", "-Xmx512m -Xms256m")
    container.with_kwargs(labels={LABEL: "kafka", _OWNER_LABEL: str(os.getpid())})
    return container, f"{host}:{port}"


def _configure_testcontainers() -> None:
    """Ryuk off (``remove_orphans`` does its job); inside a container, reach published ports
    on the Docker host, not on the gateway testcontainers would guess."""
    from testcontainers.core.config import ConnectionMode
    from testcontainers.core.config import testcontainers_config as config

    config.ryuk_disabled = True
    if config.connection_mode_override is None and Path("/.dockerenv").exists():
        config.connection_mode_override = ConnectionMode.docker_host


def _new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding.

    Never with a leading '-': the storage tool's argument parser would take it for an
    option (Kafka's own ``Uuid.randomUuid`` draws again for the same reason).
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id
