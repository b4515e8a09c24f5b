"""Benchmark options: full and quick presets, explicit values winning, bad values refused
before anything starts, and the worker's ``SCORER_*`` settings checked the project's way."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from benchmarks import cli
from benchmarks.results import RunConfig
from consumer.settings import Settings as WorkerSettings


@dataclass(frozen=True)
class Invocation:
    """What the command would run with."""

    config: RunConfig
    worker: WorkerSettings
    readme: Path | None


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[Invocation]:
    """The options each invocation would run with (nothing is started)."""
    for name in ("BENCH_QUICK", "BENCH_MESSAGES", "BENCH_RATES", "SCORER_BATCH_MAX_MESSAGES"):
        monkeypatch.delenv(name, raising=False)
    seen: list[Invocation] = []

    def run_benchmark(
        config: RunConfig, worker: WorkerSettings, *, readme: Path | None, **_places: object
    ) -> Path:
        seen.append(Invocation(config, worker, readme))
        table = tmp_path / "results.md"
        table.write_text("| table |\n")
        return table

    monkeypatch.setattr(cli, "run_benchmark", run_benchmark)
    return seen


def _invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli.app, list(args), env=env, auto_envvar_prefix="BENCH")
    return result.exit_code, result.output


def test_a_full_run_drains_200k_and_writes_the_readme_table(runs: list[Invocation]) -> None:
    assert _invoke()[0] == 0

    (run,) = runs
    assert (run.config.messages, run.config.naive_messages) == (200_000, 2_000)
    assert run.config.rates == (500, 1_000, 2_000)
    assert run.readme == cli.README
    assert run.worker.batch_max_messages == 500  # the worker's own default
    assert run.config.worker["batch_max_messages"] == 500  # recorded with the results


def test_a_quick_run_is_smaller_and_leaves_the_readme_alone(runs: list[Invocation]) -> None:
    assert _invoke("--quick")[0] == 0

    (run,) = runs
    assert run.config.messages == cli.QUICK["messages"] == 20_000
    assert run.config.latency_seconds < cli.FULL["latency_s"]
    assert run.readme is None


def test_explicit_values_win_over_the_presets(runs: list[Invocation]) -> None:
    _invoke("--quick", "--messages", "5000", "--readme")
    _invoke("--no-readme", "--warmup-seconds", "0")

    assert (runs[0].config.messages, runs[0].readme) == (5_000, cli.README)
    assert (runs[1].readme, runs[1].config.warmup_seconds) == (None, 0.0)


def test_options_can_come_from_the_environment(runs: list[Invocation]) -> None:
    _invoke(env={"BENCH_QUICK": "1", "BENCH_RATES": "700"})

    assert (runs[0].config.messages, runs[0].config.rates) == (20_000, (700,))


def test_scorer_settings_reach_the_run(runs: list[Invocation]) -> None:
    _invoke(env={"SCORER_BATCH_MAX_MESSAGES": "250"})

    assert runs[0].worker.batch_max_messages == 250
    assert runs[0].config.worker["batch_max_messages"] == 250


def test_rates_accept_a_comma_separated_list_sorted_and_deduplicated(
    runs: list[Invocation],
) -> None:
    _invoke("--rates", "2000, 500,500")

    assert runs[0].config.rates == (500, 2_000)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rates", "0,500"], "positive"),
        (["--rates", " , "], "positive"),
        (["--rates", "fast"], "not whole numbers"),
        (["--messages", "10"], "--messages"),
    ],
)
def test_bad_options_are_refused_before_anything_runs(
    runs: list[Invocation], args: list[str], message: str
) -> None:
    code, output = _invoke(*args)

    assert code == 2
    assert message in output
    assert runs == []


def test_bad_worker_settings_are_named_like_every_cli_names_them(runs: list[Invocation]) -> None:
    code, output = _invoke(env={"SCORER_BATCH_MAX_MESSAGES": "0"})

    assert code == 2
    assert "invalid setting SCORER_BATCH_MAX_MESSAGES:" in output
    assert runs == []
