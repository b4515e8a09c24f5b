"""The loan-outcome message: what became of an application once its repayments were observed.

Published on the outcomes topic keyed by ``application_id``, usually weeks after the
application was scored; the monitor joins it with that application's prediction.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class LoanOutcome(BaseModel):
    """The observed default flag of one scored application.

    Strict like ``LoanApplication``: ``defaulted`` is a JSON boolean (``1`` is rejected),
    ``observed_on`` an ISO date, unknown fields are rejected and the object is immutable.
    """

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    application_id: Annotated[str, Field(min_length=1, max_length=128)]
    defaulted: bool = Field(description="true when the client defaulted on the next payment")
    observed_on: date = Field(description="the day the outcome was observed")
