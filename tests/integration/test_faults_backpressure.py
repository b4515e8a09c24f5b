"""Slow downstream: output throttled by a broker quota; the worker waits, it does not hoard.

The worker's client id gets a ``producer_byte_rate`` quota far below the input rate,
and its producer queue holds only a few records (``queue.buffering.max.messages``), so
``produce()`` blocks on a full queue. The broker lets a client burst to about ten
seconds' worth of its quota, then throttles it for as long as it takes to pay that
back: after the first few hundred applications, one batch waits for seconds. While
applications arrive ten times faster than it may write, the group's lag grows, the
worker handles no more than it can commit, and its resident memory stays bounded.
Once the quota is lifted the backlog drains, each application scored exactly once.
"""

from __future__ import annotations

import itertools
import time

import pandas as pd
import pytest

from devstack import WorkerProcess, unique_name
from tests.helpers.kafka_quota import set_producer_byte_rate
from tests.helpers.observe import LagProbe, memory_mb, metric_value, wait_for
from tests.helpers.scenario import Scenario
from tests.helpers.stream import dataset_stream

pytestmark = pytest.mark.integration

_COUNT = 6_000
_PUBLISH_RATE_PER_S = 600.0
_QUOTA_BYTES_PER_S = 40_000
"""About 50 applications a second: a score and a prediction record are ~0.8 kB."""
_MEMORY_CEILING_MB = 400.0
_SAMPLE_S = 0.5
_WORKER_ID = "slow-0"


def _consumed(worker: WorkerProcess) -> float:
    status, body = worker.get("/metrics")
    assert status == 200, body
    return metric_value(body, "scorer_messages_consumed_total") or 0.0


def test_a_throttled_output_pauses_consumption_with_bounded_memory_and_loses_nothing(
    scenario: Scenario, feature_frame: pd.DataFrame
) -> None:
    scenario.register()
    bootstrap = scenario.bootstrap_servers
    samples: list[tuple[float, int, float, float, float]] = []
    try:
        # Throttled from its first record: a burst before the quota would be paid for
        # later with one long throttle instead of a steady trickle.
        set_producer_byte_rate(bootstrap, _WORKER_ID, _QUOTA_BYTES_PER_S)
        worker = scenario.start_worker(
            _WORKER_ID,
            batch_max_messages="50",
            producer_extra='{"queue.buffering.max.messages": 20}',
            # A throttled batch may take several seconds: let it commit, not abort.
            transaction_timeout_ms="30000",
            stall_timeout_s="60",
        )
        probe = LagProbe(bootstrap, scenario.group_id, scenario.topics.applications)
        started = time.monotonic()
        records = itertools.islice(dataset_stream(feature_frame, unique_name("slow")), _COUNT)
        publisher = scenario.publish(records, rate_per_s=_PUBLISH_RATE_PER_S)
        while publisher.published < _COUNT:
            rss, peak = memory_mb(worker.process.pid)
            lag = probe.lag()
            samples.append((time.monotonic() - started, lag, _consumed(worker), rss, peak))
            time.sleep(_SAMPLE_S)  # the sampling period, not a wait for readiness
        ids = publisher.finish()
        throttled_lag, throttled_consumed = probe.lag(), _consumed(worker)
    finally:
        set_producer_byte_rate(bootstrap, _WORKER_ID, None)
    scenario.wait_for_outcomes(ids)
    wait_for(probe.lag, lambda lag: lag == 0, timeout_s=60, what="the group's lag back to 0")
    _, peak = memory_mb(worker.process.pid)
    probe.close()
    scenario.stop_workers()
    for at, lag, consumed, rss, _ in samples[:: max(1, len(samples) // 8)]:
        print(f"{at:5.1f}s lag {lag:5d} consumed {consumed:6.0f} rss {rss:6.1f} MiB")
    print(f"throttled: lag {throttled_lag}, consumed {throttled_consumed:.0f}; peak {peak:.1f} MiB")

    assert throttled_lag >= _COUNT // 2, "the worker kept up with a throttled output?"
    assert throttled_consumed <= _COUNT // 2, "the worker read far ahead of what it could write"
    assert peak < _MEMORY_CEILING_MB, f"resident memory peaked at {peak:.0f} MiB"
    scenario.audit().assert_exactly_once(ids)
