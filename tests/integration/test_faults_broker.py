"""Broker restart: exactly one committed score per application, whatever the outage did.

The session's broker (one node, so the transaction and group coordinators go too) is
stopped and started again with its data. What the worker does depends on where the
outage catches it; all of this was seen here:

* idle, or with a transaction that fails once the brokers are back: it reconnects by
  itself. A producer that saw every broker go can block forever in its next
  ``send_offsets_to_transaction`` (confluentinc/librdkafka#5511, #5456), so the
  transport replaces it (same transactional id, which also aborts its open
  transaction) instead of calling it again;
* inside ``send_offsets_to_transaction`` when the broker goes: the call blocks past its
  own timeout and nothing can interrupt it; the stall watchdog exits with 3;
* down for longer than the transaction timeout: the abort cannot complete: exit 1.

Exits are crash-only by design (``consumer.__main__``: restart on 1 and 3), so the
mid-stream test acts as the orchestrator: it restarts a worker that exits, and
requires every exit to be one of those two, with its reason logged and no traceback.
A restarted worker's ``init_transactions`` fences the old transaction, so nothing is
produced twice. The idle test requires the worker to stay up.
"""

from __future__ import annotations

import time

import orjson
import pandas as pd
import pytest

from consumer.worker import EXIT_FATAL, EXIT_STALLED
from tests.fixtures.kafka import KafkaBroker, unique_name
from tests.helpers.observe import wait_for
from tests.helpers.scenario import Scenario, Supervisor, scored_so_far
from tests.helpers.stream import dataset_stream
from tests.helpers.worker import ScorerProcess

pytestmark = pytest.mark.integration

_RATE_PER_S = 100.0
_DOWN_S = 8.0
"""How long the broker stays down (stopping and starting it take a few seconds more)."""
_TAIL = 400


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


def test_an_idle_worker_reconnects_by_itself_after_a_broker_restart(
    scenario: Scenario, kafka_broker: KafkaBroker, feature_frame: pd.DataFrame
) -> None:
    scenario.register()
    worker = scenario.start_worker("broker-idle-0")
    before = scenario.publish(
        dataset_stream(feature_frame, unique_name("before")), rate_per_s=500
    ).stop_after(200)
    scenario.wait_for_outcomes(before)

    _outage(kafka_broker)
    after = scenario.publish(
        dataset_stream(feature_frame, unique_name("after")), rate_per_s=500
    ).stop_after(300)
    scenario.wait_for_outcomes(after, timeout_s=120)
    assert worker.process.poll() is None, worker.log_tail()
    scenario.stop_workers()

    scenario.audit().assert_exactly_once(before + after)
    assert "replacing the transactional producer" in worker.log_path.read_text()
