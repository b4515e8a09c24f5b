"""The reference profile training stores with every model version, and how its bins are read.

Drift is measured against it: the monitor counts live values into the SAME bins training
fixed, so both sides must agree on what a bin is. A histogram's ``edges`` are its interior
cut points, ascending; bin ``i`` holds ``edges[i-1] < x <= edges[i]``, the first bin
everything up to ``edges[0]`` and the last everything above ``edges[-1]`` (so a live value
outside the training range still lands in a bin). ``counts`` has ``len(edges) + 1`` entries.

Stored as the JSON artifact ``REFERENCE_PROFILE_ARTIFACT`` of the run that logged the
version (a prediction record's ``model_run_id``); aggregate counts only, no applicant's row.
"""

from __future__ import annotations

from typing import Annotated, Final

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator

REFERENCE_PROFILE_ARTIFACT: Final = "reference_profile.json"


class Histogram(BaseModel):
    """Counts of values in bins fixed at training time (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    edges: list[Annotated[float, Field(allow_inf_nan=False)]]
    counts: list[Annotated[int, Field(ge=0)]]

    @model_validator(mode="after")
    def _check_shape(self) -> Histogram:
        if len(self.counts) != len(self.edges) + 1:
            raise ValueError(f"{len(self.edges)} edges need {len(self.edges) + 1} counts")
        if any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError("edges must be strictly ascending")
        return self

    def bin_of(self, values: npt.ArrayLike) -> npt.NDArray[np.intp]:
        """The bin index of each value."""
        return np.searchsorted(np.asarray(self.edges, dtype=float), values, side="left")

    def count(self, values: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """How many of ``values`` fall in each bin, in this histogram's bins."""
        return np.bincount(self.bin_of(values), minlength=len(self.counts)).astype(np.int64)


class ReferenceProfile(BaseModel):
    """Feature histograms on the training split and the score histogram of a model version."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    features: dict[str, Histogram] = Field(description="by contract feature name")
    score: Histogram = Field(description="P(default) on the validation split")
    training_rows: int = Field(ge=1)
    validation_rows: int = Field(ge=1)
    validation_roc_auc: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="the version's ROC-AUC on the validation split (what live ROC-AUC is "
        "held to); None in profiles written before it was recorded",
    )
