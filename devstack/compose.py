"""The compose stack on this machine's engine: ``make demo-compose`` and the compose end-to-end
test (tests/delivery/test_compose_stack.py) both drive it through this module.

A ``ComposeStack`` is one compose project: its own name (a prefix, this process's pid and a
random part), and its own env file, written from ``.env.example`` with throw-away database and
registry passwords, so it never reads a developer's ``.env``; ``.env.images``
(``scripts/containers``) names the images. Its host ports come from the variables
docker-compose.yml reads (``HOST_PORT_VARIABLES``); a port already taken is refused before
compose starts, naming the variable that moves it. ``remove_leftovers`` deletes the
containers, networks and volumes of projects with the same prefix whose process has died (a
crashed run), never a live one's.

Exit codes of ``python -m devstack.compose demo``: 0 every application had its outcome;
1 a step failed (the reason in one line on stderr).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import requests
from confluent_kafka import Consumer, KafkaError

from contracts.model_names import CHAMPION_ALIAS, MODEL_NAME
from contracts.model_trust import keygen
from contracts.registry_access import SCORER_ACCOUNT
from contracts.topics import APPLICATIONS_TOPIC, DEAD_LETTER_TOPIC, SCORES_TOPIC
from devstack.processes import ROOT, DevstackError

COMPOSE_FILE: Final = ROOT / "docker-compose.yml"
IMAGES_ENV: Final = ROOT / ".env.images"
ENV_EXAMPLE: Final = ROOT / ".env.example"
PROJECT_LABEL: Final = "com.docker.compose.project"

# The host-port variables of docker-compose.yml and their defaults there.
_LOW_PORT: Final = 20_000
_EPHEMERAL_RANGE: Final = Path("/proc/sys/net/ipv4/ip_local_port_range")
HOST_PORT_VARIABLES: Final = {
    "KAFKA_HOST_PORT": "9094",
    "MLFLOW_HOST_PORT": "5000",
    "SCORER_HOST_PORTS": "8080-8089",
}


class ComposeError(DevstackError):
    """A compose or engine step failed; the message says which and why, in one line."""


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _run(args: Sequence[str], *, timeout: float, check: bool = True) -> str:
    try:
        result = subprocess.run(  # noqa: S603 (fixed argument lists)
            list(args), cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError as exc:
        raise ComposeError(f"{args[0]} is not installed: {exc}") from exc
    except subprocess.TimeoutExpired as exc:
        raise ComposeError(f"{' '.join(args[:4])} ... took longer than {timeout:.0f} s") from exc
    if check and result.returncode != 0:
        raise ComposeError(
            f"{' '.join(args[:4])} ... exited {result.returncode}:\n"
            f"{_tail(result.stderr or result.stdout)}"
        )
    return result.stdout


def ensure_images(timeout: float = 3600) -> None:
    """``scripts/containers``: an engine, compose and every image (seconds when cached).

    Its last line on failure is the reason (e.g. no engine and not root), raised as is.
    """
    try:
        _run([str(ROOT / "scripts" / "containers")], timeout=timeout)
    except ComposeError as exc:
        raise ComposeError(f"scripts/containers could not provide the images: {exc}") from exc


# -- host ports ---------------------------------------------------------------------------------


def port_taken(port: int) -> bool:
    """Whether binding ``port`` on every interface (as docker's port publishing does) fails."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As docker binds (Go sets SO_REUSEADDR): only a listener makes the port taken, not
        # the TIME_WAIT an earlier stack's connections leave on it after `down`.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            # A probe closed at once, binding where docker's port publishing would.
            probe.bind(("0.0.0.0", port))  # noqa: S104  # nosec B104
        except OSError:
            return True
    return False


def _ports(value: str) -> list[int]:
    first, _, last = value.partition("-")
    return list(range(int(first), int(last or first) + 1))


def port_conflicts(env: Mapping[str, str]) -> list[str]:
    """One message per host-port variable whose port (or every port of its range) is taken."""
    messages = []
    for name, default in HOST_PORT_VARIABLES.items():
        value = env.get(name) or default
        ports = _ports(value)
        if all(port_taken(port) for port in ports):
            what = f"port {value} is" if len(ports) == 1 else f"every port of {value} is"
            messages.append(
                f"host {what} already taken: set {name} (in .env or the environment) to a free one"
            )
    return messages


def free_ports(count: int) -> list[int]:
    """``count`` consecutive ports that are free now, from 20,000 up to the kernel's
    ephemeral range.

    Below that range because a scaled scorer binds its port minutes after it was chosen:
    meanwhile any connection or ``bind(0)`` on the machine may take a port inside the range
    (seen in CI: "bind: address already in use" scaling to two scorers).
    """
    for _ in range(200):
        base = _LOW_PORT + secrets.randbelow(_ephemeral_start() - _LOW_PORT - count)
        candidates = list(range(base, base + count))
        if not any(port_taken(port) for port in candidates):
            return candidates
    raise ComposeError(f"found no {count} consecutive free ports")


def _ephemeral_start() -> int:
    try:
        return int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default


def free_port_settings(scorer_ports: int = 4) -> dict[str, str]:
    """Every host-port variable set to free ports (a range of ``scorer_ports`` for scorers)."""
    ports = free_ports(2 + scorer_ports)
    return {
        "KAFKA_HOST_PORT": str(ports[0]),
        "MLFLOW_HOST_PORT": str(ports[1]),
        "SCORER_HOST_PORTS": f"{ports[2]}-{ports[-1]}",
    }


# -- the env file -----------------------------------------------------------------------------


def dataset_dir() -> Path:
    """The directory that really holds credit_default.csv (data/ may hold a symlink, which
    would not resolve inside the trainer's container): RUMOS_DATA's, else data/'s target."""
    configured = os.environ.get("RUMOS_DATA")
    path = (Path(configured) if configured else ROOT / "data" / "credit_default.csv").resolve()
    if not path.is_file():
        raise ComposeError(
            f"the trainer needs the dataset and {path} is not a file: set RUMOS_DATA or run "
            "scripts/bootstrap"
        )
    if path.name != "credit_default.csv":
        raise ComposeError(f"the trainer reads credit_default.csv; {path} is named otherwise")
    return path.parent


# Every secret .env.example leaves empty for compose to refuse to start without.
THROWAWAY_SECRETS: Final = (
    "POSTGRES_PASSWORD",
    "MONITOR_DB_PASSWORD",
    "MLFLOW_ADMIN_PASSWORD",
    "MLFLOW_TRAINER_PASSWORD",
    "MLFLOW_SCORER_PASSWORD",
    "MLFLOW_FLASK_SECRET_KEY",
)


def write_env_file(path: Path, settings: Mapping[str, str]) -> None:
    """``.env.example``'s settings, fresh throw-away secrets (``THROWAWAY_SECRETS``), then
    ``settings`` on top."""
    values: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        match = re.fullmatch(r"([A-Z][A-Z0-9_]*)=(.*)", line.strip())
        if match:
            values[match[1]] = match[2]
    values.update({name: secrets.token_hex(16) for name in THROWAWAY_SECRETS})
    values.update(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()), encoding="utf-8")
    path.chmod(0o600)


