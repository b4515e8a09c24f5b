"""Operations surface: Prometheus metrics and a small HTTP server.

Endpoints: ``/healthz`` (the process answers), ``/livez`` (200 while the worker is
doing its job; 503 with the reasons when it is stuck not consuming or its loop stopped
going round: the check for an orchestrator's restart), ``/readyz`` (200 when a model is
loaded, partitions are assigned and the producer is healthy; else 503 with the
reasons; either way ``warnings``, when present, names problems that do not stop
scoring, such as an unreachable registry or a refused champion), ``/metrics``
(Prometheus text) and ``/model`` (the serving model's name, version, run id,
threshold, whether it was signed, feature policy, features, explanation method and
reason-table version, and the run's metrics and params; plus ``refused``, the version the
alias points at and why the worker refused it, while it does; plus ``shadow`` when a shadow
challenger is configured: its alias, its description like the champion's once loaded, and
its problems). Nothing here holds or prints settings, so no secret can leak through it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Final

import orjson
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
)
from prometheus_client.exposition import generate_latest

from contracts.model_trust import TrustFailure
from contracts.topics import DeadLetterReason

if TYPE_CHECKING:
    from consumer.model import LoadedModel

_log = logging.getLogger(__name__)

STAGES: Final = ("decode", "score", "shadow", "produce", "commit")
"""Values of the ``stage`` label of ``scorer_stage_latency_seconds``."""
_BATCH_BUCKETS: Final = (1, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000)
_LATENCY_BUCKETS: Final = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


class Metrics:
    """The worker's Prometheus metrics, in a registry of their own (built at start-up)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.consumed = Counter("scorer_messages_consumed", "Input records consumed.", registry=r)
        self.scored = Counter("scorer_applications_scored", "Applications scored.", registry=r)
        self.dead_lettered = Counter(
            "scorer_dead_letters",
            "Input records sent to the dead-letter topic.",
            ["error_type"],
            registry=r,
        )
        self.batch_size = Histogram(
            "scorer_batch_size", "Records per consumed batch.", buckets=_BATCH_BUCKETS, registry=r
        )
        self.stage_latency = Histogram(
            "scorer_stage_latency_seconds",
            "Seconds spent per batch in each stage.",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.transactions = Counter(
            "scorer_transactions", "Batch transactions by outcome.", ["outcome"], registry=r
        )
        self.consumer_lag = Gauge(
            "scorer_consumer_lag",
            "Records behind the high watermark.",
            ["topic", "partition"],
            registry=r,
        )
        self.model_version = Gauge(
            "scorer_model_version", "Registry version of the serving model (0: none).", registry=r
        )
        self.model_info = Info("scorer_model", "The serving model.", registry=r)
        self.model_loads = Counter(
            "scorer_model_loads", "Model load attempts by outcome.", ["outcome"], registry=r
        )
        self.model_refusals = Counter(
            "scorer_model_refusals",
            "Model versions refused before loading, by failed check.",
            ["failure"],
            registry=r,
        )
        self.registry_reachable = Gauge(
            "scorer_registry_reachable",
            "1 when the model registry answered the last alias check, else 0.",
            registry=r,
        )
        self.seconds_since_poll = Gauge(
            "scorer_seconds_since_last_poll",
            "Seconds since the consumer last returned from a poll.",
            registry=r,
        )
        self.assigned_partitions = Gauge(
            "scorer_assigned_partitions", "Input partitions this worker owns.", registry=r
        )
        self.reasons_unavailable = Counter(
            "scorer_reasons_unavailable",
            "Applications scored without reason codes because their explanation failed.",
            registry=r,
        )
        self.shadow_scored = Counter(
            "scorer_shadow_applications_scored",
            "Applications the shadow challenger scored (committed with the official scores).",
            registry=r,
        )
        self.shadow_failures = Counter(
            "scorer_shadow_failures",
            "Batches the shadow challenger failed to score (the official scores still went out).",
            registry=r,
        )
        self.shadow_model_version = Gauge(
            "scorer_shadow_model_version",
            "Registry version of the shadow challenger (0: none loaded).",
            registry=r,
        )
        self.shadow_model_loads = Counter(
            "scorer_shadow_model_loads",
            "Shadow challenger load attempts by outcome.",
            ["outcome"],
            registry=r,
        )
        self.shadow_model_refusals = Counter(
            "scorer_shadow_model_refusals",
            "Shadow challenger versions refused before loading, by failed check.",
            ["failure"],
            registry=r,
        )
        self.self_heals = Counter(
            "scorer_self_heals",
            "Times the worker replaced its Kafka clients because it was not consuming.",
            registry=r,
        )
        self.last_self_heal = Gauge(
            "scorer_last_self_heal_timestamp_seconds",
            "Unix time of the last self-heal (0: never).",
            registry=r,
        )
        for reason in DeadLetterReason:
            self.dead_lettered.labels(reason.value)
        for stage in STAGES:
            self.stage_latency.labels(stage)
        for outcome in ("committed", "aborted"):
            self.transactions.labels(outcome)
        for outcome in ("success", "failure"):
            self.model_loads.labels(outcome)
            self.shadow_model_loads.labels(outcome)
        for failure in TrustFailure:
            self.model_refusals.labels(failure.value)
            self.shadow_model_refusals.labels(failure.value)

    def watch_loop(
        self, *, seconds_since_poll: Callable[[], float], assigned_partitions: Callable[[], int]
    ) -> None:
        """Read the loop's poll age and assignment size at each scrape."""
        self.seconds_since_poll.set_function(seconds_since_poll)
        self.assigned_partitions.set_function(assigned_partitions)

    def self_healed(self) -> None:
        self.self_heals.inc()
        self.last_self_heal.set_to_current_time()

    def model_loaded(self, model: LoadedModel) -> None:
        self.model_loads.labels("success").inc()
        self.model_version.set(float(model.version) if model.version.isdigit() else 0.0)
        self.model_info.info(
            {"name": model.name, "version": model.version, "run_id": model.run_id or ""}
        )

    def model_load_failed(self) -> None:
        self.model_loads.labels("failure").inc()

    def model_refused(self, failure: TrustFailure) -> None:
        self.model_refusals.labels(failure.value).inc()

    def registry_checked(self, reachable: bool) -> None:
        self.registry_reachable.set(1.0 if reachable else 0.0)

    def shadow_events(self) -> ShadowModelEvents:
        """What the shadow challenger's alias watcher reports to (its own instruments)."""
        return ShadowModelEvents(self)

    def set_lags(self, lags: Mapping[tuple[str, int], int]) -> None:
        self.consumer_lag.clear()
        for (topic, partition), lag in lags.items():
            self.consumer_lag.labels(topic, str(partition)).set(lag)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class ShadowModelEvents:
    """The shadow watcher's ``ModelEvents``: the ``scorer_shadow_*`` instruments, so a
    challenger's loads and refusals never read as the champion's."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def model_loaded(self, model: LoadedModel) -> None:
        self._metrics.shadow_model_loads.labels("success").inc()
        version = float(model.version) if model.version.isdigit() else 0.0
        self._metrics.shadow_model_version.set(version)

    def model_load_failed(self) -> None:
        self._metrics.shadow_model_loads.labels("failure").inc()

    def model_refused(self, failure: TrustFailure) -> None:
        self._metrics.shadow_model_refusals.labels(failure.value).inc()

    def registry_checked(self, reachable: bool) -> None:
        """The champion's watcher already reports the registry's reachability."""


class OpsServer:
    """``ThreadingHTTPServer`` in a daemon thread serving health, readiness, metrics, model."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        metrics: Metrics,
        readiness: Callable[[], list[str]],
        model: Callable[[], LoadedModel | None],
        warnings: Callable[[], list[str]] = list,
        liveness: Callable[[], list[str]] = list,
        refusal: Callable[[], Mapping[str, str] | None] = lambda: None,
        shadow: Callable[[], Mapping[str, object] | None] = lambda: None,
    ) -> None:
        handler = _handler_class(metrics, readiness, model, warnings, liveness, refusal, shadow)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="ops-http", daemon=True
        )

    @property
    def port(self) -> int:
        """The bound port (useful when configured as 0)."""
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()
        _log.info("ops server listening", extra={"port": self.port})

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler_class(
    metrics: Metrics,
    readiness: Callable[[], list[str]],
    model: Callable[[], LoadedModel | None],
    warnings: Callable[[], list[str]],
    liveness: Callable[[], list[str]],
    refusal: Callable[[], Mapping[str, str] | None],
    shadow: Callable[[], Mapping[str, object] | None],
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                self._json(HTTPStatus.OK, {"status": "alive"})
            elif path == "/livez":
                problems = liveness()
                status = HTTPStatus.SERVICE_UNAVAILABLE if problems else HTTPStatus.OK
                self._json(status, {"live": not problems, "reasons": problems})
            elif path == "/readyz":
                reasons = readiness()
                status = HTTPStatus.SERVICE_UNAVAILABLE if reasons else HTTPStatus.OK
                body: dict[str, object] = {"ready": not reasons, "reasons": reasons}
                if problems := warnings():
                    body["warnings"] = problems
                self._json(status, body)
            elif path == "/metrics":
                self._send(HTTPStatus.OK, metrics.exposition(), CONTENT_TYPE_LATEST)
            elif path == "/model":
                self._model()
            else:
                self._json(HTTPStatus.NOT_FOUND, {"reason": f"no such endpoint: {path}"})

        def _model(self) -> None:
            serving, refused = model(), refusal()
            body: dict[str, object]
            if serving is None:
                status, body = HTTPStatus.SERVICE_UNAVAILABLE, {"reason": "no model loaded"}
            else:
                status, body = HTTPStatus.OK, serving.describe()
            if refused is not None:
                body["refused"] = dict(refused)
            if (challenger := shadow()) is not None:
                body["shadow"] = dict(challenger)
            self._json(status, body)

        def log_message(self, format: str, *args: object) -> None:
            _log.debug("http " + format, *args)

        def _json(self, status: HTTPStatus, body: object) -> None:
            self._send(status, orjson.dumps(body), "application/json")

        def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler
