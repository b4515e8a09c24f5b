"""Broker restarts: exactly one committed score per application, whatever the outage did.

The session's broker (one node, so the transaction and group coordinators go too) is
stopped and started again with its data, many times, for down times from 1 s to well
past the consumer's session timeout (6 s in ``FAST_WORKER``). What the worker does
depends on where the outage catches it; all of this was seen here:

* idle, or with a transaction that fails once the brokers are back: it reconnects by
  itself. A producer that saw every broker go can block forever in its next
  ``send_offsets_to_transaction`` (confluentinc/librdkafka#5511, #5456), so the
  transport replaces it (same transactional id, which also aborts its open
  transaction) instead of calling it again;
* its consumer lost its partitions and never joined the group again: with records
  waiting and nothing committed for ``self_heal_after_s``, the worker replaces its
  consumer and producer and says so ("self-healing: ...");
* inside ``send_offsets_to_transaction`` when the broker goes: the call blocks past its
  own timeout and nothing can interrupt it; the stall watchdog exits with 3;
* down for longer than the transaction timeout: the abort cannot complete: exit 1.

Exits are crash-only by design (``consumer.cli``: restart on 1, 3 and 4), so the
busy test acts as the orchestrator: it restarts a worker that exits, and requires
every exit to be one of those, with its reason logged and no traceback. A restarted
worker's ``init_transactions`` fences the old transaction, so nothing is produced
twice. The idle test requires the worker to stay up through every restart.

Each test prints how long after the broker answered again the worker had scored the
next applications (median and worst): the recovery time the issue asks to report.
"""

from __future__ import annotations

import time

import pytest

from devstack import Broker
from devstack.processes import wait_until
from tests.helpers.observe import metric_value
from tests.helpers.outage import RECOVERY_BOUND_S, SELF_HEAL_LINE, TEST_TIMEOUT_S, outage, report
from tests.helpers.scenario import Scenario

pytestmark = pytest.mark.integration

_WAITING_LINE = "Kafka not available yet"  # Worker._start_transport, between attempts
_IDLE_DOWN_S = [1.0 + 0.5 * cycle for cycle in range(20)]
"""1 s to 10.5 s: below and well above the 6 s session timeout."""


@pytest.mark.timeout(TEST_TIMEOUT_S)
def test_an_idle_worker_scores_again_after_every_broker_restart(
    scenario: Scenario, kafka_broker: Broker
) -> None:
    scenario.register()
    worker = scenario.start_worker("broker-idle-0")
    ids = scenario.publish_scored("before", 100)

    recoveries = []
    for cycle, down_s in enumerate(_IDLE_DOWN_S):
        back = outage(kafka_broker, down_s)
        ids += scenario.publish_scored(f"after-{cycle}", 20, RECOVERY_BOUND_S)
        recoveries.append(time.monotonic() - back)
        assert worker.process.poll() is None, f"cycle {cycle} ({down_s}s):\n{worker.log_tail()}"

    heals = metric_value(worker.get("/metrics")[1], "scorer_self_heals_total")
    scenario.stop_workers()
    log = worker.log_path.read_text()
    report("idle worker", recoveries, log.count(SELF_HEAL_LINE))

    scenario.audit().assert_exactly_once(ids)
    assert "replacing the transactional producer" in log
    assert log.count(SELF_HEAL_LINE) == heals, "a self-heal the log does not mention"


@pytest.mark.timeout(TEST_TIMEOUT_S)
def test_a_worker_started_while_its_broker_is_down_waits_for_it_then_scores(
    scenario: Scenario, kafka_broker: Broker
) -> None:
    # As in an orchestrator that starts the worker before Kafka: it must wait, not exit.
    scenario.register()
    kafka_broker.stop()
    try:
        worker = scenario.start_worker("broker-late-0", wait_ready=False)
        wait_until(
            lambda: _WAITING_LINE in worker.log_path.read_text(),
            RECOVERY_BOUND_S,
            "the worker never said it waits for Kafka",
            watch=[worker],
        )
    finally:
        kafka_broker.start()
    ids = scenario.publish_scored("late", 50, RECOVERY_BOUND_S)

    assert worker.process.poll() is None, worker.log_tail()
    scenario.stop_workers()
    scenario.audit().assert_exactly_once(ids)
