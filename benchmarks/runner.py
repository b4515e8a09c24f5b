"""One benchmark run, phase by phase, on services it starts and always stops: broker, MLflow
server and champion; ceiling A; ceiling B; the floor; one then two workers draining, then
one with a shadow challenger (the cheapest other candidate within the latency budget), and
the monitor over what that one wrote; end-to-end latency; a py-spy profile. Each phase
preloads topics of its own. Ports are free ones, names unique, state in a temporary
directory; every process's log is kept with the results.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import (
    AbstractContextManager,
    ExitStack,
    contextmanager,
    nullcontext,
)
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import mlflow
import orjson
from confluent_kafka import Message, Producer
from rich.console import Console

import devstack
from benchmarks import BenchmarkError, ceilings, measure, profiling, traffic
from benchmarks.measure import span, steady_window
from benchmarks.results import (
    MONITOR_CATCH_UP_S,
    SHADOW_SUFFIX,
    BenchResults,
    Floor,
    LatencyPoint,
    MonitorRun,
    RunConfig,
    Throughput,
    with_verdicts,
    write,
)
from consumer.ops import STAGES
from consumer.settings import Settings as WorkerSettings
from contracts.model_names import CHAMPION_ALIAS, SHADOW_ALIAS
from devstack import ROOT, DevstackError, MonitorProcess, ScorerTopics, WorkerProcess, unique_name
from devstack.champion import name_shadow_challenger, train_signed_champion
from monitor.settings import Settings as MonitorSettings
from training import CandidateResult

# The first start of a machine (JVM, page cache) is slower than the tests allow.
_BROKER_START_TIMEOUT_S: Final = 180
_PHASE_TIMEOUT_S: Final = 900.0
_VISIBLE_TIMEOUT_S: Final = 60.0
_TIMED_S: Final = 1.0  # per in-process call timed by ceiling B
_SEED: Final = 7
_POLL_S: Final = 0.5
# Sampling stops at the first poll that sees the drain done: poll often, so idle time
# after the last record stays a small share of the profile.
_PROFILE_POLL_S: Final = 0.05
_PROFILE_MESSAGES: Final = 100_000
_COMMITTED: Final = 'scorer_transactions_total{outcome="committed"}'


class Run:
    """The phases of one run: services in ``services`` (closing it stops them all), logs in
    ``logs``, and the ``SCORER_*`` settings every worker and the passthrough run with."""

    def __init__(
        self, config: RunConfig, worker: WorkerSettings, logs: Path, console: Console
    ) -> None:
        self.config, self.worker, self.logs, self.console = config, worker, logs, console
        self.services = ExitStack()

    @contextmanager
    def step(self, description: str) -> Iterator[None]:
        started = time.monotonic()
        with self.console.status(description):
            yield
        self.console.print(f"{description}: {time.monotonic() - started:.1f} s", highlight=False)

    def start(self, data: Path) -> CandidateResult:
        """The broker, the MLflow server (their logs copied to ``logs`` at exit) and the
        champion: training's own ``train()`` in quick mode (``python -m training --quick``),
        every family trained and the registry's own selection picking, as in production."""
        work = Path(self.services.enter_context(tempfile.TemporaryDirectory(prefix="bench-")))
        self.workdir, self.broker = work, devstack.LocalBroker(work / "kafka")
        with self.step("starting a local Kafka broker and an MLflow server"):
            self._keep_log(self.broker.log_path, "kafka.log")
            self.services.callback(self.broker.stop)  # also after a start that failed half-way
            self.broker.start(_BROKER_START_TIMEOUT_S)
            if (pid := self.broker.pid) is None:
                raise BenchmarkError(f"the broker in {self.broker.directory} recorded no pid")
            self.broker_pid, self.servers = pid, self.broker.bootstrap_servers
            self.mlflow = devstack.MlflowServer.start(work / "mlflow")
            self._keep_log(self.mlflow.log_path, "mlflow-server.log")
            self.services.callback(self.mlflow.stop)
        # Signed like production: workers load only versions this key signed.
        with (
            self.step("training the champion (python -m training --quick)"),
            (self.logs / "training.log").open("w", encoding="utf-8") as log,
        ):
            trained = train_signed_champion(
                self.mlflow.url, data, work / "model-signing", console=Console(file=log, width=120)
            )
        # ``models:/`` downloads in this process (ceiling B, the floor) resolve through the
        # global registry URI whatever client arguments say (MLflow 3.17).
        mlflow.set_tracking_uri(self.mlflow.url)
        mlflow.set_registry_uri(self.mlflow.url)
        self.public_key, self.model_name = trained.public_key, trained.settings.model_name
        self.challenger = name_shadow_challenger(trained)
        return trained.champion

    def _keep_log(self, path: Path, name: str) -> None:
        self.services.callback(lambda: path.is_file() and shutil.copyfile(path, self.logs / name))

    def topics(self, name: str) -> ScorerTopics:
        """Fresh topics for a phase called ``name``, every one with the run's partitions."""
        topics = ScorerTopics.unique(f"bench-{name}")
        topics.create(self.servers, self.config.partitions, outputs=self.config.partitions)
        return topics

    def load(
        self, name: str, count: int, *, hold: bool = False, topics: ScorerTopics | None = None
    ) -> tuple[ScorerTopics, Producer]:
        """``count`` applications in the input of ``topics`` (default: fresh ones), and the
        producer that wrote them; with ``hold`` they stay invisible until ``traffic.release``
        of that producer."""
        topics = topics or self.topics(name)
        held = " (held back)" if hold else ""
        with self.step(f"{name}: preloading {count:,} applications{held}"):
            records = traffic.applications(count, _SEED)
            producer = traffic.send(
                self.servers, topics.applications, records, count=count, hold=hold
            )
        return topics, producer

    def ceiling_a(self) -> Throughput:
        count = self.config.messages
        topics, _ = self.load("passthrough", count)
        group, name = unique_name("bench-passthrough"), "bench-passthrough"
        settings = self.worker.model_copy(
            update={"kafka_bootstrap_servers": self.servers, **topics.settings()}
            | {"group_id": group, "worker_id": name}
        )
        pids = {"broker": self.broker_pid, "harness": os.getpid()}
        with self.step("ceiling A: Kafka passthrough"):
            start = measure.cpu_snapshot(pids)
            transactions, seconds = ceilings.passthrough(settings, count, _PHASE_TIMEOUT_S)
            cores = measure.cores_used(start, measure.cpu_snapshot(pids))
        written = traffic.read_topic(self.servers, topics.scores, expected=count)
        stage_us = {step: round(s / count * 1e6, 2) for step, s in seconds.items()}
        return _throughput(
            "ceiling A", 1, written, cores, transactions=transactions, stage_us=stage_us
        )

    def ceiling_b(self) -> ceilings.StageCosts:
        batch = list(traffic.applications(self.worker.batch_max_messages, _SEED + 999))
        with self.step("ceiling B: timing the champion alone"):
            return ceilings.champion_alone(
                self.mlflow.url,
                self.model_name,
                self.workdir / "bench-cache",
                self.public_key,
                batch,
                _TIMED_S,
                self.worker,
            )

    def floor(self) -> Floor:
        count = self.config.naive_messages
        topics, _ = self.load("naive", count)
        uri = f"models:/{self.model_name}@{CHAMPION_ALIAS}"
        with self.step(f"floor: naive per-message scorer on {count:,} messages"):
            done, s = ceilings.naive_scorer(
                self.servers, uri, (topics.applications, topics.scores), count, _PHASE_TIMEOUT_S
            )
        return Floor(records=done, seconds=s, rate=done / s if s > 0 else 0.0)

    def drain(
        self,
        name: str,
        processes: int,
        count: int,
        *,
        around: Callable[[WorkerProcess], AbstractContextManager[object]] = lambda _: nullcontext(),
        poll_s: float = _POLL_S,
        reason_codes: bool = True,
        shadow: bool = False,
        topics: ScorerTopics | None = None,
    ) -> Throughput:
        """``processes`` workers in one group drain ``count`` applications written inside
        one open transaction and released once every worker is ready, so none starts late;
        each application must come out exactly once. ``reason_codes`` off: the workers' scores
        carry none; ``shadow``: the workers also score the shadow challenger, into
        ``_shadow_topic(topics)``. ``topics``: created by the caller (default: new ones)."""
        topics, held = self.load(name, count, hold=True, topics=topics)
        settings: dict[str, object] = {"reason_codes": reason_codes}
        if shadow:
            shadow_topic = _shadow_topic(topics)
            settings |= {"shadow_alias": SHADOW_ALIAS, "shadow_scores_topic": shadow_topic}
            devstack.create_topics(self.servers, {shadow_topic: processes})
        workers = self._ready_workers(name, processes, topics, **settings)
        ready = {w.worker_id: measure.memory_mb(w.pid) for w in workers}
        pids = {"broker": self.broker_pid, **{w.worker_id: w.pid for w in workers}}
        deadline = time.monotonic() + _PHASE_TIMEOUT_S
        with self.step(f"{name}: draining"), around(workers[0]):
            traffic.release(held)
            while not (scored := sum(_scored(w) for w in workers)):
                _poll(workers, deadline, poll_s, f"nothing scored by {name}")
            start = measure.cpu_snapshot(pids)  # at the first score
            while (scored := sum(_scored(w) for w in workers)) < count:
                _poll(workers, deadline, poll_s, f"{scored:,} of {count:,} scored by {name}")
            cores = measure.cores_used(start, measure.cpu_snapshot(pids))
        metrics = [w.metrics() for w in workers]
        peaks = {w.worker_id: measure.memory_mb(w.pid, "VmHWM") for w in workers}
        for worker in workers:
            if (code := worker.terminate()) != 0:
                raise BenchmarkError(f"worker {worker.worker_id} exited with {code} when stopped")
        traffic.read_topic(self.servers, topics.scores, expected=count)
        by_worker = traffic.read_topic(
            self.servers, topics.predictions, expected=count, label=_worker_id
        )
        busy_s = sum(span(ts).seconds for ts in by_worker.values())
        return _throughput(
            f"worker x {processes}" + (SHADOW_SUFFIX if shadow else ""),
            processes,
            by_worker,
            cores,
            ready_rss_mb=ready,
            peak_rss_mb=peaks,
            stage_us=_stage_us(metrics, count, busy_s),
            transactions=int(sum(m.get(_COMMITTED, 0) for m in metrics)),
            reason_codes=reason_codes,
        )

    def monitor(self, topics: ScorerTopics, count: int) -> MonitorRun:
        """The monitor over what a shadow drain of ``count`` applications left in ``topics``,
        and an outcome for each written here first: timed from its first committed batch
        until it committed every record (``MonitorProcess.caught_up``)."""
        outcomes, dead_letters, alerts = (
            unique_name(f"bench-{name}") for name in ("outcomes", "outcomes-dlq", "alerts")
        )
        partitions = self.config.partitions
        devstack.create_topics(self.servers, {outcomes: partitions, dead_letters: 1, alerts: 1})
        with self.step(f"monitor: writing {count:,} outcomes"):
            traffic.send(self.servers, outcomes, traffic.outcomes(count, _SEED), count=count)
        settings = MonitorSettings(
            kafka_bootstrap_servers=self.servers,
            tracking_uri=self.mlflow.url,
            group_id=unique_name("bench-monitor"),
            transactional_id=unique_name("bench-monitor"),
            database_url=f"sqlite:///{self.workdir / 'monitor.db'}",
            predictions_topic=topics.predictions,
            shadow_scores_topic=_shadow_topic(topics),
            outcomes_topic=outcomes,
            applications_topic=topics.applications,
            outcomes_dead_letter_topic=dead_letters,
            alerts_topic=alerts,
            metrics_port=devstack.free_port(),
        )
        monitor = MonitorProcess(settings, self.logs / "monitor.log")
        self.services.callback(monitor.terminate)
        pids = {"broker": self.broker_pid, "monitor": monitor.pid}
        deadline = time.monotonic() + _PHASE_TIMEOUT_S
        with self.step(f"monitor: {4 * count:,} records"):
            while not monitor.metrics().get("monitor_batches_total"):
                _poll([monitor], deadline, _POLL_S / 5, "the monitor committed no batch")
            start = measure.cpu_snapshot(pids)
            # Still lagging at the limit is a missed target, not a failed run.
            while not (caught_up := monitor.caught_up()):
                if time.monotonic() - start.at > MONITOR_CATCH_UP_S:
                    break
                _poll([monitor], math.inf, _POLL_S / 5, "")
            cores = measure.cores_used(start, end := measure.cpu_snapshot(pids))
        peak = measure.memory_mb(monitor.pid, "VmHWM")
        if (code := monitor.terminate()) != 0:
            raise BenchmarkError(f"the monitor exited with {code} when stopped")
        return MonitorRun(
            applications=count,
            records=4 * count,  # its application, prediction, shadow score and outcome
            caught_up_s=end.at - start.at if caught_up else None,
            peak_rss_mb=peak,
            cores=cores,
        )

    def profile(self) -> tuple[list[profiling.FunctionShare], str]:
        """A py-spy profile of one worker draining (a drain of its own: sampling takes CPU)."""
        if not self.config.profile:
            return [], "not profiled"
        if (executable := profiling.py_spy()) is None:
            return [], "not profiled: py-spy is not installed"
        count = min(_PROFILE_MESSAGES, self.config.messages)
        output = self.logs.parent / "worker-profile.txt"
        self.drain(
            "profile",
            1,
            count,
            around=lambda worker: profiling.profiling(executable, worker.pid, output),
            poll_s=_PROFILE_POLL_S,
        )
        note = (
            f"py-spy, {count:,} applications drained by one worker; inclusive share of the "
            f"main thread's samples, waits included (raw stacks: {output.name})"
        )
        return profiling.summarize(output.read_text()), note

    def latency(self) -> tuple[list[LatencyPoint], float]:
        """Latency points per rate, and the serving worker's peak resident memory."""
        topics = ScorerTopics.unique("bench-latency")
        topics.create(self.servers, self.config.partitions, outputs=self.config.partitions)
        (worker,) = self._ready_workers("latency", 1, topics, reason_codes=True)
        pids = {"broker": self.broker_pid, worker.worker_id: worker.pid, "harness": os.getpid()}
        points = []
        with traffic.LatencyRecorder(self.servers, topics.applications, topics.scores) as recorder:
            for index, rate in enumerate(self.config.rates):
                total = max(1, round(rate * self.config.latency_seconds))
                records = list(traffic.applications(total, _SEED + 1 + index))
                with self.step(f"latency at {rate:,}/s"):
                    start = measure.cpu_snapshot(pids)
                    achieved, latency = recorder.measure(
                        records, rate, self.config.warmup_seconds, _VISIBLE_TIMEOUT_S
                    )
                    cores = measure.cores_used(start, measure.cpu_snapshot(pids))
                _check_alive([worker])
                measured = {"achieved_rate": achieved, "cores": cores, **latency.model_dump()}
                points.append(LatencyPoint(rate=rate, **measured))
        peak = measure.memory_mb(worker.pid, "VmHWM")
        worker.terminate()
        return points, peak

    def _ready_workers(
        self, name: str, processes: int, topics: ScorerTopics, **settings: object
    ) -> list[WorkerProcess]:
        """``processes`` workers in one new group, with this process's ``SCORER_*`` settings,
        ``settings`` and the run's broker, registry and topics; returned once all are ready
        at the same time: each with its partitions (a worker joining later revokes the
        others'). Each is stopped (SIGTERM) when the services close if not before."""
        group = unique_name(f"bench-{name}")
        workers = []
        for worker_id in (f"bench-{name}-{k + 1}" for k in range(processes)):
            env = devstack.worker_env(
                True,  # inherit this process's SCORER_* settings (``settings`` win)
                kafka_bootstrap_servers=self.servers,
                mlflow_tracking_uri=self.mlflow.url,
                model_name=self.model_name,
                model_cache_dir=self.workdir / "model-cache",
                model_signing_public_key=self.public_key,
                **topics.settings(),
                group_id=group,
                worker_id=worker_id,
                **settings,
            )
            workers.append(WorkerProcess(env, self.logs / f"{worker_id}.log"))
            self.services.callback(workers[-1].terminate)
        deadline = time.monotonic() + _PHASE_TIMEOUT_S
        with self.step(f"{name}: starting {processes} worker(s)"):
            while not all(w.get("/readyz")[0] == 200 for w in workers):
                _poll(workers, deadline, _POLL_S, f"{name}: workers not all ready")
        return workers


