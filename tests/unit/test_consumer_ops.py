"""The HTTP surface: health, readiness with reasons, Prometheus metrics, the serving model."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from consumer.model import LoadedModel
from consumer.ops import Metrics, OpsServer
from contracts.model_trust import TrustFailure

_MODEL = LoadedModel(
    "credit-default",
    "4",
    "run-4",
    0.35,
    pipeline=None,  # type: ignore[arg-type]
    metrics={"roc_auc": 0.77},
    params={"C": "0.5"},
)


class State:
    def __init__(self) -> None:
        self.reasons = ["no model loaded", "no partitions assigned"]
        self.model: LoadedModel | None = None
        self.not_live: list[str] = []
        self.refused: dict[str, str] | None = None


@pytest.fixture
def served() -> Iterator[tuple[str, State, Metrics]]:
    state, metrics = State(), Metrics()
    server = OpsServer(
        "127.0.0.1",
        0,
        metrics=metrics,
        readiness=lambda: state.reasons,
        model=lambda: state.model,
        liveness=lambda: state.not_live,
        refusal=lambda: state.refused,
    )
    server.start()
    try:
        yield f"http://127.0.0.1:{server.port}", state, metrics
    finally:
        server.stop()


def _get(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (loopback test server)
            return response.status, response.read(), response.headers["Content-Type"]
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers["Content-Type"]


def test_healthz_answers_while_not_ready(served: tuple[str, State, Metrics]) -> None:
    base, _, _ = served
    status, body, _ = _get(base + "/healthz")
    assert (status, json.loads(body)) == (200, {"status": "alive"})


def test_livez_is_independent_of_readiness_and_fails_with_its_reasons(
    served: tuple[str, State, Metrics],
) -> None:
    base, state, _ = served
    status, body, _ = _get(base + "/livez")
    assert (status, json.loads(body)) == (200, {"live": True, "reasons": []})  # though not ready
    state.reasons = []
    state.not_live = ["not consuming: holding no partitions while 40 input record(s) wait"]
    status, body, _ = _get(base + "/livez")
    assert (status, json.loads(body)) == (503, {"live": False, "reasons": state.not_live})


def test_readyz_reports_reasons_until_ready(served: tuple[str, State, Metrics]) -> None:
    base, state, _ = served
    status, body, content_type = _get(base + "/readyz")
    assert status == 503
    assert content_type == "application/json"
    assert json.loads(body) == {"ready": False, "reasons": state.reasons}
    state.reasons = []
    status, body, _ = _get(base + "/readyz")
    assert (status, json.loads(body)) == (200, {"ready": True, "reasons": []})


def test_readyz_adds_warnings_that_do_not_stop_scoring() -> None:
    problems = ["model registry unreachable at http://mlflow (serving version 4)"]
    server = OpsServer(
        "127.0.0.1",
        0,
        metrics=Metrics(),
        readiness=list,
        model=lambda: _MODEL,
        warnings=lambda: problems,
    )
    server.start()
    try:
        status, body, _ = _get(f"http://127.0.0.1:{server.port}/readyz")
    finally:
        server.stop()
    assert (status, json.loads(body)) == (200, {"ready": True, "reasons": [], "warnings": problems})


def test_model_describes_the_serving_model(served: tuple[str, State, Metrics]) -> None:
    base, state, _ = served
    assert _get(base + "/model")[0] == 503
    state.model = _MODEL
    status, body, _ = _get(base + "/model")
    described = json.loads(body)
    assert status == 200
    assert {k: described[k] for k in ("name", "version", "run_id", "threshold")} == {
        "name": "credit-default",
        "version": "4",
        "run_id": "run-4",
        "threshold": 0.35,
    }
    assert (described["metrics"], described["params"]) == ({"roc_auc": 0.77}, {"C": "0.5"})


def test_model_shows_a_refused_version_beside_the_serving_one(
    served: tuple[str, State, Metrics],
) -> None:
    base, state, metrics = served
    state.refused = {"version": "5", "failure": "unsigned", "reason": "it is not signed"}
    status, body, _ = _get(base + "/model")
    assert (status, json.loads(body)["refused"]) == (503, state.refused)
    state.model = _MODEL
    status, body, _ = _get(base + "/model")
    described = json.loads(body)
    assert (status, described["version"], described["refused"]) == (200, "4", state.refused)

    metrics.model_refused(TrustFailure.UNSIGNED)
    exposition = _get(base + "/metrics")[1].decode()
    assert 'scorer_model_refusals_total{failure="unsigned"} 1.0' in exposition
    assert 'scorer_model_refusals_total{failure="untrusted_type"} 0.0' in exposition


def test_metrics_are_prometheus_text_with_every_family(served: tuple[str, State, Metrics]) -> None:
    base, _, metrics = served
    metrics.model_loaded(_MODEL)
    metrics.set_lags({("apps", 0): 12})
    metrics.watch_loop(seconds_since_poll=lambda: 2.5, assigned_partitions=lambda: 3)
    status, body, content_type = _get(base + "/metrics")
    text = body.decode()
    assert status == 200
    assert content_type.startswith("text/plain")
    for line in (
        "scorer_messages_consumed_total 0.0",
        "scorer_applications_scored_total 0.0",
        'scorer_dead_letters_total{error_type="not-utf8"} 0.0',
        'scorer_stage_latency_seconds_count{stage="commit"} 0.0',
        "scorer_batch_size_count 0.0",
        'scorer_transactions_total{outcome="aborted"} 0.0',
        'scorer_consumer_lag{partition="0",topic="apps"} 12.0',
        "scorer_model_version 4.0",
        'scorer_model_info{name="credit-default",run_id="run-4",version="4"} 1.0',
        'scorer_model_loads_total{outcome="success"} 1.0',
        "scorer_seconds_since_last_poll 2.5",
        "scorer_assigned_partitions 3.0",
        "scorer_self_heals_total 0.0",
        "scorer_last_self_heal_timestamp_seconds 0.0",
    ):
        assert line in text.splitlines(), line


def test_unknown_paths_are_404(served: tuple[str, State, Metrics]) -> None:
    assert _get(served[0] + "/admin")[0] == 404


def test_each_metrics_object_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()
    first.scored.inc()
    assert second.registry.get_sample_value("scorer_applications_scored_total") == 0
