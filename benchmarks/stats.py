"""Pure arithmetic on measurements: percentiles, throughput windows, ratios."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel


class Percentiles(BaseModel):
    """A latency distribution, in milliseconds."""

    count: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float


def percentiles(values_ms: Sequence[float]) -> Percentiles:
    """p50/p95/p99 (linear interpolation), max and mean of ``values_ms``.

    Raises ``ValueError`` for an empty sample: a percentile of nothing is not zero.
    """
    if len(values_ms) == 0:
        raise ValueError("no latencies to summarize")
    sample = np.asarray(values_ms, dtype=np.float64)
    p50, p95, p99 = np.percentile(sample, [50, 95, 99])
    return Percentiles(
        count=len(sample),
        p50_ms=float(p50),
        p95_ms=float(p95),
        p99_ms=float(p99),
        max_ms=float(sample.max()),
        mean_ms=float(sample.mean()),
    )


@dataclass(frozen=True)
class Window:
    """Records written in ``(start_ms, end_ms]``: the first instant's records are the
    output of work done before the window opened, so they are not counted."""

    start_ms: int
    end_ms: int
    records: int

    @property
    def seconds(self) -> float:
        return (self.end_ms - self.start_ms) / 1000

    @property
    def rate(self) -> float:
        """Records per second; 0 for a window with no duration."""
        return self.records / self.seconds if self.seconds > 0 else 0.0


def _count_between(timestamps: Iterable[int], start_ms: int, end_ms: int) -> int:
    return sum(1 for t in timestamps if start_ms < t <= end_ms)


def span(timestamps: Sequence[int]) -> Window:
    """From the first record to the last (the whole drain). Raises ``ValueError`` if empty."""
    if not timestamps:
        raise ValueError("no records to time")
    start, end = min(timestamps), max(timestamps)
    return Window(start, end, _count_between(timestamps, start, end))


def steady_window(by_writer: Mapping[str, Sequence[int]]) -> Window:
    """The window in which every writer was producing: from the moment the last of them
    wrote its first record to the moment the first of them wrote its last.

    With one writer this is ``span``. With several it leaves out start-up skew (one
    worker ready before the other, the rebalance between them) and the tail in which
    one has drained its partitions and the other has not. Falls back to the span of
    all records when the writers never overlapped. Raises ``ValueError`` if empty.
    """
    series = [list(ts) for ts in by_writer.values() if ts]
    if not series:
        raise ValueError("no records to time")
    start = max(min(ts) for ts in series)
    end = min(max(ts) for ts in series)
    everything = [t for ts in series for t in ts]
    if end <= start:
        return span(everything)
    return Window(start, end, _count_between(everything, start, end))


def ratio(numerator: float, denominator: float) -> float | None:
    """``numerator / denominator``, or None when the denominator is not positive."""
    return numerator / denominator if denominator > 0 else None
