"""The limits a worker is measured against (benchmarks/README.md, "What one run measures"):
ceiling A, the Kafka passthrough in the worker's loop shape; ceiling B, the champion alone;
and the floor, a naive per-message scorer. In-process loads need the process's MLflow
registry URI to be the champion's (``runner.Run.start`` sets it).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, NamedTuple

import mlflow.pyfunc
import pandas as pd
from confluent_kafka import Consumer, KafkaException, Message, Producer
from mlflow.exceptions import MlflowException
from pydantic import BaseModel

from benchmarks import BenchmarkError
from consumer.decoding import decode_application
from consumer.errors import ScorerError
from consumer.explaining import top_reasons
from consumer.model import RegistryLoader
from consumer.records import Headers, OutboundRecord
from consumer.scoring import feature_frame
from consumer.settings import Settings
from consumer.transport import KafkaTransport, PartitionKey
from consumer.vetting import ModelTrust
from contracts import FEATURE_COLUMNS, LoanApplication
from contracts.model_names import CHAMPION_ALIAS
from contracts.model_trust import check_files, load_public_keys, verify_signed_manifest
from devstack import unique_name
from producer import encode_application

_WARMUP_CALLS: Final = 3
_NAIVE_POLL_S: Final = 1.0
_FLUSH_S: Final = 60.0


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
            while moved < expected and time.monotonic() < deadline:
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
    if moved < expected:
        raise BenchmarkError(f"passthrough moved {moved} of {expected} in {timeout_s:.0f}s")
    return transactions, seconds


def _copies(messages: Sequence[Message], settings: Settings) -> list[OutboundRecord]:
    return [
        OutboundRecord(topic, message.key(), message.value(), _headers(message))
        for message in messages
        for topic in (settings.scores_topic, settings.predictions_topic)
    ]


def _headers(message: Message) -> Headers:
    raw = message.headers() or []
    return list(raw.items() if isinstance(raw, dict) else raw)


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
    load_ms: float = 0.0  # a hot reload of the cached champion: vetting, signature, unpickling
    verification_ms: float = 0.0  # its signature and file digests alone
    reasons_us_per_row: float | None = None  # top reasons of a scored batch (no explainer: None)


class _Timing(NamedTuple):
    """Median CPU and wall seconds of one call, and how many calls were timed."""

    cpu_s: float
    wall_s: float
    calls: int


def champion_alone(
    tracking_uri: str,
    model_name: str,
    cache_dir: Path,
    public_key: Path,
    applications: Sequence[LoanApplication],
    seconds: float,
    settings: Settings,
) -> StageCosts:
    """Load the champion exactly as the worker does, then time (median call, each for about
    ``seconds``) the worker's decode, feature assembly, model call and reasons on
    ``applications`` (one batch), a load from the cache, and its signature check alone
    (issue 11: the check must stay under 10% of a load)."""
    keys = tuple(load_public_keys(str(public_key)))
    loader = RegistryLoader(
        tracking_uri=tracking_uri,
        model_name=model_name,
        alias=CHAMPION_ALIAS,
        cache_dir=cache_dir,
        trust=ModelTrust(public_keys=keys),
    )
    try:
        ref = loader.resolve()
        model = loader.load(ref)
    except ScorerError as exc:
        raise BenchmarkError(f"cannot load the champion: {exc}") from exc
    files, size, max_bytes = loader.artifacts(ref), len(applications), settings.max_message_bytes
    values = [encode_application(app, datetime.now(UTC))[1] for app in applications]
    frame = feature_frame(applications, model.features)
    calls: dict[str, Callable[[], object]] = {
        "decode": lambda: [decode_application(value, max_bytes=max_bytes) for value in values],
        "features": lambda: feature_frame(applications, model.features),
        "model": lambda: model.pipeline.predict_proba(frame),
        "load": lambda: loader.load(ref),
        "verification": lambda: check_files(verify_signed_manifest(ref.tags, keys), files),
    }
    if (explainer := model.explainer) is not None:
        proba = model.pipeline.predict_proba(frame)[:, 1]
        calls["reasons"] = lambda: top_reasons(explainer, frame, proba, settings.reason_count)
    timed = {name: _median_call(call, seconds) for name, call in calls.items()}
    per_row_us = {name: timing.cpu_s / size * 1e6 for name, timing in timed.items()}
    return StageCosts(
        batch_size=size,
        calls=timed["model"].calls,
        decode_us_per_row=per_row_us["decode"],
        features_us_per_row=per_row_us["features"],
        model_us_per_row=per_row_us["model"],
        model_wall_us_per_row=timed["model"].wall_s / size * 1e6,
        load_ms=timed["load"].cpu_s * 1e3,
        verification_ms=timed["verification"].cpu_s * 1e3,
        reasons_us_per_row=per_row_us.get("reasons"),
    )


def _median_call(call: Callable[[], object], budget_s: float) -> _Timing:
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
    return _Timing(statistics.median(cpu), statistics.median(wall), len(cpu))


def naive_scorer(
    bootstrap_servers: str,
    model_uri: str,
    topics: tuple[str, str],
    messages: int,
    timeout_s: float,
) -> tuple[int, float]:
    """Score the first ``messages`` records of ``topics[0]`` one at a time into ``topics[1]``;
    returns how many, and the seconds from the first record to the last acknowledged score."""
    try:
        model = mlflow.pyfunc.load_model(model_uri)
    except MlflowException as exc:
        raise BenchmarkError(f"naive scorer: cannot load {model_uri}: {exc}") from exc
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": unique_name("bench-naive"),
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    producer = Producer({"bootstrap.servers": bootstrap_servers})
    done, started, deadline = 0, None, time.monotonic() + timeout_s
    try:
        consumer.subscribe([topics[0]])
        while done < messages and time.monotonic() < deadline:
            message = consumer.poll(_NAIVE_POLL_S)
            if message is None or message.error() is not None:
                continue
            started = started or time.perf_counter()
            application = json.loads(message.value() or b"{}")
            frame = pd.DataFrame([application])[list(FEATURE_COLUMNS)].astype(float)
            probability = float(model.predict(frame)[0][1])
            score = {"application_id": application["application_id"], "probability": probability}
            producer.produce(topics[1], json.dumps(score).encode(), message.key())
            producer.poll(0)
            consumer.commit(message=message, asynchronous=False)
            done += 1
        if producer.flush(_FLUSH_S):
            raise BenchmarkError("naive scorer: scores not acknowledged in time")
    except KafkaException as exc:
        raise BenchmarkError(f"naive scorer: {exc}") from exc
    finally:
        consumer.close()
    if done < messages:
        raise BenchmarkError(f"naive scorer: {done} of {messages} in {timeout_s:.0f}s")
    return done, time.perf_counter() - (started or time.perf_counter())
