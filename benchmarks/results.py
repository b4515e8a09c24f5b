"""What a run measured (one JSON-ready model), the targets it is judged against, and the
numbers table: ``results.md`` and the block between the README's markers. Numbers only:
what they mean is written by people, in the README's findings.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel

from benchmarks import BenchmarkError
from benchmarks.measure import MachineInfo, Percentiles, ratio, span, steady_window
from benchmarks.profiling import FunctionShare

LATENCY_RATE: Final = 2_000  # the rate the latency target is judged at
MONITOR_CATCH_UP_S: Final = 900.0  # the monitor's lag must be back to 0 within this
# Each target: name, goal ("≤" when the bound is a maximum), how the value is shown, bound.
_TARGETS: Final = (
    ("worker vs ceiling A", "≥ {:.0%} of passthrough", "{:.0%}", 0.5),
    ("worker vs naive floor", "≥ {:.0f}x naive", "{:.1f}x", 50.0),
    ("two workers vs one", "≥ {}x one worker", "{:.1f}x", 1.6),
    ("reason codes on vs off", "≥ {:.0%} of one worker's rate off", "{:.0%}", 0.5),
    ("shadow challenger", "≥ {:.0%} of one worker", "{:.0%}", 0.6),
    ("monitor vs one worker", "≥ {:.1f}x one worker's applications/s", "{:.2f}x", 1.0),
    ("end-to-end latency", f"p99 ≤ {{:.0f}} ms at {LATENCY_RATE:,}/s", "p99 {:.1f} ms", 200.0),
    ("worker memory", "≤ {:.0f} MB resident", "{:.0f} MB peak", 400.0),
    ("signature check vs load", "≤ {:.0%} of a champion load", "{:.1%}", 0.10),
    ("monitor lag after the burst", "back to 0 in ≤ {:.0f} s", "{:.0f} s", MONITOR_CATCH_UP_S),
    ("monitor memory", "≤ {:.0f} MB resident", "{:.0f} MB peak", 400.0),
)
README_START: Final = "<!-- bench:start -->"
README_END: Final = "<!-- bench:end -->"
SHADOW_SUFFIX: Final = " + shadow"
"""Ends the name of the drain whose worker also scores a shadow challenger."""


class RunConfig(BaseModel):
    """What a run was asked to do (``python -m benchmarks --help``), kept with its numbers;
    ``worker`` is the ``SCORER_*`` settings every worker and the passthrough ran with."""

    quick: bool
    messages: int
    naive_messages: int
    rates: tuple[int, ...]
    latency_seconds: float
    warmup_seconds: float
    partitions: int
    profile: bool
    worker: dict[str, Any]


class Throughput(BaseModel):
    """A drain of preloaded applications by one loop (the passthrough, the floor, workers)."""

    name: str
    processes: int
    records: int
    rate: float  # records per second in the steady window (measure.steady_window)
    window_s: float
    drain_s: float  # first output record to last, all writers
    cores: dict[str, float]  # average cores per process, others, and the whole machine
    ready_rss_mb: dict[str, float] = {}  # per worker once ready, before any record
    peak_rss_mb: dict[str, float] = {}
    stage_us: dict[str, float] = {}  # microseconds per application, per stage in loop order
    transactions: int = 0
    reason_codes: bool = True  # the workers' SCORER_REASON_CODES

    @classmethod
    def of(cls, by_writer: dict[str, list[int]], **fields: Any) -> Throughput:
        """Timed from its output records' timestamps, grouped by writer; ``fields``: the rest."""
        window, every = steady_window(by_writer), [t for ts in by_writer.values() for t in ts]
        drain_s = span(every).seconds
        return cls(
            records=len(every), rate=window.rate, window_s=window.seconds, drain_s=drain_s, **fields
        )


class StageCosts(BaseModel):
    """Ceiling B: microseconds per row of each in-process stage at one batch size, median
    call. ``*_us_per_row`` is CPU time: on a shared machine wall time also counts waiting
    for a core (the model's is kept beside it)."""

    batch_size: int
    calls: int
    decode_us_per_row: float
    features_us_per_row: float
    model_us_per_row: float
    model_wall_us_per_row: float
    load_ms: float = 0.0  # a hot reload of the cached champion: vetting, signature, unpickling
    verification_ms: float = 0.0  # its signature and file digests alone
    reasons_us_per_row: float | None = None  # top reasons of a scored batch (no explainer: None)


class MonitorRun(BaseModel):
    """The monitor over the shadow drain's burst: each application's record, prediction and
    shadow score, and an outcome for each, all waiting when it starts."""

    applications: int
    records: int
    caught_up_s: float | None
    """From its first committed batch until it had committed every record; None: not
    within ``MONITOR_CATCH_UP_S``."""
    peak_rss_mb: float
    cores: dict[str, float]

    @property
    def rate(self) -> float:
        """Applications per second: all four records of each."""
        return self.applications / self.caught_up_s if self.caught_up_s else 0.0


