"""The producer against a real broker: publish the real CSV, follow committed scores, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import pytest
from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition

from contracts import TARGET_COLUMN, LoanApplication
from contracts.outcome import LoanOutcome
from contracts.score import LoanScore
from contracts.topics import CORRELATION_ID_HEADER
from devstack import ROOT, unique_name
from producer import (
    CSV_ID_PREFIX,
    ReceivedScore,
    Settings,
    create_consumer,
    create_producer,
    follow_scores,
    publish,
    read_csv_applications,
)
from tests.fixtures.kafka import NameFactory, TopicFactory

pytestmark = pytest.mark.integration

_DEADLINE_S = 60.0
_CLI_TIMEOUT_S = 120.0


def _read_all(
    bootstrap: str, topic: str, count: int, isolation: str = "read_committed"
) -> list[Message]:
    """The first ``count`` records of ``topic``, failing if they do not arrive in time."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": unique_name("read-back"),
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": isolation,
        }
    )
    consumer.subscribe([topic])
    messages: list[Message] = []
    deadline = time.monotonic() + _DEADLINE_S
    try:
        while len(messages) < count:
            if time.monotonic() > deadline:
                pytest.fail(f"read {len(messages)} of {count} records from {topic} in time")
            batch = consumer.consume(num_messages=1_000, timeout=0.5)
            for message in batch:
                if message.error():
                    raise KafkaException(message.error())
                messages.append(message)
    finally:
        consumer.close()
    return messages


