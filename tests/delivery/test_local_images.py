"""The local stand-in images (docker/local/, built by scripts/containers where no registry
answers): linted, named as the project's own, in step with what they stand in for, and
configured from the same environment as the official images.
"""

from __future__ import annotations

import os
import re
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest

from devstack import ROOT
from tests.delivery.support import (
    base_images,
    default_base,
    global_args,
    interpolate,
    parse_dockerfile,
    resolve_arg,
)

LOCAL = ROOT / "docker" / "local"
SCRIPT = ROOT / "scripts" / "containers"
KAFKA_RUN = LOCAL / "kafka" / "run"
KAFKA_CLI = LOCAL / "kafka" / "kafka-cli.sh"


def _script_constant(name: str) -> str:
    match = re.search(rf"^readonly {name}=(\S+)$", SCRIPT.read_text(encoding="utf-8"), re.M)
    assert match, f"scripts/containers sets no {name}"
    return match[1]


def _dockerfile_arg(path: Path, name: str) -> str:
    arguments = [
        i.arguments
        for i in parse_dockerfile(path.read_text(encoding="utf-8"))
        if i.keyword == "ARG" and i.arguments.startswith(f"{name}=")
    ]
    assert arguments, f"{path} has no ARG {name}=..."
    return arguments[0].split("=", 1)[1]


def _stand_in_dockerfiles() -> list[Path]:
    found = sorted(LOCAL.glob("*/Dockerfile"))
    assert {path.parent.name for path in found} == {"python", "mlflow", "kafka", "postgres"}
    return found


# -- linted and named as the project's own ----------------------------------------------------


def test_stand_ins_carry_the_projects_names_never_an_official_one() -> None:
    text = SCRIPT.read_text(encoding="utf-8")
    names = dict(re.findall(r"^readonly (\w+_image)=(\S+)$", text, re.M))
    # app_image and mlflow_image are the project's own images, built from its Dockerfile.
    stand_ins = {k: v for k, v in names.items() if k not in ("app_image", "mlflow_image")}
    assert set(stand_ins) == {
        "base_image",
        "python_image",
        "mlflow_base_image",
        "kafka_image",
        "postgres_image",
    }
    for value in stand_ins.values():
        assert value.startswith("rumos-local/"), value
    # Each stand-in builds FROM the local images, never from a registry.
    for path in _stand_in_dockerfiles():
        dockerfile = parse_dockerfile(path.read_text(encoding="utf-8"))
        for image in base_images(dockerfile).values():
            assert resolve_arg(image, global_args(dockerfile)).startswith("rumos-local/"), path


def test_the_written_image_variables_stay_out_of_git() -> None:
    result = subprocess.run(
        ["git", "check-ignore", "--quiet", ".env.images"], cwd=ROOT, check=False
    )
    assert result.returncode == 0, ".env.images is machine-specific: git-ignore it"


# -- in step with what they stand in for -------------------------------------------------------


def test_kafka_stand_in_runs_the_version_compose_and_kafka_local_use(
    compose: dict[str, Any],
) -> None:
    version = _script_constant("kafka_version")
    official = interpolate(compose["services"]["kafka"]["image"]).split("@", 1)[0]
    assert official == f"apache/kafka:{version}"
    kafka_local = (ROOT / "scripts" / "kafka-local").read_text(encoding="utf-8")
    assert f"KAFKA_LOCAL_VERSION:-{version}}}" in kafka_local


def test_mlflow_stand_in_is_the_official_server_images_release() -> None:
    dockerfile = parse_dockerfile((ROOT / "Dockerfile").read_text(encoding="utf-8"))
    official = default_base(dockerfile, "mlflow-server")
    version = _dockerfile_arg(LOCAL / "mlflow" / "Dockerfile", "MLFLOW_VERSION")
    assert official.endswith(f":v{version}"), (official, version)
    assert _script_constant("mlflow_base_image") == f"rumos-local/mlflow:{version}"


def test_postgres_stand_in_is_named_after_the_version_it_installs() -> None:
    major = _dockerfile_arg(LOCAL / "postgres" / "Dockerfile", "PG_MAJOR")
    assert _script_constant("postgres_major") == major


