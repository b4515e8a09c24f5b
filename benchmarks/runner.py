"""One benchmark run, phase by phase, on services it starts and always stops: broker, MLflow
server and champion; ceiling A; ceiling B; the floor; one then two workers draining, then
one with a shadow challenger, and the monitor over what that one wrote; end-to-end latency;
a py-spy profile. Each phase preloads topics of its own. Ports are free ones, names unique,
state in a temporary directory; every process's log is kept with the results.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, closing, contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import mlflow
import orjson
from confluent_kafka import Message, Producer
from rich.console import Console

import devstack
from benchmarks import PHASE_TIMEOUT_S, BenchmarkError, ceilings, measure, profiling, traffic
from benchmarks import results as out
from consumer.ops import STAGES
from consumer.settings import Settings as WorkerSettings
from contracts.model_names import SHADOW_ALIAS
from devstack import DevstackError, MonitorProcess, ScorerTopics, WorkerProcess, unique_name
from devstack.champion import name_shadow_challenger, train_signed_champion
from devstack.processes import ModuleProcess, wait_until
from monitor.settings import Settings as MonitorSettings

# The first start of a machine (JVM, page cache) is slower than the tests allow.
_BROKER_START_TIMEOUT_S: Final = 180
_POLL_S: Final = 0.5
_MONITOR_POLL_S: Final = 0.1
# Sampling stops at the first poll that sees the drain done: poll often, so idle time
# after the last record stays a small share of the profile.
_PROFILE_POLL_S: Final = 0.05
_PROFILE_MESSAGES: Final = 100_000
_SCORED: Final = "scorer_applications_scored_total"
_COMMITTED: Final = 'scorer_transactions_total{outcome="committed"}'
_STAGE_SECONDS: Final = 'scorer_stage_latency_seconds_sum{{stage="{}"}}'


class Run:
    """The phases of one run: services in ``services`` (closing it stops them all), logs in
    ``logs``, and the ``SCORER_*`` settings every worker and the passthrough run with."""

    def __init__(
        self, config: out.RunConfig, worker: WorkerSettings, logs: Path, console: Console
    ) -> None:
        self.config, self.worker, self.logs, self.console = config, worker, logs, console
        self.services = ExitStack()

    @contextmanager
    def step(self, description: str) -> Iterator[None]:
        started = time.monotonic()
        with self.console.status(description):
            yield
        self.console.print(f"{description}: {time.monotonic() - started:.1f} s", highlight=False)

    @contextmanager
    def cores(self, **pids: int) -> Iterator[dict[str, float]]:
        """``measure.cores_used`` by the broker and ``pids`` while the block runs: the dict
        yielded is filled in when it ends."""
        used: dict[str, float] = {}
        start = measure.CpuSnapshot.now(pids := {"broker": self.broker_pid, **pids})
        yield used
        used.update(measure.cores_used(start, measure.CpuSnapshot.now(pids)))

    def start(self, data: Path) -> dict[str, str]:
        """The broker, the MLflow server (their logs copied to ``logs`` at exit) and the
        champion: training's own ``train()`` in quick mode (``python -m training --quick``),
        the registry's own selection picking, as in production; and a shadow challenger."""
        self.workdir = Path(self.services.enter_context(tempfile.TemporaryDirectory()))
        broker = devstack.LocalBroker(self.workdir / "kafka")
        with self.step("starting a local Kafka broker and an MLflow server"):
            self._keep_log(broker.log_path, "kafka.log")
            self.services.callback(broker.stop)  # also after a start that failed half-way
            broker.start(_BROKER_START_TIMEOUT_S)
            if (pid := broker.pid) is None:
                raise BenchmarkError(f"the broker in {broker.directory} recorded no pid")
            self.broker_pid, self.servers = pid, broker.bootstrap_servers
            self.mlflow = devstack.MlflowServer.start(self.workdir / "mlflow")
            self._keep_log(self.mlflow.log_path, "mlflow-server.log")
            self.services.callback(self.mlflow.stop)
        # Signed like production: workers load only versions this key signed.
        with (
            self.step("training the champion (python -m training --quick)"),
            (self.logs / "training.log").open("w", encoding="utf-8") as log,
        ):
            trained = train_signed_champion(
                self.mlflow.url,
                data,
                self.workdir / "signing",
                console=Console(file=log, width=120),
            )
        # ``models:/`` downloads in this process (ceiling B, the floor) resolve through the
        # global registry URI whatever client arguments say (MLflow 3.17).
        mlflow.set_tracking_uri(self.mlflow.url)
        mlflow.set_registry_uri(self.mlflow.url)
        self.public_key, self.model_name = trained.public_key, trained.settings.model_name
        self.challenger = name_shadow_challenger(trained)
        shadow = {"shadow": f"{c.family} (version {c.version})"} if (c := self.challenger) else {}
        return {
            "family": str(trained.champion.family),
            "version": trained.champion.version,
            **shadow,
        }

    def _keep_log(self, path: Path, name: str) -> None:
        self.services.callback(lambda: path.is_file() and shutil.copyfile(path, self.logs / name))

    def topics(self, name: str, *, shadow: bool = False) -> ScorerTopics:
        """Fresh topics for a phase called ``name``, every one with the run's partitions;
        with ``shadow`` also its ``_shadow_topic``."""
        topics = ScorerTopics.unique(f"bench-{name}")
        topics.create(self.servers, self.config.partitions, outputs=self.config.partitions)
        if shadow:
            devstack.create_topics(self.servers, {_shadow_topic(topics): self.config.partitions})
        return topics

    def load(self, name: str, topics: ScorerTopics, count: int, *, hold: bool = False) -> Producer:
        """``count`` applications in the input of ``topics`` for phase ``name``, and the producer
        that wrote them; with ``hold`` they stay invisible until ``traffic.release`` of it."""
        held = " (held back)" if hold else ""
        with self.step(f"{name}: preloading {count:,} applications{held}"):
            records = traffic.applications(count, traffic.SEED)
            return traffic.send(self.servers, topics.applications, records, count=count, hold=hold)

    def ready_workers(
        self, name: str, processes: int, topics: ScorerTopics, **settings: object
    ) -> list[WorkerProcess]:
        """``processes`` workers in one new group on ``topics``, with this process's
        ``SCORER_*`` settings and ``settings`` (which win); returned once all are ready at
        once (a worker joining later revokes the others' partitions). The services' close
        stops any still running."""
        group, workers = unique_name(f"bench-{name}"), []
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
        with self.step(f"{name}: starting {processes} worker(s)"):
            failure = f"{name}: not all ready"
            wait_until(
                lambda: all(w.ready() for w in workers), PHASE_TIMEOUT_S, failure, watch=workers
            )
        return workers


