"""One fault test's world: fresh topics and group, a registered champion, the workers it runs.

``Scenario`` starts workers (``python -m consumer`` subprocesses) and paced publishers,
and always stops what it started, whatever the test did. ``Audit`` is what the output
topics hold once every worker has stopped: with no transaction open, the ends of the
topics are final, so "exactly one" is checked on everything that will ever be there.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from confluent_kafka import Message
from mlflow.tracking import MlflowClient

from contracts.model_names import CHAMPION_ALIAS
from contracts.score import LoanScore, PredictionRecord
from devstack import ScorerTopics, WorkerProcess, unique_name, worker_env
from tests.fixtures.kafka import TopicFactory
from tests.fixtures.mlflow_server import MlflowNamespace
from tests.helpers.champion import RegisteredChampion, register_champion
from tests.helpers.observe import metric_value
from tests.helpers.signing import public_key_pem_text
from tests.helpers.stream import PacedPublisher, dataset_stream
from tests.helpers.topics import read_committed, read_to_end

FAST_WORKER = {
    # Small batches make many transactions, so a kill lands at a random step of one.
    "batch_max_messages": "100",
    "batch_max_wait_ms": "50",
    "reload_interval_s": "1",
    "transaction_timeout_ms": "10000",
    "stall_timeout_s": "30",
    "self_heal_after_s": "10",
    # A killed member leaves the group after 6 s (the broker's minimum), not 45 s.
    "consumer_extra": '{"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000}',
}
"""Worker settings for fault tests: the defaults scaled down so faults heal in seconds."""

_SCORED = "scorer_applications_scored_total"
_PUBLISH_RATE_PER_S = 500.0
_KILL_POLL_S = 0.02
_SUPERVISE_POLL_S = 0.2
_FAILED_LOG_CHARS = 20_000


@dataclass(frozen=True)
class Audit:
    """Every committed record of a scenario's topics, read once all writers stopped."""

    inputs: list[Message]
    score_records: list[Message]
    predictions: list[PredictionRecord]
    dead_letters: list[Message]

    @property
    def scores(self) -> list[LoanScore]:
        return [LoanScore.model_validate_json(m.value() or b"") for m in self.score_records]

    def assert_exactly_once(self, ids: Sequence[str]) -> None:
        """Each of ``ids`` was published once and has exactly one score and one prediction."""
        assert len(set(ids)) == len(ids), "the test published an id twice"
        published = Counter((m.key() or b"").decode() for m in self.inputs)
        assert published == Counter(ids), "the input topic does not hold each application once"
        for what, seen in (
            ("score", Counter(s.application_id for s in self.scores)),
            ("prediction", Counter(p.application_id for p in self.predictions)),
        ):
            duplicated = sorted(i for i, n in seen.items() if n > 1)
            missing = sorted(set(ids) - set(seen))
            unexpected = sorted(set(seen) - set(ids))
            summary = (
                f"{len(ids)} applications, {sum(seen.values())} {what}s: "
                f"{len(duplicated)} duplicated {duplicated[:5]}, {len(missing)} missing "
                f"{missing[:5]}, {len(unexpected)} unexpected {unexpected[:5]}"
            )
            assert not duplicated, summary
            assert not missing, summary
            assert not unexpected, summary
        assert self.dead_letters == [], "a valid application was dead-lettered"

    def versions_by_partition(self) -> dict[int, list[str]]:
        """The model version of each input partition's records, in offset order."""
        ordered = sorted(self.predictions, key=lambda p: (p.input_partition, p.input_offset))
        versions: dict[int, list[str]] = {}
        for prediction in ordered:
            versions.setdefault(prediction.input_partition, []).append(prediction.model_version)
        return versions

    def assert_versions_never_go_back(self) -> None:
        """Per input partition, in offset order, the model version never decreases."""
        for partition, versions in self.versions_by_partition().items():
            numbers = [int(v) for v in versions]
            back = [i for i in range(1, len(numbers)) if numbers[i] < numbers[i - 1]]
            assert not back, f"partition {partition}: version goes back at records {back[:5]}"


