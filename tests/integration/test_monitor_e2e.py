"""The monitor on a real broker and a real SQLite file: a shifted stream alerts once, live
AUC is sklearn's on the same joined rows (the champion's, and the shadow challenger's on
the same applications), duplicates count once, bad outcomes are dead-lettered, a
restarted monitor keeps its joins and does not alert again, and a badly ranking, unfair
stream raises one live ROC-AUC alert and one alert per fairness gap it opens."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import closing
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from sklearn.metrics import roc_auc_score

from consumer.records import OutboundRecord
from contracts import FEATURE_COLUMNS, PERSONAL_FIELDS, TARGET_COLUMN
from contracts.alert import AlertKind, ModelAlert
from contracts.outcome import LoanOutcome
from contracts.profile import REFERENCE_PROFILE_ARTIFACT, ReferenceProfile
from contracts.topics import ERROR_TYPE_HEADER
from devstack import MonitorProcess, unique_name
from monitor.loop import Monitor
from monitor.measures import measure
from monitor.metrics import Metrics
from monitor.outbox import to_outbox
from monitor.settings import Settings
from monitor.store import Store
from monitor.transport import KafkaTransport
from tests.fixtures.kafka import TopicFactory
from tests.helpers.topics import byte_headers, publish, read_to_end
from training.profile import reference_profile

pytestmark = pytest.mark.integration

_RUN = "run-e2e"
_ROWS = 600
_DEADLINE_S = 180.0


@pytest.fixture
def settings(kafka_bootstrap_servers: str, new_topic: TopicFactory, tmp_path: Path) -> Settings:
    return Settings(
        kafka_bootstrap_servers=kafka_bootstrap_servers,
        group_id=unique_name("monitor"),
        transactional_id=unique_name("monitor-tx"),
        database_url=f"sqlite:///{tmp_path / 'monitor.db'}",
        predictions_topic=new_topic("mon-predictions"),
        shadow_scores_topic=new_topic("mon-shadow"),
        outcomes_topic=new_topic("mon-outcomes"),
        applications_topic=new_topic("mon-applications"),
        outcomes_dead_letter_topic=new_topic("mon-outcomes-dlq"),
        alerts_topic=new_topic("mon-alerts"),
        window_rows=_ROWS,
        min_window_rows=_ROWS // 2,
        batch_timeout_s=0.2,
        # Every batch measured: these streams are one small backlog whose shifted stretch
        # must alert; the cadence itself is tested in tests/unit/test_monitor_loop.py.
        measure_every_records=1,
        metrics_port=0,
    )


@pytest.fixture
def scores() -> np.ndarray:
    return np.random.default_rng(8).beta(2, 6, size=2 * _ROWS)


@pytest.fixture
def shuffled(feature_frame: pd.DataFrame) -> pd.DataFrame:
    """The dataset in random order: the profile and the stream come from one population."""
    return feature_frame.sample(frac=1.0, random_state=3)


@pytest.fixture
def profile(shuffled: pd.DataFrame) -> ReferenceProfile:
    scores = np.random.default_rng(1).beta(2, 6, 3_000)
    return reference_profile(shuffled.head(10_000), scores, validation_roc_auc=0.78)


def _application(application_id: str, row: pd.Series) -> bytes:
    fields = {
        n: int(row[n]) if float(row[n]).is_integer() else float(row[n]) for n in FEATURE_COLUMNS
    }
    return json.dumps({"application_id": application_id, **fields}).encode()


def _prediction(
    application_id: str, score: float, run_id: str = _RUN, personal: dict[str, int] | None = None
) -> bytes:
    return json.dumps({
        "application_id": application_id, "model_name": "m", "model_version": "1",
        "model_run_id": run_id, "default_probability": score, "predicted_default": score >= 0.3,
        "threshold": 0.3, "batch_size": 1, "batch_latency_ms": 1.0, "input_topic": "a",
        "input_partition": 0, "input_offset": 0, "worker_id": "w",
        "scored_at": "2026-11-27T12:00:00Z", "personal_fields": personal,
    }).encode()  # fmt: skip


def _shadow(application_id: str, score: float) -> bytes:
    return json.dumps({
        "application_id": application_id, "default_probability": score,
        "predicted_default": score >= 0.25, "threshold": 0.25, "model_name": "m",
        "model_version": "2", "model_run_id": "run-2", "champion_version": "1",
        "scored_at": "2026-11-27T12:00:00Z",
    }).encode()  # fmt: skip


def _outcome(application_id: str, defaulted: bool) -> tuple[bytes, bytes, None]:
    outcome = LoanOutcome(
        application_id=application_id, defaulted=defaulted, observed_on=date.today()
    )
    return application_id.encode(), outcome.model_dump_json().encode(), None


def _outcomes(
    ids: list[str], labels: np.ndarray, start: int, stop: int
) -> list[tuple[bytes, bytes, None]]:
    return [_outcome(ids[n], bool(labels[n])) for n in range(start, stop)]


def _run_until(monitor: Monitor, expected_messages: int) -> int:
    """Step the monitor until it has processed ``expected_messages`` records; how many it did."""
    seen, deadline = 0, time.monotonic() + _DEADLINE_S
    while seen < expected_messages:
        if time.monotonic() > deadline:
            pytest.fail(f"the monitor processed {seen} of {expected_messages} records in time")
        seen += monitor.step()
    return seen


def _start(settings: Settings, profile: ReferenceProfile) -> tuple[Monitor, KafkaTransport]:
    transport = KafkaTransport(settings)
    monitor = Monitor(
        settings, transport, Store(settings.database_url), lambda _run: profile, Metrics()
    )
    monitor.start()
    return monitor, transport


def test_drift_alerts_once_live_auc_is_sklearn_s_and_a_restart_keeps_the_joins(
    settings: Settings,
    profile: ReferenceProfile,
    scores: np.ndarray,
    shuffled: pd.DataFrame,
) -> None:
    rows = shuffled.iloc[20_000 : 20_000 + 2 * _ROWS].copy()
    rows.iloc[_ROWS:, rows.columns.get_loc("limit_bal")] *= 4  # the second half drifts
    ids = [f"app-{n}" for n in range(len(rows))]
    labels = rows[TARGET_COLUMN].to_numpy() == 1
    bootstrap = settings.kafka_bootstrap_servers
    applications = [
        (i.encode(), _application(i, r), None)
        for i, (_, r) in zip(ids, rows.iterrows(), strict=True)
    ]
    predictions = [
        (i.encode(), _prediction(i, float(s)), None) for i, s in zip(ids, scores, strict=True)
    ]
    publish(bootstrap, settings.applications_topic, applications)
    publish(bootstrap, settings.predictions_topic, predictions)
    shadowed = 300  # the challenger shadowed the first 300 applications
    challenger = np.random.default_rng(9).beta(2, 5, size=shadowed)
    publish(bootstrap, settings.shadow_scores_topic,
            [(ids[n].encode(), _shadow(ids[n], float(challenger[n])), None)
             for n in range(shadowed)])  # fmt: skip
    labelled = 400
    duplicate = _outcome(ids[0], not labels[0])  # a second outcome for app-0: ignored
    malformed = (b"app-x", b'{"application_id": "app-x", "defaulted": "maybe"}', None)
    publish(
        bootstrap,
        settings.outcomes_topic,
        [*_outcomes(ids, labels, 0, labelled), duplicate, malformed],
    )

    monitor, transport = _start(settings, profile)
    _run_until(monitor, 2 * len(rows) + shadowed + labelled + 2)
    transport.close()

    _, performance, _, paired = measure(
        Store(settings.database_url), lambda _run: profile, settings
    )
    assert performance.rows == labelled
    assert performance.roc_auc == pytest.approx(
        roc_auc_score(labels[:labelled], scores[:labelled]), abs=1e-12
    )
    assert paired is not None
    assert paired.rows == shadowed  # labelled and shadowed: the same 300 applications
    assert paired.champion.roc_auc == pytest.approx(
        roc_auc_score(labels[:shadowed], scores[:shadowed]), abs=1e-12
    )
    assert paired.challenger.roc_auc == pytest.approx(
        roc_auc_score(labels[:shadowed], challenger), abs=1e-12
    )
    written = read_to_end(bootstrap, [settings.alerts_topic, settings.outcomes_dead_letter_topic],
                          group_id=unique_name("read-monitor"))  # fmt: skip
    alerts = [
        ModelAlert.model_validate_json(m.value() or b"") for m in written[settings.alerts_topic]
    ]
    assert [a.subject for a in alerts].count("limit_bal") == 1
    assert len({a.subject for a in alerts}) == len(alerts)
    (letter,) = written[settings.outcomes_dead_letter_topic]
    assert byte_headers(letter)[ERROR_TYPE_HEADER] == b"validation"
    assert letter.value() == malformed[1]

    # A new incarnation, same database and group: earlier joins stay, later outcomes add up.
    more = _outcomes(ids, labels, labelled, 500)
    publish(bootstrap, settings.outcomes_topic, more)
    monitor, transport = _start(settings, profile)
    assert _run_until(monitor, len(more)) == len(more)  # resumed after the committed batches
    transport.close()

    _, performance, _, _ = measure(Store(settings.database_url), lambda _run: profile, settings)
    assert performance.rows == 500
    assert performance.roc_auc == pytest.approx(
        roc_auc_score(labels[:500], scores[:500]), abs=1e-12
    )
    again = read_to_end(bootstrap, [settings.alerts_topic], group_id=unique_name("read-monitor"))
    subjects = [ModelAlert.model_validate_json(m.value() or b"").subject
                for m in again[settings.alerts_topic]]  # fmt: skip
    assert len(set(subjects)) == len(subjects)  # no alert repeated by the restart
    # Random scores rank at chance: once 500 outcomes joined, live ROC-AUC alerts, once.
    assert subjects == [*(a.subject for a in alerts), "roc_auc"]


def _count(database: Path, table: str) -> int:
    with closing(sqlite3.connect(database, timeout=30)) as db:
        try:
            return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608
        except sqlite3.OperationalError:  # not created yet
            return 0


def _wait_for(condition: Callable[[], bool], what: str, monitor: MonitorProcess) -> None:
    deadline = time.monotonic() + _DEADLINE_S
    while not condition():
        if not monitor.running:
            pytest.fail(f"the monitor exited ({monitor.process.returncode}) before {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"not {what} in {_DEADLINE_S:.0f}s")
        time.sleep(0.1)  # polling a condition with a deadline, not waiting for readiness


def test_kill_9_mid_stream_loses_no_join_and_double_counts_nothing(
    settings: Settings,
    profile: ReferenceProfile,
    scores: np.ndarray,
    shuffled: pd.DataFrame,
    mlflow_tracking_uri: str,
    tmp_path: Path,
) -> None:
    client = MlflowClient(mlflow_tracking_uri)
    run = client.create_run(client.create_experiment(unique_name("monitor-profile")))
    client.log_text(run.info.run_id, profile.model_dump_json(), REFERENCE_PROFILE_ARTIFACT)
    rows = shuffled.iloc[20_000 : 20_000 + 2 * _ROWS].copy()
    rows.iloc[_ROWS:, rows.columns.get_loc("limit_bal")] *= 4
    ids = [f"app-{n}" for n in range(len(rows))]
    labels = rows[TARGET_COLUMN].to_numpy() == 1
    bootstrap = settings.kafka_bootstrap_servers
    publish(
        bootstrap,
        settings.applications_topic,
        [
            (i.encode(), _application(i, r), None)
            for i, (_, r) in zip(ids, rows.iterrows(), strict=True)
        ],
    )
    publish(
        bootstrap,
        settings.predictions_topic,
        [
            (i.encode(), _prediction(i, float(s), run.info.run_id), None)
            for i, s in zip(ids, scores, strict=True)
        ],
    )
    malformed = (b"app-x", b"{", None)
    publish(bootstrap, settings.outcomes_topic,
            [*_outcomes(ids, labels, 0, 1_000), _outcome(ids[1], True), malformed])  # fmt: skip
    # The registry account, if any, came from MLFLOW_TRACKING_USERNAME/_PASSWORD.
    settings = settings.model_copy(
        update={"batch_max_messages": 40, "tracking_uri": mlflow_tracking_uri}
    )
    database = tmp_path / "monitor.db"
    log = tmp_path / "monitor.log"

    first = MonitorProcess(settings, log)
    try:
        _wait_for(lambda: _count(database, "outcomes") >= 100, "joining mid-stream", first)
    finally:
        first.kill()  # SIGKILL: no handler runs, the batch in hand is cut wherever it is
    assert not first.caught_up(), "killed too late to prove anything"
    second = MonitorProcess(settings, log)
    try:
        _wait_for(second.caught_up, "caught up after the restart", second)
    finally:
        assert second.terminate() == 0, second.log_tail()

    _, performance, _, _ = measure(Store(settings.database_url), lambda _run: profile, settings)
    assert performance.rows == 1_000
    assert performance.roc_auc == pytest.approx(
        roc_auc_score(labels[:1_000], scores[:1_000]), abs=1e-12
    )
    written = read_to_end(bootstrap, [settings.alerts_topic, settings.outcomes_dead_letter_topic],
                          group_id=unique_name("read-monitor"))  # fmt: skip
    assert len(written[settings.outcomes_dead_letter_topic]) == 1
    subjects = [ModelAlert.model_validate_json(m.value() or b"").subject
                for m in written[settings.alerts_topic]]  # fmt: skip
    assert subjects.count("limit_bal") == 1
    assert len(set(subjects)) == len(subjects)


# A group member that died without leaving: the group's next join waits for its session to
# expire, longer than the monitor's 10 s Kafka operation timeout.
# It gives up after _DEADLINE_S unassigned: the test then reads its end, not "assigned".
_DEAD_MEMBER = """
import sys, time
from confluent_kafka import Consumer
consumer = Consumer({"bootstrap.servers": sys.argv[1], "group.id": sys.argv[2],
                     "session.timeout.ms": 25000})
