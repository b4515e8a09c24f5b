"""The monitor's loop on a real SQLite store and a fake Kafka: joins, duplicates, expiry,
alerts, and the recovery of a batch whose Kafka transaction never committed."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from pydantic import ValidationError
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from consumer.records import OutboundRecord
from contracts import FEATURE_COLUMNS, LoanApplication
from contracts.alert import AlertKind, ModelAlert
from contracts.outcome import LoanOutcome
from contracts.profile import ReferenceProfile
from contracts.topics import ERROR_MESSAGE_HEADER, ERROR_TYPE_HEADER
from monitor.cli import app
from monitor.loop import Monitor
from monitor.measures import compare, measure
from monitor.metrics import Metrics
from monitor.records import sort_batch
from monitor.settings import Settings
from monitor.store import Store
from training.evaluation import CostMatrix, expected_cost
from training.profile import reference_profile

_NOW = datetime(2026, 11, 27, 12, tzinfo=UTC)
_RUN = "run-1"


@dataclass
class FakeMessage:
    _topic: str
    _offset: int
    _value: bytes | None
    _key: bytes | None = None

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes | None:
        return self._value

    def key(self) -> bytes | None:
        return self._key

    def headers(self) -> list[tuple[str, bytes]]:
        return []


class KilledError(Exception):
    """Stands for kill -9 between the database commit and the Kafka commit."""


@dataclass
class FakeKafka:
    """Batches to hand out; transactions that commit records and offsets together."""

    batches: list[list[FakeMessage]] = field(default_factory=list)
    written: list[OutboundRecord] = field(default_factory=list)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    die_on_write: bool = False
    joining: bool = False

    def start(self) -> None:
        self.joining = False  # a new incarnation

    def subscribe(self) -> None:
        self.joining = True

    def consume(self, max_messages: int, timeout_s: float) -> list[FakeMessage]:
        return self.batches.pop(0) if self.batches else []

    def committed(self, partitions: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int]:
        if self.joining:  # a real join holds this request back until the group settles
            raise TimeoutError("offset read behind the group's join")
        return {key: self.offsets.get(key, -1) for key in partitions}

    def write(
        self, records: Iterable[OutboundRecord], offsets: Mapping[tuple[str, int], int]
    ) -> None:
        if self.die_on_write:
            raise KilledError
        self.written.extend(records)
        self.offsets.update(offsets)

    def abort(self) -> None: ...

    def close(self) -> None: ...


class Topics:
    def __init__(self) -> None:
        self.offsets: dict[str, int] = {}

    def message(self, topic: str, value: bytes | None) -> FakeMessage:
        offset = self.offsets.get(topic, 0)
        self.offsets[topic] = offset + 1
        return FakeMessage(topic, offset, value, b"k")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'monitor.db'}",
        pending_outcome_days=90,
        window_rows=400,
        min_window_rows=200,
        metrics_port=0,
    )


@pytest.fixture
def profile(feature_frame: pd.DataFrame) -> ReferenceProfile:
    scores = np.random.default_rng(1).beta(2, 6, size=3_000)
    return reference_profile(feature_frame.head(10_000), scores, validation_roc_auc=0.78)


def _monitor(
    settings: Settings, kafka: FakeKafka, profile: ReferenceProfile, at: datetime = _NOW
) -> Monitor:
    store = Store(settings.database_url)
    return Monitor(settings, kafka, store, lambda _run: profile, Metrics(), now=lambda: at)  # type: ignore[arg-type]


def _prediction(application_id: str, score: float, personal: dict[str, int] | None = None) -> bytes:
    return json.dumps({
        "application_id": application_id, "model_name": "m", "model_version": "1",
        "model_run_id": _RUN, "default_probability": score, "predicted_default": score >= 0.5,
        "threshold": 0.5, "batch_size": 1, "batch_latency_ms": 1.0, "input_topic": "a",
        "input_partition": 0, "input_offset": 0, "worker_id": "w",
        "scored_at": "2026-11-27T12:00:00Z", "personal_fields": personal,
    }).encode()  # fmt: skip


def _outcome(application_id: str, defaulted: bool) -> bytes:
    return (
        LoanOutcome(
            application_id=application_id, defaulted=defaulted, observed_on=date(2026, 11, 27)
        )
        .model_dump_json()
        .encode()
    )


def _application(row: pd.Series, application_id: str) -> bytes:
    fields = {
        name: (int(row[name]) if float(row[name]).is_integer() else float(row[name]))
        for name in FEATURE_COLUMNS
    }
    return json.dumps({"application_id": application_id, **fields}).encode()


def _drain(monitor: Monitor) -> None:
    while monitor.step():
        pass


def test_outcomes_join_whenever_their_prediction_arrives_and_duplicates_count_once(
    settings: Settings, profile: ReferenceProfile
) -> None:
    topics, kafka = Topics(), FakeKafka()
    kafka.batches = [
        [topics.message("loan-outcomes", _outcome("a", True))],  # before its prediction
        [topics.message("loan-predictions", _prediction("a", 0.9)),
         topics.message("loan-predictions", _prediction("b", 0.2)),
         topics.message("loan-outcomes", _outcome("b", False))],
        [topics.message("loan-outcomes", _outcome("b", True))],  # a duplicate, even if it differs
        [topics.message("loan-outcomes", _outcome("c", False))],  # never predicted (yet)
    ]  # fmt: skip
    monitor = _monitor(settings, kafka, profile)

    _drain(monitor)

    _, performance, _, _ = measure(Store(settings.database_url), lambda _run: profile, settings)
    assert performance.rows == 2
    assert performance.roc_auc == 1.0
    metrics = monitor._metrics
    assert metrics.duplicates._value.get() == 1
    assert metrics.pending._value.get() == 1
    assert metrics.fairness_available._value.get() == 0  # no personal fields: no gap at all
    assert list(metrics.fairness.collect()[0].samples) == []
    assert kafka.offsets == {("loan-outcomes", 0): 4, ("loan-predictions", 0): 2}


def test_of_the_worker_s_records_only_the_fields_the_monitor_stores_are_validated(
    settings: Settings,
) -> None:
    topics = Topics()
    late_clock = json.loads(_prediction("a", 0.3)) | {"scored_at": "not a time"}
    messages = [
        topics.message("loan-predictions", json.dumps(late_clock).encode()),
        topics.message("loan-predictions", _prediction("b", 1.5)),  # not a probability
    ]

    batch = sort_batch(messages, settings.topics(), max_value_bytes=65_536, now=_NOW)  # type: ignore[arg-type]

    assert [row["application_id"] for row in batch.predictions] == ["a"]
    assert batch.unreadable_predictions == 1


def test_an_application_enters_the_drift_window_only_with_every_feature_as_the_contract_says(
    settings: Settings,
) -> None:
    valid = {name: 1 for name in FEATURE_COLUMNS} | {"limit_bal": 20_000.0, "age": 30}
    faults = [
        {"limit_bal": "20000"}, {"limit_bal": 0}, {"age": 17}, {"pay_0": 1.5},
        {"bill_amt1": 1e300}, {"sex": None},
    ]  # fmt: skip
    topics = Topics()
    good = topics.message(
        "loan-applications", json.dumps({"application_id": "a", **valid}).encode()
    )
    # Its id and unknown fields are the worker's to judge: the features alone are read.
    unknown = valid | {"application_id": "", "note": "x"}
    odd = topics.message("loan-applications", json.dumps(unknown).encode())
    wrong = [json.dumps({"application_id": "b", **valid, **fault}).encode() for fault in faults]
    bad = [topics.message("loan-applications", value) for value in wrong]

    batch = sort_batch([good, odd, *bad], settings.topics(), max_value_bytes=65_536, now=_NOW)  # type: ignore[arg-type]

    expected = LoanApplication.model_validate({"application_id": "a", **valid}).features()
    assert batch.features == {"loan-applications/0/0": expected, "loan-applications/0/1": expected}
    for message in bad:  # each fault breaks the contract itself too
        with pytest.raises(ValidationError):
            LoanApplication.model_validate_json(message.value() or b"")


def test_a_pending_outcome_expires_after_the_documented_delay(
    settings: Settings, profile: ReferenceProfile
) -> None:
    topics, kafka = Topics(), FakeKafka()
    kafka.batches = [[topics.message("loan-outcomes", _outcome("x", True))]]
    _drain(_monitor(settings, kafka, profile))
    later = _monitor(settings, kafka, profile, at=_NOW + timedelta(days=91))
    kafka.batches = [[topics.message("loan-predictions", _prediction("y", 0.1))]]

    later.step()

    assert later._metrics.expired._value.get() == 1
    assert later._metrics.pending._value.get() == 0


def test_a_malformed_outcome_is_dead_lettered_with_the_worker_s_headers(
    settings: Settings, profile: ReferenceProfile
) -> None:
    topics, kafka = Topics(), FakeKafka()
    not_a_flag = _outcome("b", True).replace(b"true", b"1")
    kafka.batches = [
        [topics.message("loan-outcomes", v) for v in (b'{"application_id": "a"}', not_a_flag)]
    ]

    _drain(_monitor(settings, kafka, profile))

    missing, wrong = kafka.written
    assert missing.topic == wrong.topic == settings.outcomes_dead_letter_topic
    assert missing.value == b'{"application_id": "a"}'
    assert dict(missing.headers)[ERROR_TYPE_HEADER] == b"validation"
    assert dict(wrong.headers)[ERROR_MESSAGE_HEADER].startswith(b"defaulted: ")


def _stream(
    frame: pd.DataFrame, topics: Topics, prefix: str, shift: bool
) -> list[list[FakeMessage]]:
    batches = []
    for start in range(0, len(frame), 100):
        batch = []
        for offset, (_, row) in enumerate(frame.iloc[start : start + 100].iterrows()):
            app_id = f"{prefix}-{start + offset}"
            if shift:
                row = row.copy()
                row["limit_bal"] = row["limit_bal"] * 4
            batch.append(topics.message("loan-applications", _application(row, app_id)))
            batch.append(topics.message("loan-predictions", _prediction(app_id, 0.2)))
        batches.append(batch)
    return batches


def test_a_shifted_feature_raises_exactly_one_alert(
    settings: Settings, profile: ReferenceProfile, feature_frame: pd.DataFrame
) -> None:
    topics, kafka = Topics(), FakeKafka()
    kafka.batches = _stream(feature_frame.iloc[10_000:10_600], topics, "stable", shift=False)
    kafka.batches += _stream(feature_frame.iloc[11_000:12_000], topics, "shifted", shift=True)
    monitor = _monitor(settings, kafka, profile)

    _drain(monitor)

    alerts = [ModelAlert.model_validate_json(r.value or b"") for r in kafka.written]
    subjects = [a.subject for a in alerts]
    assert "limit_bal" in subjects
    assert len(subjects) == len(set(subjects))  # one per crossing, however many batches follow
    assert all(a.value > settings.psi_limit for a in alerts)


def test_a_backlog_is_measured_once_per_measure_every_records_and_at_its_end(
    settings: Settings, profile: ReferenceProfile, feature_frame: pd.DataFrame
) -> None:
    settings = settings.model_copy(
        update={"batch_max_messages": 200, "measure_every_records": 1_000}
    )
    topics, kafka = Topics(), FakeKafka()
    kafka.batches = _stream(feature_frame.iloc[10_000:10_600], topics, "stable", shift=False)
    kafka.batches += _stream(feature_frame.iloc[11_000:12_000], topics, "shifted", shift=True)
    kafka.batches[-1] = kafka.batches[-1][:-2]  # full batches of 200, then one that empties it
    monitor = _monitor(settings, kafka, profile)
    psi = monitor._metrics.registry.get_sample_value

    for _ in range(4):
        monitor.step()
    assert psi("monitor_psi", {"subject": "score"}) is None  # 800 records: not measured yet
    monitor.step()
    assert psi("monitor_psi", {"subject": "score"}) is not None  # 1,000
    _drain(monitor)

    drift, *_ = measure(Store(settings.database_url), lambda _run: profile, settings)
    assert drift is not None
    assert psi("monitor_psi", {"subject": "limit_bal"}) == drift.psi["limit_bal"]
    subjects = [ModelAlert.model_validate_json(r.value or b"").subject for r in kafka.written]
    assert subjects.count("limit_bal") == 1


def test_a_batch_killed_between_database_and_kafka_is_finished_once_at_restart(
    settings: Settings, profile: ReferenceProfile
) -> None:
    topics, kafka = Topics(), FakeKafka(die_on_write=True)
    kafka.batches = [[topics.message("loan-outcomes", b"not json"),
                      topics.message("loan-predictions", _prediction("a", 0.7))]]  # fmt: skip
    with pytest.raises(KilledError):
        _monitor(settings, kafka, profile).step()
    assert kafka.written == []

    kafka.die_on_write = False
    restarted = _monitor(settings, kafka, profile)
    restarted.run(_stopped())
    restarted.run(_stopped())  # a second restart finds nothing left to finish

    assert [r.topic for r in kafka.written] == [settings.outcomes_dead_letter_topic]
    assert kafka.offsets == {("loan-outcomes", 0): 1, ("loan-predictions", 0): 1}


def _stopped() -> threading.Event:
    event = threading.Event()
    event.set()
    return event


def test_report_renders_the_joined_outcomes_as_a_png(
    settings: Settings, profile: ReferenceProfile, tmp_path: Path
) -> None:
    topics, kafka = Topics(), FakeKafka()
    kafka.batches = [
        [topics.message("loan-predictions", _prediction(f"a{n}", n / 40)) for n in range(40)],
        [topics.message("loan-outcomes", _outcome(f"a{n}", n % 3 == 0)) for n in range(40)],
    ]
    _drain(_monitor(settings, kafka, profile))
    output = tmp_path / "report.png"

    result = CliRunner().invoke(
        app,
        ["report", "--output", str(output)],
        env={"MONITOR_DATABASE_URL": settings.database_url},
    )

    assert result.exit_code == 0, result.output
    assert "40 joined outcomes" in result.output
    assert "live fairness unavailable" in result.output
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _shadow(application_id: str, score: float, version: str = "2") -> bytes:
    return json.dumps({
        "application_id": application_id, "default_probability": score,
        "predicted_default": score >= 0.4, "threshold": 0.4, "model_name": "m",
        "model_version": version, "model_run_id": f"run-{version}", "champion_version": "1",
        "scored_at": "2026-11-27T12:00:00Z",
    }).encode()  # fmt: skip


def test_champion_and_challenger_are_measured_on_the_same_applications(
    settings: Settings, profile: ReferenceProfile, tmp_path: Path
) -> None:
    rng = np.random.default_rng(5)
    champion, challenger = rng.uniform(size=30), rng.uniform(size=30)
    labels = rng.uniform(size=30) < 0.4
    official, shadow = champion.tolist(), challenger.tolist()
    topics, kafka = Topics(), FakeKafka()
    kafka.batches = [
        # An older challenger (version 3) shadowed a few; the newest (2) is compared.
        [topics.message("loan-scores.shadow", _shadow(f"a{n}", 0.5, "3")) for n in (26, 27)],
        [topics.message("loan-predictions", _prediction(f"a{n}", official[n])) for n in range(30)],
        [topics.message("loan-scores.shadow", _shadow(f"a{n}", shadow[n])) for n in range(24)],
        [topics.message("loan-scores.shadow", _shadow("a0", 0.99))],  # a replay: ignored
        [topics.message("loan-outcomes", _outcome(f"a{n}", bool(labels[n]))) for n in range(1, 30)],
    ]  # fmt: skip
    monitor = _monitor(settings, kafka, profile)
    _drain(monitor)

    _, performance, _, comparison = measure(
        Store(settings.database_url), lambda _: profile, settings
    )
    assert performance.rows == 29
    assert comparison is not None
    assert (comparison.champion_version, comparison.challenger_version) == ("1", "2")
    paired = slice(1, 24)  # shadowed by version 2 and labelled
    costs = CostMatrix(false_negative=settings.cost_fn, false_positive=settings.cost_fp)
    assert comparison.rows == 23
    assert comparison.champion.roc_auc == roc_auc_score(labels[paired], champion[paired])
    assert comparison.challenger.roc_auc == roc_auc_score(labels[paired], challenger[paired])
    assert comparison.challenger.expected_cost == pytest.approx(
        expected_cost(labels[paired], challenger[paired] >= 0.4, costs)
    )
    assert comparison.champion.expected_cost == pytest.approx(
        expected_cost(labels[paired], champion[paired] >= 0.5, costs)
    )
    metrics = monitor._metrics
    assert metrics.paired._value.get() == 23
    gauge = metrics.paired_auc.labels(role="challenger")._value.get()
    assert gauge == comparison.challenger.roc_auc

    output = tmp_path / "report.png"
    result = CliRunner().invoke(
        app,
        ["report", "--output", str(output)],
        env={"MONITOR_DATABASE_URL": settings.database_url},
    )
    assert result.exit_code == 0, result.output
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_live_measures_count_only_the_most_recent_joined_outcomes(
    settings: Settings, profile: ReferenceProfile
) -> None:
    settings = settings.model_copy(update={"performance_window_rows": 100})
    scores = np.linspace(0.01, 0.99, 100)
    topics, kafka = Topics(), FakeKafka()

    def labelled(prefix: str, defaulted: np.ndarray) -> list[FakeMessage]:
        return [
            *(topics.message("loan-predictions", _prediction(f"{prefix}{n}", float(scores[n])))
              for n in range(100)),
            *(topics.message("loan-scores.shadow", _shadow(f"{prefix}{n}", float(scores[n])))
              for n in range(100)),
            *(topics.message("loan-outcomes", _outcome(f"{prefix}{n}", bool(defaulted[n])))
              for n in range(100)),
        ]  # fmt: skip

    # The old outcomes rank perfectly wrong, the new ones perfectly right. The old ids sort
    # after the new ones: the window follows arrival, not the id.
    kafka.batches = [labelled("z-old-", scores < 0.5)]
    _drain(_monitor(settings, kafka, profile))
    kafka.batches = [labelled("a-new-", scores >= 0.5)]
    monitor = _monitor(settings, kafka, profile, at=_NOW + timedelta(minutes=1))
    _drain(monitor)

    _, performance, _, comparison = measure(
        Store(settings.database_url), lambda _: profile, settings
    )
    assert (performance.rows, performance.roc_auc) == (100, 1.0)
    assert monitor._metrics.joined._value.get() == 100
    assert monitor._metrics.roc_auc._value.get() == 1.0
    assert comparison is not None
    assert (comparison.rows, comparison.challenger.roc_auc) == (100, 1.0)
    with Store(settings.database_url).transaction() as tx:  # promote's evidence: all of it
        everything = compare(tx, CostMatrix(5, 1), "1", "2")
    assert everything.rows == 200
    assert everything.champion.roc_auc == pytest.approx(0.5)
    # The live window (performance, fairness and the shadow comparison's pairs) is read
    # once, by the arrival index, however many outcomes are stored: no scan of the
    # history, no sort of it.
    store, reads = Store(settings.database_url), []
    sa.event.listen(store._engine, "before_cursor_execute", lambda *call: reads.append(call[2:4]))
    measure(store, lambda _: profile, settings)
    windows = [(sql, params) for sql, params in reads if "ORDER BY outcomes.received_at" in sql]
    with store.transaction() as tx:
        plans = [
            [row[3] for row in tx._db.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params)]
            for sql, params in windows
        ]
    assert len(plans) == 1
    for plan in plans:
        assert plan[0] == "SCAN outcomes USING INDEX ix_outcomes_arrival", plan
        assert not any("TEMP B-TREE" in step for step in plan), plan


def test_live_fairness_is_measured_where_the_worker_sent_personal_fields(
    settings: Settings, profile: ReferenceProfile, tmp_path: Path
) -> None:
    rng = np.random.default_rng(11)
    topics, kafka = Topics(), FakeKafka()
    predictions, outcomes = [], []
    for n in range(400):
        sex = 1 + n % 2
        personal = {"sex": sex, "age": 20 + n % 50, "marriage": 1, "education": 2}
        score = 0.9 if sex == 1 else 0.1  # men are flagged, women never
        predictions.append(
            topics.message(
                "loan-predictions", _prediction(f"a{n}", score, personal if n < 300 else None)
            )
        )
        outcomes.append(topics.message("loan-outcomes", _outcome(f"a{n}", rng.uniform() < 0.3)))
    kafka.batches = [predictions, outcomes]  # fmt: skip
    monitor = _monitor(settings, kafka, profile)

    _drain(monitor)

    metrics = monitor._metrics
    assert metrics.fairness_available._value.get() == 1
    assert metrics.fairness_rows._value.get() == 300
    parity = metrics.fairness.labels(metric="demographic_parity_difference_sex")._value.get()
    assert parity == 1.0
    with Store(settings.database_url).transaction() as tx:  # stored only where sent
        assert tx.joined(1_000).personal["sex"].notna().sum() == 300
    output = tmp_path / "report.png"
    result = CliRunner().invoke(
        app, ["report", "--output", str(output)],
        env={"MONITOR_DATABASE_URL": settings.database_url},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "demographic_parity_difference_sex 1.000" in result.output
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_inverted_outcomes_raise_exactly_one_auc_alert(
    settings: Settings, profile: ReferenceProfile
) -> None:
    scores = np.random.default_rng(12).uniform(size=900)
    topics, kafka = Topics(), FakeKafka()
    kafka.batches = [
        [topics.message("loan-predictions", _prediction(f"a{n}", float(scores[n])))
         for n in range(900)],
        # Outcomes in batches of 100: the worse the model, the more batches see it.
        *([topics.message("loan-outcomes", _outcome(f"a{n}", bool(scores[n] < 0.3)))
           for n in range(start, start + 100)] for start in range(0, 900, 100)),
    ]  # fmt: skip

    _drain(_monitor(settings, kafka, profile))

    alerts = [ModelAlert.model_validate_json(r.value or b"") for r in kafka.written]
    (alert,) = alerts
    assert (alert.kind, alert.subject) == (AlertKind.ROC_AUC, "roc_auc")
    assert alert.value < 0.1
    assert alert.limit == pytest.approx(0.78 - settings.auc_margin)
    assert alert.window_rows == settings.min_joined_rows
    assert alert.model_run_id == _RUN


def test_a_database_from_before_the_waiting_list_keeps_its_waiting_outcomes(
    settings: Settings, profile: ReferenceProfile
) -> None:
    topics, kafka = Topics(), FakeKafka()
    kafka.batches = [[topics.message("loan-outcomes", _outcome("early", True)),
                      topics.message("loan-outcomes", _outcome("joined", False)),
                      topics.message("loan-predictions", _prediction("joined", 0.2))]]  # fmt: skip
    _drain(_monitor(settings, kafka, profile))
    with Store(settings.database_url).transaction() as tx:  # as an older monitor left it
        tx._db.execute(sa.text("DROP TABLE unjoined_outcomes"))

    kafka.batches = [[topics.message("loan-predictions", _prediction("other", 0.3))]]
    reopened = _monitor(settings, kafka, profile)
    _drain(reopened)
    assert reopened._metrics.pending._value.get() == 1  # "early" waits; "joined" does not

    kafka.batches = [[topics.message("loan-predictions", _prediction("early", 0.8))]]
    _drain(reopened)
    assert reopened._metrics.pending._value.get() == 0
    _, performance, _, _ = measure(Store(settings.database_url), lambda _: profile, settings)
    assert performance.rows == 2


def test_waiting_outcomes_beyond_the_bound_are_dropped_oldest_first(
    settings: Settings, profile: ReferenceProfile
) -> None:
    settings = settings.model_copy(update={"max_pending_outcomes": 2})
    topics, kafka = Topics(), FakeKafka()
    for minute, application_id in enumerate(("oldest", "middle", "newest")):
        kafka.batches = [[topics.message("loan-outcomes", _outcome(application_id, True))]]
        monitor = _monitor(settings, kafka, profile, at=_NOW + timedelta(minutes=minute))
        _drain(monitor)

    assert monitor._metrics.expired._value.get() == 1
    assert monitor._metrics.pending._value.get() == 2
    kafka.batches = [[topics.message("loan-predictions", _prediction(i, 0.5))
                      for i in ("oldest", "middle", "newest")]]  # fmt: skip
    _drain(monitor)
    _, performance, _, _ = measure(Store(settings.database_url), lambda _: profile, settings)
    assert performance.rows == 2  # "oldest" was dropped: it never joins
