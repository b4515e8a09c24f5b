"""One benchmark run, phase by phase, on a stack it starts and always stops.

Order: broker, MLflow server and champion; preload; ceiling A; ceiling B (in-process);
the naive floor; one then two workers draining; end-to-end latency; a py-spy profile of
one worker. Every drain's throughput comes from the output's record timestamps, read
back afterwards, so the harness polling for progress never paces the loop it measures.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import orjson
from confluent_kafka import Message
from rich.console import Console

from benchmarks import BenchmarkError, ceilings, loadgen
from benchmarks.latency import LatencyRecorder, measure_rate
from benchmarks.machine import (
    cores_used,
    cpu_snapshot,
    load_average,
    machine_info,
    peak_rss_mb,
    rss_mb,
)
from benchmarks.naive import naive_scorer
from benchmarks.profiling import FunctionShare, profiling, py_spy, summarize
from benchmarks.readback import read_topic
from benchmarks.results import BenchResults, Floor, LatencyPoint, Throughput, with_verdicts, write
from benchmarks.stack import Stack, Topics, check_alive
from benchmarks.stats import span, steady_window
from consumer.ops import STAGES
from consumer.settings import Settings as WorkerSettings
from devstack import ROOT, WorkerProcess, create_topics, unique_name

_POLL_S: Final = 0.5
# Sampling stops at the first poll that sees the drain done: poll often, so idle time
# after the last record stays a small share of the profile.
_PROFILE_POLL_S: Final = 0.05
_PROFILE_MESSAGES: Final = 100_000
_VISIBLE_TIMEOUT_S: Final = 60.0
_COMMITTED: Final = 'scorer_transactions_total{outcome="committed"}'
# The worker settings that shape throughput, recorded with every run.
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


@dataclass(frozen=True)
class Options:
    """Sizes and places of one run (``python -m benchmarks --help``)."""

    quick: bool
    messages: int
    naive_messages: int
    rates: tuple[int, ...]
    latency_seconds: float
    warmup_seconds: float
    partitions: int
    profile: bool
    data: Path
    results_dir: Path
    readme: Path | None
    worker: WorkerSettings
    """The ``SCORER_*`` settings every worker and the passthrough run with."""
    seed: int = 7
    inference_seconds: float = 3.0
    phase_timeout_s: float = 900.0


class Run:
    """The phases of one run, sharing a stack, a console and the options."""

    def __init__(self, options: Options, stack: Stack, console: Console) -> None:
        self.options = options
        self.stack = stack
        self.console = console
        self.input_topic = unique_name("bench-applications")

    @contextmanager
    def step(self, description: str) -> Iterator[None]:
        started = time.monotonic()
        with self.console.status(description):
            yield
        self.console.print(f"{description}: {time.monotonic() - started:.1f} s", highlight=False)

    def preload(self) -> None:
        count = self.options.messages
        create_topics(self.stack.bootstrap_servers, {self.input_topic: self.options.partitions})
        with self.step(f"preloading {count:,} applications"):
            loadgen.send(
                self.stack.bootstrap_servers,
                self.input_topic,
                loadgen.applications(count, self.options.seed),
                count=count,
            )

    def ceiling_a(self) -> Throughput:
        count = self.options.messages
        topics = self.stack.topics("passthrough", self.options.partitions, self.input_topic)
        settings = self.options.worker.model_copy(
            update={
                "kafka_bootstrap_servers": self.stack.bootstrap_servers,
                **topics.settings(),
                "group_id": unique_name("bench-passthrough"),
                "worker_id": "bench-passthrough",
            }
        )
        pids = {"broker": self.stack.broker_pid, "harness": os.getpid()}
        with self.step("ceiling A: Kafka passthrough"):
            start = cpu_snapshot(pids)
            transactions, seconds = ceilings.passthrough(
                settings, count, self.options.phase_timeout_s
            )
            cores = cores_used(start, cpu_snapshot(pids))
        scores = read_topic(self.stack.bootstrap_servers, topics.scores, expected=count)
        stage_us = {step: round(s / count * 1e6, 2) for step, s in seconds.items()}
        return _throughput(
            "ceiling A", 1, scores.timestamps, cores, transactions=transactions, stage_us=stage_us
        )

    def ceiling_b(self) -> ceilings.StageCosts:
        worker = self.options.worker
        with self.step("ceiling B: timing the champion alone"):
            model = ceilings.load_champion(self.stack.champion, self.stack.workdir / "bench-cache")
            batch = list(loadgen.applications(worker.batch_max_messages, self.options.seed + 999))
            return ceilings.stage_costs(
                model,
                batch,
                seconds=self.options.inference_seconds,
                max_bytes=worker.max_message_bytes,
            )

    def floor(self) -> Floor:
        count = self.options.naive_messages
        output = self.stack.topics("naive", self.options.partitions, self.input_topic)
        with self.step(f"floor: naive per-message scorer on {count:,} messages"):
            return naive_scorer(
                self.stack.bootstrap_servers,
                self.stack.champion,
                input_topic=self.input_topic,
                output_topic=output.scores,
                messages=count,
                timeout_s=self.options.phase_timeout_s,
            )

    def drain(
        self,
        name: str,
        processes: int,
        count: int,
        *,
        around: Callable[[WorkerProcess], AbstractContextManager[object]] = lambda _w: (
            nullcontext()
        ),
        poll_s: float = _POLL_S,
    ) -> Throughput:
        """``processes`` workers in one group drain ``count`` applications written inside
        one open transaction and released once every worker is ready, so none starts late;
        each application must come out exactly once."""
        topics = self.stack.topics(name, self.options.partitions)
        held = loadgen.HeldBack(self.stack.bootstrap_servers, topics.applications)
        with self.step(f"{name}: preloading {count:,} applications (held back)"):
            held.fill(loadgen.applications(count, self.options.seed), count=count)
        workers = self._ready_workers(name, processes, topics)
        ready = {w.worker_id: rss_mb(w.pid) for w in workers}
        pids = {"broker": self.stack.broker_pid, **{w.worker_id: w.pid for w in workers}}
        deadline = time.monotonic() + self.options.phase_timeout_s
        with self.step(f"{name}: draining"), around(workers[0]):
            held.release()
            while not (scored := sum(_scored(w) for w in workers)):
                _poll(workers, deadline, poll_s, f"nothing scored by {name}")
            start = cpu_snapshot(pids)  # at the first score
            while (scored := sum(_scored(w) for w in workers)) < count:
                _poll(workers, deadline, poll_s, f"{scored:,} of {count:,} scored by {name}")
            cores = cores_used(start, cpu_snapshot(pids))
        metrics = [w.metrics() for w in workers]
        peaks = {w.worker_id: peak_rss_mb(w.pid) for w in workers}
        for worker in workers:
            if (code := worker.terminate()) != 0:
                raise BenchmarkError(f"worker {worker.worker_id} exited with {code} when stopped")
        read_topic(self.stack.bootstrap_servers, topics.scores, expected=count)
        by_worker = read_topic(
            self.stack.bootstrap_servers, topics.predictions, expected=count, label=_worker_id
        )
        busy_s = sum(span(ts).seconds for ts in by_worker.timestamps.values())
        return _throughput(
            f"worker x {processes}",
            processes,
            by_worker.timestamps,
            cores,
            ready_rss_mb=ready,
            peak_rss_mb=peaks,
            stage_us=_stage_us(metrics, count, busy_s),
            transactions=int(sum(m.get(_COMMITTED, 0) for m in metrics)),
        )

    def profile(self) -> tuple[list[FunctionShare], str]:
        """py-spy on one worker draining (a separate, unmeasured drain: the sampler takes
        CPU from the loop it samples)."""
        if (executable := py_spy()) is None:
            return [], "py-spy is not installed (pip install -e .[dev]): no profile"
        count = min(self.options.messages, _PROFILE_MESSAGES)
        output = self.stack.logs.parent / "worker-profile.txt"
        self.drain(
            "profile",
            1,
            count,
            around=lambda worker: profiling(executable, worker.pid, output),
            poll_s=_PROFILE_POLL_S,
        )
        note = (
            f"py-spy, {count:,} applications drained by one worker; inclusive share of the "
            f"main thread's samples, waits included (raw stacks: {output.name})"
        )
        return summarize(output.read_text()), note

    def latency(self) -> tuple[list[LatencyPoint], float]:
        """Latency points per rate, and the serving worker's peak resident memory."""
        topics = self.stack.topics("latency", self.options.partitions)
        (worker,) = self._ready_workers("latency", 1, topics)
        pids = {
            "broker": self.stack.broker_pid,
            worker.worker_id: worker.pid,
            "harness": os.getpid(),
        }
        points = []
        with LatencyRecorder(
            self.stack.bootstrap_servers, topics.applications, topics.scores
        ) as recorder:
            for index, rate in enumerate(self.options.rates):
                total = max(1, round(rate * self.options.latency_seconds))
                records = list(loadgen.applications(total, self.options.seed + 1 + index))
                with self.step(f"latency at {rate:,}/s"):
                    start = cpu_snapshot(pids)
                    achieved, latency = measure_rate(
                        recorder,
                        self.stack.bootstrap_servers,
                        topics.applications,
                        records,
                        rate=rate,
                        warmup_s=self.options.warmup_seconds,
                        timeout_s=_VISIBLE_TIMEOUT_S,
                    )
                    cores = cores_used(start, cpu_snapshot(pids))
                check_alive(worker)
                points.append(
                    LatencyPoint(
                        rate=rate, achieved_rate=achieved, cores=cores, **latency.model_dump()
                    )
                )
        peak = peak_rss_mb(worker.pid)
        worker.terminate()
        return points, peak

    def _ready_workers(self, name: str, processes: int, topics: Topics) -> list[WorkerProcess]:
        """``processes`` workers in one new group, returned once all are ready at the same
        time: each with its partitions (a worker joining later revokes the others')."""
        group = unique_name(f"bench-{name}")
        workers = [
            self.stack.start_worker(topics, group, f"bench-{name}-{k + 1}")
            for k in range(processes)
        ]
        deadline = time.monotonic() + self.options.phase_timeout_s
        with self.step(f"{name}: starting {processes} worker(s)"):
            while not all(w.get("/readyz")[0] == 200 for w in workers):
                _poll(workers, deadline, _POLL_S, f"{name}: workers not all ready")
        return workers


