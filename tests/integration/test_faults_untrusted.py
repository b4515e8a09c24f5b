"""An attacker moves the champion to code: the worker refuses it without running any of it.

With write access to the registry, one registers (and, to get past the signature check,
signs with a stolen key) a ``python_function`` model whose ``load_context`` would create a
marker file, then an sklearn model serialized with skops holding a type whose
``__setstate__`` would create one (listed as trusted in its own ``MLmodel``), then an
unsigned version. Each time the worker refuses the version from its metadata alone, the
marker never appears, ``/readyz``, ``/model`` and ``/metrics`` say so, the old version
keeps scoring exactly once, and the refused version is not tried again while the alias
stays on it. A good, signed version then loads as usual.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from devstack import WorkerProcess, unique_name
from tests.helpers.champion import register_champion
from tests.helpers.observe import metric_value, wait_for
from tests.helpers.scenario import Scenario, scored_so_far
from tests.helpers.stream import dataset_stream
from tests.helpers.untrusted import register_backdoor, register_trap

pytestmark = pytest.mark.integration

_RATE_PER_S = 100.0
_TAIL = 300
_REFUSALS = "scorer_model_refusals_total"


def _metric(worker: WorkerProcess, name: str, **labels: str) -> float:
    status, body = worker.get("/metrics")
    assert status == 200, body
    return metric_value(body, name, **labels) or 0.0


def _refused(worker: WorkerProcess, version: str, failure: str, *, because: str) -> None:
    """Wait until ``/model`` reports ``version`` refused for ``failure``; check the rest."""
    described: Any = wait_for(
        lambda: worker.get("/model")[1],
        lambda body: isinstance(body, dict) and body.get("refused", {}).get("version") == version,
        timeout_s=60,
        what=f"version {version} refused",
    )
    assert described["version"] == "1", "the refused version was swapped in"
    assert described["refused"]["failure"] == failure, described
    assert because in described["refused"]["reason"], described
    status, ready = worker.get("/readyz")
    assert status == 200, "a refused champion made the worker unready"
    assert any(f"version {version}" in w and because in w for w in ready["warnings"]), ready
    assert _metric(worker, _REFUSALS, failure=failure) == 1.0


def _scores_on(worker: WorkerProcess, more: int) -> None:
    scored = scored_so_far(worker)
    wait_for(
        lambda: scored_so_far(worker),
        lambda now: now >= scored + more,
        timeout_s=60,
        what=f"{more} more applications scored by the first version",
    )


def test_models_that_would_run_code_are_refused_before_any_of_it_runs(
    scenario: Scenario, feature_frame: pd.DataFrame, tmp_path: Path
) -> None:
    first = scenario.register()
    worker = scenario.start_worker("untrusted-0")
    publisher = scenario.publish(
        dataset_stream(feature_frame, unique_name("untrusted")), rate_per_s=_RATE_PER_S
    )
    _scores_on(worker, 200)
    name, uri = scenario.namespace.model_name, scenario.tracking_uri
    markers = [tmp_path / "backdoor-ran", tmp_path / "trap-ran"]

    backdoor = register_backdoor(uri, feature_frame, markers[0], model_name=name)
    assert not markers[0].exists(), "registering the backdoor ran it in the test"
    _refused(worker, backdoor, "format", because="not a scikit-learn model")
    trap = register_trap(uri, feature_frame, markers[1], model_name=name)
    assert not markers[1].exists(), "the trap ran outside the test process while registering"
    _refused(worker, trap, "untrusted_type", because="MarkerTrap")
    # Three seconds at one alias check per second: a retry would count a second refusal.
    _scores_on(worker, 300)
    assert _metric(worker, _REFUSALS, failure="untrusted_type") == 1.0
    unsigned = register_champion(uri, feature_frame, model_name=name, seed=3, signed=False)
    _refused(worker, unsigned.version, "unsigned", because="not signed")
    assert [m for m in markers if m.exists()] == [], "code from a refused model ran"

    good = scenario.register(seed=1)
    wait_for(
        lambda: worker.get("/model")[1].get("version"),
        lambda version: version == good.version,
        timeout_s=60,
        what=f"version {good.version} serving",
    )
    assert "refused" not in worker.get("/model")[1]
    assert worker.get("/readyz") == (200, {"ready": True, "reasons": []})
    ids = publisher.stop_after(_TAIL)
    scenario.wait_for_outcomes(ids)
    scenario.stop_workers()

    assert [m for m in markers if m.exists()] == [], "code from a refused model ran"
    audit = scenario.audit()
    audit.assert_exactly_once(ids)
    assert {s.model_version for s in audit.scores} == {first.version, good.version}
    audit.assert_versions_never_go_back()
