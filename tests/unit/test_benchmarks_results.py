"""The benchmark's verdicts and numbers: targets judged, tables rendered, README block replaced."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from benchmarks import BenchmarkError
from benchmarks.measure import MachineInfo
from benchmarks.profiling import FunctionShare
from benchmarks.results import (
    README_END,
    README_START,
    BenchResults,
    LatencyPoint,
    MonitorRun,
    RunConfig,
    StageCosts,
    Throughput,
    markdown,
    replace_table,
    with_verdicts,
    write,
)


def _drain(name: str, processes: int, rate: float, **extra: object) -> Throughput:
    fields: dict[str, object] = {
        "name": name,
        "processes": processes,
        "records": 200_000,
        "rate": rate,
        "window_s": 200_000 / rate,
        "drain_s": 200_000 / rate + 1,
        "cores": {"broker": 0.6, "machine": 1.2},
    }
    return Throughput.model_validate(fields | extra)


def _point(rate: int, p99: float) -> LatencyPoint:
    return LatencyPoint(
        rate=rate,
        achieved_rate=rate * 0.99,
        count=rate * 20,
        p50_ms=p99 / 3,
        p95_ms=p99 / 1.5,
        p99_ms=p99,
        max_ms=p99 * 1.2,
        mean_ms=p99 / 2.5,
        cores={"broker": 0.3},
    )


def _results(
    *,
    ceiling_a: float = 20_000.0,
    floor: float = 200.0,
    one: float = 12_000.0,
    two: float = 13_000.0,
    off: float | None = 20_000.0,
    shadow: float | None = 9_000.0,
    two_busy: float = 1.95,
    p99_at_2000: float | None = 150.0,
    rss: float = 300.0,
    latency_rss: float = 310.0,
    verification_ms: float = 5.0,
    monitor_rate: float | None = 20_000.0,
    monitor_caught_up: bool = True,
    monitor_rss: float = 320.0,
) -> BenchResults:
    monitor = None
    if monitor_rate is not None:
        monitor = MonitorRun(
            applications=200_000,
            records=800_000,
            caught_up_s=200_000 / monitor_rate if monitor_caught_up else None,
            peak_rss_mb=monitor_rss,
            cores={"broker": 0.4, "monitor": 0.95},
        )
    points = [_point(500, 90.0)]
    if p99_at_2000 is not None:
        points.append(_point(2_000, p99_at_2000))
    return BenchResults(
        started_at=datetime(2026, 1, 2, 3, 4, tzinfo=UTC),
        duration_s=600.0,
        config=RunConfig(
            quick=False,
            messages=200_000,
            naive_messages=2_000,
            rates=(500, 2_000),
            latency_seconds=25.0,
            warmup_seconds=5.0,
            partitions=6,
            profile=True,
            worker={"batch_max_messages": 500, "batch_max_wait_ms": 100, "producer_extra": {}},
        ),
        machine=MachineInfo(
            nproc=2,
            cpu_model="Test CPU",
            memory_gib=24.0,
            load_average=(1.5, 1.0, 0.5),
            python="3.11.7",
            platform="Linux",
        ),
        load_average_end=(2.0, 1.5, 1.0),
        champion={"family": "random_forest", "version": "5"},
        ceiling_a=_drain("ceiling A", 1, ceiling_a, transactions=400, stage_us={"commit": 90.0}),
        ceiling_b=StageCosts(
            batch_size=500,
            calls=100,
            decode_us_per_row=3.0,
            features_us_per_row=1.0,
            model_us_per_row=4.0,
            model_wall_us_per_row=5.0,
            load_ms=100.0,
            verification_ms=verification_ms,
            reasons_us_per_row=6.5,
        ),
        floor=_drain("floor", 1, floor),
        workers=[
            _drain(
                "worker x 1",
                1,
                one,
                ready_rss_mb={"w1": 350.0},
                peak_rss_mb={"w1": rss},
                stage_us={"commit": 20.0},
            ),
            *([_drain("worker x 1", 1, off, reason_codes=False)] if off is not None else []),
            _drain(
                "worker x 2",
                2,
                two,
                peak_rss_mb={"w2-1": rss - 10, "w2-2": rss - 20},
                stage_us={"commit": 35.0},
                cores={
                    "broker": 0.7,
                    "w2-1": 0.6,
                    "w2-2": 0.6,
                    "others": max(0.0, round(two_busy - 1.9, 2)),
                    "machine": two_busy,
                },
            ),
            *([_drain("worker x 1 + shadow", 1, shadow)] if shadow is not None else []),
        ],
        latency=points,
        latency_peak_rss_mb=latency_rss,
        monitor=monitor,
        profile=[
            FunctionShare(function="KafkaTransport.commit (consumer/transport.py)", share=0.4)
        ],
        profile_note="py-spy",
    )


def _status(results: BenchResults, name: str) -> str:
    return next(t.status for t in results.targets if t.name == name)


def test_ratios_compare_one_worker_with_the_ceiling_and_the_floor() -> None:
    results = with_verdicts(_results(ceiling_a=20_000, floor=200, one=12_000, two=18_000))

    assert results.ratios["worker/ceiling_a"] == pytest.approx(0.6)
    assert results.ratios["worker/floor"] == pytest.approx(60.0)
    assert results.ratios["two_workers/one_worker"] == pytest.approx(1.5)
    assert results.ratios["shadow/one_worker"] == pytest.approx(0.75)  # not the first "x 1"


def test_targets_met_at_their_bounds() -> None:
    results = with_verdicts(
        _results(
            ceiling_a=20_000,
            floor=200,
            one=10_000,
            two=16_000,
            off=20_000,
            shadow=6_000,
            p99_at_2000=200.0,
            rss=400.0,
            latency_rss=400.0,
            verification_ms=10.0,
            monitor_rate=10_000,  # 20 s to catch up: well within the limit
            monitor_rss=400.0,
        )
    )

    assert {t.name: t.status for t in results.targets} == {
        "worker vs ceiling A": "met",
        "worker vs naive floor": "met",
        "two workers vs one": "met",
        "reason codes on vs off": "met",
        "shadow challenger": "met",
        "end-to-end latency": "met",
        "worker memory": "met",
        "signature check vs load": "met",
        "monitor vs one worker": "met",
        "monitor lag after the burst": "met",
        "monitor memory": "met",
    }


def test_targets_missed_just_past_their_bounds() -> None:
    results = with_verdicts(
        _results(
            ceiling_a=20_000,
            floor=200,
            one=9_999,
            two=15_990,
            off=20_000,
            shadow=5_990,
            p99_at_2000=200.5,
            rss=400.5,
            verification_ms=10.01,
            monitor_rate=9_990,
            monitor_caught_up=False,
            monitor_rss=400.5,
        )
    )

    assert all(t.status == "missed" for t in results.targets)


def test_reason_codes_are_judged_by_one_worker_with_them_on_against_off() -> None:
    results = with_verdicts(_results(one=12_000, two=20_000, off=16_000))

    assert results.ratios["reasons_on/reasons_off"] == pytest.approx(0.75)
    assert results.ratios["two_workers/one_worker"] == pytest.approx(20_000 / 12_000)
    assert _status(with_verdicts(_results(off=None)), "reason codes on vs off") == "not measured"


def test_the_monitor_is_judged_against_one_worker_in_applications_per_second() -> None:
    results = with_verdicts(_results(one=12_000, monitor_rate=6_000, monitor_rss=350.0))

    assert results.ratios["monitor/one_worker"] == pytest.approx(0.5)
    measured = {t.name: (t.measured, t.status) for t in results.targets}
    assert measured["monitor vs one worker"] == ("0.50x", "missed")
    assert measured["monitor lag after the burst"] == ("33 s", "met")  # 200,000 at 6,000/s
    assert measured["monitor memory"] == ("350 MB peak", "met")


def test_a_monitor_that_never_caught_up_misses_the_lag_target_and_has_no_rate() -> None:
    results = with_verdicts(_results(monitor_caught_up=False))

    assert results.ratios["monitor/one_worker"] == 0.0
    assert _status(results, "monitor lag after the burst") == "missed"
    assert "lag not back to 0" in markdown(results)


def test_without_a_monitor_run_its_targets_are_not_measured() -> None:
    results = with_verdicts(_results(monitor_rate=None))

    assert results.ratios["monitor/one_worker"] is None
    for name in ("monitor vs one worker", "monitor lag after the burst", "monitor memory"):
        assert _status(results, name) == "not measured"
    assert "| Monitor |" not in markdown(results)


def test_memory_target_counts_the_latency_worker_too() -> None:
    results = with_verdicts(_results(rss=300.0, latency_rss=450.0))

    assert _status(results, "worker memory") == "missed"
    assert "450 MB" in next(t.measured for t in results.targets if t.name == "worker memory")


def test_latency_target_is_not_measured_without_the_2000_rate() -> None:
    results = with_verdicts(_results(p99_at_2000=None))

    assert _status(results, "end-to-end latency") == "not measured"


def test_markdown_names_machine_load_every_measure_and_verdict() -> None:
    text = markdown(with_verdicts(_results(p99_at_2000=250.0)))

    assert "2 x Test CPU, 24.0 GiB" in text
    assert "at start 1.50 / 1.00 / 0.50" in text
    assert (
        "(full, 10.0 min): 200,000 preloaded applications on 6 partitions; worker batches of "
        "up to 500 records or 100 ms; champion random_forest (version 5)."
    ) in text
    assert "| Ceiling A: Kafka passthrough | 20,000 msg/s |" in text
    assert "| Ceiling B: champion alone | 4.00 µs/row |" in text
    assert "feature assembly 1.0 µs/row, reasons 6.5 µs/row; a load from the cache 100 ms" in text
    assert "| Worker x 1, no reasons | 20,000 scores/s |" in text
    assert "| Floor: naive scorer | 200 msg/s |" in text
    assert "| Worker x 2 | 13,000 scores/s |" in text
    assert "| Worker x 1 + shadow | 9,000 scores/s |" in text
    assert (
        "| Monitor | 20,000 applications/s | 200,000 applications, 800,000 records: lag back "
        "to 0 in 10.0 s (80,000 records/s); RSS peak 320 MB; cores: broker 0.40, monitor 0.95 |"
    ) in text
    assert "| 2,000/s | 1,980/s | 40,000 | 83 ms | 167 ms | 250 ms |" in text
    assert "| end-to-end latency | p99 ≤ 200 ms at 2,000/s | p99 250.0 ms | **missed** |" in text
    assert "Latency worker's peak RSS: 310 MB." in text
    assert "Profile (py-spy):\n\n- 40.0% `KafkaTransport.commit (consumer/transport.py)`" in text


def test_markdown_says_why_there_is_no_profile() -> None:
    results = _results().model_copy(update={"profile": [], "profile_note": "not profiled"})

    assert markdown(results).endswith("Profile: not profiled.\n")


def test_markdown_shows_worker_overrides_when_there_are_some() -> None:
    results = _results()
    worker = {**results.config.worker, "producer_extra": {"retry.backoff.ms": 10}}
    results = results.model_copy(
        update={"config": results.config.model_copy(update={"worker": worker})}
    )

    assert "Worker overrides: producer_extra {'retry.backoff.ms': 10}." in markdown(results)


def test_replace_table_swaps_only_the_marked_block() -> None:
    readme = f"# Benchmarks\n\nintro\n\n{README_START}\nold table\n{README_END}\n\n## How\n"

    updated = replace_table(readme, "new table\n")

    assert (
        updated == f"# Benchmarks\n\nintro\n\n{README_START}\nnew table\n{README_END}\n\n## How\n"
    )


def test_the_numbers_behind_the_findings_are_in_the_table() -> None:
    # The README's findings explain these; the tool only reports them: each drain's commit
    # cost, memory once ready and at peak, and the cores every process used.
    text = markdown(with_verdicts(_results()))

    assert "µs/application: commit 90.0; cores: broker 0.60, machine 1.20 |" in text
    assert "RSS once ready 350 MB, peak 300 MB; µs/application: commit 20.0" in text
    assert "cores: broker 0.70, w2-1 0.60, w2-2 0.60, others 0.05, machine 1.95 |" in text


def test_the_table_explains_nothing() -> None:
    # Findings are written by people in the README; the tool writes numbers only.
    header = "| target | goal | measured | status |"
    text = markdown(with_verdicts(_results(one=12_000, two=13_000, two_busy=1.95)))

    assert header in text
    assert "| two workers vs one | ≥ 1.6x one worker | 1.1x | **missed** |\n" in text


def test_replace_table_refuses_a_readme_without_markers() -> None:
    with pytest.raises(BenchmarkError, match="bench:start"):
        replace_table("# Benchmarks\n", "the table")


def test_replace_table_keeps_backslashes_in_the_table_literal() -> None:
    assert r"C:\temp \1" in replace_table(f"{README_START}\n{README_END}", r"C:\temp \1")


def test_write_produces_json_markdown_and_readme(tmp_path: Path) -> None:
    results = with_verdicts(_results())
    readme = tmp_path / "README.md"
    readme.write_text(f"# Benchmarks\n\n{README_START}\n{README_END}\n")

    table = write(results, tmp_path / "run", readme)

    assert table == tmp_path / "run" / "results.md"
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["workers"][0]["rate"] == 12_000.0
    assert BenchResults.model_validate(saved) == results
    assert table.read_text() in readme.read_text()


def test_write_leaves_the_readme_alone_when_told_none(tmp_path: Path) -> None:
    write(with_verdicts(_results()), tmp_path / "run", None)

    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["results.json", "results.md"]


def test_markdown_says_the_latency_worker_scored_the_challenger_when_there_was_one() -> None:
    results = _results(p99_at_2000=150.0)
    shadowed = results.model_copy(update={"champion": {**results.champion, "shadow": "svm (6)"}})

    assert "shadow challenger svm (6)." in markdown(shadowed)
    assert "Latency worker's peak RSS: 310 MB; it scored the shadow challenger too." in (
        markdown(shadowed)
    )
    assert "Latency worker's peak RSS: 310 MB." in markdown(results)
