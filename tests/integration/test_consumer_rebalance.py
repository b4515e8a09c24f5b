"""Two workers on a 6-partition topic, with rebalances in the middle of the stream.

The worker only calls ``consume()`` (where rebalance callbacks run) with no
transaction open, and commits its offsets inside each batch's transaction with the
group's metadata, so a partition changes owner exactly at a committed offset: the
new owner resumes there, and a zombie owner's late commit is fenced. The first test
joins a second worker mid-stream and stops the first with SIGTERM; the second kills
workers with ``kill -9`` around rebalances, restarting them as a supervisor would.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from devstack import WorkerProcess, unique_name
from tests.fixtures.kafka import TopicFactory
from tests.fixtures.mlflow_server import MlflowNamespace
from tests.helpers.observe import wait_for
from tests.helpers.scenario import Audit, Scenario, kill_after_scoring, scored_so_far
from tests.helpers.stream import dataset_stream

pytestmark = pytest.mark.integration

_PARTITIONS = 6
_RATE_PER_S = 120.0
_TAIL = 400
"""Applications published after the last fault."""


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
        partitions=_PARTITIONS,
    )
    yield world
    world.close()


def _scores_more(worker: WorkerProcess, more: float) -> None:
    target = scored_so_far(worker) + more
    wait_for(
        lambda: scored_so_far(worker),
        lambda scored: scored >= target,
        timeout_s=120,
        what=f"{worker.url} scoring {more:.0f} more",
    )


def _owners_by_partition(audit: Audit) -> dict[int, list[str]]:
    """Per input partition, the worker that scored each record, in offset order."""
    ordered = sorted(audit.predictions, key=lambda p: (p.input_partition, p.input_offset))
    owners: dict[int, list[str]] = {}
    for prediction in ordered:
        owners.setdefault(prediction.input_partition, []).append(prediction.worker_id)
    return owners


def test_a_worker_joining_and_one_leaving_mid_stream_score_each_application_once(
    scenario: Scenario, feature_frame: pd.DataFrame
) -> None:
    scenario.register()
    first = scenario.start_worker("rebalance-a")
    publisher = scenario.publish(
        dataset_stream(feature_frame, unique_name("rebalance")), rate_per_s=_RATE_PER_S
    )
    _scores_more(first, 300)

    second = scenario.start_worker("rebalance-b")  # ready: the group gave it partitions
    _scores_more(second, 200)
    _scores_more(first, 100)  # both work side by side
    assert first.terminate() == 0, first.log_tail()  # leaves the group after its last commit
    _scores_more(second, 200)
    ids = publisher.stop_after(_TAIL)
    scenario.wait_for_outcomes(ids)
    scenario.stop_workers()

    audit = scenario.audit()
    audit.assert_exactly_once(ids)
    owners = _owners_by_partition(audit)
    assert sorted(owners) == list(range(_PARTITIONS))
    assert {owner[-1] for owner in owners.values()} == {"rebalance-b"}, "b took over everything"
    assert any("rebalance-a" in owner for owner in owners.values())


def test_kill_9_around_rebalances_neither_loses_nor_repeats_a_score(
    scenario: Scenario, feature_frame: pd.DataFrame
) -> None:
    seed = random.randrange(1_000_000)
    print(f"kill points seeded with {seed}")
    rng = random.Random(seed)
    scenario.register()
    workers = {name: scenario.start_worker(name) for name in ("rkill-a", "rkill-b")}
    publisher = scenario.publish(
        dataset_stream(feature_frame, unique_name("rkill")), rate_per_s=_RATE_PER_S
    )
    # Kill one, restart it (the survivor takes its partitions after the session
    # timeout, then gives some back when it rejoins), and kill the survivor right
    # after that rebalance; then the other way round.
    for victim, survivor in (
        ("rkill-a", "rkill-b"),
        ("rkill-b", "rkill-a"),
        ("rkill-a", "rkill-b"),
    ):
        kill_after_scoring(workers[victim], scored_so_far(workers[victim]) + rng.randint(20, 150))
        workers[victim] = scenario.start_worker(victim)  # ready: partitions reassigned
        _scores_more(workers[survivor], rng.randint(0, 60))
    ids = publisher.stop_after(_TAIL)
    scenario.wait_for_outcomes(ids)
    scenario.stop_workers()

    audit = scenario.audit()
    audit.assert_exactly_once(ids)
    assert {p.worker_id for p in audit.predictions} == {"rkill-a", "rkill-b"}
