"""A consumed batch sorted into rows for the store, by input topic. Pure.

A prediction's personal fields become a row of their own only when the worker sent them
(all four; ``SCORER_MONITOR_PERSONAL_FIELDS``): the monitor never asks for them.

A malformed outcome becomes a dead letter built by the worker's own ``dead_letter_record``
(same headers, key and value byte for byte).

Predictions and shadow scores are the worker's own output: of those the monitor validates
only the fields it stores, by the contract's own definitions (a score outside [0, 1] is
unreadable, an unparsable ``scored_at`` is not its concern). Whole-record validation was a
third of their decoding time (benchmarks/README.md, finding 10). Outcomes come from outside
and are validated whole: a malformed one is dead-lettered, naming its fault.

Of an application the monitor reads only the model's features (the drift window), as
strictly as ``LoanApplication`` defines them, into a plain dict: a feature out of its domain
or of the wrong type keeps it out of the window. Its id, ``submitted_at`` and any unknown
field are the worker's to judge (it dead-letters the application); the whole model cost 4.6
µs an application against 2.9, and validating applications was the largest part of the
monitor's time under the benchmark's burst (py-spy, finding 10).
"""

from __future__ import annotations

import operator
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Final, NotRequired

import numpy as np
import numpy.typing as npt
from confluent_kafka import Message
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, with_config
from typing_extensions import TypedDict

from consumer.decoding import DecodeFailure, decode
from consumer.records import OutboundRecord, dead_letter_record
from contracts import FEATURE_COLUMNS, PERSONAL_FIELDS, LoanApplication
from contracts.outcome import LoanOutcome
from contracts.score import PredictionRecord, ShadowScore


def _reader(message: type[BaseModel], names: Iterable[str], config: ConfigDict) -> TypeAdapter[Any]:
    """A validator of ``names`` of ``message``, each as ``message`` defines it (its type and
    bounds), into a dict under ``config``; a field with a default may be absent.

    Into a dict, not the model: a third cheaper (a prediction's stored fields 1.9 against
    1.2 µs, an outcome 1.1 against 0.7; benchmarks/README.md finding 10).
    """
    annotations: dict[str, Any] = {}
    for name in names:
        field = message.model_fields[name]
        value = (
            Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
        )
        annotations[name] = value if field.is_required() else NotRequired[value]
    # Built from the contract's fields rather than restated, hence the functional form.
    fields = TypedDict(f"Read{message.__name__}", annotations)  # type: ignore[misc]
    return TypeAdapter(with_config(config)(fields))


_APPLICATION_FEATURES: Final = _reader(
    LoanApplication, FEATURE_COLUMNS, ConfigDict(strict=True, extra="ignore")
)
_FEATURE_VALUES: Final = operator.itemgetter(*FEATURE_COLUMNS)
_OUTCOME: Final = _reader(
    LoanOutcome, LoanOutcome.model_fields, ConfigDict(strict=True, extra="forbid")
)  # the whole contract: an outcome comes from outside
_SCORE_FIELDS = (
    "application_id",
    "model_version",
    "model_run_id",
    "default_probability",
    "threshold",
)
_WORKER_OUTPUT: Final = ConfigDict(extra="ignore")
_PREDICTION: Final = _reader(PredictionRecord, [*_SCORE_FIELDS, "personal_fields"], _WORKER_OUTPUT)
_SHADOW_SCORE: Final = _reader(ShadowScore, [*_SCORE_FIELDS, "champion_version"], _WORKER_OUTPUT)


@dataclass(frozen=True, slots=True)
class MonitorTopics:
    """What the monitor reads (predictions, outcomes, applications) and writes."""

    predictions: str
    outcomes: str
    applications: str
    outcomes_dlq: str
    alerts: str
    shadow_scores: str


@dataclass
class Batch:
    """One consumed batch, sorted by role, ready for one store transaction."""

    predictions: list[dict[str, Any]]
    outcomes: list[dict[str, Any]]
    features: dict[str, tuple[float, ...]]
    dead_letters: list[OutboundRecord]
    shadow_scores: list[dict[str, Any]] = field(default_factory=list)
    personal: list[dict[str, Any]] = field(default_factory=list)
    unreadable_predictions: int = 0


def sort_batch(
    messages: list[Message], topics: MonitorTopics, *, max_value_bytes: int, now: datetime
) -> Batch:
    """Rows for the store from each message; a malformed outcome becomes a dead letter."""
    batch = Batch([], [], {}, [])
    for message in messages:
        topic, value = message.topic(), message.value()
        if topic == topics.outcomes:
            outcome = _read_outcome(value, max_value_bytes)
            if isinstance(outcome, DecodeFailure):
                batch.dead_letters.append(
                    dead_letter_record(
                        message, outcome, topics.outcomes_dlq, max_value_bytes=max_value_bytes
                    )
                )
            else:
                batch.outcomes.append(
                    {"application_id": outcome["application_id"],
                     "defaulted": outcome["defaulted"], "received_at": now}
                )  # fmt: skip
        elif topic == topics.predictions:
            try:
                prediction = _PREDICTION.validate_json(value or b"")
            except ValidationError:
                batch.unreadable_predictions += 1  # the worker's own output: counted, not fatal
                continue
            batch.predictions.append(
                {"application_id": prediction["application_id"],
                 "model_version": prediction["model_version"],
                 "model_run_id": prediction["model_run_id"],
                 "score": prediction["default_probability"], "threshold": prediction["threshold"]}
            )  # fmt: skip
            fields = prediction.get("personal_fields")
            if fields is not None and fields.keys() >= PERSONAL_FIELDS:
                batch.personal.append(
                    {"application_id": prediction["application_id"],
                     **{name: fields[name] for name in PERSONAL_FIELDS}}
                )  # fmt: skip
        elif topic == topics.shadow_scores:
            try:
                shadow = _SHADOW_SCORE.validate_json(value or b"")
            except ValidationError:
                batch.unreadable_predictions += 1  # the worker's own output, like a prediction
                continue
            batch.shadow_scores.append(
                {"application_id": shadow["application_id"],
                 "model_version": shadow["model_version"],
                 "model_run_id": shadow["model_run_id"],
                 "champion_version": shadow["champion_version"],
                 "score": shadow["default_probability"], "threshold": shadow["threshold"]}
            )  # fmt: skip
        elif topic == topics.applications:
            try:
                features = _APPLICATION_FEATURES.validate_json(value or b"")
            except ValidationError:
                continue  # the worker dead-letters it; it is no part of the scored population
            source = f"{topic}/{message.partition()}/{message.offset()}"
            batch.features[source] = _FEATURE_VALUES(features)
    return batch


def _read_outcome(value: bytes | None, max_bytes: int) -> dict[str, Any] | DecodeFailure:
    """The outcome's fields, validated as ``LoanOutcome``; else ``decode``'s failure, which
    names the fault for the dead letter (only a failing outcome pays for ``decode``)."""
    if value and len(value) <= max_bytes:
        try:
            fields: dict[str, Any] = _OUTCOME.validate_json(value)
        except ValidationError:
            pass
        else:
            return fields
    decoded = decode(LoanOutcome, value, max_bytes=max_bytes)
    return decoded if isinstance(decoded, DecodeFailure) else dict(decoded)


def feature_columns(window: npt.NDArray[np.float64]) -> dict[str, npt.NDArray[np.float64]]:
    """The window's matrix (rows of ``FEATURE_COLUMNS`` values) as one array per feature."""
    return {name: window[:, i] for i, name in enumerate(FEATURE_COLUMNS)} if len(window) else {}
