"""Kafka over SASL_SSL (SCRAM-SHA-512), configured through environment variables alone.

A broker with a TLS listener and SCRAM users made for the session (tests/fixtures/
kafka_secure.py). The producer CLI publishes applications over SASL_SSL, ``python -m
consumer`` scores them over SASL_SSL, and the producer CLI follows the scores over SASL_SSL:
every client gets only the SASL_SSL address, the CA file and its credentials. Wrong
credentials or an untrusted certificate end each client quickly (well inside the generous
subprocess deadlines below, and long before their own connect timeouts) with a message
that says authentication failed, and no password shows in any output.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from contracts.score import LoanScore
from devstack import ROOT, ScorerTopics, WorkerProcess, unique_name, worker_env
from tests.fixtures.kafka_secure import SecureKafka, make_tls_material
from tests.fixtures.mlflow_server import MlflowNamespace
from tests.helpers.champion import RegisteredChampion, register_champion
from tests.helpers.signing import public_key_pem_text
from tests.helpers.topics import read_to_end

pytestmark = pytest.mark.integration

_COUNT = 200
_CLI_TIMEOUT_S = 180.0
# Far longer than a failing client may take: reaching it means "did not fail fast".
_CONNECT_TIMEOUT_S = "300"
_FAIL_FAST_DEADLINE_S = 90.0
_WRONG_PASSWORD = secrets.token_urlsafe(16)


@pytest.fixture
def topics(secure_kafka: SecureKafka) -> ScorerTopics:
    return ScorerTopics(
        applications=secure_kafka.new_topic("sasl-applications", partitions=2),
        scores=secure_kafka.new_topic("sasl-scores"),
        dead_letters=secure_kafka.new_topic("sasl-dlq"),
        predictions=secure_kafka.new_topic("sasl-predictions"),
    )


@pytest.fixture
def champion(
    mlflow_tracking_uri: str, mlflow_namespace: MlflowNamespace, feature_frame: pd.DataFrame
) -> RegisteredChampion:
    return register_champion(
        mlflow_tracking_uri,
        feature_frame,
        model_name=mlflow_namespace.model_name,
        experiment=mlflow_namespace.experiment,
    )


def _producer_cli(
    secure_kafka: SecureKafka, properties: dict[str, Any], *args: str, timeout_s: float
) -> subprocess.CompletedProcess[str]:
    """``python -m producer ARGS`` configured for the SASL_SSL listener by environment only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRODUCER_")}
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=secure_kafka.bootstrap_servers,
        PRODUCER_KAFKA_EXTRA=json.dumps(properties),
        PRODUCER_CONNECT_TIMEOUT_S=_CONNECT_TIMEOUT_S,
        COLUMNS="200",
    )
    return subprocess.run(
        [sys.executable, "-m", "producer", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def _worker(
    secure_kafka: SecureKafka,
    mlflow_tracking_uri: str,
    champion: RegisteredChampion,
    topics: ScorerTopics,
    tmp_path: Path,
    properties: dict[str, Any],
) -> WorkerProcess:
    env = worker_env(
        kafka_bootstrap_servers=secure_kafka.bootstrap_servers,
        mlflow_tracking_uri=mlflow_tracking_uri,
        group_id=unique_name("sasl-scorer"),
        model_name=champion.model_name,
        model_cache_dir=tmp_path / "models",
        model_signing_public_key=public_key_pem_text(),
        worker_id=unique_name("sasl-worker"),
        kafka_extra=json.dumps(properties),
        **topics.settings(),
    )
    return WorkerProcess(env, tmp_path / f"{unique_name('worker')}.log")


def _assert_no_password(secure_kafka: SecureKafka, *outputs: object) -> None:
    for output in outputs:
        text = output if isinstance(output, str) else json.dumps(output)
        for user, password in secure_kafka.passwords.items():
            assert password not in text, f"{user}'s password leaked"


def test_producer_and_worker_score_over_sasl_ssl_from_environment_alone(
    secure_kafka: SecureKafka,
    mlflow_tracking_uri: str,
    champion: RegisteredChampion,
    topics: ScorerTopics,
    scorers: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    published = _producer_cli(
        secure_kafka,
        secure_kafka.client_properties("producer"),
        *("publish", "--synthetic", "--count", str(_COUNT), "--seed", "11"),
        *("--topic", topics.applications),
        timeout_s=_CLI_TIMEOUT_S,
    )
    assert published.returncode == 0, published.stderr

    scorer = _worker(
        secure_kafka,
        mlflow_tracking_uri,
        champion,
        topics,
        tmp_path,
        secure_kafka.client_properties("scorer"),
    )
    scorers.append(scorer)
    scorer.wait_ready()

    followed = _producer_cli(
        secure_kafka,
        secure_kafka.client_properties("producer"),
        *("follow", "--topic", topics.scores, "--from-beginning", "--format", "json"),
        *("--count", str(_COUNT), "--timeout", "150"),
        timeout_s=_CLI_TIMEOUT_S,
    )
    assert followed.returncode == 0, followed.stderr
    scores = [LoanScore.model_validate_json(line) for line in followed.stdout.splitlines()]
    assert len({score.application_id for score in scores}) == _COUNT
    assert {score.model_version for score in scores} == {champion.version}

    endpoints = [scorer.get(path) for path in ("/model", "/readyz", "/metrics")]
    assert [status for status, _ in endpoints] == [200, 200, 200]
    assert scorer.terminate() == 0, scorer.log_tail()
    _assert_no_password(
        secure_kafka,
        published.stdout + published.stderr,
        followed.stdout + followed.stderr,
        scorer.log_path.read_text(),
        *(body for _, body in endpoints),
    )

    # Exactly once over SASL_SSL too: read (over the test's PLAINTEXT listener) to the end.
    read = read_to_end(
        secure_kafka.plaintext_bootstrap_servers,
        [topics.scores, topics.predictions, topics.dead_letters],
        group_id=unique_name("sasl-audit"),
    )
    assert [len(read[topic]) for topic in (topics.scores, topics.predictions)] == [_COUNT] * 2
    assert read[topics.dead_letters] == []


def _wrong_password(secure_kafka: SecureKafka, _tmp: Path) -> dict[str, Any]:
    return secure_kafka.client_properties("producer", password=_WRONG_PASSWORD)


def _unknown_user(secure_kafka: SecureKafka, _tmp: Path) -> dict[str, Any]:
    return {**secure_kafka.client_properties("producer"), "sasl.username": "mallory"}


def _untrusted_ca(secure_kafka: SecureKafka, tmp: Path) -> dict[str, Any]:
    other_ca = make_tls_material(tmp / "other-ca").ca_pem
    return {**secure_kafka.client_properties("producer"), "ssl.ca.location": str(other_ca)}


@pytest.mark.parametrize(
    ("properties", "cause"),
    [
        (_wrong_password, "SASL authentication error"),
        (_unknown_user, "SASL authentication error"),
        (_untrusted_ca, "certificate verify failed"),
    ],
    ids=["wrong password", "unknown user", "untrusted CA"],
)
def test_the_producer_fails_fast_when_authentication_fails(
    secure_kafka: SecureKafka, topics: ScorerTopics, tmp_path: Path, properties: Any, cause: str
) -> None:
    result = _producer_cli(
        secure_kafka,
        properties(secure_kafka, tmp_path),
        *("publish", "--synthetic", "--count", "5", "--seed", "1", "--topic", topics.applications),
        timeout_s=_FAIL_FAST_DEADLINE_S,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    message = " ".join(result.stderr.split())  # rich wraps long lines
    assert "authentication failed" in message.lower()
    assert cause in message
    assert "Traceback" not in result.stderr
    _assert_no_password(secure_kafka, result.stdout + result.stderr)


def test_the_worker_stops_with_a_clear_error_when_authentication_fails(
    secure_kafka: SecureKafka,
    mlflow_tracking_uri: str,
    champion: RegisteredChampion,
    topics: ScorerTopics,
    scorers: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    scorer = _worker(
        secure_kafka,
        mlflow_tracking_uri,
        champion,
        topics,
        tmp_path,
        secure_kafka.client_properties("scorer", password=_WRONG_PASSWORD),
    )
    scorers.append(scorer)
    try:
        code = scorer.process.wait(timeout=_FAIL_FAST_DEADLINE_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the worker kept running with bad credentials:\n{scorer.log_tail()}")
    log = scorer.log_path.read_text()
    assert code == 1, log[-4000:]
    fatal = [
        json.loads(line)
        for line in log.splitlines()
        if line.startswith("{") and json.loads(line)["level"] == "CRITICAL"
    ]
    assert len(fatal) == 1, log[-4000:]
    assert "authentication failed" in fatal[0]["reason"].lower()
    assert "SASL authentication error" in fatal[0]["reason"]
    _assert_no_password(secure_kafka, log)
