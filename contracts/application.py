"""The loan-application message: one JSON object per Kafka record.

Domains follow the real UCI "Default of Credit Card Clients" data, quirks included:
bill amounts can be negative, repayment status runs from -2, EDUCATION uses the
undocumented codes 0, 5 and 6 and MARRIAGE the undocumented 0. Anything outside
these domains, of the wrong type, missing or unknown is rejected with a
``pydantic.ValidationError`` whose ``loc`` names the field.
"""

from __future__ import annotations

import operator
from datetime import datetime
from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field

# The upper bounds exist to reject absurd values (a credit limit of 10^300), not to
# second-guess the bank: they sit two orders of magnitude above the largest value
# seen in the data.
_MAX_AMOUNT: Final = 100_000_000

CreditLimit = Annotated[float, Field(gt=0, le=_MAX_AMOUNT, allow_inf_nan=False)]
BillAmount = Annotated[float, Field(ge=-_MAX_AMOUNT, le=_MAX_AMOUNT, allow_inf_nan=False)]
PaidAmount = Annotated[float, Field(ge=0, le=_MAX_AMOUNT, allow_inf_nan=False)]
# -2 no consumption, -1 paid in full, 0 revolving credit, 1..9 months of delay.
RepaymentStatus = Annotated[int, Field(ge=-2, le=9)]


class LoanApplication(BaseModel):
    """A loan application as published on the applications topic.

    Strict: numbers must be JSON numbers (``"20000"`` is rejected), codes must be
    integers, unknown fields are rejected, and the object is immutable.
    """

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    application_id: Annotated[str, Field(min_length=1, max_length=128)]
    submitted_at: datetime | None = None

    limit_bal: CreditLimit
    sex: Annotated[int, Field(ge=1, le=2, description="1 male, 2 female (personal data)")]
    education: Annotated[
        int,
        Field(
            ge=0,
            le=6,
            description="1 graduate school, 2 university, 3 high school, "
            "4 others; 0, 5, 6 undocumented (personal data)",
        ),
    ]
    marriage: Annotated[
        int,
        Field(
            ge=0, le=3, description="1 married, 2 single, 3 others; 0 undocumented (personal data)"
        ),
    ]
    age: Annotated[int, Field(ge=18, le=120, description="years (personal data)")]
    pay_0: RepaymentStatus
    pay_2: RepaymentStatus
    pay_3: RepaymentStatus
    pay_4: RepaymentStatus
    pay_5: RepaymentStatus
    pay_6: RepaymentStatus
    bill_amt1: BillAmount
    bill_amt2: BillAmount
    bill_amt3: BillAmount
    bill_amt4: BillAmount
    bill_amt5: BillAmount
    bill_amt6: BillAmount
    pay_amt1: PaidAmount
    pay_amt2: PaidAmount
    pay_amt3: PaidAmount
    pay_amt4: PaidAmount
    pay_amt5: PaidAmount
    pay_amt6: PaidAmount

    def features(self) -> tuple[float, ...]:
        """The 23 model inputs in ``FEATURE_COLUMNS`` order."""
        values: tuple[float, ...] = _read_features(self)
        return values


FEATURE_COLUMNS: Final[tuple[str, ...]] = tuple(
    name for name in LoanApplication.model_fields if name not in ("application_id", "submitted_at")
)
"""The 23 features, in the dataset's column order, as the model sees them."""
_read_features: Final = operator.attrgetter(*FEATURE_COLUMNS)
# One C call: a getattr per feature was a tenth of the monitor's CPU over a burst (cProfile,
# benchmarks/README.md finding 10).

PERSONAL_FIELDS: Final[frozenset[str]] = frozenset({"sex", "education", "marriage", "age"})
"""Fields that are personal data about the applicant: never logged by default."""