consumer.subscribe(sys.argv[4:], on_assign=lambda *_: print("assigned", flush=True))
deadline = time.monotonic() + float(sys.argv[3])
while time.monotonic() < deadline:
    consumer.poll(0.2)
"""


def _killed_member(settings: Settings) -> None:
    """Join the monitor's group as a member that is then killed (SIGKILL), never leaving."""
    topics = settings.topics()
    inputs = [topics.predictions, topics.shadow_scores, topics.outcomes, topics.applications]
    member = subprocess.Popen(
        [sys.executable, "-c", _DEAD_MEMBER, settings.kafka_bootstrap_servers,
         settings.group_id, str(_DEADLINE_S), *inputs],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert member.stdout is not None
        assert member.stdout.readline() == "assigned\n", "the member never joined the group"
    finally:
        member.kill()
        member.wait()


def test_a_restart_finishes_the_killed_incarnation_s_batch_while_it_still_holds_the_group(
    settings: Settings, profile: ReferenceProfile, tmp_path: Path
) -> None:
    """kill -9 between the database commit and the Kafka commit leaves the outbox full
    and the dead incarnation in the group until its session expires: the restart writes
    the outbox without waiting for the group, then resumes right after the batch.

    A join in flight holds the coordinator's other requests back: a recovery that read
    the committed offsets after subscribing timed out when the join went first (CI,
    2026-12-04), so the monitor recovers before it subscribes.
    """
    bootstrap = settings.kafka_bootstrap_servers
    ids = ["app-0", "app-1", "app-2"]
    publish(bootstrap, settings.outcomes_topic, _outcomes(ids, np.array([True] * 3), 0, 3))
    letter = OutboundRecord(settings.outcomes_dead_letter_topic, b"app-x", b"{", [])
    with Store(settings.database_url).transaction() as tx:  # the batch of app-0 and app-1
        tx.put_outbox([to_outbox(letter)], {(settings.outcomes_topic, 0): 2})
    _killed_member(settings)

    monitor, transport = _start(settings, profile)
    try:
        with Store(settings.database_url).transaction() as tx:
            assert tx.pending_outbox() == ([], {})
        written = read_to_end(bootstrap, [settings.outcomes_dead_letter_topic],
                              group_id=unique_name("read-monitor"))  # fmt: skip
        assert [m.value() for m in written[settings.outcomes_dead_letter_topic]] == [b"{"]
        assert _run_until(monitor, 1) == 1
    finally:
        transport.close()
    assert _count(tmp_path / "monitor.db", "unjoined_outcomes") == 1  # app-2 alone


def test_a_badly_ranking_unfair_stream_raises_one_auc_alert_and_one_per_fairness_gap(
    settings: Settings, profile: ReferenceProfile, shuffled: pd.DataFrame
) -> None:
    settings = settings.model_copy(update={"min_joined_rows": 200, "batch_max_messages": 100})
    rows = shuffled.iloc[25_000:25_400]
    men = rows["sex"].to_numpy() == 1
    rng = np.random.default_rng(13)
    # Men are flagged (threshold 0.3), women never; the lowest scores default: AUC near 0.
    scores = np.where(men, rng.uniform(0.6, 0.9, len(rows)), rng.uniform(0.05, 0.25, len(rows)))
    labels = scores < np.quantile(scores, 0.3)
    ids = [f"app-{n}" for n in range(len(rows))]
    personal = rows[sorted(PERSONAL_FIELDS)].astype(int).to_dict("records")
    bootstrap = settings.kafka_bootstrap_servers
    publish(bootstrap, settings.predictions_topic,
            [(i.encode(), _prediction(i, float(s), personal=p), None)
             for i, s, p in zip(ids, scores, personal, strict=True)])  # fmt: skip
    publish(bootstrap, settings.outcomes_topic, _outcomes(ids, labels, 0, len(ids)))

    monitor, transport = _start(settings, profile)
    _run_until(monitor, 2 * len(ids))
    transport.close()

    written = read_to_end(bootstrap, [settings.alerts_topic], group_id=unique_name("read-mon"))
    alerts = [
        ModelAlert.model_validate_json(m.value() or b"") for m in written[settings.alerts_topic]
    ]
    by_kind = {kind: [a.subject for a in alerts if a.kind is kind] for kind in AlertKind}
    assert by_kind[AlertKind.ROC_AUC] == ["roc_auc"]
    assert by_kind[AlertKind.PSI] == []  # no applications: nothing to drift
    assert "demographic_parity_difference_sex" in by_kind[AlertKind.FAIRNESS]
    assert len({a.subject for a in alerts}) == len(alerts)  # one per crossing, not per batch
    (auc,) = (a for a in alerts if a.kind is AlertKind.ROC_AUC)
    assert auc.limit == pytest.approx(0.78 - settings.auc_margin)  # the profile's validation
    assert auc.value < auc.limit
    assert all(a.value > settings.fairness_limit for a in alerts if a.kind is AlertKind.FAIRNESS)
