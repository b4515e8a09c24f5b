"""The benchmark's configuration: one typed object, built in ``main()`` and passed down.

Options come from the command line (``python -m benchmarks --help``) or ``BENCH_<FIELD>``
variables; ``RUMOS_DATA`` names the dataset, as for training. ``--quick`` only changes the
defaults of the sizes below (fewer messages, shorter latency phases): anything given
explicitly wins. The worker's own knobs (batch size, batch wait, linger) are the
``SCORER_*`` variables the worker reads; the benchmark applies the same ones to its
passthrough ceiling, so both loops always run with one configuration.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Final

from pydantic import Field, PositiveFloat, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ROOT: Final = Path(__file__).resolve().parents[1]
PACKAGE_DIR: Final = ROOT / "benchmarks"

QUICK_DEFAULTS: Final[dict[str, Any]] = {
    "messages": 20_000,
    "naive_messages": 500,
    "latency_seconds": 8.0,
    "warmup_seconds": 2.0,
    "readme": None,
}
"""What ``--quick`` changes, unless given explicitly; the field defaults are the full run."""


class BenchSettings(BaseSettings):
    """Sizes and places of one benchmark run."""

    model_config = SettingsConfigDict(
        env_prefix="BENCH_", extra="ignore", frozen=True, validate_by_name=True
    )

    quick: bool = False
    messages: int = Field(default=200_000, ge=1_000, description="applications drained")
    naive_messages: int = Field(default=2_000, ge=100, description="naive scorer's sample")
    rates: Annotated[tuple[int, ...], NoDecode] = (500, 1_000, 2_000)
    latency_seconds: PositiveFloat = Field(default=25.0, description="publishing time per rate")
    warmup_seconds: float = Field(default=5.0, ge=0, description="first seconds left out")
    partitions: int = Field(default=6, ge=1, le=64)
    inference_seconds: PositiveFloat = Field(
        default=3.0, description="time spent timing the champion's batch calls"
    )
    profile: bool = Field(default=True, description="py-spy one worker (if installed)")
    seed: int = 7
    data: Path = Field(default=ROOT / "data" / "credit_default.csv", validation_alias="RUMOS_DATA")
    results_dir: Path = PACKAGE_DIR / "results"
    readme: Path | None = Field(
        default=PACKAGE_DIR / "README.md", description="README whose table is rewritten"
    )
    phase_timeout_s: PositiveFloat = Field(
        default=900.0, description="longest a single phase may take before the run fails"
    )

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, values: Any) -> Any:
        """With ``quick``, fill the sizes not given from the quick preset."""
        if not isinstance(values, dict):
            return values
        quick = str(values.get("quick", False)).lower() in ("1", "true", "yes", "on")
        return {**QUICK_DEFAULTS, **values} if quick else values

    @field_validator("rates", mode="before")
    @classmethod
    def _split_rates(cls, value: Any) -> Any:
        """Accept ``"500,2000"`` (environment or CLI) as well as a sequence."""
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list | tuple):
            parts = [p.strip() for item in value for p in str(item).split(",") if p.strip()]
            if not parts:
                raise ValueError("at least one rate is needed")
            return tuple(sorted({int(p) for p in parts}))
        return value

    @field_validator("rates", mode="after")
    @classmethod
    def _positive_rates(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(rate <= 0 for rate in value):
            raise ValueError("rates must be positive applications per second")
        return value
