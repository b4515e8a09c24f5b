"""``python -m benchmarks``: run every phase, write the results, print the table.

Exit codes: 0 after a complete run (targets missed included: they are findings, not
failures), 1 when a phase or the stack failed, 2 for invalid options, 130 on Ctrl-C.
Whatever the run started (broker, workers) is stopped before it exits, in every case.
"""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markdown import Markdown

from benchmarks.errors import BenchmarkError
from benchmarks.runner import run_benchmark
from benchmarks.settings import BenchSettings

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def bench(
    quick: Annotated[
        bool | None, typer.Option("--quick/--full", help="smoke-run sizes (20,000 messages)")
    ] = None,
    messages: Annotated[int | None, typer.Option(help="applications preloaded and drained")] = None,
    naive_messages: Annotated[int | None, typer.Option(help="messages for the naive floor")] = None,
    rates: Annotated[
        str | None, typer.Option(help="latency rates per second, comma-separated (500,1000,2000)")
    ] = None,
    latency_seconds: Annotated[float | None, typer.Option(help="publishing time per rate")] = None,
    warmup_seconds: Annotated[float | None, typer.Option(help="first seconds left out")] = None,
    partitions: Annotated[int | None, typer.Option(help="partitions per topic (6)")] = None,
    profile: Annotated[
        bool | None, typer.Option("--profile/--no-profile", help="py-spy one worker (default: on)")
    ] = None,
    data: Annotated[
        Path | None, typer.Option(help="dataset CSV for training (env RUMOS_DATA)")
    ] = None,
    results_dir: Annotated[Path | None, typer.Option(help="where runs are written")] = None,
    readme: Annotated[
        Path | None,
        typer.Option(help="README whose table is rewritten (full runs: benchmarks/README.md)"),
    ] = None,
    no_readme: Annotated[
        bool, typer.Option("--no-readme", help="leave every README alone (experiments)")
    ] = False,
) -> None:
    """Measure scoring throughput and latency against their ceilings, on a local broker."""
    console = Console(stderr=True)
    settings = _settings(
        console,
        quick=quick,
        messages=messages,
        naive_messages=naive_messages,
        rates=rates,
        latency_seconds=latency_seconds,
        warmup_seconds=warmup_seconds,
        partitions=partitions,
        profile=profile,
        data=data,
        results_dir=results_dir,
        readme=readme,
        no_readme=no_readme,
    )
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        _, table = run_benchmark(settings, console)
    except BenchmarkError as exc:
        console.print(f"[red]benchmark failed:[/] {exc}", highlight=False)
        raise typer.Exit(1) from exc
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: everything the run started has been stopped")
        raise typer.Exit(130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    Console().print(Markdown(table.read_text()))
    console.print(f"results: {table.parent}")
    if settings.readme is not None:
        console.print(f"table written to {settings.readme}")


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    """SIGTERM unwinds like Ctrl-C, so the run's ``finally`` blocks stop what it started."""
    raise KeyboardInterrupt


def _settings(console: Console, *, no_readme: bool, **options: Any) -> BenchSettings:
    given = {k: v for k, v in options.items() if v is not None}
    if no_readme:
        given["readme"] = None
    try:
        return BenchSettings(**given)
    except ValidationError as exc:
        for error in exc.errors(include_url=False, include_input=False):
            field = ".".join(str(part) for part in error["loc"]) or "options"
            console.print(f"[red]invalid option {field}:[/] {error['msg']}", highlight=False)
        raise typer.Exit(2) from None


def main() -> None:
    app()