@dataclass
class Scenario:
    """Topics, group, registry namespace and processes of one test; ``close()`` stops them."""

    bootstrap_servers: str
    tracking_uri: str
    namespace: MlflowNamespace
    feature_frame: pd.DataFrame
    topics: ScorerTopics
    workdir: Path
    group_id: str = field(default_factory=lambda: unique_name("scorer"))
    workers: list[WorkerProcess] = field(default_factory=list)
    publishers: list[PacedPublisher] = field(default_factory=list)
    supervisors: list[Supervisor] = field(default_factory=list)
    _envs: dict[str, dict[str, str]] = field(default_factory=dict)
    _latest: dict[str, WorkerProcess] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        *,
        bootstrap_servers: str,
        tracking_uri: str,
        namespace: MlflowNamespace,
        feature_frame: pd.DataFrame,
        new_topic: TopicFactory,
        workdir: Path,
        partitions: int = 3,
    ) -> Scenario:
        topics = ScorerTopics(
            applications=new_topic("applications", partitions=partitions),
            scores=new_topic("scores"),
            dead_letters=new_topic("dlq"),
            predictions=new_topic("predictions"),
        )
        return cls(bootstrap_servers, tracking_uri, namespace, feature_frame, topics, workdir)

    def register(
        self,
        *,
        seed: int = 0,
        threshold: float = 0.35,
        alias: str = CHAMPION_ALIAS,
        **model: Any,
    ) -> RegisteredChampion:
        """Fit and register a new version of the scenario's model; point ``alias`` at it.

        ``model``: ``register_champion``'s other options (features, feature_policy, ...).
        """
        return register_champion(
            self.tracking_uri,
            self.feature_frame,
            model_name=self.namespace.model_name,
            experiment=self.namespace.experiment,
            threshold=threshold,
            seed=seed,
            alias=alias,
            **model,
        )

    def move_champion(self, version: str) -> None:
        """Point ``champion`` at ``version``."""
        client = MlflowClient(tracking_uri=self.tracking_uri)
        client.set_registered_model_alias(self.namespace.model_name, CHAMPION_ALIAS, version)

    def start_worker(
        self,
        worker_id: str,
        *,
        wait_ready: bool = True,
        base: Mapping[str, str] = FAST_WORKER,
        **settings: str,
    ) -> WorkerProcess:
        """Start (or restart, with the same settings) the worker called ``worker_id``.

        ``settings`` (``SCORER_<NAME>`` values) override ``base`` (``{}``: the worker's own
        defaults) on the first start; a restart reuses the first start's environment, port
        and log file.
        """
        env = self._envs.get(worker_id)
        if env is None:
            env = worker_env(
                kafka_bootstrap_servers=self.bootstrap_servers,
                mlflow_tracking_uri=self.tracking_uri,
                group_id=self.group_id,
                model_name=self.namespace.model_name,
                model_cache_dir=self.workdir / f"models-{worker_id}",
                model_signing_public_key=public_key_pem_text(),
                worker_id=worker_id,
                **self.topics.settings(),
                **{**base, **settings},
            )
            self._envs[worker_id] = env
        worker = WorkerProcess(env, self.workdir / f"{worker_id}.log")
        self.workers.append(worker)
        self._latest[worker_id] = worker
        if wait_ready:
            worker.wait_ready()
        return worker

    def worker(self, worker_id: str) -> WorkerProcess:
        """The latest process started as ``worker_id``."""
        return self._latest[worker_id]

    def publish(self, records: Iterator[tuple[str, bytes]], *, rate_per_s: float) -> PacedPublisher:
        """Start publishing ``records`` to the applications topic at a steady rate."""
        publisher = PacedPublisher(
            self.bootstrap_servers, self.topics.applications, records, rate_per_s=rate_per_s
        )
        self.publishers.append(publisher)
        return publisher.start()

    def publish_scored(self, prefix: str, count: int, timeout_s: float = 180.0) -> list[str]:
        """Publish ``count`` or more fresh applications (ids ``<prefix>-…``) and return
        the ids of those that reached the input topic, once each has a committed outcome."""
        records = dataset_stream(self.feature_frame, unique_name(prefix))
        ids = self.landed(self.publish(records, rate_per_s=_PUBLISH_RATE_PER_S).stop_after(count))
        self.wait_for_outcomes(ids, timeout_s)
        return ids

    def landed(self, ids: Sequence[str]) -> list[str]:
        """Those of ``ids`` the applications topic holds now, in order.

        What a worker owes a score is what reached its input. Right after a broker
        restart the test's own idempotent producer was seen to hold queued records for
        minutes, and to have two acknowledged records absent from the topic (both in
        dumps of the broker's log segments, with every record present scored): a fault of
        the publishing client, not of the worker, so broker-restart tests count only
        what landed.
        """
        read = read_to_end(
            self.bootstrap_servers, [self.topics.applications], group_id=unique_name("landed")
        )
        present = {(m.key() or b"").decode() for m in read[self.topics.applications]}
        return [i for i in ids if i in present]

    def wait_for_outcomes(self, ids: Sequence[str], timeout_s: float = 180.0) -> None:
        """Return once every id has a committed score or dead letter (read_committed)."""
        wanted = {i.encode() for i in ids}

        def outcomes(read: dict[str, list[Message]]) -> set[bytes | None]:
            return {m.key() for messages in read.values() for m in messages}

        def missing(read: dict[str, list[Message]]) -> str:
            absent = sorted(key for key in wanted - outcomes(read) if key is not None)
            return f"{len(absent)} of {len(wanted)} ids without an outcome, e.g. {absent[:3]}"

        read_committed(
            self.bootstrap_servers,
            [self.topics.scores, self.topics.dead_letters],
            lambda read: wanted <= outcomes(read),
            group_id=unique_name("progress"),
            timeout_s=timeout_s,
            missing=missing,
        )

    def stop_workers(self) -> None:
        """SIGTERM every live worker; each must finish its batch and exit 0."""
        for worker in self.workers:
            if worker.process.poll() is None:
                assert worker.terminate() == 0, worker.log_tail()

    def audit(self) -> Audit:
        """Read every topic to its end. Call after ``stop_workers()``."""
        topics = self.topics
        read = read_to_end(
            self.bootstrap_servers,
            [topics.applications, topics.scores, topics.predictions, topics.dead_letters],
            group_id=unique_name("audit"),
        )
        return Audit(
            inputs=read[topics.applications],
            score_records=read[topics.scores],
            predictions=[
                PredictionRecord.model_validate_json(m.value() or b"")
                for m in read[topics.predictions]
            ],
            dead_letters=read[topics.dead_letters],
        )

    def failure_sections(self) -> list[tuple[str, str]]:
        """For a failed test's report: each worker's log tail, ending with its thread stacks
        if it is still running (a stuck worker shows where it is stuck)."""
        for worker in self.workers:
            worker.dump_stacks()  # into its log
        return [
            (f"log {worker.log_path}", worker.log_tail(_FAILED_LOG_CHARS))
            for worker in self.workers
        ]

    def close(self) -> None:
        """Stop supervision and publishers, and kill every worker still running."""
        for supervisor in self.supervisors:
            supervisor.stop()
        for publisher in self.publishers:
            publisher.abandon()
        for worker in self.workers:
            worker.kill()


