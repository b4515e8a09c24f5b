"""Crash: ``kill -9`` the worker again and again mid-stream; every application is scored once.

The worker restarts with the same ``worker_id``, so its transactional id fences the
killed incarnation: whatever that one had produced in its open transaction is aborted
and never visible to a read_committed reader, and the batch is consumed again from the
last committed offsets. Kill points are random (seeded, in the test's output): a
number of applications the incarnation must score first, so every kill lands while
records flow and a backlog from the last restart is being worked off.
"""

from __future__ import annotations

import random

import pandas as pd
import pytest

from devstack import unique_name
from tests.helpers.scenario import Scenario, kill_after_scoring
from tests.helpers.stream import dataset_stream
from tests.helpers.topics import read_to_end

pytestmark = pytest.mark.integration

_RATE_PER_S = 100.0
_KILLS = 4
_AFTER_LAST_KILL = 500
"""Applications published after the last restart (about 3,000 flow in all)."""


def test_repeated_kill_9_mid_stream_leaves_exactly_one_score_per_application(
    scenario: Scenario, feature_frame: pd.DataFrame
) -> None:
    seed = random.randrange(1_000_000)
    print(f"kill points seeded with {seed}")
    rng = random.Random(seed)
    scenario.register()
    worker = scenario.start_worker("crash-0")
    publisher = scenario.publish(
        dataset_stream(feature_frame, unique_name("crash")), rate_per_s=_RATE_PER_S
    )

    for _ in range(_KILLS):
        kill_after_scoring(worker, rng.randint(30, 400))
        assert worker.process.returncode == -9
        worker = scenario.start_worker("crash-0")
    ids = publisher.stop_after(_AFTER_LAST_KILL)
    scenario.wait_for_outcomes(ids)
    scenario.stop_workers()

    audit = scenario.audit()
    audit.assert_exactly_once(ids)
    # Reported, not asserted (kill points are random): scores the killed incarnations
    # wrote in transactions their successors aborted; read_committed never shows them.
    uncommitted = read_to_end(
        scenario.bootstrap_servers,
        [scenario.topics.scores],
        group_id=unique_name("uncommitted"),
        uncommitted=True,
    )
    aborted = len(uncommitted[scenario.topics.scores]) - len(ids)
    print(f"{len(ids)} applications; {aborted} scores written by killed incarnations, aborted")
