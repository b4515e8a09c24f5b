"""The shadow challenger end to end, and promotion from the monitor's evidence.

One worker, one scenario: the challenger alias first names a version that cannot load
(the champion scores regardless, and ``/readyz``, ``/model`` and ``/metrics`` say why),
then a good one, which the worker swaps in by itself. Every application then has exactly
one official score, equal to the champion's offline prediction, and every application
scored after the swap exactly one shadow score, equal to the challenger's, until the alias
is moved to the champion's own version: then none.

``promote --from-shadow`` runs (its CLI, in process) against the session's MLflow server and a
monitor database: it refuses on one labelled application too few, then moves ``champion``
to the challenger (verified with the session's key) and keeps the old one as ``previous``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner, Result

from contracts import LoanApplication
from contracts.model_names import CHAMPION_ALIAS, PREVIOUS_ALIAS, SELECTION_REASON_TAG
from contracts.score import ShadowScore
from devstack import WorkerProcess, unique_name
from monitor.store import Store
from tests.fixtures.kafka import TopicFactory
from tests.fixtures.mlflow_server import MlflowNamespace
from tests.helpers.applications import as_frame
from tests.helpers.champion import offline_probabilities, register_champion, register_unloadable
from tests.helpers.observe import wait_for
from tests.helpers.scenario import Scenario
from tests.helpers.signing import public_key_pem_text
from tests.helpers.topics import read_to_end
from training.cli import app
from training.registry import aliases, registry_client
from training.settings import RegistrySettings

pytestmark = pytest.mark.integration

_CHALLENGER = "challenger"


def _shadow_status(worker: WorkerProcess) -> dict[str, Any]:
    status, body = worker.get("/model")
    assert status == 200, body
    return dict(body["shadow"])


def _warnings(worker: WorkerProcess) -> list[str]:
    status, body = worker.get("/readyz")
    assert status == 200, body  # a challenger never makes the worker unready
    return list(body.get("warnings", []))


def test_shadow_scores_are_the_challenger_s_exactly_once_and_never_the_official_ones(
    scenario: Scenario, new_topic: TopicFactory, feature_frame: pd.DataFrame, tmp_path: Path
) -> None:
    names = {"model_name": scenario.namespace.model_name}
    champion = scenario.register()
    unloadable = register_unloadable(
        scenario.tracking_uri, feature_frame, tmp_path, alias=_CHALLENGER, **names,
        experiment=scenario.namespace.experiment,
    )  # fmt: skip
    shadow_topic = new_topic("shadow")
    worker = scenario.start_worker(
        "shadow-0", shadow_alias=_CHALLENGER, shadow_scores_topic=shadow_topic
    )

    warnings = wait_for(
        lambda: _warnings(worker),
        lambda seen: any(w.startswith("shadow challenger: ") for w in seen),
        timeout_s=60,
        what="a warning about the challenger",
    )
    assert f"version {unloadable}" in " ".join(warnings)
    before = scenario.publish_scored("before", 100)  # the champion scores without it
    refused = _shadow_status(worker)
    assert (refused["alias"], refused["model"]) == (_CHALLENGER, None)
    assert refused["refused"]["version"] == unloadable
    assert sum(
        value for name, value in worker.metrics().items()
        if name.startswith("scorer_shadow_model_refusals_total")
    ) >= 1  # fmt: skip

    challenger = scenario.register(seed=1, alias=_CHALLENGER)
    wait_for(
        lambda: _shadow_status(worker)["model"],
        lambda model: model is not None and model["version"] == challenger.version,
        timeout_s=60,
        what="the good challenger loaded",
    )
    after = scenario.publish_scored("after", 300)
    status, described = worker.get("/model")
    shadow_scored = worker.metrics()["scorer_shadow_applications_scored_total"]

    # The alias now names the champion (as promote --from-shadow leaves it): not scored twice.
    client = registry_client(RegistrySettings(tracking_uri=scenario.tracking_uri))
    client.set_registered_model_alias(names["model_name"], _CHALLENGER, champion.version)
    wait_for(
        lambda: _shadow_status(worker)["problems"],
        lambda problems: (
            problems == [f"version {champion.version} is the champion: nothing to compare"]
        ),
        timeout_s=60,
        what="the challenger alias on the champion's version",
    )
    same = scenario.publish_scored("same", 50)
    shadow_scored_same = worker.metrics()["scorer_shadow_applications_scored_total"]
    scenario.stop_workers()

    assert (status, described["version"]) == (200, champion.version)
    assert described["shadow"]["problems"] == []
    assert shadow_scored == len(after)
    assert shadow_scored_same == shadow_scored
    audit = scenario.audit()
    audit.assert_exactly_once(before + after + same)
    read = read_to_end(scenario.bootstrap_servers, [shadow_topic], group_id=unique_name("shadow"))
    shadow = [ShadowScore.model_validate_json(m.value() or b"") for m in read[shadow_topic]]
    assert Counter(s.application_id for s in shadow) == Counter(after)  # once each, none before
    assert {(s.model_version, s.champion_version) for s in shadow} == {
        (challenger.version, champion.version)
    }

    inputs = {
        a.application_id: a
        for a in (LoanApplication.model_validate_json(m.value() or b"") for m in audit.inputs)
    }
    frame = as_frame([inputs[i] for i in after])
    uri = scenario.tracking_uri
    by_id = {s.application_id: s.default_probability for s in shadow}
    np.testing.assert_allclose(
        [by_id[i] for i in after],
        offline_probabilities(uri, challenger.uri, frame),
        rtol=0,
        atol=1e-9,
    )
    official = {s.application_id: s for s in audit.scores}
    np.testing.assert_allclose(
        [official[i].default_probability for i in after],
        offline_probabilities(uri, champion.uri, frame),
        rtol=0,
        atol=1e-9,
    )
    assert {s.model_version for s in official.values()} == {champion.version}


def _evidence(database: Path, champion: str, challenger: str, rows: int) -> None:
    """``rows`` labelled applications: the champion flags every one (a good client costs 1),
    the challenger only the defaulters."""
    defaulted = [n % 4 == 0 for n in range(rows)]
    ids = [f"app-{n}" for n in range(rows)]
    with Store(f"sqlite:///{database}").transaction() as tx:
        tx.add_predictions([
            {"application_id": i, "model_version": champion, "model_run_id": "r",
             "score": 0.5, "threshold": 0.35} for i in ids
        ])  # fmt: skip
        tx.add_shadow_scores([
            {"application_id": i, "model_version": challenger, "model_run_id": "r",
             "champion_version": champion, "score": 0.9 if d else 0.1, "threshold": 0.35}
            for i, d in zip(ids, defaulted, strict=True)
        ])  # fmt: skip
        tx.add_outcomes([
            {"application_id": i, "defaulted": d, "received_at": pd.Timestamp.now(tz="UTC")}
            for i, d in zip(ids, defaulted, strict=True)
        ])  # fmt: skip


def _promote_from_shadow(
    tracking_uri: str, model_name: str, database: Path, min_outcomes: int
) -> Result:
    """``python -m training promote --from-shadow``, in this process (its start-up is the
    slow part of a subprocess), verifying with the session's public key."""
    return CliRunner().invoke(
        app,
        ["promote", "--from-shadow", "--tracking-uri", tracking_uri, "--model-name", model_name,
         "--monitor-database-url", f"sqlite:///{database}", "--min-outcomes", str(min_outcomes)],
        env={"RUMOS_TRAINING_SIGNING_PUBLIC_KEY": public_key_pem_text()},
    )  # fmt: skip