class Supervisor:
    """Restarts workers that exit on their own, as an orchestrator would (restart: always).

    ``exits`` records each ``(worker_id, exit code)`` it saw, for the test to judge.
    """

    def __init__(self, scenario: Scenario, worker_ids: Sequence[str]) -> None:
        self.exits: list[tuple[str, int]] = []
        self._scenario = scenario
        self._worker_ids = list(worker_ids)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="supervisor", daemon=True)
        scenario.supervisors.append(self)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        while not self._stopping.wait(_SUPERVISE_POLL_S):
            for worker_id in self._worker_ids:
                code = self._scenario.worker(worker_id).process.poll()
                if code is not None:
                    self.exits.append((worker_id, code))
                    self._scenario.start_worker(worker_id, wait_ready=False)


def scored_so_far(worker: WorkerProcess) -> float:
    """Applications this worker process scored (its ``/metrics`` counter; 0 if it is silent)."""
    status, body = worker.get("/metrics")
    if status != 200:
        return 0.0
    return metric_value(body, _SCORED) or 0.0


def kill_after_scoring(worker: WorkerProcess, count: float, timeout_s: float = 120.0) -> float:
    """SIGKILL ``worker`` as soon as it has scored ``count`` applications; returns how many.

    The kill lands wherever the loop happens to be: consuming, scoring, mid-transaction.
    """
    deadline = time.monotonic() + timeout_s
    while (scored := scored_so_far(worker)) < count:
        if worker.process.poll() is not None:
            pytest.fail(f"worker exited with {worker.process.returncode}:\n{worker.log_tail()}")
        if time.monotonic() > deadline:
            pytest.fail(f"worker scored {scored} < {count} in {timeout_s}s:\n{worker.log_tail()}")
        time.sleep(_KILL_POLL_S)  # a polling interval, not a wait for readiness
    worker.kill()
    return scored