class LatencyPoint(Percentiles):
    """End-to-end latency at one steady publishing rate (warm-up left out)."""

    rate: int
    achieved_rate: float
    cores: dict[str, float]


class Target(BaseModel):
    name: str
    goal: str
    measured: str
    status: Literal["met", "missed", "not measured"]


class BenchResults(BaseModel):
    """One run, everything measured in it."""

    started_at: datetime
    duration_s: float
    config: RunConfig
    machine: MachineInfo
    load_average_end: tuple[float, float, float]
    champion: dict[str, str]
    ceiling_a: Throughput
    ceiling_b: StageCosts
    floor: Throughput  # the naive per-message scorer on a bounded sample
    workers: list[Throughput]
    latency: list[LatencyPoint]
    latency_peak_rss_mb: float = 0.0  # the worker that served the latency phases
    monitor: MonitorRun | None = None  # not run without a shadow challenger
    profile: list[FunctionShare] = []
    profile_note: str = ""  # what was profiled, or why nothing was
    ratios: dict[str, float | None] = {}
    targets: list[Target] = []


def with_verdicts(results: BenchResults) -> BenchResults:
    """``results`` with its ratios computed and every target judged."""
    drains = {
        (w.processes, w.reason_codes, w.name.endswith(SHADOW_SUFFIX)): w for w in results.workers
    }
    one, two, off, shadow = (
        drains.get(k)
        for k in ((1, True, False), (2, True, False), (1, False, False), (1, True, True))
    )
    ratios = {
        "worker/ceiling_a": _over(one, results.ceiling_a),
        "worker/floor": _over(one, results.floor),
        "two_workers/one_worker": _over(two, one),
        "reasons_on/reasons_off": _over(one, off),
        "shadow/one_worker": _over(shadow, one),
        "monitor/one_worker": _over(results.monitor, one),
    }
    point = next((p for p in results.latency if p.rate == LATENCY_RATE), None)
    peaks = [mb for run in results.workers for mb in run.peak_rss_mb.values()]
    peaks += [results.latency_peak_rss_mb] if results.latency_peak_rss_mb > 0 else []
    b, monitor = results.ceiling_b, results.monitor
    measured = [
        *ratios.values(),
        point.p99_ms if point else None,
        max(peaks, default=None),
        ratio(b.verification_ms, b.load_ms),
        # A monitor that never caught up missed the target: its lag was never 0.
        (monitor.caught_up_s or math.inf) if monitor else None,
        monitor.peak_rss_mb if monitor else None,
    ]
    targets = [_target(*spec, value) for spec, value in zip(_TARGETS, measured, strict=True)]
    return results.model_copy(update={"ratios": ratios, "targets": targets})


def _over(run: Throughput | MonitorRun | None, base: Throughput | None) -> float | None:
    return ratio(run.rate, base.rate) if run is not None and base is not None else None


def _target(name: str, goal: str, shown: str, bound: float, value: float | None) -> Target:
    """Met when ``value`` is at least ``bound``, or at most when the goal says "≤"."""
    goal = goal.format(bound)
    if value is None:
        return Target(name=name, goal=goal, measured="—", status="not measured")
    met = value <= bound if "≤" in goal else value >= bound
    return Target(
        name=name, goal=goal, measured=shown.format(value), status="met" if met else "missed"
    )


