"""The benchmark's arithmetic: percentiles, throughput windows, ratios, CPU shares."""

from __future__ import annotations

import pytest

from benchmarks.measure import (
    CpuSnapshot,
    Window,
    cores_used,
    percentiles,
    ratio,
    span,
    steady_window,
)


def test_percentiles_interpolate_like_numpy_linear() -> None:
    summary = percentiles([float(v) for v in range(1, 101)])  # 1..100 ms

    assert summary.count == 100
    assert summary.p50_ms == pytest.approx(50.5)
    assert summary.p95_ms == pytest.approx(95.05)
    assert summary.p99_ms == pytest.approx(99.01)
    assert summary.max_ms == 100.0
    assert summary.mean_ms == pytest.approx(50.5)


def test_percentiles_of_one_value_are_that_value() -> None:
    summary = percentiles([42.0])

    assert (summary.p50_ms, summary.p95_ms, summary.p99_ms, summary.max_ms) == (
        42.0,
        42.0,
        42.0,
        42.0,
    )


def test_percentiles_refuse_an_empty_sample() -> None:
    with pytest.raises(ValueError, match="no latencies"):
        percentiles([])


def test_a_window_leaves_out_the_records_of_its_first_instant() -> None:
    # A batch of 500 written at t=0 is the output of work done before the window opened:
    # 1,500 records in the next 1.5 s is 1,000/s (counting it would claim 1,333/s).
    timestamps = [0] * 500 + [500] * 500 + [1000] * 500 + [1500] * 500

    window = span(timestamps)

    assert (window.start_ms, window.end_ms, window.records) == (0, 1500, 1500)
    assert window.seconds == 1.5
    assert window.rate == pytest.approx(1000.0)


def test_a_window_without_duration_has_no_rate() -> None:
    assert Window(start_ms=10, end_ms=10, records=5).rate == 0.0


def test_span_refuses_no_records() -> None:
    with pytest.raises(ValueError, match="no records"):
        span([])


def test_steady_window_of_one_writer_is_its_span() -> None:
    timestamps = {"w1": [100, 200, 300, 400]}

    assert steady_window(timestamps) == span(timestamps["w1"])


def test_steady_window_keeps_only_the_time_every_writer_was_writing() -> None:
    # w1 starts at 0 and finishes at 3,000; w2 joins at 1,000 and finishes at 2,000.
    by_writer = {
        "w1": [0, 500, 1000, 1500, 2000, 2500, 3000],
        "w2": [1000, 1250, 1500, 1750, 2000],
    }

    window = steady_window(by_writer)

    assert (window.start_ms, window.end_ms) == (1000, 2000)
    # In (1000, 2000]: w1 at 1500, 2000; w2 at 1250, 1500, 1750, 2000.
    assert window.records == 6
    assert window.rate == pytest.approx(6.0)


def test_steady_window_falls_back_to_the_span_when_writers_never_overlap() -> None:
    by_writer = {"w1": [0, 100, 200], "w2": [300, 400]}

    window = steady_window(by_writer)

    assert (window.start_ms, window.end_ms, window.records) == (0, 400, 4)


def test_steady_window_ignores_writers_that_wrote_nothing() -> None:
    assert steady_window({"w1": [0, 1000], "w2": []}) == span([0, 1000])


def test_ratio_is_none_without_a_positive_denominator() -> None:
    assert ratio(3.0, 2.0) == 1.5
    assert ratio(3.0, 0.0) is None


def test_cores_used_divides_cpu_seconds_by_wall_time_and_names_the_rest() -> None:
    start = CpuSnapshot(at=10.0, per_process={"broker": 5.0, "worker": 1.0}, machine=100.0)
    end = CpuSnapshot(at=12.0, per_process={"broker": 6.0, "worker": 3.0}, machine=103.8)

    used = cores_used(start, end)

    # 3.8 machine CPU seconds in 2 s: 1.9 cores, of which broker 0.5 and worker 1.0.
    assert used == {"broker": 0.5, "worker": 1.0, "others": 0.4, "machine": 1.9}
