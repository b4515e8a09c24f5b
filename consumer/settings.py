"""The worker's configuration: one typed object, read from the environment in ``main()``.

``KAFKA_BOOTSTRAP_SERVERS``, ``MLFLOW_TRACKING_URI`` and the registry account's
``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` keep their usual, unprefixed
names; everything else is ``SCORER_<FIELD>`` (``SCORER_BATCH_MAX_MESSAGES=1000``).
Extra librdkafka properties pass through as JSON objects, e.g.
``SCORER_KAFKA_EXTRA='{"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN",
"sasl.username": "scorer", "sasl.password": "..."}'``; values under secret-looking keys
become ``SecretStr`` so they never show in logs, reprs or the HTTP endpoints.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.kafka import KafkaProperties
from contracts.model_names import CHAMPION_ALIAS, MODEL_NAME
from contracts.registry_access import MIN_PASSWORD_LENGTH, PASSWORD_VARIABLE, USERNAME_VARIABLE
from contracts.topics import (
    APPLICATIONS_TOPIC,
    DEAD_LETTER_TOPIC,
    PREDICTIONS_TOPIC,
    SCORES_TOPIC,
    SHADOW_SCORES_TOPIC,
)

ENV_PREFIX: Final = "SCORER_"


def _default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def redact_uri(uri: str) -> str:
    """``uri`` without a password in its user-info part (``https://u:***@host``)."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


class Settings(BaseSettings):
    """Everything the worker can be told. Built once at start-up and passed down."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", frozen=True, validate_by_name=True
    )

    kafka_bootstrap_servers: str = Field(validation_alias="KAFKA_BOOTSTRAP_SERVERS", min_length=1)
    # Out of the repr: a URI may carry a password (see ``redacted``).
    mlflow_tracking_uri: str = Field(
        validation_alias="MLFLOW_TRACKING_URI", min_length=1, repr=False
    )
    # The registry's scorer account (contracts.registry_access); the password stays masked.
    mlflow_tracking_username: str | None = Field(
        default=None, validation_alias=USERNAME_VARIABLE, min_length=1
    )
    mlflow_tracking_password: SecretStr | None = Field(
        default=None, validation_alias=PASSWORD_VARIABLE, min_length=MIN_PASSWORD_LENGTH
    )

    input_topic: str = APPLICATIONS_TOPIC
    scores_topic: str = SCORES_TOPIC
    dead_letter_topic: str = DEAD_LETTER_TOPIC
    predictions_topic: str = PREDICTIONS_TOPIC
    shadow_scores_topic: str = SHADOW_SCORES_TOPIC
    group_id: str = "credit-scorer"

    model_name: str = MODEL_NAME
    model_alias: str = CHAMPION_ALIAS
    shadow_alias: str | None = Field(
        default=None,
        description="An alias (e.g. 'challenger') whose version scores every valid application "
        "in the shadow: vetted and reloaded like the champion, its scores go to "
        "shadow_scores_topic in the batch's transaction and never decide anything. Unset or "
        "empty: no shadow.",
    )
    model_cache_dir: Path = Path(".cache/scorer-models")
    reload_interval_s: float = Field(
        default=30.0, gt=0, description="How often the alias is checked."
    )
    model_signing_public_key: str | None = Field(
        default=None,
        description="Ed25519 public key(s) a version's manifest must be signed with: PEM "
        "text, or comma-separated PEM files; several keys (rotation) are all accepted. "
        "Without one the worker does not start unless allow_unsigned_models.",
    )
    allow_unsigned_models: bool = Field(
        default=False,
        description="Serve versions without a signed manifest (quick demos only; logged "
        "loudly). Signed versions are still verified when a key is configured.",
    )

    batch_max_messages: int = Field(default=500, ge=1, le=100_000)
    batch_max_wait_ms: int = Field(
        default=50,
        ge=1,
        le=60_000,
        description="consume() waits this long for a full batch: below full load, it is "
        "most of a record's end-to-end latency (benchmarks/README.md).",
    )
    max_message_bytes: int = Field(
        default=64 * 1024, ge=1, description="Larger application values are dead-lettered."
    )
    dead_letter_max_value_bytes: int = Field(
        default=900_000,
        ge=1,
        description="Dead letters carry the original value up to this size (below the "
        "topic's max.message.bytes); a larger, oversized one is referenced, not copied.",
    )

    worker_id: str = Field(default_factory=_default_worker_id, min_length=1)
    transactional_id: str | None = Field(
        default=None,
        description="Defaults to '<group_id>-<worker_id>'; see effective_transactional_id.",
    )
    transaction_timeout_ms: int = Field(default=30_000, ge=1_000)
    stall_timeout_s: float = Field(
        default=120.0,
        gt=0,
        description="A loop step taking longer exits the process (code 3) for a restart; "
        "must exceed the transaction timeout.",
    )
    self_heal_after_s: float = Field(
        default=60.0,
        gt=0,
        description="A worker whose input waits while its group commits nothing for this "
        "long (cluster reachable) replaces its Kafka clients and fails /livez; if it is still "
        "stuck this long after that, it exits (code 4) for a restart.",
    )
    linger_ms: int = Field(default=5, ge=0)
    producer_batch_bytes: int = Field(default=1_000_000, ge=1)
    kafka_extra: KafkaProperties = Field(default_factory=dict)
    consumer_extra: KafkaProperties = Field(default_factory=dict)
    producer_extra: KafkaProperties = Field(default_factory=dict)

    reason_codes: bool = Field(
        default=True,
        description="Add the top reasons (reason codes) to every score. Off: scores carry "
        "no reasons, and no explanation is computed.",
    )
    reason_count: int = Field(
        default=4, ge=1, le=23, description="How many reasons a score carries at most."
    )
    model_threads: int = Field(
        default=1,
        ge=1,
        description="Threads a model call may use in native pools (BLAS, OpenMP). A worker "
        "scales by processes and partitions; a second thread on a 500-row batch saved little "
        "time here for 50-70% more CPU, taken from the broker (benchmarks/README.md).",
    )

    monitor_personal_fields: bool = Field(
        default=False,
        description="Copy sex, education, marriage and age into prediction records for "
        "fairness and drift monitoring. Off: no personal data leaves the worker but the scores.",
    )

    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65_535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("shadow_alias", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        """An empty value (compose's ``${SCORER_SHADOW_ALIAS:-}``) means no shadow."""
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _consistent_limits(self) -> Settings:
        if self.stall_timeout_s * 1000 <= self.transaction_timeout_ms:
            raise ValueError("stall_timeout_s must be longer than transaction_timeout_ms")
        if self.dead_letter_max_value_bytes < self.max_message_bytes:
            raise ValueError("dead_letter_max_value_bytes must be at least max_message_bytes")
        if self.shadow_alias == self.model_alias:
            raise ValueError("shadow_alias must differ from model_alias")
        if (self.mlflow_tracking_username is None) != (self.mlflow_tracking_password is None):
            raise ValueError(f"set both {USERNAME_VARIABLE} and {PASSWORD_VARIABLE}, or neither")
        return self

    @property
    def effective_transactional_id(self) -> str:
        """The producer's ``transactional.id``: stable for as long as ``worker_id`` is.

        A restarted worker with the same id fences its zombie predecessor at once (its
        open transaction is aborted by ``init_transactions``); set ``SCORER_WORKER_ID``
        to a stable per-replica name (a StatefulSet pod name) to get that. Two live
        workers must never share it: the older one is fenced and stops.
        """
        return self.transactional_id or f"{self.group_id}-{self.worker_id}"

    def redacted(self) -> dict[str, Any]:
        """The settings as JSON-safe data with every secret masked, for the start-up log."""
        summary = self.model_dump(mode="json")
        summary["mlflow_tracking_uri"] = redact_uri(self.mlflow_tracking_uri)
        summary["transactional_id"] = self.effective_transactional_id
        return summary
