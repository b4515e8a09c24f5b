"""docker-compose.yml in agreement with the code.

`make lint` validates it against the Compose Specification, vendored here (compose-spec.json,
from compose-spec/compose-spec's schema/compose-spec.json as shipped by check-jsonschema
0.39.0; Apache-2.0, see LICENSE.compose-spec), so the check needs no network and no engine.
"""

from __future__ import annotations

import configparser
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from mlflow import cli as mlflow_cli
from mlflow import environment_variables as mlflow_environment
from packaging.requirements import Requirement

from consumer.settings import Settings as WorkerSettings
from contracts import topics
from contracts.registry_access import (
    ADMIN_ACCOUNT,
    MIN_PASSWORD_LENGTH,
    SCORER_ACCOUNT,
    TRAINER_ACCOUNT,
)
from devstack import ROOT
from devstack.compose import THROWAWAY_SECRETS, read_env_file, write_env_file
from monitor.settings import Settings as MonitorSettings
from producer.settings import Settings as ProducerSettings
from tests.delivery.support import (
    Instruction,
    global_args,
    interpolate,
    parse_dockerfile,
    settings_env_names,
    variables_in,
)
from training.settings import AccountsSettings, TrainingSettings

APP_SERVICES = ("registry-accounts", "trainer", "scorer", "monitor", "producer", "follower")
_ENV = {"POSTGRES_PASSWORD": "not-a-real-password", "MONITOR_DB_PASSWORD": "not-a-real-one"}
# What compose refuses to start without: the databases' and the registry's secrets.
_REQUIRED = (
    "POSTGRES_PASSWORD",
    "MONITOR_DB_PASSWORD",
    "MLFLOW_ADMIN_PASSWORD",
    "MLFLOW_TRAINER_PASSWORD",
    "MLFLOW_SCORER_PASSWORD",
    "MLFLOW_FLASK_SECRET_KEY",
)