def _shadow_topic(topics: ScorerTopics) -> str:
    return f"{topics.scores}-s"


def _check_alive(processes: Sequence[WorkerProcess | MonitorProcess]) -> None:
    """Raise ``DevstackError`` (naming its log) when one of ``processes`` has exited."""
    for process in processes:
        if not process.running:
            code, log = process.process.returncode, process.log_path
            name = process.worker_id if isinstance(process, WorkerProcess) else "the monitor"
            raise DevstackError(f"{name} exited with {code}", log)


def _poll(
    workers: Sequence[WorkerProcess | MonitorProcess], deadline: float, poll_s: float, late: str
) -> None:
    """One wait between polls: raise when a worker died or ``deadline`` passed."""
    _check_alive(workers)
    if time.monotonic() > deadline:
        raise BenchmarkError(f"{late} (timed out)")
    time.sleep(poll_s)


def _scored(worker: WorkerProcess) -> int:
    return int(worker.metrics().get("scorer_applications_scored_total", 0))


def _worker_id(message: Message) -> str:
    """The worker that wrote a prediction record (its ``worker_id`` field)."""
    return str(orjson.loads(message.value() or b"{}").get("worker_id", "unknown"))


def _throughput(
    name: str, processes: int, by_writer: dict[str, list[int]], cores: dict[str, float], **more: Any
) -> Throughput:
    """A drain timed from its output records' timestamps, grouped by writer."""
    window, every = steady_window(by_writer), [t for ts in by_writer.values() for t in ts]
    return Throughput(
        name=name,
        processes=processes,
        records=len(every),
        rate=window.rate,
        window_s=window.seconds,
        drain_s=span(every).seconds,
        cores=cores,
        **more,
    )


