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

import statistics
import time

import orjson
import pandas as pd
import pytest

from consumer.worker import EXIT_FATAL, EXIT_STALLED, EXIT_STUCK
from devstack import Broker, WorkerProcess, unique_name
from tests.helpers.observe import metric_value, wait_for
from tests.helpers.scenario import Scenario, Supervisor, scored_so_far
from tests.helpers.stream import dataset_stream

pytestmark = pytest.mark.integration

_IDLE_DOWN_S = [1.0 + 0.5 * cycle for cycle in range(20)]
"""1 s to 10.5 s: below and well above the 6 s session timeout."""
_BUSY_DOWN_S = [1.0, 8.0, 2.0, 10.0, 3.0, 6.5, 4.0, 12.0, 5.0, 9.0]
_RATE_PER_S = 100.0
_RECOVERY_BOUND_S = 120.0
"""Every application published before and during an outage is scored within this."""
_SELF_HEAL_LINE = "self-healing: not consuming"
_TEST_TIMEOUT_S = 2_400
"""A restart cycle took 20 s on a quiet machine and 85 s at load average 20."""


def _outage(broker: Broker, down_s: float) -> float:
    """Stop the broker for ``down_s``; returns the monotonic time it answered again."""
    try:
        broker.stop()
        time.sleep(down_s)  # the outage itself, not a wait for readiness
    finally:
        broker.start()  # returns once the broker answers a metadata request
    return time.monotonic()


def _records(worker: WorkerProcess) -> list[dict[str, object]]:
    lines = worker.log_path.read_text().splitlines()
    return [orjson.loads(line) for line in lines if line[:1] == "{"]


def _exit_reasons(worker: WorkerProcess) -> list[str]:
    """The worker's own CRITICAL lines (each precedes a deliberate exit)."""
    return [
        str(r["message"])
        for r in _records(worker)
        if r["level"] == "CRITICAL" and r["logger"] in ("consumer", "consumer.worker")
    ]


def _report(what: str, recoveries: list[float], heals: int) -> None:
    print(
        f"{what}: {len(recoveries)} restarts; scoring again after the broker returned: "
        f"median {statistics.median(recoveries):.1f}s, worst {max(recoveries):.1f}s; "
        f"self-heals: {heals}"
    )


@pytest.mark.timeout(_TEST_TIMEOUT_S)
def test_an_idle_worker_scores_again_after_every_broker_restart(
    scenario: Scenario, kafka_broker: Broker
) -> None:
    scenario.register()
    worker = scenario.start_worker("broker-idle-0")
    ids = scenario.publish_scored("before", 100)

    recoveries = []
    for cycle, down_s in enumerate(_IDLE_DOWN_S):
        back = _outage(kafka_broker, down_s)
        ids += scenario.publish_scored(f"after-{cycle}", 20, _RECOVERY_BOUND_S)
        recoveries.append(time.monotonic() - back)
        assert worker.process.poll() is None, f"cycle {cycle} ({down_s}s):\n{worker.log_tail()}"

    heals = metric_value(worker.get("/metrics")[1], "scorer_self_heals_total")
    scenario.stop_workers()
    log = worker.log_path.read_text()
    _report("idle worker", recoveries, log.count(_SELF_HEAL_LINE))

    scenario.audit().assert_exactly_once(ids)
    assert "replacing the transactional producer" in log
    assert log.count(_SELF_HEAL_LINE) == heals, "a self-heal the log does not mention"


@pytest.mark.timeout(_TEST_TIMEOUT_S)
def test_a_busy_worker_scores_exactly_once_through_repeated_broker_restarts(
    scenario: Scenario, kafka_broker: Broker, feature_frame: pd.DataFrame
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
        what="300 applications scored before the first outage",
    )

    recoveries = []
    for down_s in _BUSY_DOWN_S:
        back = _outage(kafka_broker, down_s)
        scenario.wait_for_outcomes(publisher.ids_so_far(), _RECOVERY_BOUND_S)
        recoveries.append(time.monotonic() - back)
    ids = publisher.stop()
    scenario.wait_for_outcomes(ids, _RECOVERY_BOUND_S)
    supervisor.stop()
    scenario.stop_workers()
    logs = worker.log_path.read_text()  # a restarted worker appends to the same file
    _report("busy worker", recoveries, logs.count(_SELF_HEAL_LINE))
    print(f"{len(ids)} applications; worker exits during the outages: {supervisor.exits}")

    scenario.audit().assert_exactly_once(ids)
    assert {code for _, code in supervisor.exits} <= {EXIT_FATAL, EXIT_STALLED, EXIT_STUCK}
    assert "Traceback" not in logs, "the worker crashed instead of exiting on purpose"
    assert len(_exit_reasons(worker)) == len(supervisor.exits), "an exit without its reason"