def _shadow_topic(topics: ScorerTopics) -> str:
    return f"{topics.scores}-s"


def _shadowing(topics: ScorerTopics) -> dict[str, object]:
    """Worker settings that score the challenger into ``_shadow_topic(topics)``."""
    return {"shadow_alias": SHADOW_ALIAS, "shadow_scores_topic": _shadow_topic(topics)}


def drain(
    run: Run,
    name: str,
    processes: int,
    *,
    reason_codes: bool = True,
    shadow: ScorerTopics | None = None,
    profile: Path | None = None,
) -> out.Throughput:
    """``processes`` workers in one group drain the run's applications, held back until all
    are ready, so none starts late; each must come out exactly once. ``shadow``: topics made
    by ``run.topics(shadow=True)``, the workers also scoring the challenger. ``profile``:
    where py-spy writes the first worker's stacks while it drains at most
    ``_PROFILE_MESSAGES``."""
    count = min(_PROFILE_MESSAGES, run.config.messages) if profile else run.config.messages
    topics = shadow if shadow is not None else run.topics(name)
    held = run.load(name, topics, count, hold=True)
    settings = _shadowing(topics) if shadow is not None else {}
    workers = run.ready_workers(name, processes, topics, reason_codes=reason_codes, **settings)
    ready = {w.worker_id: measure.memory_mb(w.pid) for w in workers}
    sampled = profiling.profiling(workers[0].pid, profile) if profile else nullcontext()
    poll_s = _PROFILE_POLL_S if profile else _POLL_S
    with run.step(f"{name}: draining"), sampled:
        traffic.release(held)
        _wait_scored(name, workers, 1, poll_s)
        with run.cores(**{w.worker_id: w.pid for w in workers}) as cores:  # from the 1st score
            _wait_scored(name, workers, count, poll_s)
    metrics = [w.metrics() for w in workers]
    peaks = {w.worker_id: _stop(w) for w in workers}
    traffic.read_topic(run.servers, topics.scores, expected=count)
    by_worker = traffic.read_topic(run.servers, topics.predictions, expected=count, label=_writer)
    # Microseconds per application in each stage, from the workers' histograms; ``other``
    # is the rest of their busy time (waiting in ``consume()``, bookkeeping).
    seconds = {s: sum(m.get(_STAGE_SECONDS.format(s), 0.0) for m in metrics) for s in STAGES}
    busy_s = sum(measure.span(ts).seconds for ts in by_worker.values())
    seconds["other"] = max(0.0, busy_s - sum(seconds.values()))
    return out.Throughput.of(
        by_worker,
        name=f"worker x {processes}" + (out.SHADOW_SUFFIX if shadow is not None else ""),
        processes=processes,
        cores=cores,
        ready_rss_mb=ready,
        peak_rss_mb=peaks,
        stage_us={stage: round(s / count * 1e6, 2) for stage, s in seconds.items()},
        transactions=int(sum(m.get(_COMMITTED, 0) for m in metrics)),
        reason_codes=reason_codes,
    )


