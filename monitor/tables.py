"""The monitor's tables (SQLAlchemy Core), portable between SQLite and PostgreSQL.

``predictions.seq`` and ``feature_window.seq`` give arrival order (the sliding windows);
``ix_outcomes_arrival`` orders outcomes by arrival, so the live measures read the most
recent joined outcomes by index (``ORDER BY ... LIMIT``), however many are stored;
``unjoined_outcomes`` lists the outcomes still waiting for their prediction, so counting and
expiring them costs the waiting ones, not every outcome ever joined;
``feature_window.source`` is the application's ``topic/partition/offset``. A
``shadow_scores`` row is the challenger's score of an application, with the version whose
score was the official one (``champion_version``), so champion and challenger are compared
on the same applications. A ``personal_fields`` row is personal data: it exists only for a
prediction whose worker sent the applicant's fields (``SCORER_MONITOR_PERSONAL_FIELDS``),
for live fairness, and nothing else reads it.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()
predictions = sa.Table(
    "predictions", metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("application_id", sa.String(128), nullable=False, unique=True),
    sa.Column("model_version", sa.String(64), nullable=False),
    sa.Column("model_run_id", sa.String(64), nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("threshold", sa.Float, nullable=False),
)  # fmt: skip
personal_fields = sa.Table(
    "personal_fields", metadata,
    sa.Column("application_id", sa.String(128), primary_key=True),
    sa.Column("sex", sa.Integer, nullable=False),
    sa.Column("age", sa.Integer, nullable=False),
    sa.Column("marriage", sa.Integer, nullable=False),
    sa.Column("education", sa.Integer, nullable=False),
)  # fmt: skip
shadow_scores = sa.Table(
    "shadow_scores", metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("application_id", sa.String(128), nullable=False, unique=True),
    sa.Column("model_version", sa.String(64), nullable=False),
    sa.Column("model_run_id", sa.String(64), nullable=False),
    sa.Column("champion_version", sa.String(64), nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("threshold", sa.Float, nullable=False),
)  # fmt: skip
outcomes = sa.Table(
    "outcomes", metadata,
    sa.Column("application_id", sa.String(128), primary_key=True),
    sa.Column("defaulted", sa.Boolean, nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
)  # fmt: skip
sa.Index("ix_outcomes_arrival", outcomes.c.received_at, outcomes.c.application_id)
unjoined_outcomes = sa.Table(
    "unjoined_outcomes", metadata,
    sa.Column("application_id", sa.String(128), primary_key=True),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_unjoined_arrival", "received_at", "application_id"),
)  # fmt: skip
feature_window = sa.Table(
    "feature_window", metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(300), nullable=False, unique=True),
    sa.Column("vector", sa.Text, nullable=False),
)  # fmt: skip
alert_state = sa.Table(
    "alert_state", metadata,
    sa.Column("subject", sa.String(64), primary_key=True),
    sa.Column("above", sa.Boolean, nullable=False),
)  # fmt: skip
outbox = sa.Table(
    "outbox", metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("record", sa.Text, nullable=False),
)  # fmt: skip
outbox_offsets = sa.Table(
    "outbox_offsets", metadata,
    sa.Column("topic", sa.String(249), primary_key=True),
    sa.Column("partition", sa.Integer, primary_key=True),
    sa.Column("next_offset", sa.BigInteger, nullable=False),
)  # fmt: skip
