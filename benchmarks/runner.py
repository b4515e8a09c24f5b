"""One benchmark run, phase by phase, on a stack it starts and always stops.

Order: broker, MLflow server and champion; preload; ceiling A; ceiling B (in-process); the naive
floor; one then two workers draining; end-to-end latency; a py-spy profile of one
worker. Every long step shows progress; every drain's throughput comes from record
timestamps read back afterwards, so polling for progress never paces the loop measured.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import orjson
from confluent_kafka import Message
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from benchmarks import ceilings, loadgen
from benchmarks.errors import PhaseError, StackError
from benchmarks.latency import LatencyRecorder, measure_rate
from benchmarks.machine import (
    CpuSnapshot,
    cores_used,
    cpu_snapshot,
    load_average,
    machine_info,
    peak_rss_mb,
    rss_mb,
)
from benchmarks.naive import naive_scorer
from benchmarks.profiling import FunctionShare, Profiler, py_spy, summarize
from benchmarks.readback import Labeller, TopicContents, read_topic
from benchmarks.report import write
from benchmarks.results import BenchResults, Floor, LatencyPoint, Throughput, with_verdicts
from benchmarks.settings import ROOT, BenchSettings
from benchmarks.stack import Stack, Topics, WorkerProcess, create_topics, unique_name
from benchmarks.stats import span, steady_window
from consumer.ops import STAGES
from consumer.settings import Settings as WorkerSettings

_PROGRESS_POLL_S: Final = 0.5
_VISIBLE_TIMEOUT_S: Final = 60.0
_HARNESS: Final = "harness"
_PROFILE_MESSAGES: Final = 100_000
# Sampling stops at the first poll that sees the drain done: poll often, so idle time
# after the last record stays a small share of the profile.
_PROFILE_POLL_S: Final = 0.05


class Run:
    """The phases of one run, sharing a stack, a progress display and the settings."""

    def __init__(self, settings: BenchSettings, stack: Stack, progress: Progress) -> None:
        self.settings = settings
        self.stack = stack
        self.progress = progress
        self.input_topic = unique_name("bench-applications")

    def say(self, text: str) -> None:
        self.progress.console.print(text, highlight=False)

    @contextmanager
    def step(self, description: str, total: float | None = None) -> Iterator[TaskID]:
        task = self.progress.add_task(description, total=total)
        try:
            yield task
            self.progress.update(task, completed=total or 1, total=total or 1)
        finally:
            self.progress.stop_task(task)

    def base_worker_settings(self) -> WorkerSettings:
        """The worker's settings on this stack, topics and group left at their defaults."""
        return WorkerSettings(
            kafka_bootstrap_servers=self.stack.bootstrap_servers,
            mlflow_tracking_uri=self.stack.champion.tracking_uri,
        )

    def worker_settings(self, topics: Topics, group_id: str) -> WorkerSettings:
        """The worker's settings for ``topics`` (``SCORER_*`` overrides from the environment
        apply, exactly as they do to the worker processes)."""
        return WorkerSettings(
            kafka_bootstrap_servers=self.stack.bootstrap_servers,
            mlflow_tracking_uri=self.stack.champion.tracking_uri,
            input_topic=topics.applications,
            scores_topic=topics.scores,
            predictions_topic=topics.predictions,
            dead_letter_topic=topics.dead_letters,
            group_id=group_id,
            worker_id="bench-passthrough",
        )

    # --- phases -------------------------------------------------------------------

    def preload(self) -> None:
        count = self.settings.messages
        create_topics(self.stack.bootstrap_servers, [self.input_topic], self.settings.partitions)
        with self.step("preloading applications", total=count) as task:
            report = loadgen.send(
                self.stack.bootstrap_servers,
                self.input_topic,
                loadgen.stream(count, self.settings.seed),
                count=count,
                progress=lambda r: self.progress.update(task, completed=r.delivered),
            )
        self.say(f"preloaded {report.delivered:,} applications ({report.throughput:,.0f}/s)")

    def ceiling_b(self, worker: WorkerSettings) -> ceilings.StageCosts:
        with self.step("ceiling B: timing the champion alone"):
            model = ceilings.load_champion(self.stack.champion, self.stack.workdir / "bench-cache")
            batch = loadgen.applications(worker.batch_max_messages, self.settings.seed + 999)
            costs = ceilings.stage_costs(
                model,
                batch,
                seconds=self.settings.inference_seconds,
                max_bytes=worker.max_message_bytes,
            )
        self.say(
            f"ceiling B: {costs.model_us_per_row:.2f} µs/row at batch {costs.batch_size} "
            f"(decode {costs.decode_us_per_row:.1f}, features {costs.features_us_per_row:.1f})"
        )
        return costs

    def ceiling_a(self) -> Throughput:
        count = self.settings.messages
        topics = self.stack.topics(
            "passthrough", self.settings.partitions, input_topic=self.input_topic
        )
        worker = self.worker_settings(topics, unique_name("bench-passthrough"))
        pids = {"broker": self.stack.broker.pid, _HARNESS: os.getpid()}
        with self.step("ceiling A: Kafka passthrough", total=count) as task:
            start = cpu_snapshot(pids)
            passed = ceilings.passthrough(
                worker,
                count,
                on_batch=lambda moved: self.progress.update(task, completed=moved),
                timeout_s=self.settings.phase_timeout_s,
            )
            cores = cores_used(start, cpu_snapshot(pids))
        contents = self.read_back(topics.scores)
        if contents.records != count or contents.duplicates:
            raise PhaseError(
                f"passthrough: {contents.records:,} copies for {count:,} records "
                f"({contents.duplicates} duplicates)"
            )
        run = _throughput("ceiling A", 1, contents.records, contents.timestamps, cores)
        run = run.model_copy(
            update={
                "transactions": passed.transactions,
                "stage_us": {
                    stage: round(seconds / count * 1e6, 2)
                    for stage, seconds in passed.seconds.items()
                },
            }
        )
        self.say(f"ceiling A: {run.rate:,.0f} msg/s ({passed.transactions:,} transactions)")
        return run

    def floor(self) -> Floor:
        count = self.settings.naive_messages
        output = self.stack.topics("naive", self.settings.partitions, input_topic=self.input_topic)
        with self.step("floor: naive per-message scorer", total=count) as task:
            run = naive_scorer(
                self.stack.bootstrap_servers,
                self.stack.champion,
                input_topic=self.input_topic,
                output_topic=output.scores,
                messages=count,
                on_message=lambda done: self.progress.update(task, completed=done),
                timeout_s=self.settings.phase_timeout_s,
            )
        self.say(f"floor: {run.rate:,.0f} msg/s over {run.messages:,} messages")
        return Floor(records=run.messages, seconds=run.seconds, rate=run.rate)

    def workers(self, processes: int) -> Throughput:
        count = self.settings.messages
        topics = self.stack.topics(f"w{processes}", self.settings.partitions)
        held = loadgen.HeldBack(self.stack.bootstrap_servers, topics.applications)
        with self.step(f"worker x {processes}: preloading (held back)", total=count) as task:
            held.fill(
                loadgen.stream(count, self.settings.seed),
                count=count,
                progress=lambda r: self.progress.update(task, completed=r.delivered),
            )
        group = unique_name(f"bench-workers{processes}")
        workers = [
            self.stack.start_worker(topics, group, f"bench-w{processes}-{k + 1}")
            for k in range(processes)
        ]
        with self.step(f"worker x {processes}: starting, waiting for every one to be ready"):
            _wait_all_ready(workers, self.settings.phase_timeout_s)
        ready = {w.name: rss_mb(w.pid) for w in workers}
        held.release()
        pids = {"broker": self.stack.broker.pid, **{w.name: w.pid for w in workers}}
        with self.step(f"worker x {processes}: draining", total=count) as task:
            start, end = self._until_scored(workers, count, pids, task)
        metrics = [w.metrics() for w in workers]
        peaks = {w.name: peak_rss_mb(w.pid) for w in workers}
        for worker in workers:
            if (code := worker.terminate()) != 0:
                raise PhaseError(f"worker {worker.name} exited with {code} when stopped")
        scores = self.read_back(topics.scores)
        predictions = self.read_back(topics.predictions, label=_worker_id)
        if scores.records != count or scores.duplicates:
            raise PhaseError(
                f"worker x {processes}: {scores.records:,} scores for {count:,} applications "
                f"({scores.duplicates} duplicates)"
            )
        run = _throughput(
            f"worker x {processes}",
            processes,
            scores.records,
            predictions.timestamps,
            cores_used(start, end),
        )
        busy_s = sum(span(ts).seconds for ts in predictions.timestamps.values())
        run = run.model_copy(
            update={
                "ready_rss_mb": ready,
                "peak_rss_mb": peaks,
                "stage_us": _stage_us(metrics, scores.records, busy_s),
                "transactions": int(
                    sum(m.get('scorer_transactions_total{outcome="committed"}', 0) for m in metrics)
                ),
            }
        )
        self.say(
            f"worker x {processes}: {run.rate:,.0f} scores/s, peak RSS "
            + ", ".join(f"{mb:.0f} MB" for mb in peaks.values())
        )
        return run

    def profile(self) -> tuple[list[FunctionShare], str]:
        """py-spy on one worker draining a held-back batch (a separate, unmeasured drain:
        the sampler takes CPU from the loop it samples)."""
        executable = py_spy()
        if executable is None:
            return [], "py-spy is not installed (pip install -e .[dev]): no profile"
        count = min(self.settings.messages, _PROFILE_MESSAGES)
        topics = self.stack.topics("profile", self.settings.partitions)
        held = loadgen.HeldBack(self.stack.bootstrap_servers, topics.applications)
        with self.step("profile: preloading (held back)", total=count) as task:
            held.fill(
                loadgen.stream(count, self.settings.seed),
                count=count,
                progress=lambda r: self.progress.update(task, completed=r.delivered),
            )
        worker = self.stack.start_worker(topics, unique_name("bench-profile"), "bench-profile-1")
        with self.step("profile: starting a worker"):
            worker.wait_ready()
        output = self.stack.logs.parent / "worker-profile.txt"
        with (
            self.step("profile: py-spy on one worker draining", total=count) as task,
            Profiler(executable, worker.pid, output),
        ):
            held.release()
            self._until_scored(
                [worker], count, {worker.name: worker.pid}, task, poll_s=_PROFILE_POLL_S
            )
        worker.terminate()
        shares = summarize(output.read_text())
        note = (
            f"py-spy, {count:,} applications drained by one worker; inclusive share of the "
            f"main thread's samples, waits included (raw stacks: {output.name})"
        )
        return shares, note

    def _until_scored(
        self,
        workers: Sequence[WorkerProcess],
        count: int,
        pids: dict[str, int],
        task: TaskID,
        *,
        poll_s: float = _PROGRESS_POLL_S,
    ) -> tuple[CpuSnapshot, CpuSnapshot]:
        """Wait until the workers report ``count`` scored; CPU snapshots at first and last score."""
        deadline = time.monotonic() + self.settings.phase_timeout_s
        first: CpuSnapshot | None = None
        while True:
            for worker in workers:
                worker.check_alive()
            scored = sum(worker.scored() for worker in workers)
            if scored and first is None:
                first = cpu_snapshot(pids)
            self.progress.update(task, completed=scored)
            if scored >= count and first is not None:
                return first, cpu_snapshot(pids)
            if time.monotonic() > deadline:
                raise PhaseError(
                    f"{scored:,} of {count:,} scored in {self.settings.phase_timeout_s:.0f}s"
                )
            time.sleep(poll_s)

    def latency(self) -> tuple[list[LatencyPoint], float]:
        """Latency points per rate, and the serving worker's peak resident memory."""
        topics = self.stack.topics("latency", self.settings.partitions)
        worker = self.stack.start_worker(topics, unique_name("bench-latency"), "bench-latency-1")
        with self.step("latency: starting a worker"):
            worker.wait_ready()
        pids = {"broker": self.stack.broker.pid, worker.name: worker.pid, _HARNESS: os.getpid()}
        points = []
        with LatencyRecorder(
            self.stack.bootstrap_servers, topics.applications, topics.scores
        ) as recorder:
            for index, rate in enumerate(self.settings.rates):
                total = max(1, round(rate * self.settings.latency_seconds))
                records = loadgen.applications(total, self.settings.seed + 1 + index)
                with self.step(f"latency at {rate:,}/s", total=total) as task:
                    start = cpu_snapshot(pids)
                    result = measure_rate(
                        recorder,
                        self.stack.bootstrap_servers,
                        topics.applications,
                        records,
                        rate=rate,
                        warmup_s=self.settings.warmup_seconds,
                        timeout_s=_VISIBLE_TIMEOUT_S,
                        progress=lambda r: self.progress.update(task, completed=r.delivered),
                    )
                    cores = cores_used(start, cpu_snapshot(pids))
                worker.check_alive()
                p = result.latency
                points.append(
                    LatencyPoint(
                        rate=rate,
                        achieved_rate=result.achieved_rate,
                        count=p.count,
                        p50_ms=p.p50,
                        p95_ms=p.p95,
                        p99_ms=p.p99,
                        max_ms=p.max,
                        mean_ms=p.mean,
                        cores=cores,
                    )
                )
                self.say(
                    f"latency at {rate:,}/s (achieved {result.achieved_rate:,.0f}/s): "
                    f"p50 {p.p50:.0f} ms, p95 {p.p95:.0f} ms, p99 {p.p99:.0f} ms"
                )
        peak = peak_rss_mb(worker.pid)
        worker.terminate()
        return points, peak

    def read_back(self, topic: str, label: Labeller | None = None) -> TopicContents:
        with self.step(f"reading back {topic}", total=None) as task:
            return read_topic(
                self.stack.bootstrap_servers,
                topic,
                label=label or _everything,
                progress=lambda read: self.progress.update(
                    task, description=f"reading back {topic}: {read:,}"
                ),
            )


