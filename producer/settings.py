"""The producer CLI's configuration: one typed object, read from the environment in ``main()``.

``KAFKA_BOOTSTRAP_SERVERS`` keeps its usual unprefixed name (shared with the worker);
everything else is ``PRODUCER_<FIELD>``. Extra librdkafka properties pass through as a JSON
object, e.g. for SASL_SSL::

    PRODUCER_KAFKA_EXTRA='{"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN",
                           "sasl.username": "producer", "sasl.password": "..."}'

Values under secret-looking keys become ``SecretStr``: they never show in reprs or output.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX: Final = "PRODUCER_"

KafkaValue = str | int | float | bool | SecretStr
"""A librdkafka property value as configured (secrets wrapped)."""

# Substrings of librdkafka property names whose values are credentials
# (sasl.password, ssl.key.password, sasl.oauthbearer.client.secret, ssl.key.pem, ...).
_SECRET_KEY_MARKERS: Final = ("password", "secret", "passphrase", "token", ".pem", "config")


class Settings(BaseSettings):
    """Everything the producer CLI can be told. Built once in ``main()`` and passed down."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", frozen=True, populate_by_name=True
    )

    kafka_bootstrap_servers: str = Field(
        default="localhost:9092", validation_alias="KAFKA_BOOTSTRAP_SERVERS", min_length=1
    )
    client_id: str = Field(default="rumos-producer", min_length=1)
    linger_ms: int = Field(default=5, ge=0, description="Batching delay: throughput over latency.")
    compression_type: str = "lz4"
    connect_timeout_s: float = Field(
        default=15.0,
        gt=0,
        description="How long to wait for the broker's metadata before giving up.",
    )
    delivery_timeout_ms: int = Field(
        default=60_000,
        ge=1_000,
        description="librdkafka message.timeout.ms: a record undelivered "
        "after this long is reported as failed.",
    )
    flush_timeout_s: float = Field(default=120.0, gt=0)
    kafka_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        default="CRITICAL",
        description="Threshold for librdkafka's own log lines. Its connection errors are "
        "reported by the CLI as one message anyway; lower this to debug a connection.",
    )
    kafka_extra: dict[str, KafkaValue] = Field(default_factory=dict)

    @field_validator("kafka_extra", mode="after")
    @classmethod
    def _wrap_secrets(cls, value: dict[str, KafkaValue]) -> dict[str, KafkaValue]:
        return {
            key: SecretStr(str(item))
            if _is_secret_key(key) and not isinstance(item, SecretStr)
            else item
            for key, item in value.items()
        }

    def kafka_common(self) -> dict[str, Any]:
        """librdkafka properties shared by producer and consumer, secrets revealed."""
        extra = {
            key: value.get_secret_value() if isinstance(value, SecretStr) else value
            for key, value in self.kafka_extra.items()
        }
        return {
            "bootstrap.servers": self.kafka_bootstrap_servers,
            "client.id": self.client_id,
            **extra,
        }


def _is_secret_key(key: str) -> bool:
    return any(marker in key for marker in _SECRET_KEY_MARKERS)
