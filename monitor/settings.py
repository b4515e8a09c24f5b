"""The monitor's configuration: one typed object, read from the environment in ``main()``.

Every field is ``MONITOR_<FIELD>`` except ``KAFKA_BOOTSTRAP_SERVERS``, ``MLFLOW_TRACKING_URI``
and the registry account (``MLFLOW_TRACKING_USERNAME``/``_PASSWORD``: the scorer's, read-only,
for the champion's reference profile), shared with the worker. ``MONITOR_DATABASE_URL`` is any
SQLAlchemy URL: a SQLite file by default (``make demo``, tests), PostgreSQL in the compose stack
(``postgresql+psycopg2://monitor:...@postgres:5432/monitor``).
"""

from __future__ import annotations

from typing import Any, Final, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.kafka import KafkaProperties, reveal
from contracts.registry_access import MIN_PASSWORD_LENGTH, PASSWORD_VARIABLE, USERNAME_VARIABLE
from contracts.topics import (
    ALERTS_TOPIC,
    APPLICATIONS_TOPIC,
    OUTCOMES_DEAD_LETTER_TOPIC,
    OUTCOMES_TOPIC,
    PREDICTIONS_TOPIC,
    SHADOW_SCORES_TOPIC,
)
from monitor.records import MonitorTopics

ENV_PREFIX: Final = "MONITOR_"


class Settings(BaseSettings):
    """Everything the monitor can be told. Built once in ``main()`` and passed down."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", frozen=True, populate_by_name=True
    )

    kafka_bootstrap_servers: str = Field(
        default="localhost:9092", validation_alias="KAFKA_BOOTSTRAP_SERVERS", min_length=1
    )
    tracking_uri: str = Field(
        default="http://localhost:5000", validation_alias="MLFLOW_TRACKING_URI"
    )
    tracking_username: str | None = Field(
        default=None, validation_alias=USERNAME_VARIABLE, min_length=1
    )
    tracking_password: SecretStr | None = Field(
        default=None, validation_alias=PASSWORD_VARIABLE, min_length=MIN_PASSWORD_LENGTH
    )
    group_id: str = Field(default="rumos-monitor", min_length=1)
    transactional_id: str = Field(default="rumos-monitor", min_length=1)
    database_url: str = Field(default="sqlite:///monitor.db", min_length=1)
    predictions_topic: str = PREDICTIONS_TOPIC
    shadow_scores_topic: str = SHADOW_SCORES_TOPIC
    outcomes_topic: str = OUTCOMES_TOPIC
    applications_topic: str = APPLICATIONS_TOPIC
    outcomes_dead_letter_topic: str = OUTCOMES_DEAD_LETTER_TOPIC
    alerts_topic: str = ALERTS_TOPIC
    window_rows: int = Field(default=5_000, ge=10, description="Live rows PSI is measured on.")
    min_window_rows: int = Field(
        default=500, ge=1, description="No PSI alert before the window holds this many rows."
    )
    performance_window_rows: int = Field(
        default=10_000,
        ge=100,
        description="The most recent joined outcomes live performance and the shadow "
        "comparison are measured on (promote --from-shadow reads all of them).",
    )
    psi_limit: float = Field(default=0.2, gt=0)
    psi_rearm: float = Field(
        default=0.1, gt=0, description="A subject alerts again only after PSI fell to this."
    )
    min_joined_rows: int = Field(
        default=500,
        ge=1,
        description="No live ROC-AUC or fairness alert before the live window holds this many "
        "joined outcomes (of the newest version; with personal fields, for fairness).",
    )
    auc_margin: float = Field(
        default=0.05,
        gt=0,
        description="Alert when live ROC-AUC is below the version's validation ROC-AUC by more.",
    )
    auc_rearm_margin: float = Field(
        default=0.02,
        ge=0,
        description="The ROC-AUC alert re-arms once live ROC-AUC is back within this margin.",
    )
    fairness_limit: float = Field(
        default=0.20, gt=0, description="As training's fairness_limit: the gate on live gaps."
    )
    fairness_rearm: float = Field(
        default=0.15, gt=0, description="A gap alerts again only after it fell to this."
    )
    pending_outcome_days: float = Field(
        default=90.0, gt=0, description="How long an outcome waits for its prediction."
    )
    max_pending_outcomes: int = Field(default=1_000_000, ge=1)
    cost_fn: float = Field(default=5.0, ge=0, description="As training's --cost-fn.")
    cost_fp: float = Field(default=1.0, ge=0, description="As training's --cost-fp.")
    batch_max_messages: int = Field(
        default=10_000,
        ge=1,
        # A batch's messages and rows are all held at once (the monitor's memory target).
        le=20_000,
        description="Records per batch: one database and one Kafka transaction each.",
    )
    measure_every_records: int = Field(
        # About one PSI window of applications at four records each (prediction, shadow
        # score, outcome, application): a drift that fills the window is measured while it
        # does. A longer interval is faster over a burst (benchmarks/README.md, finding 10)
        # but can miss a drift that came and went between two measures.
        default=20_000,
        ge=1,
        description="While a backlog lasts (full batches), measure and alert once per this "
        "many records; a batch that empties it is always measured.",
    )
    batch_timeout_s: float = Field(default=0.5, gt=0)
    max_value_bytes: int = Field(default=65_536, ge=1_024)
    metrics_port: int = Field(default=9101, ge=0, le=65_535, description="0: no endpoint.")
    kafka_extra: KafkaProperties = Field(default_factory=dict)

    @model_validator(mode="after")
    def _account_is_whole(self) -> Self:
        if (self.tracking_username is None) != (self.tracking_password is None):
            raise ValueError(f"set both {USERNAME_VARIABLE} and {PASSWORD_VARIABLE}, or neither")
        return self

    @model_validator(mode="after")
    def _rearm_is_inside_the_limit(self) -> Self:
        # A re-arm level past the limit would re-alert on every batch beyond it.
        for rearm, limit in (
            ("psi_rearm", "psi_limit"),
            ("fairness_rearm", "fairness_limit"),
            ("auc_rearm_margin", "auc_margin"),
        ):
            if getattr(self, rearm) >= getattr(self, limit):
                raise ValueError(f"{rearm} must be below {limit}")
        return self

    def topics(self) -> MonitorTopics:
        return MonitorTopics(
            predictions=self.predictions_topic,
            outcomes=self.outcomes_topic,
            applications=self.applications_topic,
            outcomes_dlq=self.outcomes_dead_letter_topic,
            alerts=self.alerts_topic,
            shadow_scores=self.shadow_scores_topic,
        )

    def kafka_common(self) -> dict[str, Any]:
        """librdkafka properties every client shares, secrets revealed: never log them."""
        return {"bootstrap.servers": self.kafka_bootstrap_servers, **reveal(self.kafka_extra)}