def markdown(results: BenchResults) -> str:
    """The run's numbers: context lines, then throughput, latency, targets and profile."""
    m, c, b, champion = results.machine, results.config, results.ceiling_b, results.champion
    load, end = (
        " / ".join(f"{v:.2f}" for v in x) for x in (m.load_average, results.load_average_end)
    )
    extras = [
        f"{k} {c.worker[k]}"
        for k in ("kafka_extra", "consumer_extra", "producer_extra")
        if c.worker.get(k)
    ]
    shadow = f", shadow challenger {champion['shadow']}" if "shadow" in champion else ""
    lines = [
        f"Machine: {m.nproc} x {m.cpu_model}, {m.memory_gib:.1f} GiB, Python {m.python}, "
        f"{m.platform}. Load average (1/5/15 min) at start {load}, at end {end}.",
        "",
        f"Run {results.started_at:%Y-%m-%d %H:%M} UTC of commit {m.source} "
        f"({'quick' if c.quick else 'full'}, {results.duration_s / 60:.1f} min): "
        f"{c.messages:,} preloaded applications on {c.partitions} partitions; worker batches of "
        f"up to {c.worker['batch_max_messages']} records or {c.worker['batch_max_wait_ms']} ms; "
        f"champion {champion['family']} (version {champion['version']}){shadow}."
        + (f" Worker overrides: {'; '.join(extras)}." if extras else ""),
        "",
        "| measure | result | notes |",
        "| --- | ---: | --- |",
        _drain_row("Ceiling A: Kafka passthrough", results.ceiling_a, "msg/s"),
        f"| Ceiling B: champion alone | {b.model_us_per_row:.2f} µs/row | "
        f"{1e6 / b.model_us_per_row:,.0f} rows/s per core at batch {b.batch_size} (CPU time; wall "
        f"{b.model_wall_us_per_row:.2f} µs/row); in isolation: decode "
        f"{b.decode_us_per_row:.1f} µs/row, feature assembly {b.features_us_per_row:.1f} µs/row"
        + (f", reasons {b.reasons_us_per_row:.1f} µs/row" if b.reasons_us_per_row else "")
        + f"; a load from the cache {b.load_ms:.0f} ms, of which the signature check "
        f"{b.verification_ms:.1f} ms |",
        _drain_row("Floor: naive scorer", results.floor, "msg/s"),
        *(
            _drain_row(
                f"{w.name.capitalize()}{'' if w.reason_codes else ', no reasons'}", w, "scores/s"
            )
            for w in results.workers
        ),
        *([_monitor_row(results.monitor)] if results.monitor else []),
        "",
        "| rate (target) | achieved | samples | p50 | p95 | p99 | max | cores |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        *(
            f"| {p.rate:,}/s | {p.achieved_rate:,.0f}/s | {p.count:,} | {p.p50_ms:.0f} ms | "
            f"{p.p95_ms:.0f} ms | {p.p99_ms:.0f} ms | {p.max_ms:.0f} ms | {_listed(p.cores)} |"
            for p in results.latency
        ),
        "",
        f"Latency worker's peak RSS: {results.latency_peak_rss_mb:.0f} MB"
        + ("; it scored the shadow challenger too." if shadow else "."),
        "",
        "| target | goal | measured | status |",
        "| --- | --- | --- | --- |",
        *(
            f"| {t.name} | {t.goal} | {t.measured} | "
            f"{t.status if t.status == 'not measured' else f'**{t.status}**'} |"
            for t in results.targets
        ),
        "",
        f"Profile ({results.profile_note}):\n"
        if results.profile
        else f"Profile: {results.profile_note}.",
        *(f"- {100 * f.share:.1f}% `{f.function}`" for f in results.profile),
    ]
    return "\n".join(lines) + "\n"


def _listed(values: dict[str, float], shown: str = ".2f") -> str:
    """``name value, ...``: cores per process, or microseconds per stage."""
    return ", ".join(f"{name} {value:{shown}}" for name, value in values.items())


def _drain_row(label: str, run: Throughput, unit: str) -> str:
    notes = [f"{run.records:,} in {run.window_s:.1f} s steady window ({run.drain_s:.1f} s drain)"]
    notes += [f"{run.transactions:,} transactions"] if run.transactions else []
    if run.peak_rss_mb:
        ready, peaks = (
            ", ".join(f"{mb:.0f}" for mb in rss.values())
            for rss in (run.ready_rss_mb, run.peak_rss_mb)
        )
        notes.append(f"RSS once ready {ready} MB, peak {peaks} MB")
    notes += [f"µs/application: {_listed(run.stage_us, '.1f')}"] if run.stage_us else []
    notes.append(f"cores: {_listed(run.cores)}")
    return f"| {label} | {run.rate:,.0f} {unit} | {'; '.join(notes)} |"


def _monitor_row(run: MonitorRun) -> str:
    took = (
        f"lag back to 0 in {run.caught_up_s:.1f} s ({run.records / run.caught_up_s:,.0f} records/s)"
        if run.caught_up_s
        else "lag not back to 0"
    )
    return (
        f"| Monitor | {run.rate:,.0f} applications/s | {run.applications:,} applications, "
        f"{run.records:,} records: {took}; RSS peak {run.peak_rss_mb:.0f} MB; "
        f"cores: {_listed(run.cores)} |"
    )


def write(results: BenchResults, directory: Path, readme: Path | None) -> Path:
    """``results.json`` and ``results.md`` in ``directory``, then the same table between
    ``readme``'s markers when given (``BenchmarkError`` if it has none); the markdown file."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "results.json").write_text(results.model_dump_json(indent=2) + "\n")
    (table := directory / "results.md").write_text(markdown(results))
    if readme is not None:
        readme.write_text(replace_table(readme.read_text(), table.read_text()))
    return table


def replace_table(readme: str, table: str) -> str:
    """``readme`` with the text between the bench markers replaced by ``table``."""
    pattern = re.compile(re.escape(README_START) + ".*?" + re.escape(README_END), re.DOTALL)
    if not pattern.search(readme):
        raise BenchmarkError(f"no {README_START} ... {README_END} block to replace")
    block = f"{README_START}\n{table.rstrip()}\n{README_END}"
    return pattern.sub(lambda _match: block, readme, count=1)
