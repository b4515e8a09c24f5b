"""Settings from the environment, and the Kafka client configurations built from them."""

from __future__ import annotations

import pytest

from producer import Settings
from producer.kafka import consumer_config, producer_config

_SASL = (
    '{"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN", '
    '"sasl.username": "producer", "sasl.password": "hunter2", '
    '"acks": "1", "enable.idempotence": false}'
)


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker-1:9093,broker-2:9093")
    monkeypatch.setenv("PRODUCER_KAFKA_EXTRA", _SASL)
    monkeypatch.setenv("PRODUCER_LINGER_MS", "20")
    return Settings()


def test_bootstrap_servers_are_unprefixed_and_the_rest_prefixed(settings: Settings) -> None:
    assert settings.kafka_bootstrap_servers == "broker-1:9093,broker-2:9093"
    assert settings.linger_ms == 20


def test_secrets_never_show_in_reprs_or_dumps(settings: Settings) -> None:
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(settings.model_dump())
    assert "hunter2" not in settings.model_dump_json()
    assert settings.kafka_extra["sasl.username"] == "producer"  # not a secret


def test_producer_is_idempotent_with_acks_all_whatever_the_extras_say(settings: Settings) -> None:
    config = producer_config(settings)

    assert config["enable.idempotence"] is True
    assert config["acks"] == "all"
    assert config["bootstrap.servers"] == "broker-1:9093,broker-2:9093"
    assert config["security.protocol"] == "SASL_SSL"
    assert config["sasl.password"] == "hunter2"  # revealed only in the client config
    assert config["linger.ms"] == 20


@pytest.mark.parametrize(("from_beginning", "reset"), [(True, "earliest"), (False, "latest")])
def test_follow_consumer_reads_committed_only(
    settings: Settings, from_beginning: bool, reset: str
) -> None:
    config = consumer_config(settings, group_id="g-1", from_beginning=from_beginning, commit=False)

    assert config["isolation.level"] == "read_committed"
    assert config["group.id"] == "g-1"
    assert config["auto.offset.reset"] == reset
    assert config["enable.auto.commit"] is False
    assert config["sasl.password"] == "hunter2"
