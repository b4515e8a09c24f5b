"""Reason codes: the one table of codes and sentences a score's reasons are drawn from.

Each feature a model may use has one stable code and one sentence template; a score
cites at most the features its model uses (the worker draws them from the model's own
signature). Sentences are written for a bank officer to paste into an adverse-action
letter: they state the applicant's value in words, never the model's internals.
``REASON_TABLE_VERSION`` changes whenever a code or a sentence does, so a letter can
name the table it quoted.

UCI data conventions behind the wording: ``pay_0`` is the most recent month's
repayment status and ``pay_2`` .. ``pay_6`` the five months before it (there is no
``pay_1``); ``bill_amt1``/``pay_amt1`` are the most recent statement and payment.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from contracts.application import FEATURE_COLUMNS

REASON_TABLE_VERSION: Final = "2026-11-27.1"

_MONTHS: Final = (
    "the most recent month",
    "the month before",
    "2 months before",
    "3 months before",
    "4 months before",
    "5 months before",
)
_EDUCATION: Final = {1: "graduate school", 2: "university", 3: "high school", 4: "other"}
_SEX: Final = {1: "male", 2: "female"}
_MARRIAGE: Final = {1: "married", 2: "single", 3: "other"}


@dataclass(frozen=True)
class ReasonEntry:
    """One row of the table: a stable code, and the sentence for an applicant's value."""

    code: str
    feature: str
    describe: Callable[[float], str]
    template: str
    """The sentence pattern, as documented in the score message's JSON Schema."""


def _repayment(month: str) -> Callable[[float], str]:
    def describe(value: float) -> str:
        status = int(value)
        if status == -2:
            return f"No credit used in {month}"
        if status == -1:
            return f"Balance paid in full in {month}"
        if status == 0:
            return f"Only part of the balance paid (revolving credit) in {month}"
        plural = "s" if status > 1 else ""
        return f"Payment {status} month{plural} late in {month}"

    return describe


def _amount(what: str, month: str) -> Callable[[float], str]:
    return lambda value: f"{what} of {value:,.0f} in {month}"


def _coded(what: str, labels: Mapping[int, str]) -> Callable[[float], str]:
    return lambda value: f"{what}: {labels.get(int(value), f'code {int(value)} (undocumented)')}"


def _entries() -> dict[str, ReasonEntry]:
    entries = [
        ReasonEntry(
            "CREDIT_LIMIT",
            "limit_bal",
            lambda value: f"Credit limit of {value:,.0f}",
            "Credit limit of {value}",
        ),
        ReasonEntry("SEX", "sex", _coded("Sex", _SEX), "Sex: {label}"),
        ReasonEntry(
            "EDUCATION", "education", _coded("Education", _EDUCATION), "Education: {label}"
        ),
        ReasonEntry(
            "MARITAL_STATUS",
            "marriage",
            _coded("Marital status", _MARRIAGE),
            "Marital status: {label}",
        ),
        ReasonEntry(
            "AGE", "age", lambda value: f"Age of {value:.0f} years", "Age of {value} years"
        ),
    ]
    pay_status = ("pay_0", "pay_2", "pay_3", "pay_4", "pay_5", "pay_6")
    for number, (feature, month) in enumerate(zip(pay_status, _MONTHS, strict=True), start=1):
        entries.append(
            ReasonEntry(
                f"REPAYMENT_STATUS_{number}",
                feature,
                _repayment(month),
                f"Payment {{n}} months late | Balance paid in full | ... in {month}",
            )
        )
    for number, month in enumerate(_MONTHS, start=1):
        entries.append(
            ReasonEntry(
                f"BILL_AMOUNT_{number}",
                f"bill_amt{number}",
                _amount("Statement balance", month),
                f"Statement balance of {{value}} in {month}",
            )
        )
        entries.append(
            ReasonEntry(
                f"PAYMENT_AMOUNT_{number}",
                f"pay_amt{number}",
                _amount("Payment", month),
                f"Payment of {{value}} in {month}",
            )
        )
    return {entry.feature: entry for entry in entries}


REASONS: Final[Mapping[str, ReasonEntry]] = _entries()
"""Feature name → its reason entry; covers every contract feature."""

if set(REASONS) != set(FEATURE_COLUMNS):  # pragma: no cover - a broken table must not import
    raise RuntimeError(f"reason table does not cover {set(FEATURE_COLUMNS) ^ set(REASONS)}")


def reason_table() -> list[JsonValue]:
    """The table as JSON-safe rows, in contract feature order (for the schema and docs)."""
    return [
        {"code": REASONS[name].code, "feature": name, "sentence": REASONS[name].template}
        for name in FEATURE_COLUMNS
    ]


class Reason(BaseModel):
    """One reason a score is as high as it is: a feature that raised this applicant's risk."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str = Field(description="stable code from the reason table (x-reason-codes)")
    feature: str = Field(description="the contract field the reason is about")
    value: float = Field(description="the applicant's value of that field")
    text: str = Field(description="the table's sentence filled with the applicant's value")
    contribution: float = Field(
        description="how much this feature raised the log-odds of default against a typical "
        "applicant (the model's reference row); reasons are sorted by it, largest first"
    )
