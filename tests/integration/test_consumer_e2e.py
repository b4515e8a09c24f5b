"""End to end: ``python -m consumer`` on a real broker with a real MLflow server.

1,000 real applications in, exactly 1,000 committed scores and 1,000 prediction
records out, each probability equal to what the registered model gives offline, each
score with the reasons the model's explanation gives offline, citing only the fields
its fair-lending signature uses.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import mlflow
import numpy as np
import orjson
import pandas as pd
import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from consumer.explaining import build_explainer, top_reasons
from contracts import FEATURE_COLUMNS, LoanApplication
from contracts.model_names import EXPLANATION_METADATA_KEY
from contracts.reasons import REASON_TABLE_VERSION, REASONS
from contracts.score import LoanScore
from contracts.topics import CORRELATION_ID_HEADER, MODEL_VERSION_HEADER
from devstack import WorkerProcess, unique_name
from tests.helpers.applications import applications_from_frame, as_frame, encode
from tests.helpers.champion import RegisteredChampion, offline_probabilities
from tests.helpers.scenario import Scenario
from tests.helpers.topics import byte_headers, publish
from training.packaging import as_model_input
from training.policies import FAIR_LENDING, POLICIES
from training.tracking import using_tracking_uri

pytestmark = pytest.mark.integration

_COUNT = 1_000


def test_every_application_gets_exactly_one_score_equal_to_the_offline_model(
    scenario: Scenario, mlflow_tracking_uri: str, feature_frame: pd.DataFrame
) -> None:
    fair = POLICIES[FAIR_LENDING].features
    champion = scenario.register(features=fair, feature_policy=FAIR_LENDING)
    scorer = scenario.start_worker("e2e-0", base={})  # the worker's own defaults
    topics = scenario.topics

    applications = applications_from_frame(feature_frame, _COUNT, prefix=unique_name("e2e"))
    publish(
        scenario.bootstrap_servers,
        topics.applications,
        (
            (a.application_id.encode(), encode(a), [(CORRELATION_ID_HEADER, f"corr-{i}".encode())])
            for i, a in enumerate(applications)
        ),
    )
    ids = [a.application_id for a in applications]
    scenario.wait_for_outcomes(ids)
    status, described = scorer.get("/model")
    _, metrics_text = scorer.get("/metrics")
    stacks = scorer.dump_stacks()  # SIGUSR1: the worker says where it is and carries on
    assert "consumer/worker.py" in stacks, stacks
    scenario.stop_workers()

    # The worker is stopped, so the topics' ends are final: the audit reads everything there is.
    audit = scenario.audit()
    audit.assert_exactly_once(ids)
    records = zip(audit.scores, audit.score_records, strict=True)
    scores = {score.application_id: (score, message) for score, message in records}
    predictions = audit.predictions

    offline = offline_probabilities(mlflow_tracking_uri, champion.uri, as_frame(applications))
    online = np.array([scores[i][0].default_probability for i in ids])
    np.testing.assert_allclose(online, offline, rtol=0, atol=1e-9)
    for index, application_id in enumerate(ids):
        score, message = scores[application_id]
        assert message.key() == application_id.encode()
        assert score.predicted_default == (score.default_probability >= champion.threshold)
        assert (score.threshold, score.model_name, score.model_version) == (
            champion.threshold,
            champion.model_name,
            champion.version,
        )
        assert byte_headers(message) == {
            MODEL_VERSION_HEADER: champion.version.encode(),
            CORRELATION_ID_HEADER: f"corr-{index}".encode(),
        }
    assert {(p.model_run_id, p.model_version, p.worker_id) for p in predictions} == {
        (champion.run_id, champion.version, "e2e-0")
    }
    assert sorted((p.input_partition, p.input_offset) for p in predictions) == sorted(
        {(p.input_partition, p.input_offset) for p in predictions}
    )
    assert all(p.input_topic == topics.applications for p in predictions)
    assert all(1 <= p.batch_size <= 500 for p in predictions)

    assert status == 200
    assert (described["version"], described["run_id"], described["threshold"]) == (
        champion.version,
        champion.run_id,
        champion.threshold,
    )
    assert described["params"]["rows"] == "400"
    assert described["feature_policy"] == FAIR_LENDING
    assert described["features"] == list(fair)
    assert described["reason_table_version"] == REASON_TABLE_VERSION
    assert "scorer_reasons_unavailable_total 0.0" in metrics_text.splitlines()
    _assert_reasons_match_the_offline_explanation(
        mlflow_tracking_uri, champion, applications, [scores[i][0] for i in ids], offline
    )
    assert f"scorer_applications_scored_total {float(_COUNT)}" in metrics_text.splitlines()
    batch_lines = [
        line
        for line in scorer.log_path.read_text().splitlines()
        if line.startswith("{") and orjson.loads(line).get("message") == "batch"
    ]
    assert sum(orjson.loads(line)["scored"] for line in batch_lines) == _COUNT
    assert batch_lines, "no batch log line"
    for line in batch_lines:  # no feature values in the log
        assert not set(orjson.loads(line)) & set(FEATURE_COLUMNS)


def _assert_reasons_match_the_offline_explanation(
    tracking_uri: str,
    champion: RegisteredChampion,
    applications: list[LoanApplication],
    scores: list[LoanScore],
    offline: np.ndarray,
) -> None:
    """Every score carries the top reasons the registered model's own explanation gives."""
    with using_tracking_uri(tracking_uri):
        described = mlflow.models.get_model_info(champion.uri).metadata[EXPLANATION_METADATA_KEY]
    fair = POLICIES[FAIR_LENDING].features
    method, reference = described["method"], described["reference"]
    explainer = build_explainer(champion.pipeline, method, reference, fair)
    frame = as_model_input(as_frame(applications), fair)
    expected = top_reasons(explainer, frame, offline, 4).reasons
    for score, application, wanted in zip(scores, applications, expected, strict=True):
        assert not score.reasons_unavailable
        assert score.reasons is not None
        assert wanted is not None
        assert [r.code for r in score.reasons] == [r["code"] for r in wanted]
        for reason in score.reasons:
            assert reason.feature in fair  # never a field the model does not use
            assert reason.value == getattr(application, reason.feature)
            assert reason.text == REASONS[reason.feature].describe(reason.value)
    assert sum(len(s.reasons or []) for s in scores) > len(scores)  # reasons, not empty lists


