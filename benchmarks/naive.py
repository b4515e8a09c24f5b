"""The floor: a scorer written the way most tutorials write one.

Per message: poll one record, ``json.loads`` it, build a one-row DataFrame, call the
MLflow pyfunc model, produce the score, and commit the consumer offset synchronously.
No batching, no transactions, no validation: it is the baseline the worker's design
is measured against, not a competitor.
"""

from __future__ import annotations

import json
import time
from typing import Final

import mlflow.pyfunc
import pandas as pd
from confluent_kafka import Consumer, KafkaException, Producer
from mlflow.exceptions import MlflowException

from benchmarks import BenchmarkError
from benchmarks.results import Floor
from benchmarks.stack import Champion, point_mlflow_at
from contracts import FEATURE_COLUMNS
from devstack import unique_name

_POLL_S: Final = 1.0
_FLUSH_S: Final = 60.0


def naive_scorer(
    bootstrap_servers: str,
    champion: Champion,
    *,
    input_topic: str,
    output_topic: str,
    messages: int,
    timeout_s: float,
) -> Floor:
    """Score the first ``messages`` records of ``input_topic`` one at a time."""
    try:
        point_mlflow_at(champion.tracking_uri)
        model = mlflow.pyfunc.load_model(champion.uri)
    except MlflowException as exc:
        raise BenchmarkError(f"naive scorer: cannot load {champion.uri}: {exc}") from exc
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": unique_name("bench-naive"),
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    producer = Producer({"bootstrap.servers": bootstrap_servers})
    done = 0
    started: float | None = None
    deadline = time.monotonic() + timeout_s
    try:
        consumer.subscribe([input_topic])
        while done < messages:
            if time.monotonic() > deadline:
                raise BenchmarkError(f"naive scorer: {done} of {messages} in {timeout_s:.0f}s")
            message = consumer.poll(_POLL_S)
            if message is None or message.error() is not None:
                continue
            started = started if started is not None else time.perf_counter()
            application = json.loads(message.value() or b"{}")
            frame = pd.DataFrame([application])[list(FEATURE_COLUMNS)].astype(float)
            probability = float(model.predict(frame)[0][1])
            score = {"application_id": application["application_id"], "probability": probability}
            producer.produce(output_topic, json.dumps(score).encode(), message.key())
            producer.poll(0)
            consumer.commit(message=message, asynchronous=False)
            done += 1
        if producer.flush(_FLUSH_S):
            raise BenchmarkError("naive scorer: scores not acknowledged in time")
    except KafkaException as exc:
        raise BenchmarkError(f"naive scorer: {exc}") from exc
    finally:
        consumer.close()
    seconds = time.perf_counter() - (started or time.perf_counter())
    return Floor(records=done, seconds=seconds, rate=done / seconds if seconds > 0 else 0.0)