def _services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _environment(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment", {})
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return {str(k): str(v) for k, v in environment.items()}


def _entrypoint_jobs() -> set[str]:
    script = (ROOT / "docker" / "entrypoint.sh").read_text(encoding="utf-8")
    return {job.strip() for arm in re.findall(r"^\s+([\w| -]+)\)$", script, re.M)
            for job in arm.split("|")} - {"*"}  # fmt: skip


# -- the specification (validated against compose-spec.json by `make lint`) -------------------


# -- the worker -----------------------------------------------------------------------------


def test_every_variable_set_on_the_worker_is_a_worker_setting(compose: dict[str, Any]) -> None:
    names = set(_environment(_services(compose)["scorer"]))
    unknown = {name for name in names if name.upper() not in settings_env_names(WorkerSettings)}
    assert unknown == set(), f"the worker ignores {unknown}"
    # The two settings without defaults must be set, with the worker's own names.
    assert {"KAFKA_BOOTSTRAP_SERVERS", "MLFLOW_TRACKING_URI"} <= names


def test_trainer_and_producer_variables_are_their_settings(compose: dict[str, Any]) -> None:
    services = _services(compose)
    trainer = set(_environment(services["trainer"]))
    assert trainer - settings_env_names(TrainingSettings) == set()
    accounts = set(_environment(services["registry-accounts"]))
    assert accounts - settings_env_names(AccountsSettings) == set()
    for name in ("producer", "follower"):
        assert set(_environment(services[name])) - settings_env_names(ProducerSettings) == set()
    assert set(_environment(services["monitor"])) - settings_env_names(MonitorSettings) == set()


def test_worker_port_is_the_settings_default_and_not_fixed_on_the_host(
    compose: dict[str, Any],
) -> None:
    scorer = _services(compose)["scorer"]
    assert "container_name" not in scorer, "a fixed name forbids --scale"
    http_port = WorkerSettings.model_fields["http_port"].default
    assert "SCORER_HTTP_PORT" not in _environment(scorer)
    (mapping,) = scorer["ports"]
    host, container = interpolate(mapping).rsplit(":", 1)
    assert int(container) == http_port
    # Published on a range (each replica takes the next free port), never one fixed port.
    low, high = (int(part) for part in host.split("-"))
    assert high - low + 1 >= 6


def test_worker_is_hardened(compose: dict[str, Any]) -> None:
    scorer = _services(compose)["scorer"]
    assert scorer["read_only"] is True
    assert any(mount.split(":")[0] == "/tmp" for mount in scorer["tmpfs"])
    uid = str(scorer["user"]).split(":")[0]
    assert uid not in ("0", "root")
    assert scorer["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in scorer["security_opt"]


def test_worker_starts_after_its_dependencies_are_ready(compose: dict[str, Any]) -> None:
    assert _services(compose)["scorer"]["depends_on"] == {
        "kafka": {"condition": "service_healthy"},
        "topic-init": {"condition": "service_completed_successfully"},
        "mlflow": {"condition": "service_healthy"},
        "trainer": {"condition": "service_completed_successfully"},
    }


def test_services_waited_on_as_healthy_have_a_healthcheck(compose: dict[str, Any]) -> None:
    dockerfile = parse_dockerfile((ROOT / "Dockerfile").read_text(encoding="utf-8"))
    checked_stages = {i.stage for i in dockerfile if i.keyword == "HEALTHCHECK"}
    services = _services(compose)
    waited_on = {
        name
        for service in services.values()
        for name, dependency in service.get("depends_on", {}).items()
        if dependency["condition"] == "service_healthy"
    }
    assert {"kafka", "postgres", "mlflow", "scorer"} <= waited_on
    for name in waited_on:
        own = services[name].get("healthcheck", {})
        assert not own.get("disable"), f"{name} is waited on but its healthcheck is disabled"
        # Either the service defines a check, or it runs a stage of ours that has one.
        stage = services[name].get("build", {}).get("target")
        assert own.get("test") or stage in checked_stages, name


# -- images and commands agree with the Dockerfile ------------------------------------------


def test_app_services_run_the_image_built_from_the_runtime_target(
    compose: dict[str, Any],
) -> None:
    services = _services(compose)
    images = {interpolate(services[name]["image"]) for name in APP_SERVICES}
    assert len(images) == 1
    for name in APP_SERVICES:
        build = services[name]["build"]
        assert {k: v for k, v in build.items() if k != "args"} == {
            "context": ".",
            "target": "runtime",
        }
    assert services["mlflow"]["build"]["target"] == "mlflow-server"
    stages = re.findall(r"^FROM \S+ AS (\S+)$", (ROOT / "Dockerfile").read_text(), re.M)
    assert {"runtime", "mlflow-server"} <= set(stages)


def test_app_commands_are_jobs_the_entrypoint_knows(compose: dict[str, Any]) -> None:
    jobs = _entrypoint_jobs()
    assert {"worker", "train", "train-if-no-champion", "producer", "publish", "follow"} <= jobs
    assert "monitor" in jobs
    for name in APP_SERVICES:
        command = _services(compose)[name]["command"]
        assert command[0] in jobs, f"{name} runs {command[0]!r}, not an entrypoint job"


def test_demo_services_are_behind_the_demo_profile(compose: dict[str, Any]) -> None:
    services = _services(compose)
    profiled = {name for name, service in services.items() if service.get("profiles")}
    assert profiled == {"producer", "follower"}
    assert all(services[name]["profiles"] == ["demo"] for name in profiled)


def test_trainer_reads_the_data_read_only_and_runs_once(compose: dict[str, Any]) -> None:
    trainer = _services(compose)["trainer"]
    (volume,) = trainer["volumes"]
    _source, target, mode = interpolate(volume).split(":")
    assert mode == "ro"
    assert _environment(trainer)["RUMOS_DATA"].startswith(f"{target}/")
    assert trainer["restart"] == "no"
    assert trainer["command"] == ["train-if-no-champion"]


def test_base_images_are_passed_through_only_when_set(compose: dict[str, Any]) -> None:
    # A bare name in `args` is taken from the environment (or an --env-file such as
    # .env.images) and left out when unset, so the Dockerfile's official default applies;
    # `NAME: ${NAME:-}` would pass an empty base image instead.
    dockerfile_args = global_args(parse_dockerfile((ROOT / "Dockerfile").read_text()))
    services = _services(compose)
    expected = {"scorer": ["PYTHON_BASE_IMAGE"], "mlflow": ["MLFLOW_BASE_IMAGE"]}
    for name, args in expected.items():
        assert services[name]["build"]["args"] == args, name
        assert set(args) <= set(dockerfile_args), f"the Dockerfile has no ARG {args}"


_OFFICIAL = {
    "kafka": "apache/kafka:",
    "topic-init": "apache/kafka:",
    "postgres": "postgres:",
    "monitor-db": "postgres:",
}


def test_third_party_images_are_variables_defaulting_to_official_pinned_images(
    compose: dict[str, Any],
) -> None:
    services = _services(compose)
    for name, official in _OFFICIAL.items():
        image = services[name]["image"]
        variable = re.fullmatch(r"\$\{(\w+_IMAGE):-([^}]+)\}", image)
        assert variable, f"{name}: {image} is not ${{NAME_IMAGE:-official image}}"
        default = variable[2]
        assert default.startswith(official), default
        assert re.fullmatch(r"[\w./-]+:[\w.-]+(@sha256:[0-9a-f]{64})?", default), default
        assert not default.endswith(":latest")
    assert services["kafka"]["image"] == services["topic-init"]["image"]
    assert services["postgres"]["image"] == services["monitor-db"]["image"]


# -- Kafka topics and the MLflow server --------------------------------------------------------


def test_topic_init_creates_every_contract_topic(compose: dict[str, Any]) -> None:
    topic_init = _services(compose)["topic-init"]
    specs = dict(
        spec.split(":") for spec in interpolate(_environment(topic_init)["TOPICS"]).split()
    )
    contract = {
        topics.APPLICATIONS_TOPIC,
        topics.SCORES_TOPIC,
        topics.PREDICTIONS_TOPIC,
        topics.SHADOW_SCORES_TOPIC,
        topics.DEAD_LETTER_TOPIC,
        topics.OUTCOMES_TOPIC,
        topics.OUTCOMES_DEAD_LETTER_TOPIC,
        topics.ALERTS_TOPIC,
    }
    assert set(specs) == contract
    assert int(specs[topics.APPLICATIONS_TOPIC]) >= 6, "too few partitions to scale the worker"
    assert topic_init["depends_on"] == {"kafka": {"condition": "service_healthy"}}


def test_kafka_is_a_single_node_kraft_broker_ready_for_transactions(
    compose: dict[str, Any],
) -> None:
    kafka = _services(compose)["kafka"]
    assert interpolate(kafka["image"]).startswith("apache/kafka:")
    environment = {k: interpolate(v) for k, v in _environment(kafka).items()}
    assert environment["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert environment["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"
    assert environment["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "1"
    assert environment["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert environment["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    advertised = environment["KAFKA_ADVERTISED_LISTENERS"]
    assert "INTERNAL://kafka:9092" in advertised
    for service in APP_SERVICES:
        bootstrap = _environment(_services(compose)[service]).get("KAFKA_BOOTSTRAP_SERVERS")
        assert bootstrap in (None, "kafka:9092")
    # The host listener is advertised on the port that is published.
    (published,) = kafka["ports"]
    host_port = interpolate(published).split(":")[0]
    assert f"EXTERNAL://localhost:{host_port}" in advertised


def test_mlflow_server_options_exist_and_serve_artifacts_from_a_volume(
    compose: dict[str, Any],
) -> None:
    mlflow = _services(compose)["mlflow"]
    server = mlflow_cli.cli.commands["server"]
    options = {opt for param in server.params for opt in param.opts}
    env_vars = {param.envvar for param in server.params if param.envvar}
    flags = dict(arg.partition("=")[::2] for arg in mlflow["command"])
    assert set(flags) <= options, set(flags) - options
    assert "--serve-artifacts" in flags
    destination = flags["--artifacts-destination"]
    assert any(v.split(":")[1] == destination for v in mlflow["volumes"])
    # Each variable is a server option's or one MLflow documents (mlflow.environment_variables).
    documented = {name for name in dir(mlflow_environment) if name.startswith("MLFLOW_")}
    assert set(_environment(mlflow)) <= env_vars | documented
    assert _environment(mlflow)["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    backend = interpolate(_environment(mlflow)["MLFLOW_BACKEND_STORE_URI"], _ENV)
    # With the driver the image installs (mlflow-server stage), not SQLAlchemy's default.
    assert backend.startswith("postgresql+psycopg2://")
    runs = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert "pip install psycopg2-binary==" in runs
    for service in ("trainer", "scorer"):
        assert _environment(_services(compose)[service])["MLFLOW_TRACKING_URI"] == (
            f"http://mlflow:{flags['--port']}"
        )


# -- secrets and settings ---------------------------------------------------------------------


def _variables(compose: dict[str, Any]) -> dict[str, str | None]:
    """The ``${VAR}`` references in the file's values (its comments left out)."""
    return variables_in(json.dumps(compose))


def test_required_settings_fail_loudly_when_missing(compose: dict[str, Any]) -> None:
    variables = _variables(compose)
    assert {name: variables.get(name) for name in _REQUIRED} == dict.fromkeys(_REQUIRED, ":?")
    with pytest.raises(KeyError, match="POSTGRES_PASSWORD"):
        interpolate("${POSTGRES_PASSWORD:?set it}")


def test_secrets_are_only_variable_references(compose: dict[str, Any]) -> None:
    reference = r"\$\{\w+(:\?[^}]*)?\}"
    for name, service in _services(compose).items():
        for key, value in _environment(service).items():
            if re.search(r"PASSWORD|SECRET|TOKEN", key):
                assert re.fullmatch(reference, value), f"{name}.{key} is not a ${{VAR}} reference"
            userinfo = re.match(r"[\w+]+://([^/@]*)@", value)
            if userinfo:
                _user, _, password = userinfo[1].partition(":")
                assert re.fullmatch(reference, password), f"{name}.{key} embeds a password"


def test_env_example_documents_every_variable(compose: dict[str, Any]) -> None:
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", example, re.M))
    assert set(_variables(compose)) <= documented
    for name in _REQUIRED:
        assert re.search(rf"^{name}=$", example, re.M), f"the example holds no {name}"


def test_interpolate_follows_compose_rules() -> None:
    assert interpolate("${A:-x}-${B}", {"B": "b"}) == "x-b"
    assert interpolate("${A:-x}", {"A": "a"}) == "a"
    assert interpolate("$${NOT}") == "${NOT}"


# -- the registry's accounts (MLflow's basic-auth app) ----------------------------------------


def _auth_config() -> configparser.SectionProxy:
    config = configparser.ConfigParser()
    config.read(ROOT / "docker" / "mlflow-auth.ini", encoding="utf-8")
    return config["mlflow"]


def test_the_registry_authenticates_with_no_permission_by_default(
    compose: dict[str, Any], dockerfile: list[Instruction]
) -> None:
    mlflow = _services(compose)["mlflow"]
    flags = dict(arg.partition("=")[::2] for arg in mlflow["command"])
    assert flags["--app-name"] == "basic-auth"
    assert _auth_config()["default_permission"] == "NO_PERMISSIONS"
    assert int(_auth_config()["auth_cache_ttl_seconds"]) > 0
    # The image carries the configuration where MLFLOW_AUTH_CONFIG_PATH says, and Flask-WTF.
    stage = [i for i in dockerfile if i.stage == "mlflow-server"]
    environment = " ".join(i.arguments for i in stage if i.keyword == "ENV")
    config_path = re.search(r"MLFLOW_AUTH_CONFIG_PATH=(\S+)", environment)
    assert config_path, "the mlflow-server stage does not point MLflow at its auth config"
    copies = [i.arguments.split()[-2:] for i in stage if i.keyword == "COPY"]
    assert ["docker/mlflow-auth.ini", config_path[1]] in copies
    installed = " ".join(i.arguments for i in stage if i.keyword == "RUN")
    (pinned,) = re.findall(r"Flask-WTF==(\S+)", installed)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (wanted,) = [Requirement(d) for d in project if d.lower().startswith("flask-wtf")]
    assert wanted.specifier.contains(pinned), f"the server's Flask-WTF {pinned} is not {wanted}"


def test_the_accounts_database_lives_in_a_volume_the_server_owns(
    compose: dict[str, Any], dockerfile: list[Instruction]
) -> None:
    database = _auth_config()["database_uri"]
    assert database.startswith("sqlite:////")
    directory = database.removeprefix("sqlite:///").rsplit("/", 1)[0]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in _services(compose)["mlflow"]["volumes"]}
    assert mounts.get(directory) in compose["volumes"], f"{directory} is not a named volume"
    runs = " ".join(i.arguments for i in dockerfile if i.stage == "mlflow-server")
    assert re.search(rf"chown mlflow:mlflow .*{re.escape(directory)}", runs)


def test_each_service_asks_the_registry_as_its_own_account(compose: dict[str, Any]) -> None:
    services = _services(compose)
    provisioned = _environment(services["registry-accounts"])
    assert provisioned["MLFLOW_TRACKING_USERNAME"] == ADMIN_ACCOUNT
    assert _auth_config()["admin_username"] == ADMIN_ACCOUNT
    # The passwords provisioned are the ones each service presents, the admin's the server's.
    server = _environment(services["mlflow"])
    assert provisioned["MLFLOW_TRACKING_PASSWORD"] == server["MLFLOW_AUTH_ADMIN_PASSWORD"]
    for name, username in (("trainer", TRAINER_ACCOUNT), ("scorer", SCORER_ACCOUNT)):
        own = _environment(services[name])
        assert own["MLFLOW_TRACKING_USERNAME"] == username
        assert (
            provisioned[f"RUMOS_TRAINING_{name.upper()}_PASSWORD"]
            == (own["MLFLOW_TRACKING_PASSWORD"])
        ), name
    # Nothing of the registry's reaches the producer and the follower.
    for name in ("producer", "follower"):
        assert not any(key.startswith("MLFLOW_") for key in _environment(services[name]))
    # The trainer asks only once the accounts exist.
    assert services["trainer"]["depends_on"] == {
        "registry-accounts": {"condition": "service_completed_successfully"}
    }
    assert services["registry-accounts"]["restart"] == "no"


def test_the_compose_driver_writes_a_throwaway_value_for_every_required_secret(
    tmp_path: Path,
) -> None:
    assert set(THROWAWAY_SECRETS) == set(_REQUIRED)
    env_file = tmp_path / "stack.env"
    write_env_file(env_file, {})
    first = read_env_file(env_file)
    write_env_file(env_file, {})
    second = read_env_file(env_file)
    for name in _REQUIRED:
        assert len(first[name]) >= MIN_PASSWORD_LENGTH, name
        assert first[name] != second[name], f"{name} is not fresh for each stack"