# -- the Kafka stand-in, configured like apache/kafka --------------------------------------------


def _print_config(environment: dict[str, str]) -> dict[str, str]:
    result = subprocess.run(
        ["bash", str(KAFKA_RUN), "--print-config"],
        env={"PATH": os.environ["PATH"], **environment},
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    return dict(line.split("=", 1) for line in result.stdout.splitlines())


def test_kafka_environment_maps_to_properties_like_the_official_image() -> None:
    properties = _print_config(
        {
            "KAFKA_NODE_ID": "1",
            "KAFKA_LOG_DIRS": "/data",
            "KAFKA_SOME__UNDERSCORED": "a",
            "KAFKA_SOME___DASHED": "b",
            "KAFKA_HEAP_OPTS": "-Xmx1g",
            "KAFKA_LOG4J_ROOT_LOGLEVEL": "WARN",
            "CLUSTER_ID": "x",
        }
    )
    assert properties == {
        "node.id": "1",
        "log.dirs": "/data",
        "some_underscored": "a",
        "some-dashed": "b",
    }


def test_listeners_default_to_the_advertised_ones_on_every_interface() -> None:
    properties = _print_config(
        {"KAFKA_ADVERTISED_LISTENERS": "INTERNAL://kafka:9092,EXTERNAL://localhost:9094"}
    )
    assert properties["listeners"] == "INTERNAL://0.0.0.0:9092,EXTERNAL://0.0.0.0:9094"


def test_compose_kafka_environment_becomes_the_intended_broker_config(
    compose: dict[str, Any],
) -> None:
    environment = {
        key: interpolate(str(value))
        for key, value in compose["services"]["kafka"]["environment"].items()
    }
    properties = _print_config(environment)
    expected = {
        key.removeprefix("KAFKA_").lower().replace("_", "."): value
        for key, value in environment.items()
        if key.startswith("KAFKA_")
    }
    assert properties == expected
    assert properties["transaction.state.log.replication.factor"] == "1"
    assert properties["auto.create.topics.enable"] == "false"


# -- the Kafka tools compose and docker/create-topics.sh call ----------------------------------


def _tool_classes() -> dict[str, str]:
    text = KAFKA_CLI.read_text(encoding="utf-8")
    return dict(re.findall(r"^\s+([\w-]+)\) class=([\w.]+) ;;$", text, re.M))


def test_tools_called_by_compose_and_create_topics_exist_at_the_official_paths(
    compose: dict[str, Any],
) -> None:
    called = set(re.findall(r"/opt/kafka/bin/([\w-]+)\.sh", str(compose["services"]["kafka"])))
    topics_script = (ROOT / "docker" / "create-topics.sh").read_text(encoding="utf-8")
    called |= set(re.findall(r"/opt/kafka/bin/([\w-]+)\.sh", topics_script))
    assert {"kafka-broker-api-versions", "kafka-topics"} <= called
    linked = (LOCAL / "kafka" / "Dockerfile").read_text(encoding="utf-8")
    for tool in called:
        assert tool in _tool_classes(), f"kafka-cli.sh does not know {tool}"
        assert re.search(rf"\b{tool}\b", linked), f"the Dockerfile does not link {tool}.sh"


@pytest.fixture(scope="module")
def kafka_classes() -> set[str]:
    """The classes in the jars scripts/kafka-local resolves (Maven, once per machine)."""
    result = subprocess.run(
        [str(ROOT / "scripts" / "kafka-local"), "resolve"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    classes: set[str] = set()
    for jar in Path(result.stdout.strip()).glob("*.jar"):
        with zipfile.ZipFile(jar) as archive:
            classes.update(
                name.removesuffix(".class").replace("/", ".")
                for name in archive.namelist()
                if name.endswith(".class")
            )
    return classes


def test_every_tool_and_the_broker_are_in_the_resolved_jars(kafka_classes: set[str]) -> None:
    run = KAFKA_RUN.read_text(encoding="utf-8")
    wanted = set(_tool_classes().values()) | set(re.findall(r"\b(kafka\.[\w.]*[A-Z]\w+)", run))
    assert {"kafka.Kafka", "kafka.tools.StorageTool"} <= wanted
    assert wanted - kafka_classes == set()