def monitor(run: Run, topics: ScorerTopics) -> out.MonitorRun:
    """The monitor over what a shadow drain of the run's applications left in ``topics``,
    and an outcome for each written here first: timed from its first committed batch
    until it committed every record (``MonitorProcess.caught_up``)."""
    count, partitions = run.config.messages, run.config.partitions
    outcomes, dead_letters, alerts = (
        unique_name(f"bench-{name}") for name in ("outcomes", "outcomes-dlq", "alerts")
    )
    devstack.create_topics(run.servers, {outcomes: partitions, dead_letters: 1, alerts: 1})
    with run.step(f"monitor: writing {count:,} outcomes"):
        traffic.send(run.servers, outcomes, traffic.outcomes(count, traffic.SEED), count=count)
    settings = MonitorSettings(
        kafka_bootstrap_servers=run.servers,
        tracking_uri=run.mlflow.url,
        group_id=unique_name("bench-monitor"),
        transactional_id=unique_name("bench-monitor"),
        database_url=f"sqlite:///{run.workdir / 'monitor.db'}",
        predictions_topic=topics.predictions,
        shadow_scores_topic=_shadow_topic(topics),
        outcomes_topic=outcomes,
        applications_topic=topics.applications,
        outcomes_dead_letter_topic=dead_letters,
        alerts_topic=alerts,
        metrics_port=devstack.free_port(),
    )
    process = MonitorProcess(settings, run.logs / "monitor.log")
    run.services.callback(process.terminate)
    caught_up_s = None  # a monitor still behind at the limit missed a target; the run goes on
    with run.step(f"monitor: {4 * count:,} records"):
        wait_until(
            lambda: process.metrics().get("monitor_batches_total"),
            PHASE_TIMEOUT_S,
            "the monitor committed no batch",
            watch=[process],
            poll_s=_MONITOR_POLL_S,
        )
        with run.cores(monitor=process.pid) as cores:
            try:
                caught_up_s = process.wait_caught_up(out.MONITOR_CATCH_UP_S, _MONITOR_POLL_S)
            except DevstackError:
                if not process.running:
                    raise
    return out.MonitorRun(
        applications=count,
        records=4 * count,  # its application, prediction, shadow score and outcome
        caught_up_s=caught_up_s,
        peak_rss_mb=_stop(process),
        cores=cores,
    )


def latency(run: Run) -> tuple[list[out.LatencyPoint], float]:
    """Latency points per rate, and the serving worker's peak resident memory. The worker
    scores the shadow challenger too when there is one: the champion's latency must hold
    with it on (issue 13)."""
    topics = run.topics("latency", shadow=run.challenger is not None)
    settings = _shadowing(topics) if run.challenger is not None else {}
    (worker,) = run.ready_workers("latency", 1, topics, reason_codes=True, **settings)
    pids = {worker.worker_id: worker.pid, "harness": os.getpid()}
    points = []
    recorder = traffic.LatencyRecorder(run.servers, topics.applications, topics.scores)
    with closing(recorder):
        for index, rate in enumerate(run.config.rates):
            total = max(1, round(rate * run.config.latency_seconds))
            records = list(traffic.applications(total, traffic.SEED + 1 + index))
            with run.step(f"latency at {rate:,}/s"), run.cores(**pids) as cores:
                achieved, latencies = recorder.measure(
                    records, rate, run.config.warmup_seconds, worker
                )
            measured = {"achieved_rate": achieved, "cores": cores, **latencies.model_dump()}
            points.append(out.LatencyPoint(rate=rate, **measured))
    return points, _stop(worker)


