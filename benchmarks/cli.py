"""``python -m benchmarks`` (``make bench``): run every phase, write the numbers, print them.

Options can also be ``BENCH_<OPTION>`` variables; ``--quick`` changes only the sizes' defaults.
The workers' knobs are their own ``SCORER_*`` variables, checked before anything starts. Exit
codes: 0 after a complete run (missed targets are findings), 1 when a phase failed, 2 for bad
options or settings, 130 on Ctrl-C or SIGTERM; what the run started is stopped first.
"""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType
from typing import Annotated, Final

import typer
from rich.console import Console
from rich.markdown import Markdown

from benchmarks import BenchmarkError
from benchmarks.results import RunConfig
from benchmarks.runner import run_benchmark
from consumer.settings import ENV_PREFIX
from consumer.settings import Settings as WorkerSettings
from contracts.cli import EXIT_FAILED, EXIT_INTERRUPTED, settings_or_exit
from devstack import ROOT, DevstackError, log_tail

README: Final = ROOT / "benchmarks" / "README.md"
RESULTS: Final = ROOT / "benchmarks" / "results"
DATA: Final = ROOT / "data" / "credit_default.csv"
# Sizes of a full run and of --quick (a smoke run of about 3 minutes), by option.
FULL: Final = {"messages": 200_000, "naive_messages": 2_000, "latency_s": 25.0, "warmup_s": 5.0}
QUICK: Final = {"messages": 20_000, "naive_messages": 500, "latency_s": 8.0, "warmup_s": 2.0}

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def bench(
    quick: Annotated[bool, typer.Option("--quick/--full", help="smoke-run sizes")] = False,
    messages: Annotated[
        int | None, typer.Option(min=1_000, help="applications drained (200,000; quick 20,000)")
    ] = None,
    naive_messages: Annotated[
        int | None, typer.Option(min=100, help="the naive floor's sample (2,000; quick 500)")
    ] = None,
    rates: Annotated[str, typer.Option(help="latency rates per second, comma-separated")] = (
        "500,1000,2000"
    ),
    latency_seconds: Annotated[
        float | None, typer.Option(min=0.1, help="publishing time per rate (25; quick 8)")
    ] = None,
    warmup_seconds: Annotated[
        float | None, typer.Option(min=0, help="first seconds of a rate left out (5; quick 2)")
    ] = None,
    partitions: Annotated[int, typer.Option(min=1, max=64, help="partitions per topic")] = 6,
    profile: Annotated[bool, typer.Option(help="py-spy one draining worker")] = True,
    data: Annotated[Path, typer.Option(envvar="RUMOS_DATA", help="dataset CSV")] = DATA,
    results_dir: Annotated[Path, typer.Option(help="where runs are written")] = RESULTS,
    readme: Annotated[
        bool | None, typer.Option(help="write the table into README.md (default: full runs)")
    ] = None,
) -> None:
    """Measure scoring throughput and latency against their ceilings, on a local broker."""
    sizes = QUICK if quick else FULL
    # The run's own broker and registry replace these placeholders.
    worker = settings_or_exit(
        lambda: WorkerSettings(kafka_bootstrap_servers="unset", mlflow_tracking_uri="unset"),
        ENV_PREFIX,
    )
    config = RunConfig(
        quick=quick,
        messages=messages or int(sizes["messages"]),
        naive_messages=naive_messages or int(sizes["naive_messages"]),
        rates=_rates(rates),
        latency_seconds=latency_seconds or sizes["latency_s"],
        warmup_seconds=sizes["warmup_s"] if warmup_seconds is None else warmup_seconds,
        partitions=partitions,
        profile=profile,
        worker=worker.redacted(),
    )
    readme_path = README if (not quick if readme is None else readme) else None
    console = Console(stderr=True)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        table = run_benchmark(
            config, worker, data=data, results_dir=results_dir, readme=readme_path, console=console
        )
    except (BenchmarkError, DevstackError) as exc:
        log = getattr(exc, "log_path", None)
        detail = f"{exc}:\n{log_tail(log)}" if log is not None else str(exc)
        console.print(f"[red]benchmark failed:[/] {detail}", highlight=False)
        raise typer.Exit(EXIT_FAILED) from exc
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: everything the run started has been stopped")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    Console().print(Markdown(table.read_text()))
    console.print(f"results: {table.parent}" + (f"; table in {readme_path}" if readme_path else ""))


def _rates(text: str) -> tuple[int, ...]:
    """``"2000, 500,500"`` as ``(500, 2000)``: sorted, each once, all positive."""
    try:
        rates = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise typer.BadParameter(f"not whole numbers: {text!r}", param_hint="--rates") from None
    if not rates or rates[0] <= 0:
        raise typer.BadParameter("give positive applications per second", param_hint="--rates")
    return rates


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    """SIGTERM unwinds like Ctrl-C, so the run's ``finally`` blocks stop what it started."""
    raise KeyboardInterrupt


def main() -> None:
    app(auto_envvar_prefix="BENCH")
