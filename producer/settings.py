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

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.kafka import KafkaProperties, reveal

ENV_PREFIX: Final = "PRODUCER_"


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
    kafka_extra: KafkaProperties = Field(default_factory=dict)

    def kafka_common(self) -> dict[str, Any]:
        """librdkafka properties shared by producer and consumer, secrets revealed."""
        return {
            "bootstrap.servers": self.kafka_bootstrap_servers,
            "client.id": self.client_id,
            **reveal(self.kafka_extra),
        }
