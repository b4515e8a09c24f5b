"""The two ceilings a worker is measured against.

Ceiling A, Kafka passthrough: the worker's own transport (``consumer.transport``) in
the worker's own loop shape, consume → begin → produce → send offsets → commit, with
the worker's batch settings, and no decoding, model or serialization in between. Each
input record is copied to the scores and the predictions topic, so it produces as
many records per input as the worker does.

Ceiling B, the champion alone: the champion's ``predict_proba`` on a ready frame of
the worker's batch size, timed repeatedly. The worker's other per-row stages
(decoding, feature assembly) are timed the same way, in isolation, for comparison.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from confluent_kafka import Message
from pydantic import BaseModel

from benchmarks import BenchmarkError
from benchmarks.stack import Champion, point_mlflow_at
from consumer.decoding import decode_application
from consumer.errors import ScorerError
from consumer.model import LoadedModel, RegistryLoader
from consumer.records import Headers, OutboundRecord
from consumer.scoring import feature_frame
from consumer.settings import Settings
from consumer.transport import KafkaTransport, PartitionKey
from consumer.vetting import ModelTrust
from contracts import LoanApplication
from contracts.model_names import CHAMPION_ALIAS
from contracts.model_trust import load_public_keys
from producer import encode_application

_WARMUP_CALLS: Final = 3


def passthrough(
    settings: Settings, expected: int, timeout_s: float
) -> tuple[int, dict[str, float]]:
    """Move ``expected`` records from the input to both output topics, one transaction per
    consumed batch; returns the transactions committed and the seconds spent per step,
    timed like the worker's stages (``produce`` is begin + produce, ``commit`` is send
    offsets + commit)."""
    seconds = dict.fromkeys(("consume", "produce", "commit"), 0.0)
    transactions = moved = 0
    deadline = time.monotonic() + timeout_s
    try:
        transport = KafkaTransport(settings)
        try:
            transport.start()
            while moved < expected:
                if time.monotonic() > deadline:
                    raise BenchmarkError(
                        f"passthrough moved {moved} of {expected} in {timeout_s:.0f}s"
                    )
                started = time.perf_counter()
                messages = transport.consume(
                    settings.batch_max_messages, settings.batch_max_wait_ms / 1000
                )
                if not messages:
                    continue
                consumed = time.perf_counter()
                transport.begin()
                transport.produce(_copies(messages, settings))
                produced = time.perf_counter()
                transport.send_offsets(_next_offsets(messages))
                transport.commit()
                seconds["consume"] += consumed - started
                seconds["produce"] += produced - consumed
                seconds["commit"] += time.perf_counter() - produced
                moved += len(messages)
                transactions += 1
        finally:
            transport.close()
    except ScorerError as exc:
        raise BenchmarkError(f"passthrough: {exc}") from exc
    return transactions, seconds


def _copies(messages: Sequence[Message], settings: Settings) -> list[OutboundRecord]:
    records = []
    for message in messages:
        raw = message.headers() or []
        headers: Headers = list(raw.items() if isinstance(raw, dict) else raw)
        for topic in (settings.scores_topic, settings.predictions_topic):
            records.append(OutboundRecord(topic, message.key(), message.value(), headers))
    return records


def _next_offsets(messages: Sequence[Message]) -> dict[PartitionKey, int]:
    return {
        (message.topic() or "", message.partition() or 0): (message.offset() or 0) + 1
        for message in messages
    }


class StageCosts(BaseModel):
    """Microseconds per row of each in-process stage, at one batch size (median of calls).

    The ``*_us_per_row`` figures are CPU time (``time.process_time``): on a shared
    machine, wall time also counts the time spent waiting for a core. The model's wall
    time is kept alongside for comparison.
    """

    batch_size: int
    calls: int
    decode_us_per_row: float
    features_us_per_row: float
    model_us_per_row: float
    model_wall_us_per_row: float

    @property
    def model_rows_per_s(self) -> float:
        return 1e6 / self.model_us_per_row


def load_champion(champion: Champion, cache_dir: Path) -> LoadedModel:
    """The champion, loaded exactly as the worker loads it."""
    loader = RegistryLoader(
        tracking_uri=champion.tracking_uri,
        model_name=champion.model_name,
        alias=CHAMPION_ALIAS,
        cache_dir=cache_dir,
        trust=ModelTrust(public_keys=tuple(load_public_keys(str(champion.public_key)))),
    )
    try:
        point_mlflow_at(champion.tracking_uri)
        return loader.load(loader.resolve())
    except ScorerError as exc:
        raise BenchmarkError(f"cannot load the champion: {exc}") from exc


def stage_costs(
    model: LoadedModel,
    applications: Sequence[LoanApplication],
    *,
    seconds: float,
    max_bytes: int,
) -> StageCosts:
    """Time the worker's decode, feature assembly and model call on ``applications`` (one batch).

    Each stage is called repeatedly for about a third of ``seconds``; the median call
    is reported (CPU time; see ``StageCosts``).
    """
    size = len(applications)
    now = datetime.now(UTC)
    values = [encode_application(app, now)[1] for app in applications]
    frame = feature_frame(applications)
    budget = seconds / 3

    def decode() -> object:
        return [decode_application(value, max_bytes=max_bytes) for value in values]

    decode_cpu, _, _ = _median_call(decode, budget)
    features_cpu, _, _ = _median_call(lambda: feature_frame(applications), budget)
    model_cpu, model_wall, calls = _median_call(lambda: model.pipeline.predict_proba(frame), budget)
    return StageCosts(
        batch_size=size,
        calls=calls,
        decode_us_per_row=decode_cpu / size * 1e6,
        features_us_per_row=features_cpu / size * 1e6,
        model_us_per_row=model_cpu / size * 1e6,
        model_wall_us_per_row=model_wall / size * 1e6,
    )


def _median_call(call: Callable[[], object], budget_s: float) -> tuple[float, float, int]:
    """Median CPU seconds and median wall seconds of ``call``, and how many calls were timed."""
    for _ in range(_WARMUP_CALLS):
        call()
    cpu: list[float] = []
    wall: list[float] = []
    stop = time.perf_counter() + budget_s
    while time.perf_counter() < stop or len(cpu) < _WARMUP_CALLS:
        cpu_start, wall_start = time.process_time(), time.perf_counter()
        call()
        cpu.append(time.process_time() - cpu_start)
        wall.append(time.perf_counter() - wall_start)
    return statistics.median(cpu), statistics.median(wall), len(cpu)