def _stage_us(metrics: Sequence[dict[str, float]], scored: int, busy_s: float) -> dict[str, float]:
    """Microseconds per application in each worker stage, from the workers' histograms;
    ``other`` is the rest of their busy time (waiting in ``consume()``, bookkeeping)."""
    key = 'scorer_stage_latency_seconds_sum{{stage="{}"}}'
    seconds = {stage: sum(m.get(key.format(stage), 0.0) for m in metrics) for stage in STAGES}
    seconds["other"] = max(0.0, busy_s - sum(seconds.values()))
    return {stage: round(value / scored * 1e6, 2) for stage, value in seconds.items()}


def run_benchmark(
    config: RunConfig,
    worker: WorkerSettings,
    *,
    data: Path,
    results_dir: Path,
    readme: Path | None,
    console: Console,
) -> Path:
    """Run every phase, write the results under ``results_dir`` (and the table into
    ``readme`` when given); returns the markdown table's file.

    Raises ``BenchmarkError`` or ``DevstackError``; whatever was started is stopped
    first, also on ``KeyboardInterrupt``.
    """
    if not (data := data.resolve()).is_file():
        raise BenchmarkError(f"dataset not found: {data} (set RUMOS_DATA or pass --data)")
    started_at, started, context = datetime.now(UTC), time.monotonic(), measure.machine_info(ROOT)
    run_dir = results_dir / started_at.strftime("%Y%m%dT%H%M%SZ")
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    run = Run(config, worker, run_dir / "logs", console)
    with run.services:
        champion = run.start(data)
        phases: dict[str, Any] = {"ceiling_a": run.ceiling_a(), "ceiling_b": run.ceiling_b()}
        phases |= {"floor": run.floor()}
        # One worker with reason codes on, then off (the switch's cost, side by side), then
        # two; then one scoring a shadow challenger too, when training left one.
        phases["workers"] = [
            run.drain(name, n, config.messages, reason_codes=on)
            for name, n, on in (("w1", 1, True), ("w1-off", 1, False), ("w2", 2, True))
        ]
        if run.challenger is not None:  # the monitor then reads what that drain wrote
            shadowed = run.topics("w1-shadow")
            drained = run.drain("w1-shadow", 1, config.messages, shadow=True, topics=shadowed)
            phases["workers"].append(drained)
            phases["monitor"] = run.monitor(shadowed, config.messages)
        phases["latency"], phases["latency_peak_rss_mb"] = run.latency()
        phases["profile"], phases["profile_note"] = run.profile()
    results = BenchResults(
        started_at=started_at,
        duration_s=time.monotonic() - started,
        config=config,
        machine=context,
        load_average_end=measure.load_average(),
        champion={"family": str(champion.family), "version": champion.version}
        | ({"shadow": f"{c.family} (version {c.version})"} if (c := run.challenger) else {}),
        **phases,
    )
    return write(with_verdicts(results), run_dir, readme)
