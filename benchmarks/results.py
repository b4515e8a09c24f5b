"""What a run measured, as one JSON-ready model, and the targets it is judged against."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final, Literal

from pydantic import BaseModel

from benchmarks.ceilings import StageCosts
from benchmarks.machine import MachineInfo
from benchmarks.profiling import FunctionShare
from benchmarks.stats import ratio

WORKER_VS_CEILING_A: Final = 0.5
WORKER_VS_FLOOR: Final = 50.0
TWO_WORKERS_SCALING: Final = 1.6
LATENCY_RATE: Final = 2_000
P99_BUDGET_MS: Final = 200.0
RSS_BUDGET_MB: Final = 400.0
# Below this share of all cores busy, the machine still had CPU for another worker.
SATURATED_SHARE: Final = 0.9

Status = Literal["met", "missed", "not measured"]


class Throughput(BaseModel):
    """A drain of the preloaded applications by one loop (passthrough or workers)."""

    name: str
    processes: int
    records: int
    rate: float
    """Records per second in the steady window (see ``stats.steady_window``)."""
    window_s: float
    drain_s: float
    """First output record to last, all writers."""
    cores: dict[str, float]
    """Average cores used during the drain, per process and for the whole machine."""
    ready_rss_mb: dict[str, float] = {}
    """Resident memory of each worker once ready (champion loaded), before any record."""
    peak_rss_mb: dict[str, float] = {}
    stage_us: dict[str, float] = {}
    """Worker-reported microseconds per application, per stage (``/metrics``)."""
    duplicates: int = 0
    transactions: int = 0


class Floor(BaseModel):
    """The naive per-message scorer on a bounded sample."""

    records: int
    seconds: float
    rate: float


class LatencyPoint(BaseModel):
    """End-to-end latency at one steady publishing rate (warm-up left out)."""

    rate: int
    achieved_rate: float
    count: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    cores: dict[str, float]


class Target(BaseModel):
    name: str
    goal: str
    measured: str
    status: Status
    note: str = ""


class BenchResults(BaseModel):
    """One run, everything measured in it."""

    started_at: datetime
    duration_s: float
    quick: bool
    machine: MachineInfo
    load_average_end: tuple[float, float, float]
    config: dict[str, Any]
    champion: dict[str, str]
    ceiling_a: Throughput
    ceiling_b: StageCosts
    floor: Floor
    workers: list[Throughput]
    latency: list[LatencyPoint]
    latency_peak_rss_mb: float = 0.0
    """Peak resident memory of the worker that served the latency phases."""
    profile: list[FunctionShare] = []
    profile_note: str = ""
    """What was profiled, or why nothing was."""
    ratios: dict[str, float | None] = {}
    targets: list[Target] = []


def with_verdicts(results: BenchResults) -> BenchResults:
    """``results`` with its ratios computed and every target judged."""
    one = _workers(results, 1)
    two = _workers(results, 2)
    ratios = {
        "worker/ceiling_a": ratio(one.rate, results.ceiling_a.rate) if one else None,
        "worker/floor": ratio(one.rate, results.floor.rate) if one else None,
        "two_workers/one_worker": ratio(two.rate, one.rate) if one and two else None,
    }
    targets = [
        _versus_passthrough(ratios["worker/ceiling_a"], results.ceiling_a, one),
        _at_least(
            "worker vs naive floor",
            f"≥ {WORKER_VS_FLOOR:.0f}x naive",
            ratios["worker/floor"],
            WORKER_VS_FLOOR,
        ),
        _scaling(ratios["two_workers/one_worker"], one, two, results.machine.nproc),
        _latency(results.latency),
        _memory(results),
    ]
    return results.model_copy(update={"ratios": ratios, "targets": targets})


def _workers(results: BenchResults, processes: int) -> Throughput | None:
    return next((w for w in results.workers if w.processes == processes), None)


def _at_least(
    name: str, goal: str, value: float | None, bound: float, *, percent: bool = False
) -> Target:
    if value is None:
        return Target(name=name, goal=goal, measured="—", status="not measured")
    measured = f"{value:.0%}" if percent else f"{value:.1f}x"
    return Target(name=name, goal=goal, measured=measured, status=_status(value >= bound))


def _versus_passthrough(value: float | None, ceiling: Throughput, one: Throughput | None) -> Target:
    target = _at_least(
        "worker vs ceiling A",
        f"≥ {WORKER_VS_CEILING_A:.0%} of passthrough",
        value,
        WORKER_VS_CEILING_A,
        percent=True,
    )
    if value is None or value <= 1 or one is None:
        return target
    passthrough, worker = ceiling.stage_us.get("commit"), one.stage_us.get("commit")
    if passthrough is None or worker is None:
        return target
    note = (
        f"the passthrough is slower than the worker: it spent {passthrough:.0f} µs per record "
        f"sending offsets and committing, the worker {worker:.0f}; back to back, its next "
        "transaction waits out the previous one's commit markers (README, findings)"
    )
    return target.model_copy(update={"note": note})


def _status(met: bool) -> Status:
    return "met" if met else "missed"


def _scaling(
    value: float | None, one: Throughput | None, two: Throughput | None, nproc: int
) -> Target:
    target = _at_least(
        "two workers vs one", f"≥ {TWO_WORKERS_SCALING}x one worker", value, TWO_WORKERS_SCALING
    )
    if two is None or target.status != "missed":
        return target
    busy = two.cores.get("machine", 0.0)
    if busy >= SATURATED_SHARE * nproc:
        ours = ", ".join(
            f"{name} {cores:.2f}"
            for name, cores in two.cores.items()
            if name not in ("others", "machine")
        )
        note = (
            f"the cores do not allow it: {busy:.2f} of {nproc} cores were busy while two "
            f"workers drained ({ours}; other processes on the machine "
            f"{two.cores.get('others', 0.0):.2f}); a second worker can only take CPU from "
            "the first one and the broker"
        )
    else:
        note = _unsaturated_scaling(busy, nproc, one, two)
    return target.model_copy(update={"note": note})


def _unsaturated_scaling(busy: float, nproc: int, one: Throughput | None, two: Throughput) -> str:
    """Why two workers did not scale although the cores were not all busy: what 1.6x would
    have needed, and how much longer the workers waited on commits."""
    note = f"only {busy:.2f} of {nproc} cores were busy"
    if one is None:
        return note
    single = sum(v for k, v in one.cores.items() if k not in ("others", "machine"))
    note += (
        f"; {TWO_WORKERS_SCALING}x would need about {TWO_WORKERS_SCALING * single:.2f} cores "
        f"for the broker and workers ({TWO_WORKERS_SCALING} x the {single:.2f} one worker and "
        f"the broker used), other processes took {two.cores.get('others', 0.0):.2f}"
    )
    commits = one.stage_us.get("commit"), two.stage_us.get("commit")
    if commits[0] is not None and commits[1] is not None:
        note += (
            f"; committing took {commits[0]:.0f} µs per record with one worker and "
            f"{commits[1]:.0f} with two: both wait on the one broker's transaction commits"
        )
    return note


def _latency(points: list[LatencyPoint]) -> Target:
    goal = f"p99 ≤ {P99_BUDGET_MS:.0f} ms at {LATENCY_RATE:,}/s"
    point = next((p for p in points if p.rate == LATENCY_RATE), None)
    if point is None:
        return Target(name="end-to-end latency", goal=goal, measured="—", status="not measured")
    return Target(
        name="end-to-end latency",
        goal=goal,
        measured=f"p99 {point.p99_ms:.1f} ms",
        status=_status(point.p99_ms <= P99_BUDGET_MS),
        note=f"achieved {point.achieved_rate:,.0f}/s",
    )


def _memory(results: BenchResults) -> Target:
    goal = f"≤ {RSS_BUDGET_MB:.0f} MB resident"
    peaks = [mb for run in results.workers for mb in run.peak_rss_mb.values()]
    peaks += [results.latency_peak_rss_mb] if results.latency_peak_rss_mb > 0 else []
    if not peaks:
        return Target(name="worker memory", goal=goal, measured="—", status="not measured")
    ready = [mb for run in results.workers for mb in run.ready_rss_mb.values()]
    note = (
        f"{max(ready):.0f} MB once ready with the champion loaded, before any record"
        if ready
        else ""
    )
    return Target(
        name="worker memory",
        goal=goal,
        measured=f"{max(peaks):.0f} MB peak",
        status=_status(max(peaks) <= RSS_BUDGET_MB),
        note=note,
    )
