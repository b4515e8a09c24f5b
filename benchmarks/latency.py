"""End-to-end latency: from an application's produce timestamp to the moment its score is
readable by a ``read_committed`` consumer.

One reader thread follows both topics: an application's timestamp is its record's
``CreateTime`` (set by the producer at ``produce()``), and a score is stamped with the
wall clock when the reader receives it. Broker, producer, worker and reader share this
machine's clock, so the difference is the latency a subscriber sees.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Final, Self

from confluent_kafka import KafkaException

from benchmarks import BenchmarkError
from benchmarks.loadgen import send
from benchmarks.readback import committed_reader
from benchmarks.stats import Percentiles, percentiles
from contracts import LoanApplication

_BATCH: Final = 1_000
_POLL_S: Final = 0.05
_POLL_VISIBLE_S: Final = 0.2


class LatencyRecorder:
    """Follows an applications topic and its scores topic from their beginning."""

    def __init__(self, bootstrap_servers: str, applications_topic: str, scores_topic: str) -> None:
        self._bootstrap_servers = bootstrap_servers
        self._topics = (applications_topic, scores_topic)
        self.sent_ms: dict[bytes, int] = {}
        self.visible_s: dict[bytes, float] = {}
        self.error: Exception | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="latency-reader", daemon=True)

    def __enter__(self) -> Self:
        self._consumer = committed_reader(self._bootstrap_servers, self._topics, eof=False)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stopping.set()
        self._thread.join()
        self._consumer.close()

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                for message in self._consumer.consume(_BATCH, _POLL_S):
                    received = time.time()
                    if message.error() is not None:
                        continue  # transient client errors; a lost score shows as missing
                    key = message.key() or b""
                    if message.topic() == self._topics[0]:
                        self.sent_ms[key] = message.timestamp()[1]
                    else:
                        self.visible_s.setdefault(key, received)
        except KafkaException as exc:
            self.error = exc

    def wait_visible(self, keys: Sequence[bytes], timeout_s: float) -> None:
        """Return once every key has been sent and scored; else raise ``BenchmarkError``."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self.error is not None:
                raise BenchmarkError(f"latency reader failed: {self.error}")
            missing = [k for k in keys if k not in self.visible_s or k not in self.sent_ms]
            if not missing:
                return
            if time.monotonic() > deadline:
                raise BenchmarkError(
                    f"{len(missing)} of {len(keys)} scores not visible {timeout_s:.0f}s "
                    "after publishing ended"
                )
            time.sleep(_POLL_VISIBLE_S)


def measure_rate(
    recorder: LatencyRecorder,
    bootstrap_servers: str,
    topic: str,
    records: Sequence[LoanApplication],
    *,
    rate: int,
    warmup_s: float,
    timeout_s: float,
) -> tuple[float, Percentiles]:
    """Publish ``records`` at ``rate`` per second; the rate achieved, and the latencies of
    those sent after the warm-up."""
    send(bootstrap_servers, topic, records, count=len(records), rate=rate)
    keys = [application.application_id.encode() for application in records]
    recorder.wait_visible(keys, timeout_s)
    sent = [recorder.sent_ms[k] for k in keys]
    first, last = min(sent), max(sent)
    steady = [k for k in keys if recorder.sent_ms[k] >= first + warmup_s * 1000]
    if not steady:
        raise BenchmarkError(f"rate {rate}/s: nothing sent after the {warmup_s:g}s warm-up")
    latencies = [recorder.visible_s[k] * 1000 - recorder.sent_ms[k] for k in steady]
    achieved = (len(keys) - 1) / ((last - first) / 1000) if last > first else 0.0
    return achieved, percentiles(latencies)