def throwaway_signing_keys(directory: Path) -> dict[str, str]:
    """A new model-signing key pair in ``directory`` for a stack that lives as long as one run,
    as the env-file setting that points compose at it. The private key is made readable by
    the containers' uid 10001, whoever runs this: never do that with a key that matters."""
    keys = keygen(directory)
    keys.private.chmod(0o644)
    return {"MODEL_SIGNING_DIR": str(directory)}


def read_env_file(path: Path) -> dict[str, str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


# -- leftovers of crashed runs ------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def project_name(prefix: str) -> str:
    return f"{prefix}{os.getpid()}-{uuid.uuid4().hex[:6]}"


_REMOVE: Final = {
    "container": ["rm", "--force", "--volumes"],
    "network": ["network", "rm"],
    "volume": ["volume", "rm"],
}


def remove_leftovers(prefix: str) -> list[str]:
    """Remove every container, network and volume of a ``prefix`` project whose process (the
    pid in its name) is gone. Returns the projects removed."""
    label = f"{{{{.Label {json.dumps(PROJECT_LABEL)}}}}}"
    kinds = {
        "container": ["docker", "ps", "--all"],
        "network": ["docker", "network", "ls"],
        "volume": ["docker", "volume", "ls"],
    }
    found: dict[str, dict[str, list[str]]] = {}
    for kind, listing in kinds.items():
        name_field = "{{.ID}}" if kind != "volume" else "{{.Name}}"
        out = _run(
            [*listing, "--filter", f"label={PROJECT_LABEL}", "--format", f"{name_field} {label}"],
            timeout=60,
        )
        for line in out.splitlines():
            ident, _, project = line.partition(" ")
            found.setdefault(project, {}).setdefault(kind, []).append(ident)
    removed = []
    for project, objects in found.items():
        match = re.fullmatch(re.escape(prefix) + r"(\d+)-\w+", project)
        if not match or _pid_alive(int(match[1])):
            continue
        for kind, command in _REMOVE.items():
            if objects.get(kind):
                _run(["docker", *command, *objects[kind]], timeout=120, check=False)
        removed.append(project)
    return removed


# -- one stack ---------------------------------------------------------------------------------


@dataclass
class ComposeStack:
    """One compose project of docker-compose.yml, with its own env file."""

    project: str
    env_file: Path
    profiles: list[str] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return read_env_file(self.env_file)

    def command(self, *args: str) -> list[str]:
        profiles = [arg for profile in self.profiles for arg in ("--profile", profile)]
        return [
            "docker", "compose", "--project-directory", str(ROOT), "--file", str(COMPOSE_FILE),
            "--env-file", str(self.env_file), "--env-file", str(IMAGES_ENV),
            "--project-name", self.project, *profiles, *args,
        ]  # fmt: skip

    def compose(self, *args: str, timeout: float = 300, check: bool = True) -> str:
        return _run(self.command(*args), timeout=timeout, check=check)

    def up(self, *args: str, timeout: float = 900) -> None:
        """``up --wait``: every service healthy, running, or (one-shot) exited 0."""
        # Before the project's first container only: a running stack holds its own ports.
        conflicts = (
            [] if self.compose("ps", "--quiet", timeout=60).strip() else port_conflicts(self.env)
        )
        if conflicts:
            raise ComposeError("; ".join(conflicts))
        try:
            self.compose("up", "--detach", "--wait", "--no-build", *args, timeout=timeout)
        except ComposeError as exc:
            raise ComposeError(f"{exc}\n{self.diagnosis()}") from exc

    def down(self, *, volumes: bool) -> None:
        """Stops and removes every service's containers, whatever profile started them (a
        profile service left running keeps the project's network and volumes alive)."""
        extra = ["--volumes"] if volumes else []
        profiles, self.profiles = self.profiles, ["*"]
        try:
            self.compose("down", "--remove-orphans", "--timeout", "20", *extra, timeout=300)
        finally:
            self.profiles = profiles

    def diagnosis(self) -> str:
        """Service states and the logs' last lines, for a failure message."""
        states = self.compose("ps", "--all", check=False, timeout=60)
        logs = self.compose("logs", "--no-color", "--tail", "30", check=False, timeout=60)
        return f"{states}\n{logs}"

    def containers(self, service: str) -> list[str]:
        return self.compose("ps", "--quiet", service, timeout=60).split()

    def host_port(self, service: str, port: int, index: int = 1) -> int:
        out = self.compose("port", "--index", str(index), service, str(port), timeout=60)
        return int(out.strip().rsplit(":", 1)[1])

    def setting(self, name: str) -> str:
        """A host-port variable as compose reads it: the env file's, else compose's default."""
        return self.env.get(name) or HOST_PORT_VARIABLES[name]

    @property
    def kafka(self) -> str:
        return f"localhost:{self.setting('KAFKA_HOST_PORT')}"

    @property
    def mlflow(self) -> str:
        return f"http://127.0.0.1:{self.setting('MLFLOW_HOST_PORT')}"


def inspect(container: str, template: str) -> str:
    return _run(["docker", "inspect", "--format", template, container], timeout=60).strip()


def http_get(url: str, timeout: float = 10, auth: tuple[str, str] | None = None) -> tuple[int, str]:
    """Status and body of a GET (with basic ``auth``, if given); a refused or timed-out
    connection is a ``ComposeError``."""
    try:
        response = requests.get(url, timeout=timeout, auth=auth)
    except requests.RequestException as exc:
        raise ComposeError(f"GET {url} failed: {exc}") from exc
    return response.status_code, response.text


def champion_version(tracking_uri: str, env: Mapping[str, str]) -> str:
    """The champion's version, read as the scorer's account of the stack's env file ``env``."""
    response = requests.get(
        f"{tracking_uri}/api/2.0/mlflow/registered-models/alias",
        params={"name": MODEL_NAME, "alias": CHAMPION_ALIAS},
        auth=(SCORER_ACCOUNT, env["MLFLOW_SCORER_PASSWORD"]),
        timeout=30,
    )
    response.raise_for_status()
    return str(response.json()["model_version"]["version"])


# -- reading the stream from the host ----------------------------------------------------------


@dataclass
class TopicReader:
    """Reads topics from the beginning through the host listener, read_committed, counting
    records per application id (scores and applications) and dead letters."""

    bootstrap: str
    topics: Sequence[str] = (APPLICATIONS_TOPIC, SCORES_TOPIC, DEAD_LETTER_TOPIC)
    counts: dict[str, Counter[str]] = field(init=False)
    _consumer: Consumer = field(init=False)

    def __post_init__(self) -> None:
        self.counts = {topic: Counter() for topic in self.topics}
        self._consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"compose-reader-{uuid.uuid4().hex}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )
        self._consumer.subscribe(list(self.topics))

    def poll(self, seconds: float) -> int:
        """Reads for ``seconds``; returns how many records arrived."""
        arrived = 0
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            for message in self._consumer.consume(500, timeout=min(left, 1.0)):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise ComposeError(f"reading {message.topic()}: {error}")
                topic = str(message.topic())
                key = (message.key() or b"").decode("utf-8", "replace")
                self.counts[topic][key] += 1
                arrived += 1
        return arrived

    def poll_until(self, done: Callable[[], bool], timeout: float, settle: float = 0) -> bool:
        """Reads until ``done()``, then ``settle`` seconds more (late duplicates would show)."""
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                return False
            self.poll(1.0)
        self.poll(settle)
        return True

    def total(self, topic: str) -> int:
        return sum(self.counts[topic].values())

    def close(self) -> None:
        self._consumer.close()


# -- make demo-compose ---------------------------------------------------------------------------


def demo(count: int = 1000, timeout: float = 600) -> int:
    """The demo profile on this engine: up, 1,000 applications in, their outcomes read from the
    host, a summary printed, everything stopped and removed."""
    started = time.monotonic()
    print("demo-compose: images (scripts/containers) ...", flush=True)
    ensure_images()
    prefix = "rumos-demo-"
    for project in remove_leftovers(prefix):
        print(f"demo-compose: removed {project}, left by a run that crashed")
    project = project_name(prefix)
    env_file = ROOT / ".cache" / "compose-demo" / f"{project}.env"
    ports = {name: os.environ.get(name, "") for name in HOST_PORT_VARIABLES}
    write_env_file(
        env_file,
        {
            "RUMOS_DATA_DIR": str(dataset_dir()),
            **throwaway_signing_keys(env_file.with_suffix(".keys")),
            "DEMO_COUNT": str(count),
            **{name: value for name, value in ports.items() if value},
        },
    )
    stack = ComposeStack(project, env_file, profiles=["demo"])
    try:
        print(f"demo-compose: docker compose up --wait (project {project}) ...", flush=True)
        stack.up()
        print(
            f"demo-compose: stack up · MLflow UI {stack.mlflow} · reading outcomes ...", flush=True
        )
        reader = TopicReader(stack.kafka, topics=(SCORES_TOPIC, DEAD_LETTER_TOPIC))
        try:
            finished = reader.poll_until(
                lambda: reader.total(SCORES_TOPIC) + reader.total(DEAD_LETTER_TOPIC) >= count,
                timeout, settle=2,
            )  # fmt: skip
        finally:
            reader.close()
        scored, dead = reader.total(SCORES_TOPIC), reader.total(DEAD_LETTER_TOPIC)
        duplicates = sum(n - 1 for n in reader.counts[SCORES_TOPIC].values() if n > 1)
        print(
            f"demo-compose: {scored} scored ({len(reader.counts[SCORES_TOPIC])} distinct "
            f"applications, {duplicates} duplicates), {dead} dead letters, champion "
            f"models:/{MODEL_NAME} version {champion_version(stack.mlflow, stack.env)} · "
            f"{time.monotonic() - started:.0f} s"
        )
        return 0 if finished and duplicates == 0 else 1
    finally:
        print("demo-compose: docker compose down --volumes", flush=True)
        stack.down(volumes=True)
        env_file.unlink(missing_ok=True)


def main(argv: Sequence[str]) -> int:
    if list(argv) not in ([], ["demo"]):
        print("usage: python -m devstack.compose [demo]", file=sys.stderr)
        return 2
    try:
        return demo(count=int(os.environ.get("DEMO_COUNT", "1000")))
    except ComposeError as exc:
        print(f"demo-compose: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
