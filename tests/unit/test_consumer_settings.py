"""Settings: read from the environment at construction, prefixed, typed, secrets masked."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from consumer.settings import Settings, redact_uri
from consumer.transport import consumer_config, producer_config
from contracts.model_names import CHAMPION_ALIAS, MODEL_NAME
from contracts.topics import (
    APPLICATIONS_TOPIC,
    DEAD_LETTER_TOPIC,
    PREDICTIONS_TOPIC,
    SCORES_TOPIC,
    SHADOW_SCORES_TOPIC,
)

_REQUIRED = {"KAFKA_BOOTSTRAP_SERVERS": "broker:9092", "MLFLOW_TRACKING_URI": "http://mlflow:5000"}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("SCORER_") or name in _REQUIRED:
            monkeypatch.delenv(name)
    for name, value in _REQUIRED.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def test_defaults_come_from_the_contracts(env: pytest.MonkeyPatch) -> None:
    settings = Settings()  # type: ignore[call-arg]
    assert settings.kafka_bootstrap_servers == "broker:9092"
    assert settings.mlflow_tracking_uri == "http://mlflow:5000"
    assert (settings.input_topic, settings.scores_topic) == (APPLICATIONS_TOPIC, SCORES_TOPIC)
    assert settings.dead_letter_topic == DEAD_LETTER_TOPIC
    assert settings.predictions_topic == PREDICTIONS_TOPIC
    assert (settings.model_name, settings.model_alias) == (MODEL_NAME, CHAMPION_ALIAS)
    assert settings.group_id == "credit-scorer"
    assert settings.worker_id == f"{socket.gethostname()}-{os.getpid()}"


def test_prefixed_variables_override(env: pytest.MonkeyPatch) -> None:
    env.setenv("SCORER_INPUT_TOPIC", "in")
    env.setenv("SCORER_BATCH_MAX_MESSAGES", "1000")
    env.setenv("SCORER_BATCH_MAX_WAIT_MS", "250")
    env.setenv("SCORER_RELOAD_INTERVAL_S", "0.5")
    env.setenv("SCORER_MODEL_CACHE_DIR", "/tmp/models")
    env.setenv("SCORER_WORKER_ID", "scorer-0")
    env.setenv("SCORER_HTTP_PORT", "9000")
    settings = Settings()  # type: ignore[call-arg]
    assert settings.input_topic == "in"
    assert (settings.batch_max_messages, settings.batch_max_wait_ms) == (1000, 250)
    assert settings.reload_interval_s == 0.5
    assert settings.model_cache_dir == Path("/tmp/models")
    assert settings.http_port == 9000
    assert settings.effective_transactional_id == "credit-scorer-scorer-0"


def test_unprefixed_names_only_for_kafka_and_mlflow(env: pytest.MonkeyPatch) -> None:
    env.setenv("SCORER_KAFKA_BOOTSTRAP_SERVERS", "elsewhere:1")
    env.setenv("BATCH_MAX_MESSAGES", "7")
    settings = Settings()  # type: ignore[call-arg]
    assert settings.kafka_bootstrap_servers == "broker:9092"
    assert settings.batch_max_messages == 500


def test_missing_required_and_bad_values_are_errors(env: pytest.MonkeyPatch) -> None:
    env.delenv("KAFKA_BOOTSTRAP_SERVERS")
    with pytest.raises(ValidationError, match="KAFKA_BOOTSTRAP_SERVERS"):
        Settings()  # type: ignore[call-arg]
    env.setenv("KAFKA_BOOTSTRAP_SERVERS", "b:1")
    env.setenv("SCORER_BATCH_MAX_MESSAGES", "0")
    with pytest.raises(ValidationError, match="batch_max_messages"):
        Settings()  # type: ignore[call-arg]


def test_explicit_transactional_id_wins(env: pytest.MonkeyPatch) -> None:
    env.setenv("SCORER_TRANSACTIONAL_ID", "scorer-tx-3")
    assert Settings().effective_transactional_id == "scorer-tx-3"  # type: ignore[call-arg]


def test_sasl_ssl_passes_through_with_secrets_masked(env: pytest.MonkeyPatch) -> None:
    extra = {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "PLAIN",
        "sasl.username": "scorer",
        "sasl.password": "hunter2-sasl",
        "ssl.key.password": "hunter2-key",
        "sasl.oauthbearer.client.secret": "hunter2-oauth",
    }
    env.setenv("SCORER_KAFKA_EXTRA", json.dumps(extra))
    env.setenv("SCORER_CONSUMER_EXTRA", '{"session.timeout.ms": 6000}')
    env.setenv("SCORER_PRODUCER_EXTRA", '{"linger.ms": 20}')
    env.setenv("MLFLOW_TRACKING_URI", "https://scorer:hunter2-mlflow@mlflow.bank:443/")
    settings = Settings()  # type: ignore[call-arg]

    assert isinstance(settings.kafka_extra["sasl.password"], SecretStr)
    assert settings.kafka_extra["security.protocol"] == "SASL_SSL"
    for shown in (repr(settings), str(settings), json.dumps(settings.redacted())):
        assert "hunter2" not in shown
    assert settings.redacted()["mlflow_tracking_uri"] == "https://scorer:***@mlflow.bank:443/"

    consumer, producer = consumer_config(settings), producer_config(settings)
    for config in (consumer, producer):
        assert config["security.protocol"] == "SASL_SSL"
        assert config["sasl.password"] == "hunter2-sasl"
        assert config["ssl.key.password"] == "hunter2-key"
    assert consumer["session.timeout.ms"] == 6000
    assert "session.timeout.ms" not in producer
    assert producer["linger.ms"] == 20


def test_exactly_once_client_settings(env: pytest.MonkeyPatch) -> None:
    env.setenv("SCORER_WORKER_ID", "w1")
    settings = Settings()  # type: ignore[call-arg]
    consumer, producer = consumer_config(settings), producer_config(settings)
    assert consumer["isolation.level"] == "read_committed"
    assert consumer["enable.auto.commit"] is False
    assert consumer["auto.offset.reset"] == "earliest"
    assert consumer["group.id"] == "credit-scorer"
    assert producer["transactional.id"] == "credit-scorer-w1"
    assert producer["linger.ms"] == settings.linger_ms
    assert producer["batch.size"] == settings.producer_batch_bytes


def test_redact_uri_keeps_uris_without_passwords() -> None:
    assert redact_uri("http://mlflow:5000") == "http://mlflow:5000"
    assert redact_uri("sqlite:///mlflow.db") == "sqlite:///mlflow.db"


def test_the_stall_timeout_must_outlast_a_transaction(env: pytest.MonkeyPatch) -> None:
    env.setenv("SCORER_TRANSACTION_TIMEOUT_MS", "60000")
    env.setenv("SCORER_STALL_TIMEOUT_S", "60")
    with pytest.raises(ValidationError, match="stall_timeout_s must be longer"):
        Settings()  # type: ignore[call-arg]


def test_log_level_is_checked_and_case_insensitive(env: pytest.MonkeyPatch) -> None:
    env.setenv("SCORER_LOG_LEVEL", "debug")
    assert Settings().log_level == "DEBUG"  # type: ignore[call-arg]
    env.setenv("SCORER_LOG_LEVEL", "chatty")
    with pytest.raises(ValidationError, match="log_level"):
        Settings()  # type: ignore[call-arg]


def test_dead_letters_must_hold_every_accepted_size(env: pytest.MonkeyPatch) -> None:
    env.setenv("SCORER_MAX_MESSAGE_BYTES", "2000000")
    with pytest.raises(ValidationError, match="dead_letter_max_value_bytes must be at least"):
        Settings()  # type: ignore[call-arg]


def test_a_shadow_alias_is_optional_and_never_the_champion_s(env: pytest.MonkeyPatch) -> None:
    assert Settings().shadow_alias is None  # type: ignore[call-arg]
    env.setenv("SCORER_SHADOW_ALIAS", "")  # compose's ${SCORER_SHADOW_ALIAS:-}
    assert Settings().shadow_alias is None  # type: ignore[call-arg]
    env.setenv("SCORER_SHADOW_ALIAS", "challenger")
    settings = Settings()  # type: ignore[call-arg]
    assert (settings.shadow_alias, settings.shadow_scores_topic) == (
        "challenger",
        SHADOW_SCORES_TOPIC,
    )
    env.setenv("SCORER_SHADOW_ALIAS", CHAMPION_ALIAS)
    with pytest.raises(ValidationError, match="shadow_alias must differ from model_alias"):
        Settings()  # type: ignore[call-arg]
