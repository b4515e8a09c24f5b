"""Group faults: a worker evicted from its group either joins it again or says it cannot.

Eviction is real: the worker's process is frozen (SIGSTOP) past its 6 s session
timeout, so the broker removes its member, and thawed. Then:

* a *squatter* took the group meanwhile, speaking an assignment protocol the worker
  does not (``cooperative-sticky``; the worker offers ``range,roundrobin``), and holds
  every partition without committing. The broker refuses the worker's JoinGroup for
  as long as the squatter stays: the worker holds nothing while records wait and the
  group commits nothing. Within ``self_heal_after_s`` it fails ``/livez``, replaces its
  Kafka clients (refused again), and exits with ``EXIT_STUCK`` for its supervisor.
  Restarted once the squatter is gone, it scores everything exactly once;
* its group was deleted meanwhile (an empty group can be): the worker joins the new,
  empty group and scores what arrives. Deleting a group deletes its committed
  offsets, so the input is read again from ``auto.offset.reset`` (earliest): that is
  the operator's instruction, not a worker fault, so exactly-once is not asserted there.

On one broker the group coordinator cannot move to another node; the broker-restart
tests (``test_faults_broker``) make the coordinator disappear and come back instead.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

import pandas as pd
import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient

from consumer.worker import EXIT_STUCK
from devstack import WorkerProcess, unique_name
from tests.helpers.observe import wait_for
from tests.helpers.scenario import Scenario
from tests.helpers.stream import dataset_stream

pytestmark = pytest.mark.integration

_GROUP_TIMEOUT_S = 60.0
_SELF_HEAL_BOUND_S = 120.0
"""Generous against ``self_heal_after_s`` (10 s in FAST_WORKER) on a loaded machine."""


def _members(admin: AdminClient, group_id: str) -> int:
    [future] = admin.describe_consumer_groups([group_id]).values()
    return len(future.result(timeout=10).members)


@contextmanager
def _evicted(worker: WorkerProcess, admin: AdminClient, group_id: str) -> Iterator[None]:
    """Freeze ``worker`` until the broker has removed it from ``group_id``; thaw it after."""
    worker.process.send_signal(signal.SIGSTOP)
    try:
        wait_for(
            lambda: _members(admin, group_id),
            lambda members: members == 0,
            timeout_s=_GROUP_TIMEOUT_S,
            what="the frozen worker removed from its group",
        )
        yield
    finally:
        worker.process.send_signal(signal.SIGCONT)


def _squatter(scenario: Scenario) -> Consumer:
    """A member of the worker's group, with a protocol the worker cannot join, owning all."""
    squatter = Consumer(
        {
            "bootstrap.servers": scenario.bootstrap_servers,
            "group.id": scenario.group_id,
            "partition.assignment.strategy": "cooperative-sticky",
            "enable.auto.commit": False,
            "log_level": 0,
        }
    )
    squatter.subscribe([scenario.topics.applications])
    owned: set[int] = set()

    def poll_for_assignment() -> set[int]:
        squatter.poll(0.2)
        owned.update(tp.partition for tp in squatter.assignment())
        return owned

    wait_for(poll_for_assignment, bool, timeout_s=_GROUP_TIMEOUT_S, what="squatter assigned")
    return squatter


def test_a_worker_refused_by_its_group_fails_liveness_then_exits_for_a_restart(
    scenario: Scenario, kafka_admin: AdminClient, feature_frame: pd.DataFrame
) -> None:
    scenario.register()
    worker = scenario.start_worker("group-0")
    ids = scenario.publish_scored("before", 100)

    with _evicted(worker, kafka_admin, scenario.group_id):
        squatter = _squatter(scenario)
    try:
        waiting = scenario.publish(
            dataset_stream(feature_frame, unique_name("waiting")), rate_per_s=500
        ).stop_after(50)
        _, body = wait_for(
            lambda: worker.get("/livez"),
            lambda answer: answer[0] == 503,
            timeout_s=_SELF_HEAL_BOUND_S,
            what="/livez failing for a worker refused by its group",
        )
        assert any("holding no partitions" in r for r in body["reasons"]), body
        assert worker.process.wait(timeout=_SELF_HEAL_BOUND_S) == EXIT_STUCK, worker.log_tail()
    finally:
        squatter.close()

    log = worker.log_path.read_text()
    assert "self-healing: not consuming, replacing the Kafka consumer and producer" in log
    assert "exiting for a restart" in log
    assert "Traceback" not in log
    restarted = scenario.start_worker("group-0")  # as its supervisor would
    scenario.wait_for_outcomes(waiting)
    assert restarted.get("/livez")[0] == 200
    scenario.stop_workers()
    scenario.audit().assert_exactly_once(ids + waiting)


def test_a_worker_joins_again_after_its_group_is_deleted(
    scenario: Scenario, kafka_admin: AdminClient
) -> None:
    scenario.register()
    worker = scenario.start_worker("group-1")
    ids = scenario.publish_scored("before", 100)

    with _evicted(worker, kafka_admin, scenario.group_id):
        [deleted] = kafka_admin.delete_consumer_groups([scenario.group_id]).values()
        deleted.result(timeout=_GROUP_TIMEOUT_S)

    after = scenario.publish_scored("after", 50, _SELF_HEAL_BOUND_S)
    assert worker.process.poll() is None, worker.log_tail()
    assert worker.get("/livez")[0] == 200
    scenario.stop_workers()
    audit = scenario.audit()
    scored = {s.application_id for s in audit.scores}
    assert set(ids + after) <= scored
    assert audit.dead_letters == []
