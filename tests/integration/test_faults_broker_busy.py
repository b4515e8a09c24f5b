"""Broker restarts while a worker is busy: exactly one committed score per application.

The story of what an outage does to a worker is in ``test_faults_broker.py``; the idle
and busy cases are separate files so that ``pytest -n 3 --dist loadfile`` runs them in
parallel (together they are the suite's longest tenth).
"""

from __future__ import annotations

import time

import pandas as pd
import pytest

from consumer.worker import EXIT_FATAL, EXIT_STALLED, EXIT_STUCK
from devstack import Broker, unique_name
from tests.helpers.observe import wait_for
from tests.helpers.outage import (
    RECOVERY_BOUND_S,
    SELF_HEAL_LINE,
    TEST_TIMEOUT_S,
    exit_reasons,
    outage,
    report,
)
from tests.helpers.scenario import Scenario, Supervisor, scored_so_far
from tests.helpers.stream import dataset_stream

pytestmark = pytest.mark.integration

_BUSY_DOWN_S = [1.0, 8.0, 2.0, 10.0, 3.0, 6.5, 4.0, 12.0, 5.0, 9.0]
_RATE_PER_S = 100.0


@pytest.mark.timeout(TEST_TIMEOUT_S)
def test_a_busy_worker_scores_exactly_once_through_repeated_broker_restarts(
    scenario: Scenario, kafka_broker: Broker, feature_frame: pd.DataFrame
) -> None:
    scenario.register()
    worker = scenario.start_worker("broker-0")
    supervisor = Supervisor(scenario, ["broker-0"])
    applications = dataset_stream(feature_frame, unique_name("broker"))
    publisher = scenario.publish(applications, rate_per_s=_RATE_PER_S)
    handed: list[str] = []
    wait_for(
        lambda: scored_so_far(worker),
        lambda scored: scored >= 300,
        timeout_s=120,
        what="300 applications scored before the first outage",
    )

    recoveries = []
    for down_s in _BUSY_DOWN_S:
        back = outage(kafka_broker, down_s)
        # The publishing client can hold what it queued during the outage for minutes
        # (Scenario.landed): a fresh one keeps the worker busy after every restart.
        publisher.abandon()
        handed += publisher.ids_so_far()
        publisher = scenario.publish(applications, rate_per_s=_RATE_PER_S)
        scenario.wait_for_outcomes(scenario.landed(handed), RECOVERY_BOUND_S)
        recoveries.append(time.monotonic() - back)
    handed += publisher.stop()
    ids = scenario.landed(handed)
    scenario.wait_for_outcomes(ids, RECOVERY_BOUND_S)
    supervisor.stop()
    scenario.stop_workers()
    logs = worker.log_path.read_text()  # a restarted worker appends to the same file
    report("busy worker", recoveries, logs.count(SELF_HEAL_LINE))
    print(
        f"{len(ids)} applications ({len(handed) - len(ids)} never reached the input); "
        f"worker exits during the outages: {supervisor.exits}"
    )

    scenario.audit().assert_exactly_once(ids)
    assert {code for _, code in supervisor.exits} <= {EXIT_FATAL, EXIT_STALLED, EXIT_STUCK}
    assert "Traceback" not in logs, "the worker crashed instead of exiting on purpose"
    assert len(exit_reasons(worker)) == len(supervisor.exits), "an exit without its reason"
