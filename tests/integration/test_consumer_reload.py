"""Hot reload mid-stream: ``champion`` moves while applications flow, and nothing breaks.

The worker reads the model once per batch, and the alias watcher publishes a new
version only once it is fully loaded, so the swap falls between two batches: no
message is lost or scored twice, no batch mixes versions, each input partition sees
the old version and then only the new one, and every probability equals what the
version that scored it gives offline. The second test kills the worker around the
swap (while the new version may be loading, and after it serves): still exactly once,
and a version never goes back.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict

import numpy as np
import pandas as pd
import pytest

from contracts import LoanApplication
from devstack import WorkerProcess, unique_name
from tests.helpers.applications import applications_from_frame, as_frame
from tests.helpers.champion import RegisteredChampion, offline_probabilities
from tests.helpers.observe import wait_for
from tests.helpers.scenario import Audit, Scenario, kill_after_scoring, scored_so_far
from tests.helpers.stream import encoded

pytestmark = pytest.mark.integration

_AVAILABLE = 24_000
"""Applications the stream could publish; it stops a fixed number after the last fault.
Enough for over three minutes at the rate below: five worker starts on a loaded machine."""
_RATE_PER_S = 120.0
_BEFORE_SWAP = 400
"""Applications the first version scores before the alias moves."""
_AFTER_SWAP = 400
"""Applications published once the new version serves (or the worker last restarted)."""


def _serving_version(worker: WorkerProcess) -> str | None:
    status, body = worker.get("/model")
    return body["version"] if status == 200 else None


def _assert_each_version_scores_like_offline(
    scenario: Scenario,
    audit: Audit,
    applications: list[LoanApplication],
    champions: list[RegisteredChampion],
) -> None:
    by_id = {a.application_id: a for a in applications}
    scores_by_version = defaultdict(list)
    for score in audit.scores:
        scores_by_version[score.model_version].append(score)
    assert sorted(scores_by_version) == sorted(c.version for c in champions), "not both served"
    for champion in champions:
        scores = scores_by_version[champion.version]
        features = as_frame([by_id[s.application_id] for s in scores])
        offline = offline_probabilities(scenario.tracking_uri, champion.uri, features)
        online = np.array([s.default_probability for s in scores])
        np.testing.assert_allclose(online, offline, rtol=0, atol=1e-9)
        assert {s.threshold for s in scores} == {champion.threshold}


def _assert_no_batch_mixes_versions(audit: Audit) -> None:
    # Every record of a batch carries the batch's scoring time and worker.
    versions_by_batch = defaultdict(set)
    for prediction in audit.predictions:
        versions_by_batch[(prediction.worker_id, prediction.scored_at)].add(
            prediction.model_version
        )
    mixed = [batch for batch, versions in versions_by_batch.items() if len(versions) > 1]
    assert not mixed, f"batches scored with two versions: {mixed[:3]}"


def _assert_swapped_once_per_partition(audit: Audit, old: str, new: str) -> None:
    audit.assert_versions_never_go_back()
    for partition, versions in audit.versions_by_partition().items():
        assert versions[0] == old, f"partition {partition} did not start on version {old}"
        assert versions[-1] == new, f"partition {partition} did not end on version {new}"


def test_moving_the_champion_mid_stream_swaps_between_batches(
    scenario: Scenario, feature_frame: pd.DataFrame
) -> None:
    first = scenario.register(seed=0, threshold=0.35)
    worker = scenario.start_worker("reload-0")
    applications = applications_from_frame(feature_frame, _AVAILABLE, prefix=unique_name("reload"))
    publisher = scenario.publish(encoded(applications), rate_per_s=_RATE_PER_S)
    wait_for(
        lambda: scored_so_far(worker),
        lambda scored: scored >= _BEFORE_SWAP,
        timeout_s=120,
        what=f"{_BEFORE_SWAP} applications scored by version {first.version}",
    )

    second = scenario.register(seed=1, threshold=0.45)  # registers and moves the alias
    wait_for(
        lambda: _serving_version(worker),
        lambda version: version == second.version,
        timeout_s=60,
        what=f"version {second.version} serving",
    )
    ids = publisher.stop_after(_AFTER_SWAP)
    scenario.wait_for_outcomes(ids)
    scenario.stop_workers()

    audit = scenario.audit()
    audit.assert_exactly_once(ids)
    _assert_swapped_once_per_partition(audit, first.version, second.version)
    _assert_no_batch_mixes_versions(audit)
    _assert_each_version_scores_like_offline(scenario, audit, applications, [first, second])


def test_kill_9_around_a_hot_reload_neither_loses_nor_repeats_a_score(
    scenario: Scenario, feature_frame: pd.DataFrame
) -> None:
    seed = random.randrange(1_000_000)
    print(f"kill points seeded with {seed}")
    rng = random.Random(seed)
    first = scenario.register(seed=0, threshold=0.35)
    second = scenario.register(seed=1, threshold=0.45, alias="challenger")
    worker = scenario.start_worker("reload-kill-0")
    applications = applications_from_frame(feature_frame, _AVAILABLE, prefix=unique_name("rkill"))
    publisher = scenario.publish(encoded(applications), rate_per_s=_RATE_PER_S)

    kill_after_scoring(worker, rng.randint(100, 300))
    worker = scenario.start_worker("reload-kill-0")
    kill_after_scoring(worker, rng.randint(50, 200))
    worker = scenario.start_worker("reload-kill-0")  # still the first version
    assert _serving_version(worker) == first.version
    wait_for(
        lambda: scored_so_far(worker),
        lambda scored: scored >= 50,
        timeout_s=120,
        what="the restarted worker scoring",
    )
    scenario.move_champion(second.version)
    # Killed while the watcher may be loading the new version; the next incarnation
    # loads it at start-up.
    time.sleep(rng.uniform(0.0, 2.5))  # a random kill moment, not a wait for readiness
    worker.kill()
    worker = scenario.start_worker("reload-kill-0")
    assert _serving_version(worker) == second.version
    kill_after_scoring(worker, rng.randint(50, 200))
    worker = scenario.start_worker("reload-kill-0")
    ids = publisher.stop_after(_AFTER_SWAP)
    scenario.wait_for_outcomes(ids)
    scenario.stop_workers()

    audit = scenario.audit()
    audit.assert_exactly_once(ids)
    _assert_swapped_once_per_partition(audit, first.version, second.version)
    _assert_no_batch_mixes_versions(audit)
    _assert_each_version_scores_like_offline(scenario, audit, applications, [first, second])