def test_the_worker_waits_not_ready_for_its_model_and_topics_then_scores(
    scenario: Scenario, kafka_admin: AdminClient
) -> None:
    # Nothing is registered under the scenario's model name yet, and the scores topic is
    # created only once the worker is up.
    topics = scenario.topics = replace(scenario.topics, scores=unique_name("scores-later"))
    scorer = scenario.start_worker("waiting-0", wait_ready=False, base={}, reload_interval_s="1")

    _wait_for(scorer, lambda: "no model loaded" in _reasons(scorer))
    assert scorer.get("/healthz") == (200, {"status": "alive"})
    assert scorer.get("/model")[0] == 503

    champion = scenario.register()
    _wait_for(scorer, lambda: f"topics do not exist (yet): {topics.scores}" in scorer.log_tail())
    assert _reasons(scorer) == ["not consuming yet"], "ready without its scores topic"

    kafka_admin.create_topics([NewTopic(topics.scores, num_partitions=1)])[topics.scores].result(30)
    scorer.wait_ready()
    ids = scenario.publish_scored("late", 20)
    scenario.stop_workers()
    audit = scenario.audit()
    audit.assert_exactly_once(ids)
    assert {s.model_version for s in audit.scores} == {champion.version}


def _reasons(scorer: WorkerProcess) -> list[str]:
    status, body = scorer.get("/readyz")
    return list(body["reasons"]) if status == 503 else []


def _wait_for(scorer: WorkerProcess, condition: Callable[[], bool], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if scorer.process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(
                f"condition not reached (exit {scorer.process.poll()}):\n{scorer.log_tail()}"
            )
        time.sleep(0.2)
