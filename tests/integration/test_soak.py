"""Soak: ten minutes at a steady rate; resident memory and lag stay flat, nothing is lost.

Not in the default run (``soak`` is deselected unless asked for)::

    .venv/bin/python -m pytest -m soak tests/integration/test_soak.py -s

``SOAK_SECONDS`` (default 600) and ``SOAK_RATE`` (applications/s, default 200) scale
it. Every ``_SAMPLE_S`` seconds it records the worker's VmRSS/VmHWM and the group's
lag; the samples go to ``benchmarks/results/soak-<UTC time>.csv`` and ``.png``
(git-ignored). Flat means: the median RSS of the last third of the run is within 10%
of the first third's, and the lag never exceeds ``_MAX_LAG_S`` seconds of input.
"""

from __future__ import annotations

import csv
import os
import statistics
import time
from dataclasses import astuple, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path

import matplotlib as mpl
import pandas as pd
import pytest

from devstack import ROOT, unique_name
from tests.helpers.observe import LagProbe, memory_mb, wait_for
from tests.helpers.scenario import Scenario, scored_so_far
from tests.helpers.stream import dataset_stream

_SECONDS = float(os.environ.get("SOAK_SECONDS", "600"))
_RATE_PER_S = float(os.environ.get("SOAK_RATE", "200"))
_SAMPLE_S = 5.0
_MAX_LAG_S = 30.0
_RSS_DRIFT = 0.10
RESULTS = ROOT / "benchmarks" / "results"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.soak,
    pytest.mark.timeout(_SECONDS + 1_200),  # the run, then reading every record back
]


@dataclass(frozen=True)
class Sample:
    elapsed_s: float
    rss_mib: float
    hwm_mib: float
    lag: int
    scored: float


def _write_results(samples: list[Sample]) -> Path:
    """The samples as CSV and a two-panel PNG; returns the CSV's path."""
    mpl.use("Agg")
    from matplotlib import pyplot as plt

    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"soak-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    with stem.with_suffix(".csv").open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow([f.name for f in fields(Sample)])
        writer.writerows(astuple(sample) for sample in samples)
    elapsed = [s.elapsed_s for s in samples]
    figure, (memory, lag) = plt.subplots(2, 1, sharex=True, figsize=(8, 5))
    memory.plot(elapsed, [s.rss_mib for s in samples], label="VmRSS")
    memory.plot(elapsed, [s.hwm_mib for s in samples], label="VmHWM", linestyle="--")
    memory.set_ylabel("MiB")
    memory.legend()
    lag.plot(elapsed, [s.lag for s in samples])
    lag.set_ylabel("lag (records)")
    lag.set_xlabel(f"seconds at {_RATE_PER_S:.0f} applications/s")
    figure.tight_layout()
    figure.savefig(stem.with_suffix(".png"))
    plt.close(figure)
    return stem.with_suffix(".csv")


def test_a_steady_stream_for_ten_minutes_keeps_memory_and_lag_flat(
    scenario: Scenario, feature_frame: pd.DataFrame
) -> None:
    scenario.register()
    worker = scenario.start_worker(
        "soak-0", batch_max_messages="500", batch_max_wait_ms="100", reload_interval_s="30"
    )
    probe = LagProbe(scenario.bootstrap_servers, scenario.group_id, scenario.topics.applications)
    publisher = scenario.publish(
        dataset_stream(feature_frame, unique_name("soak")), rate_per_s=_RATE_PER_S
    )
    samples: list[Sample] = []
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < _SECONDS:
        assert worker.process.poll() is None, worker.log_tail()
        rss, peak = memory_mb(worker.process.pid)
        samples.append(Sample(elapsed, rss, peak, probe.lag(), scored_so_far(worker)))
        time.sleep(_SAMPLE_S)  # the sampling period, not a wait for readiness
    ids = publisher.stop()
    scenario.wait_for_outcomes(ids, timeout_s=600)
    wait_for(probe.lag, lambda lag: lag == 0, timeout_s=60, what="the group's lag back to 0")
    probe.close()
    scenario.stop_workers()
    path = _write_results(samples)

    third = len(samples) // 3
    first = statistics.median(s.rss_mib for s in samples[:third])
    last = statistics.median(s.rss_mib for s in samples[-third:])
    worst_lag = max(s.lag for s in samples)
    print(
        f"{len(ids)} applications in {_SECONDS:.0f}s; RSS median {first:.1f} -> {last:.1f} MiB, "
        f"peak {samples[-1].hwm_mib:.1f} MiB; lag max {worst_lag}, median "
        f"{statistics.median(s.lag for s in samples):.0f}; samples in {path}"
    )
    assert abs(last - first) <= _RSS_DRIFT * first, f"RSS drifted {first:.1f} -> {last:.1f} MiB"
    assert worst_lag <= _MAX_LAG_S * _RATE_PER_S, f"lag reached {worst_lag}"
    scenario.audit().assert_exactly_once(ids)
