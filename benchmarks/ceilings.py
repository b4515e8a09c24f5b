"""The limits a worker is measured against (benchmarks/README.md, "What one run measures"):
ceiling A, the Kafka passthrough in the worker's loop shape; ceiling B, the champion alone;
and the floor, a naive per-message scorer. Each is a phase of a ``runner.Run``.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable
from contextlib import closing
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final, cast

import mlflow.pyfunc
import pandas as pd
from confluent_kafka import Consumer, KafkaException, Message, Producer
from mlflow.exceptions import MlflowException

from benchmarks import PHASE_TIMEOUT_S, BenchmarkError, traffic
from benchmarks.results import StageCosts, Throughput
from consumer.decoding import decode_application
from consumer.errors import ScorerError
from consumer.explaining import top_reasons
from consumer.model import RegistryLoader
from consumer.records import Headers, OutboundRecord
from consumer.scoring import feature_frame
from consumer.transport import KafkaTransport, PartitionKey
from consumer.vetting import ModelTrust
from contracts import FEATURE_COLUMNS
from contracts.model_names import CHAMPION_ALIAS
from contracts.model_trust import check_files, load_public_keys, verify_signed_manifest
from devstack import unique_name
from producer import encode_application

if TYPE_CHECKING:
    from benchmarks.runner import Run

_WARMUP_CALLS: Final = 3
_TIMED_S: Final = 1.0  # per in-process call timed by ceiling B
_NAIVE_POLL_S: Final = 1.0
_FLUSH_S: Final = 60.0


def ceiling_a(run: Run) -> Throughput:
    """The worker's own transport moving the run's applications from the input to both
    output topics, one transaction per consumed batch, each step timed like the worker's
    stages (``produce`` is begin + produce, ``commit`` is send offsets + commit)."""
    expected = run.config.messages
    topics = run.topics("passthrough")
    run.load("passthrough", topics, expected)
    names = {"group_id": unique_name("bench-passthrough"), "worker_id": "bench-passthrough"}
    settings = run.worker.model_copy(
        update={"kafka_bootstrap_servers": run.servers, **topics.settings(), **names}
    )
    seconds = dict.fromkeys(("consume", "produce", "commit"), 0.0)
    transactions = moved = 0
    deadline = time.monotonic() + PHASE_TIMEOUT_S
    with run.step("ceiling A: Kafka passthrough"), run.cores(harness=os.getpid()) as cores:
        try:
            with closing(KafkaTransport(settings)) as transport:
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
                    transport.produce(
                        OutboundRecord(topic, m.key(), m.value(), cast(Headers, m.headers() or []))
                        for m in messages
                        for topic in (settings.scores_topic, settings.predictions_topic)
                    )
                    produced = time.perf_counter()
                    transport.send_offsets({_partition(m): (m.offset() or 0) + 1 for m in messages})
                    transport.commit()
                    seconds["consume"] += consumed - started
                    seconds["produce"] += produced - consumed
                    seconds["commit"] += time.perf_counter() - produced
                    moved += len(messages)
                    transactions += 1
        except ScorerError as exc:
            raise BenchmarkError(f"passthrough: {exc}") from exc
    if moved < expected:
        raise BenchmarkError(f"passthrough moved {moved} of {expected} in {PHASE_TIMEOUT_S:.0f}s")
    written = traffic.read_topic(run.servers, topics.scores, expected=expected)
    stage_us = {step: round(s / expected * 1e6, 2) for step, s in seconds.items()}
    return Throughput.of(
        written,
        name="ceiling A",
        processes=1,
        cores=cores,
        transactions=transactions,
        stage_us=stage_us,
    )


def _partition(message: Message) -> PartitionKey:
    return (message.topic() or "", message.partition() or 0)


def ceiling_b(run: Run) -> StageCosts:
    """Load the champion exactly as the worker does, then time (median call, each for about
    ``_TIMED_S``) the worker's decode, feature assembly, model call and reasons on one batch,
    a load from the cache, and its signature check alone (issue 11: the check must stay
    under 10% of a load). Needs the process's MLflow registry URI to be the run's."""
    applications = list(traffic.applications(run.worker.batch_max_messages, traffic.SEED + 999))
    keys = tuple(load_public_keys(str(run.public_key)))
    loader = RegistryLoader(
        tracking_uri=run.mlflow.url,
        model_name=run.model_name,
        alias=CHAMPION_ALIAS,
        cache_dir=run.workdir / "bench-cache",
        trust=ModelTrust(public_keys=keys),
    )
    with run.step("ceiling B: timing the champion alone"):
        try:
            ref = loader.resolve()
            model = loader.load(ref)
        except ScorerError as exc:
            raise BenchmarkError(f"cannot load the champion: {exc}") from exc
        files, max_bytes = loader.artifacts(ref), run.worker.max_message_bytes
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
            count = run.worker.reason_count
            calls["reasons"] = lambda: top_reasons(explainer, frame, proba, count)
        timed = {name: _median_call(call) for name, call in calls.items()}
    per_row_us = {name: cpu / len(applications) * 1e6 for name, (cpu, _, _) in timed.items()}
    return StageCosts(
        batch_size=len(applications),
        calls=timed["model"][2],
        decode_us_per_row=per_row_us["decode"],
        features_us_per_row=per_row_us["features"],
        model_us_per_row=per_row_us["model"],
        model_wall_us_per_row=timed["model"][1] / len(applications) * 1e6,
        load_ms=timed["load"][0] * 1e3,
        verification_ms=timed["verification"][0] * 1e3,
        reasons_us_per_row=per_row_us.get("reasons"),
    )


def _median_call(call: Callable[[], object]) -> tuple[float, float, int]:
    """Median CPU and wall seconds of ``call`` over about ``_TIMED_S``, and how many calls."""
    for _ in range(_WARMUP_CALLS):
        call()
    cpu: list[float] = []
    wall: list[float] = []
    stop = time.perf_counter() + _TIMED_S
    while time.perf_counter() < stop or len(cpu) < _WARMUP_CALLS:
        cpu_start, wall_start = time.process_time(), time.perf_counter()
        call()
        cpu.append(time.process_time() - cpu_start)
        wall.append(time.perf_counter() - wall_start)
    return statistics.median(cpu), statistics.median(wall), len(cpu)


def floor(run: Run) -> Throughput:
    """The naive scorer on the run's sample: ``naive_messages`` records scored one at a time,
    timed like every drain, from its scores' timestamps."""
    messages = run.config.naive_messages
    topics = run.topics("naive")
    run.load("naive", topics, messages)
    model_uri = f"models:/{run.model_name}@{CHAMPION_ALIAS}"
    group = {"group.id": unique_name("bench-naive"), "auto.offset.reset": "earliest"}
    consumer = Consumer({"bootstrap.servers": run.servers, **group, "enable.auto.commit": False})
    producer = Producer({"bootstrap.servers": run.servers})
    done, deadline = 0, time.monotonic() + PHASE_TIMEOUT_S
    step = run.step(f"floor: naive per-message scorer on {messages:,} messages")
    try:
        with step, run.cores(harness=os.getpid()) as cores:
            model = mlflow.pyfunc.load_model(model_uri)
            consumer.subscribe([topics.applications])
            while done < messages and time.monotonic() < deadline:
                message = consumer.poll(_NAIVE_POLL_S)
                if message is None or message.error() is not None:
                    continue
                application = json.loads(message.value() or b"{}")
                frame = pd.DataFrame([application])[list(FEATURE_COLUMNS)].astype(float)
                score = {"application_id": application["application_id"]}
                score["probability"] = float(model.predict(frame)[0][1])
                producer.produce(topics.scores, json.dumps(score).encode(), message.key())
                producer.poll(0)
                consumer.commit(message=message, asynchronous=False)
                done += 1
            if producer.flush(_FLUSH_S):
                raise BenchmarkError("naive scorer: scores not acknowledged in time")
    except (KafkaException, MlflowException) as exc:
        raise BenchmarkError(f"naive scorer on {model_uri}: {exc}") from exc
    finally:
        consumer.close()
    if done < messages:
        raise BenchmarkError(f"naive scorer: {done} of {messages} in {PHASE_TIMEOUT_S:.0f}s")
    written = traffic.read_topic(run.servers, topics.scores, expected=messages)
    return Throughput.of(written, name="floor", processes=1, cores=cores)