def _wait_all_ready(workers: Sequence[WorkerProcess], timeout_s: float) -> None:
    """Return once every worker is ready at the same time: all in the group, each with
    its partitions (a worker joining later would revoke the others' partitions)."""
    deadline = time.monotonic() + timeout_s
    while not all(worker.ready() for worker in workers):
        for worker in workers:
            worker.check_alive()
        if time.monotonic() > deadline:
            raise StackError(f"workers not all ready in {timeout_s:.0f}s")
        time.sleep(_PROGRESS_POLL_S)


def _everything(_message: Message) -> str:
    return "all"


def _worker_id(message: Message) -> str:
    """The worker that wrote a prediction record (its ``worker_id`` field)."""
    return str(orjson.loads(message.value() or b"{}").get("worker_id", "unknown"))


def _throughput(
    name: str,
    processes: int,
    records: int,
    timestamps: dict[str, list[int]],
    cores: dict[str, float],
) -> Throughput:
    window = steady_window(timestamps)
    drain = span([t for ts in timestamps.values() for t in ts])
    return Throughput(
        name=name,
        processes=processes,
        records=records,
        rate=window.rate,
        window_s=window.seconds,
        drain_s=drain.seconds,
        cores=cores,
    )


def _stage_us(metrics: Sequence[dict[str, float]], scored: int, busy_s: float) -> dict[str, float]:
    """Microseconds per application in each worker stage, from the workers' histograms.

    ``other`` is the rest of the workers' busy time: waiting in ``consume()`` and bookkeeping.
    """
    if scored <= 0:
        return {}
    seconds = {
        stage: sum(
            m.get(f'scorer_stage_latency_seconds_sum{{stage="{stage}"}}', 0.0) for m in metrics
        )
        for stage in STAGES
    }
    per_app = {stage: round(value / scored * 1e6, 2) for stage, value in seconds.items()}
    per_app["other"] = round(max(0.0, busy_s - sum(seconds.values())) / scored * 1e6, 2)
    return per_app