def profile(run: Run) -> tuple[list[profiling.FunctionShare], str]:
    """A py-spy profile of one worker draining (a drain of its own: sampling takes CPU)."""
    if not run.config.profile:
        return [], "not profiled"
    if profiling.py_spy() is None:
        return [], "not profiled: py-spy is not installed"
    output = run.logs.parent / "worker-profile.txt"
    drained = drain(run, "profile", 1, profile=output)
    note = f"py-spy, one worker, {drained.records:,} applications; raw stacks in {output.name}"
    return profiling.summarize(output.read_text()), note


def _wait_scored(name: str, workers: Sequence[WorkerProcess], count: int, poll_s: float) -> None:
    """Return once the ``workers`` of drain ``name`` scored ``count`` applications between
    them; ``DevstackError`` when one exits first or the phase times out."""

    def scored() -> bool:
        return sum(w.metrics().get(_SCORED, 0) for w in workers) >= count

    failure = f"{name}: fewer than {count:,} scored"
    wait_until(scored, PHASE_TIMEOUT_S, failure, watch=workers, poll_s=poll_s)


def _stop(process: ModuleProcess) -> float:
    """Stop ``process`` (SIGTERM) and return its peak resident memory, MB; ``DevstackError``
    naming its log unless it exits 0."""
    peak = measure.memory_mb(process.pid, "VmHWM")
    if (code := process.terminate()) != 0:
        failure = f"python -m {process.module} (pid {process.pid}) exited with {code} when stopped"
        raise DevstackError(failure, process.log_path)
    return peak


def _writer(message: Message) -> str:
    """The worker that wrote a prediction record (its ``worker_id`` field)."""
    return str(orjson.loads(message.value() or b"{}").get("worker_id", "unknown"))


def run_benchmark(
    config: out.RunConfig,
    worker: WorkerSettings,
    *,
    data: Path,
    results_dir: Path,
    readme: Path | None,
    console: Console,
) -> Path:
    """Run every phase, write the results under ``results_dir`` (and the table into
    ``readme`` when given); returns the markdown table's file. Raises ``BenchmarkError`` or
    ``DevstackError``; whatever was started is stopped first, also on ``KeyboardInterrupt``.
    """
    if not (data := data.resolve()).is_file():
        raise BenchmarkError(f"dataset not found: {data} (set RUMOS_DATA or pass --data)")
    started_at, started = datetime.now(UTC), time.monotonic()
    machine = measure.machine_info(devstack.ROOT)
    run_dir = results_dir / started_at.strftime("%Y%m%dT%H%M%SZ")
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    run = Run(config, worker, run_dir / "logs", console)
    with run.services:
        phases: dict[str, Any] = {
            "champion": run.start(data),
            "ceiling_a": ceilings.ceiling_a(run),
            "ceiling_b": ceilings.ceiling_b(run),
            "floor": ceilings.floor(run),
            # One worker with reason codes on, then off (the switch's cost, side by side),
            # then two; then one scoring a shadow challenger too, when training left one.
            "workers": [
                drain(run, "w1", 1),
                drain(run, "w1-off", 1, reason_codes=False),
                drain(run, "w2", 2),
            ],
        }
        if run.challenger is not None:  # the monitor then reads what that drain wrote
            shadowed = run.topics("w1-shadow", shadow=True)
            phases["workers"].append(drain(run, "w1-shadow", 1, shadow=shadowed))
            phases["monitor"] = monitor(run, shadowed)
        phases["latency"], phases["latency_peak_rss_mb"] = latency(run)
        phases["profile"], phases["profile_note"] = profile(run)
    measured = out.BenchResults(
        started_at=started_at,
        duration_s=time.monotonic() - started,
        config=config,
        machine=machine,
        load_average_end=measure.load_average(),
        **phases,
    )
    return out.write(out.with_verdicts(measured), run_dir, readme)