def _poll(workers: Sequence[WorkerProcess], deadline: float, poll_s: float, late: str) -> None:
    """One wait between polls: raise when a worker died or ``deadline`` passed."""
    for worker in workers:
        check_alive(worker)
    if time.monotonic() > deadline:
        raise BenchmarkError(f"{late} (timed out)")
    time.sleep(poll_s)


def _scored(worker: WorkerProcess) -> int:
    return int(worker.metrics().get("scorer_applications_scored_total", 0))


def _worker_id(message: Message) -> str:
    """The worker that wrote a prediction record (its ``worker_id`` field)."""
    return str(orjson.loads(message.value() or b"{}").get("worker_id", "unknown"))


def _throughput(
    name: str,
    processes: int,
    timestamps: dict[str, list[int]],
    cores: dict[str, float],
    **measured: Any,
) -> Throughput:
    """A drain timed from its output records' timestamps, grouped by writer."""
    window = steady_window(timestamps)
    every = [t for ts in timestamps.values() for t in ts]
    return Throughput(
        name=name,
        processes=processes,
        records=len(every),
        rate=window.rate,
        window_s=window.seconds,
        drain_s=span(every).seconds,
        cores=cores,
        **measured,
    )


def _stage_us(metrics: Sequence[dict[str, float]], scored: int, busy_s: float) -> dict[str, float]:
    """Microseconds per application in each worker stage, from the workers' histograms;
    ``other`` is the rest of their busy time (waiting in ``consume()``, bookkeeping)."""
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