def run_benchmark(settings: BenchSettings, console: Console) -> tuple[BenchResults, Path]:
    """Run every phase and write the results; returns them and the markdown file.

    Raises ``BenchmarkError`` subclasses; whatever was started is stopped first, also
    on ``KeyboardInterrupt``.
    """
    data = settings.data.resolve()
    if not data.is_file():
        raise StackError(f"dataset not found: {data} (set RUMOS_DATA or pass --data)")
    started_at = datetime.now(UTC)
    started = time.monotonic()
    machine = machine_info(ROOT)
    run_dir = settings.results_dir / started_at.strftime("%Y%m%dT%H%M%SZ")
    logs = run_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with (
        tempfile.TemporaryDirectory(prefix="rumos-bench-") as workdir,
        Stack(Path(workdir), logs) as stack,
        Progress(*columns, console=console) as progress,
    ):
        run = Run(settings, stack, progress)
        with run.step("starting a local Kafka broker"):
            stack.start_broker()
        with run.step("starting an MLflow server"):
            stack.start_mlflow()
        with run.step("training the champion (python -m training --quick)"):
            champion = stack.train(data)
        run.say(f"champion: {champion.family}, version {champion.version}")
        run.preload()
        ceiling_a = run.ceiling_a()
        worker_config = run.base_worker_settings()
        ceiling_b = run.ceiling_b(worker_config)
        floor = run.floor()
        workers = [run.workers(1), run.workers(2)]
        latency, latency_rss = run.latency()
        profile, profile_note = run.profile() if settings.profile else ([], "not profiled")
    results = BenchResults(
        started_at=started_at,
        duration_s=time.monotonic() - started,
        quick=settings.quick,
        machine=machine,
        load_average_end=load_average(),
        config=_config(settings, worker_config),
        champion={"family": champion.family, "version": champion.version},
        ceiling_a=ceiling_a,
        ceiling_b=ceiling_b,
        floor=floor,
        workers=workers,
        latency=latency,
        latency_peak_rss_mb=latency_rss,
        profile=profile,
        profile_note=profile_note,
    )
    results = with_verdicts(results)
    return results, write(results, run_dir, settings.readme)


_WORKER_KNOBS: Final = (
    "batch_max_messages",
    "batch_max_wait_ms",
    "linger_ms",
    "producer_batch_bytes",
    "transaction_timeout_ms",
    "kafka_extra",
    "consumer_extra",
    "producer_extra",
)


def _config(settings: BenchSettings, worker: WorkerSettings) -> dict[str, object]:
    """The run's sizes and the worker settings that shape throughput (secrets masked)."""
    knobs = worker.redacted()
    return {
        "messages": settings.messages,
        "naive_messages": settings.naive_messages,
        "partitions": settings.partitions,
        "rates": list(settings.rates),
        "latency_seconds": settings.latency_seconds,
        "warmup_seconds": settings.warmup_seconds,
        **{name: knobs[name] for name in _WORKER_KNOBS},
    }
