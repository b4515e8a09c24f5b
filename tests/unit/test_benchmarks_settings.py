"""Benchmark options: full and quick presets, explicit values winning, bad values named."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from benchmarks.settings import QUICK_DEFAULTS, BenchSettings


@pytest.fixture(autouse=True)
def _no_bench_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BENCH_QUICK", "BENCH_MESSAGES", "BENCH_RATES", "BENCH_README"):
        monkeypatch.delenv(name, raising=False)


def test_a_full_run_drains_200k_and_rewrites_the_readme() -> None:
    settings = BenchSettings()

    assert settings.messages == 200_000
    assert settings.naive_messages == 2_000
    assert settings.rates == (500, 1_000, 2_000)
    assert settings.readme is not None
    assert settings.readme.name == "README.md"


def test_a_quick_run_is_smaller_and_leaves_the_readme_alone() -> None:
    settings = BenchSettings(quick=True)

    assert settings.messages == QUICK_DEFAULTS["messages"] == 20_000
    assert settings.latency_seconds < BenchSettings().latency_seconds
    assert settings.readme is None


def test_explicit_values_win_over_the_quick_preset() -> None:
    assert BenchSettings(quick=True, messages=5_000).messages == 5_000


def test_quick_can_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_QUICK", "1")

    assert BenchSettings().messages == 20_000


def test_rates_accept_a_comma_separated_list_sorted_and_deduplicated() -> None:
    # The CLI and the environment give text.
    assert BenchSettings(rates="2000, 500,500").rates == (500, 2_000)  # type: ignore[arg-type]


@pytest.mark.parametrize(("rates", "message"), [("0,500", "positive"), (" , ", "at least one")])
def test_bad_rates_are_rejected_with_the_reason(rates: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        BenchSettings(rates=rates)  # type: ignore[arg-type]


def test_too_few_messages_are_rejected() -> None:
    with pytest.raises(ValidationError, match="messages"):
        BenchSettings(messages=10)