def run_benchmark(options: Options, console: Console) -> tuple[BenchResults, Path]:
    """Run every phase and write the results; returns them and the markdown file.

    Raises ``BenchmarkError`` or ``DevstackError``; whatever was started is stopped
    first, also on ``KeyboardInterrupt``.
    """
    data = options.data.resolve()
    if not data.is_file():
        raise BenchmarkError(f"dataset not found: {data} (set RUMOS_DATA or pass --data)")
    started_at = datetime.now(UTC)
    started = time.monotonic()
    machine = machine_info(ROOT)
    run_dir = options.results_dir / started_at.strftime("%Y%m%dT%H%M%SZ")
    with (
        tempfile.TemporaryDirectory(prefix="rumos-bench-") as workdir,
        Stack(Path(workdir), run_dir / "logs") as stack,
    ):
        run = Run(options, stack, console)
        with run.step("starting a local Kafka broker and an MLflow server"):
            stack.start()
        with run.step("training the champion (python -m training --quick)"):
            champion = stack.train(data)
        run.preload()
        ceiling_a = run.ceiling_a()
        ceiling_b = run.ceiling_b()
        floor = run.floor()
        workers = [run.drain(f"w{n}", n, options.messages) for n in (1, 2)]
        latency, latency_rss = run.latency()
        profile, profile_note = run.profile() if options.profile else ([], "not profiled")
    knobs = options.worker.redacted()
    results = BenchResults(
        started_at=started_at,
        duration_s=time.monotonic() - started,
        quick=options.quick,
        machine=machine,
        load_average_end=load_average(),
        config={
            "messages": options.messages,
            "naive_messages": options.naive_messages,
            "partitions": options.partitions,
            "rates": list(options.rates),
            "latency_seconds": options.latency_seconds,
            "warmup_seconds": options.warmup_seconds,
            **{name: knobs[name] for name in _WORKER_KNOBS},
        },
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
    return results, write(results, run_dir, options.readme)
