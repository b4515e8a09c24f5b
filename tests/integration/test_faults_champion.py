"""A bad champion: the alias moves to a version the worker must refuse, mid-stream.

Two kinds of bad version: one trained on the raw CSV column names (it loads, but its
signature does not take the contract's features, so scoring with it would fail every
batch), and one whose serialized pipeline is garbage. For each, the worker keeps
scoring with the model it has, stays ready, says why in ``/readyz``'s warnings and
counts the failed load in ``/metrics``; when the alias moves on to a good version, that
one is served. No application is lost or scored twice, and none by a bad version.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from devstack import WorkerProcess, unique_name
from tests.helpers.champion import register_foreign_inputs, register_unloadable
from tests.helpers.observe import metric_value, wait_for
from tests.helpers.scenario import Scenario, scored_so_far
from tests.helpers.stream import dataset_stream

pytestmark = pytest.mark.integration

_RATE_PER_S = 100.0
_TAIL = 300


def _warnings(worker: WorkerProcess) -> tuple[int, list[str]]:
    status, body = worker.get("/readyz")
    return status, list(body.get("warnings", [])) if isinstance(body, dict) else []


def _metric(worker: WorkerProcess, name: str, **labels: str) -> float | None:
    status, body = worker.get("/metrics")
    assert status == 200, body
    return metric_value(body, name, **labels)


def _refused(worker: WorkerProcess, version: str, *, because: str) -> None:
    """Wait until ``/readyz`` warns that ``version`` is refused; check nothing else changed."""
    status, warnings = wait_for(
        lambda: _warnings(worker),
        lambda seen: any(f"version {version}" in w for w in seen[1]),
        timeout_s=60,
        what=f"a warning about version {version}",
    )
    assert status == 200, "a bad champion made the worker unready"
    assert because in " ".join(warnings), warnings
    assert worker.process.poll() is None, worker.log_tail()
    described: Any = worker.get("/model")[1]
    assert described["version"] == "1", "the bad version was swapped in"
    assert _metric(worker, "scorer_registry_reachable") == 1.0
    assert (_metric(worker, "scorer_model_loads_total", outcome="failure") or 0) >= 1


def test_a_champion_that_cannot_serve_is_refused_and_the_old_model_keeps_scoring(
    scenario: Scenario, feature_frame: pd.DataFrame, tmp_path: Path
) -> None:
    first = scenario.register()
    worker = scenario.start_worker("champion-0")
    publisher = scenario.publish(
        dataset_stream(feature_frame, unique_name("champion")), rate_per_s=_RATE_PER_S
    )
    wait_for(
        lambda: scored_so_far(worker),
        lambda scored: scored >= 200,
        timeout_s=120,
        what="200 applications scored by the first version",
    )
    names = {
        "model_name": scenario.namespace.model_name,
        "experiment": scenario.namespace.experiment,
    }

    foreign = register_foreign_inputs(scenario.tracking_uri, feature_frame, **names)
    _refused(worker, foreign, because="LIMIT_BAL")
    unloadable = register_unloadable(scenario.tracking_uri, feature_frame, tmp_path, **names)
    _refused(worker, unloadable, because="do not load")
    scored = scored_so_far(worker)
    wait_for(
        lambda: scored_so_far(worker),
        lambda now: now >= scored + 100,
        timeout_s=60,
        what="scoring going on with the first version",
    )

    good = scenario.register(seed=1)
    wait_for(
        lambda: worker.get("/model")[1].get("version"),
        lambda version: version == good.version,
        timeout_s=60,
        what=f"version {good.version} serving",
    )
    assert _warnings(worker) == (200, []), "the warning outlived the problem"
    ids = publisher.stop_after(_TAIL)
    scenario.wait_for_outcomes(ids)
    scenario.stop_workers()

    audit = scenario.audit()
    audit.assert_exactly_once(ids)
    assert {s.model_version for s in audit.scores} == {first.version, good.version}
    audit.assert_versions_never_go_back()