def test_promote_from_shadow_needs_enough_outcomes_and_a_cheaper_challenger(
    mlflow_tracking_uri: str,
    mlflow_namespace: MlflowNamespace,
    feature_frame: pd.DataFrame,
    tmp_path: Path,
) -> None:
    names = {"model_name": mlflow_namespace.model_name, "experiment": mlflow_namespace.experiment}
    champion = register_champion(mlflow_tracking_uri, feature_frame, **names)
    challenger = register_champion(
        mlflow_tracking_uri, feature_frame, seed=1, alias=_CHALLENGER, **names
    )
    database = tmp_path / "monitor.db"
    _evidence(database, champion.version, challenger.version, rows=40)
    client = registry_client(RegistrySettings(tracking_uri=mlflow_tracking_uri))
    name = mlflow_namespace.model_name

    refused = _promote_from_shadow(mlflow_tracking_uri, name, database, min_outcomes=41)
    assert refused.exit_code == 1, refused.output
    assert "only 40 labelled applications scored by both, 41 needed" in refused.stdout
    assert aliases(client, name)[CHAMPION_ALIAS] == champion.version

    promoted = _promote_from_shadow(mlflow_tracking_uri, name, database, min_outcomes=40)
    assert promoted.exit_code == 0, promoted.output
    assert "expected cost 0.0000 vs 0.7500" in promoted.stdout
    held = aliases(client, name)
    assert (held[CHAMPION_ALIAS], held[PREVIOUS_ALIAS]) == (challenger.version, champion.version)
    reason = client.get_model_version(name, challenger.version).tags[SELECTION_REASON_TAG]
    assert reason.startswith("promoted from shadow evidence")
