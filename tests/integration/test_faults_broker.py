"""Broker restart: exactly one committed score per application, whatever the outage did.

What the worker does depends on where the outage catches it. Seen on this broker
(single node, so the transaction and group coordinators go away too):

* a transaction open during a short outage: ``send_offsets_to_transaction`` blocks past
  its own timeout (confluentinc/librdkafka#5456, #5511: the cached coordinator is never
  looked up again), and the stall watchdog exits with 3; an idle worker's first
  transaction after the restart does the same;
* longer outages: the coordinator aborts the open transaction and the worker's abort
  gets ``INVALID_TXN_STATE``, which librdkafka makes fatal, or the abort cannot reach a
  broker within the transaction timeout: exit 1.

So the worker does not reconnect by itself after a full broker restart; it is
crash-only by design (``consumer.__main__``: restart on 1 and 3), and recreating the
producer in-process would not unblock a call stuck in librdkafka. The test acts as the
orchestrator: it restarts any worker that exits, and requires every exit to be one of
those two, with its reason logged and no traceback. The restarted worker's
``init_transactions`` (same transactional id) fences the old transaction, so nothing
is produced twice; its consumer resumes from the last committed offsets.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pandas as pd
import pytest

from consumer.worker import EXIT_FATAL, EXIT_STALLED
from tests.fixtures.kafka import KafkaBroker, TopicFactory, unique_name
from tests.fixtures.mlflow_server import MlflowNamespace
from tests.helpers.observe import wait_for
from tests.helpers.scenario import Scenario, Supervisor, scored_so_far
from tests.helpers.stream import dataset_stream
from tests.helpers.worker import ScorerProcess

pytestmark = pytest.mark.integration

_RATE_PER_S = 100.0
_DOWN_S = 8.0
"""How long the broker stays down (stopping and starting it take a few seconds more)."""
_TAIL = 400


@pytest.fixture
def scenario(
    kafka_bootstrap_servers: str,
    mlflow_tracking_uri: str,
    mlflow_namespace: MlflowNamespace,
    feature_frame: pd.DataFrame,
    new_topic: TopicFactory,
    tmp_path: Path,
) -> Iterator[Scenario]:
    world = Scenario.create(
        bootstrap_servers=kafka_bootstrap_servers,
        tracking_uri=mlflow_tracking_uri,
        namespace=mlflow_namespace,
        feature_frame=feature_frame,
        new_topic=new_topic,
        workdir=tmp_path,
    )
    yield world
    world.close()


def _outage(broker: KafkaBroker) -> None:
    try:
        broker.stop()
        time.sleep(_DOWN_S)  # the outage itself, not a wait for readiness
    finally:
        broker.start()  # returns once the broker answers a metadata request


def _exit_reasons(worker: ScorerProcess) -> list[str]:
    """The worker's own CRITICAL lines (each precedes a deliberate exit)."""
    records = [
        orjson.loads(line) for line in worker.log_path.read_text().splitlines() if line[:1] == "{"
    ]
    return [
        r["message"]
        for r in records
        if r["level"] == "CRITICAL" and r["logger"] in ("consumer", "consumer.worker")
    ]


def test_a_broker_restart_mid_stream_leaves_exactly_one_score_per_application(
    scenario: Scenario, kafka_broker: KafkaBroker, feature_frame: pd.DataFrame
) -> None:
    scenario.register()
    worker = scenario.start_worker("broker-0")
    supervisor = Supervisor(scenario, ["broker-0"])
    publisher = scenario.publish(
        dataset_stream(feature_frame, unique_name("broker")), rate_per_s=_RATE_PER_S
    )
    wait_for(
        lambda: scored_so_far(worker),
        lambda scored: scored >= 300,
        timeout_s=120,
        what="300 applications scored before the outage",
    )
    _outage(kafka_broker)
    ids = publisher.stop_after(_TAIL, timeout_s=300)
    scenario.wait_for_outcomes(ids, timeout_s=300)
    supervisor.stop()
    scenario.stop_workers()
    print(f"{len(ids)} applications; worker exits during the outage: {supervisor.exits}")

    scenario.audit().assert_exactly_once(ids)
    assert {code for _, code in supervisor.exits} <= {EXIT_FATAL, EXIT_STALLED}
    log = worker.log_path.read_text()
    assert "Traceback" not in log, "the worker crashed instead of exiting on purpose"
    assert len(_exit_reasons(worker)) == len(supervisor.exits), "an exit without its reason"
