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
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Final

import numpy as np
import numpy.typing as npt
from confluent_kafka import Message
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, create_model, with_config
from typing_extensions import TypedDict

from consumer.decoding import DecodeFailure, decode
from consumer.records import OutboundRecord, dead_letter_record
from contracts import FEATURE_COLUMNS, PERSONAL_FIELDS, LoanApplication
from contracts.outcome import LoanOutcome
from contracts.score import PredictionRecord, ShadowScore


def _reader(message: type[BaseModel], *names: str) -> type[BaseModel]:
    """A model validating only ``names`` of ``message``, as ``message`` defines them, and
    ignoring its other fields."""
    fields: dict[str, Any] = {
        name: (message.model_fields[name].annotation, message.model_fields[name]) for name in names
    }
    config = ConfigDict(extra="ignore", frozen=True)
    return create_model(f"Stored{message.__name__}", __config__=config, **fields)


def _features_reader() -> TypeAdapter[Any]:
    """A validator of the application's ``FEATURE_COLUMNS``, each as ``LoanApplication``
    defines it (strict, its bounds), into a dict; other fields are ignored."""
    fields = {name: LoanApplication.model_fields[name] for name in FEATURE_COLUMNS}
    annotations = {name: Annotated[(f.annotation, *f.metadata)] for name, f in fields.items()}
    # Built from the contract's fields rather than restated, hence the functional form.
    features = TypedDict("ApplicationFeatures", annotations)  # type: ignore[misc]
    return TypeAdapter(with_config(ConfigDict(strict=True, extra="ignore"))(features))


_APPLICATION_FEATURES: Final = _features_reader()
_FEATURE_VALUES: Final = operator.itemgetter(*FEATURE_COLUMNS)
_SCORE_FIELDS = (
    "application_id",
    "model_version",
    "model_run_id",
    "default_probability",
    "threshold",
)
_PREDICTION: Final = _reader(PredictionRecord, *_SCORE_FIELDS, "personal_fields")
_SHADOW_SCORE: Final = _reader(ShadowScore, *_SCORE_FIELDS, "champion_version")


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
            outcome = decode(LoanOutcome, value, max_bytes=max_value_bytes)
            if isinstance(outcome, DecodeFailure):
                batch.dead_letters.append(
                    dead_letter_record(
                        message, outcome, topics.outcomes_dlq, max_value_bytes=max_value_bytes
                    )
                )
            else:
                batch.outcomes.append(
                    {"application_id": outcome.application_id, "defaulted": outcome.defaulted,
                     "received_at": now}
                )  # fmt: skip
        elif topic == topics.predictions:
            try:
                prediction: Any = _PREDICTION.model_validate_json(value or b"")
            except ValidationError:
                batch.unreadable_predictions += 1  # the worker's own output: counted, not fatal
                continue
            batch.predictions.append(
                {"application_id": prediction.application_id,
                 "model_version": prediction.model_version,
                 "model_run_id": prediction.model_run_id,
                 "score": prediction.default_probability, "threshold": prediction.threshold}
            )  # fmt: skip
            fields = prediction.personal_fields
            if fields is not None and fields.keys() >= PERSONAL_FIELDS:
                batch.personal.append(
                    {"application_id": prediction.application_id,
                     **{name: fields[name] for name in PERSONAL_FIELDS}}
                )  # fmt: skip
        elif topic == topics.shadow_scores:
            try:
                shadow: Any = _SHADOW_SCORE.model_validate_json(value or b"")
            except ValidationError:
                batch.unreadable_predictions += 1  # the worker's own output, like a prediction
                continue
            batch.shadow_scores.append(
                {"application_id": shadow.application_id, "model_version": shadow.model_version,
                 "model_run_id": shadow.model_run_id, "champion_version": shadow.champion_version,
                 "score": shadow.default_probability, "threshold": shadow.threshold}
            )  # fmt: skip
        elif topic == topics.applications:
            try:
                features = _APPLICATION_FEATURES.validate_json(value or b"")
            except ValidationError:
                continue  # the worker dead-letters it; it is no part of the scored population
            source = f"{topic}/{message.partition()}/{message.offset()}"
            batch.features[source] = _FEATURE_VALUES(features)
    return batch


def feature_columns(window: npt.NDArray[np.float64]) -> dict[str, npt.NDArray[np.float64]]:
    """The window's matrix (rows of ``FEATURE_COLUMNS`` values) as one array per feature."""
    return {name: window[:, i] for i, name in enumerate(FEATURE_COLUMNS)} if len(window) else {}
