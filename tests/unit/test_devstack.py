"""devstack's pure parts: the worker's and the monitor's environments, the worker's topics,
and the Kafka image it picks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from consumer.settings import Settings
from contracts.registry_access import PASSWORD_VARIABLE, USERNAME_VARIABLE
from devstack import DevstackError, ScorerTopics, monitor_env, worker_env
from devstack.compose import free_ports
from devstack.container import DEFAULT_IMAGE, kafka_image
from devstack.processes import ModuleProcess, wait_until
from monitor.settings import Settings as MonitorSettings


def test_scorer_topics_are_the_workers_defaults_unless_made_unique() -> None:
    contract = ScorerTopics()
    defaults = Settings(kafka_bootstrap_servers="broker:9092", mlflow_tracking_uri="http://m")
    assert contract.settings() == {field: getattr(defaults, field) for field in contract.settings()}

    first, second = ScorerTopics.unique("t"), ScorerTopics.unique("t")
    assert set(first.names).isdisjoint(second.names)
    for name, contract_name in zip(first.names, contract.names, strict=True):
        assert name.startswith(f"t-{contract_name}-")
    env = worker_env(**first.settings())  # every key is a worker setting
    assert (env["SCORER_INPUT_TOPIC"], env["SCORER_SCORES_TOPIC"]) == (
        first.applications,
        first.scores,
    )
    assert env["SCORER_PREDICTIONS_TOPIC"] == first.predictions
    assert env["SCORER_DEAD_LETTER_TOPIC"] == first.dead_letters


def test_worker_env_names_variables_as_the_worker_reads_them() -> None:
    env = worker_env(
        kafka_bootstrap_servers="broker:9092",
        mlflow_tracking_uri="http://mlflow:5000",
        batch_max_messages=50,
        consumer_extra={"session.timeout.ms": 6000},
        monitor_personal_fields=True,
        model_cache_dir=Path("/tmp/models"),
    )

    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "broker:9092"
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert env["SCORER_BATCH_MAX_MESSAGES"] == "50"
    assert json.loads(env["SCORER_CONSUMER_EXTRA"]) == {"session.timeout.ms": 6000}
    assert env["SCORER_MONITOR_PERSONAL_FIELDS"] == "true"
    assert env["SCORER_MODEL_CACHE_DIR"] == "/tmp/models"
    assert env["SCORER_HTTP_HOST"] == "127.0.0.1"
    assert int(env["SCORER_HTTP_PORT"]) > 0
    assert env["PYTHONUNBUFFERED"] == "1"


def test_monitor_env_gives_the_monitor_exactly_its_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = MonitorSettings(
        kafka_bootstrap_servers="broker:9092",
        tracking_uri="http://mlflow:5000",
        psi_limit=0.3,
        kafka_extra={"security.protocol": "SASL_SSL", "sasl.password": "kafka-secret"},
    )
    monkeypatch.setenv("MONITOR_WINDOW_ROWS", "77")  # this process's own: not passed on
    monkeypatch.setenv(USERNAME_VARIABLE, "someone")  # nor its registry account
    monkeypatch.setenv(PASSWORD_VARIABLE, "someone's password")

    env = monitor_env(settings)

    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "broker:9092"
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert env["MONITOR_PSI_LIMIT"] == "0.3"
    assert json.loads(env["MONITOR_KAFKA_EXTRA"])["sasl.password"] == "kafka-secret"
    assert USERNAME_VARIABLE not in env
    assert PASSWORD_VARIABLE not in env
    for name in ("MONITOR_WINDOW_ROWS", USERNAME_VARIABLE, PASSWORD_VARIABLE):
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert MonitorSettings() == settings  # what the monitor reads back


def test_worker_env_refuses_a_misspelt_setting() -> None:
    with pytest.raises(DevstackError, match="bath_max_messages"):
        worker_env(bath_max_messages=50)


def test_worker_env_leaves_out_this_process_settings_unless_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SCORER_LINGER_MS", "99")
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", "sqlite:///elsewhere.db")

    isolated = worker_env(group_id="g")
    inherited = worker_env(True, group_id="g", linger_ms=1)

    assert "SCORER_LINGER_MS" not in isolated
    assert inherited["SCORER_LINGER_MS"] == "1"  # explicit settings still win
    assert "MLFLOW_REGISTRY_URI" not in isolated
    assert "MLFLOW_REGISTRY_URI" not in inherited
    assert worker_env(True, group_id="g")["SCORER_LINGER_MS"] == "99"


def test_the_kafka_image_comes_from_the_environment_then_the_images_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    images = tmp_path / ".env.images"
    images.write_text("# written by scripts/containers\nKAFKA_IMAGE=rumos-local/kafka:4.1.1\n")
    monkeypatch.delenv("KAFKA_IMAGE", raising=False)

    assert kafka_image(tmp_path / "missing") == DEFAULT_IMAGE
    assert kafka_image(images) == "rumos-local/kafka:4.1.1"
    monkeypatch.setenv("KAFKA_IMAGE", "registry.bank/kafka:4.1.1")
    assert kafka_image(images) == "registry.bank/kafka:4.1.1"


def test_compose_host_ports_are_chosen_below_the_ephemeral_range() -> None:
    # A scaled scorer binds its port minutes after the choice: inside the kernel's ephemeral
    # range, any connection could have taken it by then.
    start = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    chosen = [port for _ in range(50) for port in free_ports(6)]
    assert all(20_000 <= port < start for port in chosen), sorted(chosen)[-3:]


def test_wait_until_stops_when_a_watched_process_exits(tmp_path: Path) -> None:
    exits = ModuleProcess("json.tool", {}, tmp_path / "exits.log", "--no-such-option")

    with pytest.raises(
        DevstackError, match=r"not ready: python -m json.tool \(pid \d+\) exited"
    ) as caught:
        wait_until(lambda: False, 60, "not ready", watch=[exits], poll_s=0.01)

    assert caught.value.log_path == exits.log_path