def _records_on_log(bootstrap: str, topic: str, partitions: int) -> int:
    """How many offsets ``topic`` holds across its partitions (high minus low watermarks)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name("wm")})
    try:
        marks = [
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            for p in range(partitions)
        ]
    finally:
        consumer.close()
    return sum(high - low for low, high in marks)


def test_publishing_the_real_csv_delivers_every_row_exactly_once(
    credit_csv: Path,
    credit_frame: pd.DataFrame,
    kafka_bootstrap_servers: str,
    new_topic: TopicFactory,
) -> None:
    topic = new_topic("producer-csv", partitions=3)
    before = datetime.now(UTC)
    producer = create_producer(Settings(kafka_bootstrap_servers=kafka_bootstrap_servers))

    report = publish(read_csv_applications(credit_csv), producer=producer, topic=topic)

    expected_keys = {f"{CSV_ID_PREFIX}{value}".encode() for value in credit_frame["ID"]}
    assert report.complete, report.failures
    assert report.delivered == len(credit_frame)
    messages = _read_all(kafka_bootstrap_servers, topic, len(credit_frame))
    assert _records_on_log(kafka_bootstrap_servers, topic, 3) == len(credit_frame)
    assert {message.key() for message in messages} == expected_keys
    correlation_ids = set()
    for message in messages:
        application = LoanApplication.model_validate_json(message.value() or b"")
        assert application.application_id.encode() == message.key()
        assert application.submitted_at is not None
        assert application.submitted_at >= before
        correlation_ids.add(dict(message.headers() or [])[CORRELATION_ID_HEADER])
    assert len(correlation_ids) == len(credit_frame)


def _score(n: int) -> LoanScore:
    return LoanScore(
        application_id=f"app-{n}",
        default_probability=n / 10,
        predicted_default=n >= 5,
        threshold=0.5,
        model_name="credit-default",
        model_version="1",
        scored_at=datetime.now(UTC),
    )


def _write_scores_transactionally(
    bootstrap: str, topic: str, committed_then_aborted: list[tuple[list[int], bool]]
) -> None:
    """Write each batch of scores in its own transaction, committing or aborting it."""
    producer = Producer(
        {"bootstrap.servers": bootstrap, "transactional.id": unique_name("test-scores-tx")}
    )
    producer.init_transactions(_DEADLINE_S)
    for numbers, commit in committed_then_aborted:
        producer.begin_transaction()
        for n in numbers:
            producer.produce(
                topic,
                _score(n).model_dump_json().encode(),
                f"app-{n}".encode(),
                headers=[(CORRELATION_ID_HEADER, f"corr-{n}".encode())],
            )
        if commit:
            producer.commit_transaction(_DEADLINE_S)
        else:
            producer.flush(_DEADLINE_S)  # the aborted records really reach the log
            producer.abort_transaction(_DEADLINE_S)


_BATCHES = [([0, 1, 2], True), ([7, 8], False), ([3, 4], True)]
_COMMITTED = ["app-0", "app-1", "app-2", "app-3", "app-4"]


def test_follow_reads_committed_scores_and_never_aborted_ones(
    kafka_bootstrap_servers: str, new_topic: TopicFactory, new_group_id: NameFactory
) -> None:
    topic = new_topic("producer-scores")
    _write_scores_transactionally(kafka_bootstrap_servers, topic, _BATCHES)
    # The aborted scores are on the log: a read_uncommitted reader sees all seven.
    uncommitted = _read_all(kafka_bootstrap_servers, topic, 7, isolation="read_uncommitted")
    assert {m.key() for m in uncommitted} >= {b"app-7", b"app-8"}

    settings = Settings(kafka_bootstrap_servers=kafka_bootstrap_servers)
    consumer = create_consumer(
        settings, group_id=new_group_id("follow"), from_beginning=True, commit=False
    )
    received: list[ReceivedScore] = []
    try:
        report = follow_scores(
            consumer, sink=received.append, topic=topic, count=5, timeout_s=_DEADLINE_S
        )
    finally:
        consumer.close()

    assert report.stopped == "count"
    # app-3 and app-4 come after the aborted batch: reading them means it was passed over.
    assert [r.score.application_id for r in received] == _COMMITTED
    assert [r.correlation_id for r in received] == [f"corr-{n}" for n in range(5)]


def _cli(bootstrap: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "producer", *args],
        cwd=ROOT,
        env={
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "PRODUCER_CONNECT_TIMEOUT_S": "30",
        },
        capture_output=True,
        text=True,
        timeout=_CLI_TIMEOUT_S,
        check=False,
    )


def test_cli_publishes_from_the_csv(
    credit_csv: Path,
    credit_frame: pd.DataFrame,
    kafka_bootstrap_servers: str,
    new_topic: TopicFactory,
) -> None:
    topic = new_topic("producer-cli")

    result = _cli(
        kafka_bootstrap_servers, "publish", str(credit_csv), "--count", "300", "--topic", topic
    )

    assert result.returncode == 0, result.stderr
    assert "delivered" in result.stdout
    assert "300" in result.stdout
    messages = _read_all(kafka_bootstrap_servers, topic, 300)
    first_ids = credit_frame["ID"].head(300)
    assert [m.key() for m in messages] == [f"{CSV_ID_PREFIX}{n}".encode() for n in first_ids]
    assert _records_on_log(kafka_bootstrap_servers, topic, 1) == 300


def test_cli_publishes_paced_synthetic_applications(
    kafka_bootstrap_servers: str, new_topic: TopicFactory
) -> None:
    topic = new_topic("producer-cli-syn")

    result = _cli(
        kafka_bootstrap_servers,
        "publish",
        "--synthetic",
        "--count",
        "40",
        "--seed",
        "9",
        "--rate",
        "100",
        "--topic",
        topic,
    )

    assert result.returncode == 0, result.stderr
    messages = _read_all(kafka_bootstrap_servers, topic, 40)
    assert [m.key() for m in messages] == [f"syn-9-{n}".encode() for n in range(1, 41)]


def test_cli_publishes_paced_outcomes_keyed_like_their_applications(
    credit_csv: Path,
    credit_frame: pd.DataFrame,
    kafka_bootstrap_servers: str,
    new_topic: TopicFactory,
) -> None:
    topic = new_topic("producer-outcomes")

    result = _cli(
        kafka_bootstrap_servers,
        "publish-outcomes",
        str(credit_csv),
        "--count",
        "120",
        "--rate",
        "400",
        "--observed-on",
        "2026-11-27",
        "--topic",
        topic,
    )

    assert result.returncode == 0, result.stderr
    messages = _read_all(kafka_bootstrap_servers, topic, 120)
    assert _records_on_log(kafka_bootstrap_servers, topic, 1) == 120
    outcomes = [LoanOutcome.model_validate_json(m.value() or b"") for m in messages]
    head = credit_frame.head(120)
    assert [m.key() for m in messages] == [f"{CSV_ID_PREFIX}{n}".encode() for n in head["ID"]]
    assert [o.application_id.encode() for o in outcomes] == [m.key() for m in messages]
    assert [o.defaulted for o in outcomes] == (head[TARGET_COLUMN] == 1).tolist()
    assert {o.observed_on for o in outcomes} == {date(2026, 11, 27)}


def test_cli_refuses_a_topic_that_does_not_exist(kafka_bootstrap_servers: str) -> None:
    missing = unique_name("no-such-topic")

    result = _cli(
        kafka_bootstrap_servers, "publish", "--synthetic", "--count", "1", "--topic", missing
    )

    assert result.returncode == 1
    assert f"topic '{missing}' does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_follow_writes_committed_scores_as_json_lines(
    kafka_bootstrap_servers: str, new_topic: TopicFactory, tmp_path: Path
) -> None:
    topic = new_topic("producer-cli-scores")
    _write_scores_transactionally(kafka_bootstrap_servers, topic, _BATCHES)
    output = tmp_path / "scores.jsonl"

    to_file = _cli(
        kafka_bootstrap_servers,
        "follow",
        "--topic",
        topic,
        "--from-beginning",
        "--count",
        "5",
        "--output",
        str(output),
    )
    to_stdout = _cli(
        kafka_bootstrap_servers,
        "follow",
        "--topic",
        topic,
        "--from-beginning",
        "--count",
        "5",
        "--format",
        "json",
    )

    assert to_file.returncode == 0, to_file.stderr
    written = [LoanScore.model_validate_json(line) for line in output.read_text().splitlines()]
    assert [score.application_id for score in written] == _COMMITTED
    assert to_stdout.returncode == 0, to_stdout.stderr
    printed = [LoanScore.model_validate_json(line) for line in to_stdout.stdout.splitlines()]
    assert printed == written


def test_cli_follow_exits_1_when_the_count_is_not_reached_in_time(
    kafka_bootstrap_servers: str, new_topic: TopicFactory
) -> None:
    topic = new_topic("producer-cli-quiet")
    _write_scores_transactionally(kafka_bootstrap_servers, topic, [([1], True)])

    result = _cli(
        kafka_bootstrap_servers,
        "follow",
        "--topic",
        topic,
        "--from-beginning",
        "--count",
        "2",
        "--timeout",
        "3",
    )

    assert result.returncode == 1, result.stderr
    assert "app-1" in result.stdout  # the table row of the one committed score
    assert "received 1 scores" in result.stderr
    assert "stopped: timeout" in result.stderr


def test_follow_without_a_group_starts_afresh_and_a_named_group_resumes(
    kafka_bootstrap_servers: str, new_topic: TopicFactory, new_group_id: NameFactory
) -> None:
    topic = new_topic("producer-cli-group")
    _write_scores_transactionally(kafka_bootstrap_servers, topic, [([2], True)])
    follow = ("follow", "--topic", topic, "--from-beginning", "--count", "1", "--timeout", "20")
    group = new_group_id("downstream")

    anonymous = [_cli(kafka_bootstrap_servers, *follow) for _ in range(2)]
    named_first = _cli(kafka_bootstrap_servers, *follow, "--group", group)
    named_again = _cli(kafka_bootstrap_servers, *follow[:-2], "--timeout", "3", "--group", group)

    # Without --group every run is a new group: both read the one score from the beginning.
    assert [run.returncode for run in anonymous] == [0, 0], [run.stderr for run in anonymous]
    assert all("app-2" in run.stdout for run in anonymous)
    # A named group commits its position: the second run has nothing left to read.
    assert named_first.returncode == 0, named_first.stderr
    assert named_again.returncode == 1
    assert "received 0 scores" in named_again.stderr
